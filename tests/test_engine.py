"""The tiled inference engine: tiles are exact, memory and precision fall back safely."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from formnet_cli.config import ModelConfig, NetworkConfig
from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.inference import device as device_module
from formnet_cli.inference import engine as engine
from formnet_cli.inference.engine import (
    ENSEMBLE_VIEWS,
    TileGeometry,
    dihedral,
    plan_axis,
    restore_tensor,
    undo_dihedral,
)
from formnet_cli.models import FormResNet

TINY_UNET = NetworkConfig(widths=(8, 16), blocks_per_level=1)
TINY_PLAIN = NetworkConfig(kind="plain", widths=(8,), depth=5, unshuffle=1)
LEVEL = 25 / 255


def make_model(residual: NetworkConfig, channels: int = 1, **config: object) -> FormResNet:
    torch.manual_seed(0)
    return FormResNet(ModelConfig(channels=channels, residual=residual, **config)).eval()


def random_image(channels: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(channels, height, width, generator=torch.Generator().manual_seed(seed))


def restore_counting(model: FormResNet, image: torch.Tensor, level: float | torch.Tensor,
                     **options: object) -> tuple[torch.Tensor, int]:
    """``restore_tensor`` plus the number of tiles it reported."""
    calls: list[tuple[int, int]] = []
    restored = restore_tensor(model, image, level, progress=lambda d, t: calls.append((d, t)),
                              **options)
    return restored, calls[-1][1]


@pytest.fixture(scope="module")
def unet() -> FormResNet:
    return make_model(TINY_UNET)


@pytest.fixture(scope="module")
def plain() -> FormResNet:
    return make_model(TINY_PLAIN)


# -- exactness ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "tile"), [("unet", 72), ("plain", 32), ("cnn-formatter", 112)])
@pytest.mark.parametrize("size", [(77, 331), (330, 45)])
def test_tiled_equals_untiled(kind: str, tile: int, size: tuple[int, int]) -> None:
    """Small windows (near the minimum a model allows) force many tiles on odd sizes."""
    if kind == "unet":
        model = make_model(TINY_UNET, channels=3)
    elif kind == "plain":
        model = make_model(TINY_PLAIN, channels=3)
    else:
        model = make_model(TINY_UNET, channels=3, formatter="cnn", formatter_network=TINY_UNET)
    image = random_image(3, *size)
    untiled = restore_tensor(model, image, LEVEL, tile=None)
    tiled, tiles = restore_counting(model, image, LEVEL, tile=tile, tile_overlap=8)
    assert tiles >= 3
    assert untiled.shape == tiled.shape == image.shape
    assert untiled.dtype == torch.float32
    assert (untiled - image).abs().mean() > 0.05  # the model does change the image
    assert (tiled - untiled).abs().max() < 1e-4


def test_untiled_is_pad_forward_crop(unet: FormResNet) -> None:
    image = random_image(1, 64, 48)  # already a multiple of size_multiple: no padding
    expected = unet(image[None], torch.tensor([LEVEL]))[0]
    assert torch.allclose(restore_tensor(unet, image, LEVEL, tile=None), expected, atol=1e-6)


def test_too_small_context_is_detected(unet: FormResNet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exactness test has teeth: tiles without their context margin show seams."""
    image = random_image(1, 77, 131)
    untiled = restore_tensor(unet, image, LEVEL, tile=None)
    monkeypatch.setattr(unet, "descriptor", dataclasses.replace(unet.descriptor, receptive_radius=0))
    tiled = restore_tensor(unet, image, LEVEL, tile=48, tile_overlap=0)
    assert (tiled - untiled).abs().max() > 1e-3


def test_level_map_is_tiled_like_the_image(unet: FormResNet) -> None:
    image = random_image(1, 177, 231)
    level_map = random_image(1, 177, 231, seed=7) * 0.3
    untiled = restore_tensor(unet, image, level_map, tile=None)
    tiled, tiles = restore_counting(unet, image, level_map, tile=72, tile_overlap=8)
    assert tiles > 4
    assert (tiled - untiled).abs().max() < 1e-4
    scalar = restore_tensor(unet, image, LEVEL, tile=None)
    assert (scalar - untiled).abs().max() > 1e-3  # the map is really used


def test_scalar_tensor_level_equals_float(unet: FormResNet) -> None:
    image = random_image(1, 30, 20)
    by_float = restore_tensor(unet, image, LEVEL, tile=None)
    by_tensor = restore_tensor(unet, image, torch.tensor(LEVEL), tile=None)
    assert torch.equal(by_float, by_tensor)


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (3, 5), (1, 9)])
def test_tiny_images(unet: FormResNet, plain: FormResNet, size: tuple[int, int]) -> None:
    image = random_image(1, *size)
    for model in (unet, plain):
        untiled = restore_tensor(model, image, LEVEL, tile=None)
        tiled = restore_tensor(model, image, LEVEL, tile=8)
        assert untiled.shape == image.shape
        assert torch.isfinite(untiled).all()
        assert torch.equal(tiled, untiled)


def test_batch_size_does_not_change_the_result(unet: FormResNet) -> None:
    image = random_image(1, 77, 131)
    single = restore_tensor(unet, image, LEVEL, tile=72, tile_overlap=8, batch_size=1)
    batched = restore_tensor(unet, image, LEVEL, tile=72, tile_overlap=8, batch_size=5)
    assert (single - batched).abs().max() < 1e-5


def test_progress_reports_every_batch(unet: FormResNet) -> None:
    calls: list[tuple[int, int]] = []
    restore_tensor(unet, random_image(1, 77, 131), LEVEL, tile=72, tile_overlap=8, batch_size=4,
                   progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert [done for done, _ in calls] == [min(4 * (i + 1), total) for i in range(len(calls))]
    assert {t for _, t in calls} == {total} and calls[-1][0] == total


# -- self-ensemble ------------------------------------------------------------------------------
def test_dihedral_views_are_the_eight_distinct_symmetries_and_undo_them() -> None:
    image = random_image(2, 5, 7)
    views = [dihedral(image, view) for view in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    for view, transformed in enumerate(views):
        assert torch.equal(undo_dihedral(transformed, view), image)
    assert torch.equal(views[3], torch.rot90(image, 2, (-2, -1)))
    assert {tuple(views[5].flatten().tolist()), tuple(views[6].flatten().tolist())} == {
        tuple(torch.rot90(image, k, (-2, -1)).flatten().tolist()) for k in (1, 3)}


@pytest.mark.parametrize("ensemble", [2, 4, 8])
def test_ensemble_is_the_mean_of_the_turned_back_views(unet: FormResNet, ensemble: int) -> None:
    image = random_image(1, 40, 56)  # a multiple of the grid: no padding, whose side differs by view
    level_map = torch.linspace(0.02, 0.2, 56).expand(1, 40, 56).contiguous()
    expected = torch.stack([
        undo_dihedral(restore_tensor(unet, dihedral(image, view), dihedral(level_map, view),
                                     tile=None), view)
        for view in ENSEMBLE_VIEWS[ensemble]]).mean(dim=0)
    calls: list[tuple[int, int]] = []
    result = restore_tensor(unet, image, level_map, tile=24, tile_overlap=4, ensemble=ensemble,
                            progress=lambda done, total: calls.append((done, total)))
    single, tiles_per_pass = restore_counting(unet, image, level_map, tile=24, tile_overlap=4)
    assert result.shape == image.shape
    assert (result - expected).abs().max() < 1e-5
    assert (result - single).abs().max() > 1e-3  # an untrained net is far from symmetric
    assert [done for done, _ in calls] == list(range(1, ensemble * tiles_per_pass + 1))
    assert {total for _, total in calls} == {ensemble * tiles_per_pass}


@pytest.mark.parametrize("ensemble", [2, 8])
def test_an_ensemble_tiled_equals_it_untiled_on_a_padded_image(unet: FormResNet,
                                                                ensemble: int) -> None:
    image = random_image(1, 77, 131)  # padded at the bottom and right: each window's views
    untiled = restore_tensor(unet, image, LEVEL, tile=None, ensemble=ensemble)
    tiled = restore_tensor(unet, image, LEVEL, tile=72, tile_overlap=8, ensemble=ensemble)
    assert (tiled - untiled).abs().max() < 1e-5


def test_auto_tile_on_cpu(unet: FormResNet) -> None:
    image = random_image(1, 77, 131)
    auto = restore_tensor(unet, image, LEVEL, tile="auto")
    assert (auto - restore_tensor(unet, image, LEVEL, tile=None)).abs().max() < 1e-4


def test_plan_shrinks_windows_to_the_fewest_that_cover_the_axis() -> None:
    geometry = TileGeometry(size_multiple=8, context=136, overlap=16)
    spans = plan_axis(4000, 2048, geometry)
    assert len(spans) == 3  # what 2048-pixel windows need too
    size = spans[0].stop - spans[0].start
    assert size < 1700 and all(span.stop - span.start == size for span in spans)
    assert len(plan_axis(4000, size - 8, geometry)) == 4  # one grid step less needs a fourth


@pytest.mark.parametrize("length", [4, 60, 64, 68, 132, 200, 1000])
@pytest.mark.parametrize("window", [60, 64, 100])
def test_plan_covers_the_axis_on_the_grid(length: int, window: int) -> None:
    geometry = TileGeometry(size_multiple=4, context=24, overlap=8)
    window = geometry.window(window)
    spans = plan_axis(length, window, geometry)
    size = spans[0].stop - spans[0].start
    assert size <= min(window, length) and size % 4 == 0 or size == length
    covered = np.zeros(length, np.float32)  # the blend weights are numpy arrays
    for span in spans:
        assert span.start % 4 == 0 and span.stop - span.start == size
        assert 0 <= span.start and span.stop <= length
        inner_start = span.keep_start - span.start if span.start > 0 else geometry.context
        inner_stop = span.stop - span.keep_stop if span.stop < length else geometry.context
        assert inner_start >= geometry.context and inner_stop >= geometry.context
        assert (span.weights > 0).all()
        covered[span.kept] += span.weights
    assert (covered > 0).all()


# -- options, the caller's model and its descriptor -----------------------------------------
def test_caller_model_is_left_as_it_was(unet: FormResNet, cpu_bf16: None) -> None:
    unet.train()
    try:
        restore_tensor(unet, random_image(1, 20, 20), LEVEL, tile=None, precision="bf16")
        assert unet.training
        assert all(p.dtype == torch.float32 and p.is_contiguous() for p in unet.parameters())
    finally:
        unet.eval()


def test_a_model_restored_with_under_inference_mode_can_still_train(unet: FormResNet) -> None:
    with torch.inference_mode():
        restore_tensor(unet, random_image(1, 16, 16), LEVEL, tile=None)
    unet.train()
    try:
        unet(random_image(1, 16, 16)[None], torch.tensor([LEVEL])).mean().backward()
    finally:
        unet.eval()
        unet.zero_grad(set_to_none=True)


def test_channels_last_runs_give_the_contiguous_result(unet: FormResNet,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    image = random_image(1, 24, 40)
    fast = restore_tensor(unet, image, LEVEL, tile=None)
    monkeypatch.setattr(device_module, "fast_memory_format", lambda device: torch.contiguous_format)
    plain = restore_tensor(unet, image, LEVEL, tile=None)
    assert torch.allclose(fast, plain, atol=1e-5)


@pytest.mark.parametrize("options", [{"tile": 0}, {"tile": "big"}, {"tile_overlap": -1},
                                     {"batch_size": 0}, {"precision": "fp8"},
                                     {"ensemble": 3}, {"ensemble": 0}])
def test_bad_options(unet: FormResNet, options: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionError):
        restore_tensor(unet, random_image(1, 8, 8), LEVEL, **options)


def test_bad_level_map_shape(unet: FormResNet) -> None:
    with pytest.raises(ValueError, match="level map"):
        restore_tensor(unet, random_image(1, 8, 8), torch.zeros(1, 8, 9))


class Undescribed(torch.nn.Module):
    """A restorer that does not say how far its context reaches."""

    def __init__(self, descriptor: object = None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)
        if descriptor is not None:
            self.descriptor = descriptor

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return x + self.conv(torch.cat([x, level.reshape(-1, 1, 1, 1).expand_as(x)], dim=1))


@pytest.mark.parametrize(("descriptor", "message"), [
    (None, "Undescribed has no model descriptor: .* formnet_cli.models.ModelDescriptor"),
    ({"receptive_radius": 1}, "Undescribed.descriptor must be a ModelDescriptor, got dict")])
def test_a_model_without_a_descriptor_is_refused_before_any_tile(descriptor: object,
                                                                 message: str) -> None:
    model = Undescribed(descriptor)
    calls: list[torch.Tensor] = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(output))
    with pytest.raises(TypeError, match=message):
        restore_tensor(model, random_image(1, 40, 40), LEVEL, tile=16)
    assert calls == []  # refused, not tiled with a guessed context


def test_a_described_model_of_any_class_runs_exactly(unet: FormResNet) -> None:
    """The descriptor is all the engine needs: a wrapper that declares FormResNet's own tiles
    exactly like FormResNet."""
    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = unet
            self.descriptor = unet.descriptor

        def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
            return self.inner(x, level)

    image = random_image(1, 77, 131)
    untiled = restore_tensor(unet, image, LEVEL, tile=None)
    tiled, tiles = restore_counting(Wrapper(), image, LEVEL, tile=72, tile_overlap=8)
    assert tiles > 1 and (tiled - untiled).abs().max() < 1e-4


def test_an_image_with_other_channels_than_the_model_is_refused(unet: FormResNet) -> None:
    with pytest.raises(ValueError, match="a 1-channel model cannot restore a 3-channel image"):
        restore_tensor(unet, random_image(3, 16, 16), LEVEL)


# -- fallbacks -------------------------------------------------------------------------------
def test_out_of_memory_halves_the_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(TINY_UNET)
    image = random_image(1, 200, 150)
    expected = restore_tensor(model, image, LEVEL, tile=None)
    forward = model.forward
    sides: list[int] = []

    def forward_with_small_memory(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        sides.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x, level)

    monkeypatch.setattr(model, "forward", forward_with_small_memory)
    restored = restore_tensor(model, image, LEVEL, tile=None, tile_overlap=4)
    assert sides[0] == 200 and 50 < sides[1] <= 100  # untiled, then half (or a little less)
    assert max(sides[2:]) <= 100
    assert (restored - expected).abs().max() < 1e-4


# slow: about 900 passes of the tightest window, 40 s of CPU (a fifth of the suite's)
@pytest.mark.slow
def test_out_of_memory_then_fewer_tiles_at_once_then_tighter_windows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Memory for one 80 px window only: below the efficient floor (100 px here), so the engine
    # halves the batch first, then goes below the floor rather than fail.
    model = make_model(TINY_UNET)
    image = random_image(1, 200, 150)
    expected = restore_tensor(model, image, LEVEL, tile=None)
    forward = model.forward
    shapes: list[tuple[int, int]] = []

    def forward_with_little_memory(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        shapes.append((x.shape[0], max(x.shape[-2:])))
        if x.shape[0] > 1 or max(x.shape[-2:]) > 80:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return forward(x, level)

    monkeypatch.setattr(model, "forward", forward_with_little_memory)
    restored = restore_tensor(model, image, LEVEL, tile=400, tile_overlap=4, batch_size=4)
    geometry = TileGeometry.for_descriptor(model.descriptor, 4)
    assert geometry.min_window > 80 >= geometry.tightest_window
    assert (1, geometry.min_window) in shapes and shapes[-1][0] == 1 and shapes[-1][1] <= 80
    assert (restored - expected).abs().max() < 1e-4


def test_out_of_memory_at_the_smallest_tile_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(TINY_UNET)

    def always_out_of_memory(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    monkeypatch.setattr(model, "forward", always_out_of_memory)
    with pytest.raises(FormnetError, match="out of memory") as raised:
        restore_tensor(model, random_image(1, 300, 300), LEVEL, tile=256)
    assert "\n" not in str(raised.value)


def test_other_runtime_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(TINY_UNET)

    def broken(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(model, "forward", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        restore_tensor(model, random_image(1, 20, 20), LEVEL)


def test_non_finite_half_precision_tiles_rerun_in_fp32(monkeypatch: pytest.MonkeyPatch,
                                                       cpu_bf16: None) -> None:
    model = make_model(TINY_UNET)
    image = random_image(1, 50, 90)
    options = {"tile": 72, "tile_overlap": 8}
    expected = restore_tensor(model, image, LEVEL, precision="fp32", **options)
    half = restore_tensor(model, image, LEVEL, precision="bf16", **options)
    assert 0 < (half - expected).abs().max() < 0.1  # bf16 really ran, and roughly agrees
    forward = model.forward
    dtypes: list[bool] = []

    def overflows_in_half(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        in_half = torch.is_autocast_enabled("cpu")
        dtypes.append(in_half)
        output = forward(x, level)
        return output * float("nan") if in_half else output

    monkeypatch.setattr(model, "forward", overflows_in_half)
    restored = restore_tensor(model, image, LEVEL, precision="bf16", batch_size=3, **options)
    assert True in dtypes and False in dtypes
    assert torch.isfinite(restored).all()
    assert (restored - expected).abs().max() < 1e-5


def test_bm3d_formatter_model_runs_tiled() -> None:
    pytest.importorskip("bm3d")
    model = make_model(TINY_UNET, formatter="bm3d")
    image = random_image(1, 120, 16)
    restored, tiles = restore_counting(model, image, LEVEL, tile=56, tile_overlap=0)
    assert tiles > 1
    assert restored.shape == image.shape and torch.isfinite(restored).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_half_precision_matches_cpu() -> None:
    model = make_model(TINY_UNET, channels=3)
    image = random_image(3, 301, 257)
    expected = restore_tensor(model, image, LEVEL, tile=None)
    restored = restore_tensor(model, image, LEVEL, tile=128, device="cuda", batch_size=4)
    assert restored.device.type == "cpu" and restored.dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"
    assert (restored - expected).abs().max() < 0.02
    exact = restore_tensor(model, image, LEVEL, tile="auto", device="cuda", precision="fp32")
    assert (exact - expected).abs().max() < 1e-3


@pytest.mark.parametrize("length", [331, 1000, 4099])
def test_a_tiny_tile_computes_no_pixel_more_than_about_twice(unet: FormResNet, length: int) -> None:
    # A window barely wider than its discarded context margins would advance by a few pixels
    # and run the model 30-60x over (--tile 128 with a 136 px context did).
    geometry = TileGeometry.for_descriptor(unet.descriptor, overlap=8)
    padded = -(-length // geometry.size_multiple) * geometry.size_multiple
    spans = plan_axis(padded, geometry.window(8), geometry)
    assert len(spans) > 1
    assert sum(span.stop - span.start for span in spans) <= 2.5 * length


def test_an_image_too_large_for_the_free_memory_is_refused_in_one_line(
        unet: FormResNet, monkeypatch: pytest.MonkeyPatch) -> None:
    image = random_image(1, 100, 60)  # 24,000 bytes per whole-image float buffer
    monkeypatch.setattr(engine, "free_memory_bytes", lambda device: 50_000)
    assert restore_tensor(unet, image, LEVEL, tile=None, ensemble=2).shape == image.shape  # 2 fit
    monkeypatch.setattr(engine, "free_memory_bytes", lambda device: 40_000)
    with pytest.raises(FormnetError, match=r"a 60 x 100 image needs about .* GiB of memory to "
                                           r"restore, .* GiB free") as raised:
        restore_tensor(unet, image, LEVEL, tile=None)  # the result and one band do not
    assert "\n" not in str(raised.value)


