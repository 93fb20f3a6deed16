"""FormResNet: every task and formatter builds and runs; checkpoints round-trip strictly."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from formnet_cli.hub.checkpoint import CheckpointError, load_checkpoint, read_info, save_checkpoint, write_info
from formnet_cli.config import BLIND, ConfigError, ModelConfig, NetworkConfig
from formnet_cli.models import FormResNet, ModelDescriptor, condition_level, describe, level_map

TINY = NetworkConfig(widths=(8, 16), blocks_per_level=1)


def tiny_config(**changes) -> ModelConfig:
    values = dict(residual=TINY)
    values.update(changes)
    return ModelConfig(**values)


@pytest.mark.parametrize("task", ["denoise", "jpeg", "sr"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("formatter", ["none", "cnn"])
def test_every_task_and_formatter_keeps_the_shape(task, channels, formatter):
    config = tiny_config(task=task, channels=channels, formatter=formatter,
                         formatter_network=TINY if formatter == "cnn" else None)
    model = FormResNet(config).eval()
    x = torch.rand(2, channels, 16, 24)
    level = torch.tensor([condition_level(task, sigma=25, quality=30, scale=2)] * 2)
    with torch.no_grad():
        restored, formatted = model.forward_with_formatted(x, level)
    assert restored.shape == x.shape and formatted.shape == x.shape
    assert torch.isfinite(restored).all()
    if formatter == "none":
        assert torch.equal(formatted, x)  # a DiffResNet formats nothing


def test_bm3d_formatter_runs_on_a_tiny_image():
    model = FormResNet(tiny_config(formatter="bm3d")).eval()
    clean = torch.full((1, 1, 16, 16), 0.5)
    noisy = clean + 0.1 * torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        restored, formatted = model.forward_with_formatted(noisy, 25.5 / 255)
    assert restored.shape == noisy.shape
    # BM3D removes most of the noise of a flat image
    assert (formatted - clean).abs().mean() < 0.5 * (noisy - clean).abs().mean()
    assert not model.descriptor.supports_half


@pytest.mark.parametrize("channels, function", [(1, "bm3d"), (3, "bm3d_rgb")])
def test_bm3d_runs_on_the_threads_torch_is_given(monkeypatch, channels, function):
    import bm3d

    from formnet_cli.inference.device import cpu_threads
    from formnet_cli.models.formresnet import bm3d_denoise

    seen = []
    monkeypatch.setattr(bm3d, function, lambda image, sigma, profile: seen.append(profile.num_threads) or image)
    with cpu_threads(1):  # --threads 1: not every core, which the package's own profile takes
        bm3d_denoise(np.zeros((8, 8, channels)), 0.1)
    assert seen == [1]


def test_plain_network_is_dncnn_shaped():
    config = tiny_config(residual=NetworkConfig(kind="plain", widths=(8,), depth=5, unshuffle=1))
    model = FormResNet(config)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) == 5
    assert model.descriptor == ModelDescriptor(task="denoise", channels=1, size_multiple=1,
                                               receptive_radius=5, supports_half=True)


def test_size_multiple_and_receptive_radius_of_the_unet():
    model = FormResNet(tiny_config())
    assert model.descriptor.size_multiple == 4  # unshuffle 2, one 2x2 downsampling
    x = torch.zeros(1, 1, 64, 64)
    x[..., 32, 32] = 1.0
    with torch.no_grad():
        base = model(torch.zeros_like(x), 0.1)
        response = (model(x, 0.1) - base).abs()[0, 0]
    rows, cols = torch.nonzero(response > 0, as_tuple=True)
    reach = max((rows - 32).abs().max().item(), (cols - 32).abs().max().item())
    assert reach <= model.descriptor.receptive_radius


def test_level_map_broadcasts_scalars_vectors_and_maps():
    like = torch.zeros(2, 1, 4, 5)
    assert level_map(0.5, like).shape == (2, 1, 4, 5)
    assert torch.equal(level_map(torch.tensor([0.1, 0.2]), like)[:, 0, 0, 0], torch.tensor([0.1, 0.2]))
    per_pixel = torch.rand(2, 1, 4, 5)
    assert torch.equal(level_map(per_pixel, like), per_pixel)


def test_condition_levels():
    assert condition_level("denoise", sigma=51) == pytest.approx(0.2)
    assert condition_level("jpeg", quality=40) == pytest.approx(0.4)
    assert condition_level("jpeg") == BLIND
    assert condition_level("sr", scale=4) == 1.0
    with pytest.raises(ValueError):
        condition_level("denoise")


@pytest.mark.parametrize("change, message", [
    ({"task": "inpaint"}, "task"),
    ({"channels": 2}, "channels"),
    ({"formatter": "bm3d", "task": "jpeg"}, "bm3d"),
    ({"formatter": "cnn"}, "formatter_network"),
    ({"sigma_range": (0.0, 90.0)}, "sigma_range"),
    ({"scales": (5,)}, "scales"),
])
def test_invalid_configs_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        FormResNet(tiny_config(**change))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_checkpoint_round_trip(tmp_path, dtype):
    model = FormResNet(tiny_config(task="jpeg", formatter="cnn", formatter_network=TINY)).eval()
    folder = save_checkpoint(model, tmp_path / "jpeg", "jpeg-tiny", card="# card\n",
                             scores={"Classic5 q10": 29.5}, dtype=dtype)
    loaded, info = load_checkpoint(folder)
    assert info.name == "jpeg-tiny" and info.model == model.config
    assert info.scores == {"Classic5 q10": 29.5}
    assert (folder / "README.md").read_text() == "# card\n"
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        expected, actual = model(x, 0.3), loaded(x, 0.3)
    tolerance = 0 if dtype == torch.float32 else 1e-2
    assert torch.allclose(expected, actual, atol=tolerance, rtol=0)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    written = sorted(path.name for path in folder.iterdir())
    assert written == ["README.md", "config.json", "model.safetensors"]  # no temporary left


def test_strict_loading_names_missing_and_unexpected_tensors(tmp_path):
    model = FormResNet(tiny_config())
    folder = save_checkpoint(model, tmp_path / "m", "m")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    missing_key = next(iter(state))
    del state[missing_key]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing .*unexpected extra.weight"):
        load_checkpoint(folder)


def test_shape_mismatch_and_corrupt_files_are_checkpoint_errors(tmp_path):
    folder = save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "m")
    wider = FormResNet(tiny_config(residual=NetworkConfig(widths=(12, 16), blocks_per_level=1)))
    save_file({k: v.contiguous() for k, v in wider.state_dict().items()}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(folder)


def test_config_json_is_validated(tmp_path):
    folder = save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "m")
    data = json.loads((folder / "config.json").read_text())
    data["model"]["residual"]["depht"] = 3
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="depht"):
        read_info(folder)
    with pytest.raises(CheckpointError, match="not a formnet checkpoint"):
        read_info(tmp_path)


def test_loading_never_unpickles(tmp_path):
    """A pickle planted as the weights file is rejected by safetensors, not executed."""
    folder = save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "m")
    torch.save({"x": np.arange(3)}, folder / "model.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)


def test_saved_checkpoint_files_are_readable_by_others(tmp_path):
    umask = os.umask(0o022)
    try:
        folder = save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "m", card="# card\n")
    finally:
        os.umask(umask)
    for name in ("config.json", "model.safetensors", "README.md"):
        assert (folder / name).stat().st_mode & 0o777 == 0o644, name


def test_non_numeric_score_is_a_checkpoint_error(tmp_path):
    folder = save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "m")
    data = json.loads((folder / "config.json").read_text())
    data["scores"] = {"BSD68 sigma 25": "high"}
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="invalid checkpoint config"):
        read_info(folder)


def test_save_checkpoint_writes_every_card_field(tmp_path):
    folder = save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "denoise-mine",
                             description="a gray denoiser", ensemble=2,
                             scores={"BSD68 sigma 25": 29.29, "Set12 sigma 25": 30.52})
    data = json.loads((folder / "config.json").read_text())
    assert {key: data[key] for key in ("name", "description", "scores", "ensemble")} == {
        "name": "denoise-mine", "description": "a gray denoiser", "ensemble": 2,
        "scores": {"BSD68 sigma 25": 29.29, "Set12 sigma 25": 30.52}}
    info = read_info(folder)
    assert (info.ensemble, info.scores["Set12 sigma 25"]) == (2, 30.52)


@pytest.mark.parametrize(("options", "message"), [
    ({"ensemble": 3}, "ensemble must be one of 1, 2, 4, 8"),
    ({"ensemble": True}, "ensemble must be one of"),
    ({"scores": {"BSD68 sigma 25": float("nan")}}, "score 'BSD68 sigma 25' must be a finite number"),
    ({"scores": {"BSD68 sigma 0": float("inf")}}, "must be a finite number")])
def test_save_checkpoint_refuses_bad_card_fields_before_writing(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "m", **options)
    assert not (tmp_path / "m").exists()


def test_write_info_rewrites_the_config_and_not_the_weights(tmp_path):
    folder = save_checkpoint(FormResNet(tiny_config()), tmp_path / "m", "m",
                             scores={"BSD68 sigma 25": 20.0})
    weights = (folder / "model.safetensors").read_bytes()
    info = read_info(folder)
    write_info(folder, dataclasses.replace(info, ensemble=4, scores={"BSD68 sigma 25": 29.3}))
    assert (read_info(folder).ensemble, read_info(folder).scores) == (4, {"BSD68 sigma 25": 29.3})
    assert read_info(folder).model == info.model
    assert (folder / "model.safetensors").read_bytes() == weights
    assert not list(tmp_path.rglob("*.tmp"))


# -- the model descriptor ---------------------------------------------------------------------
def test_descriptor_says_what_the_engine_needs_of_each_model_kind():
    color_sr = FormResNet(tiny_config(task="sr", channels=3))
    # 3 x 3 head and tail at 1/2 resolution (2 + 2), two blocks' 3 x 3 convolutions at 1/2 (4 x 2),
    # the 2 x 2 down and up convolutions (2 + 2), one block at 1/4 (2 x 4): 24 pixels.
    assert describe(color_sr) == ModelDescriptor(task="sr", channels=3, size_multiple=4,
                                                 receptive_radius=24, supports_half=True)
    plain = NetworkConfig(kind="plain", widths=(8,), depth=5, unshuffle=1)
    two_stages = FormResNet(tiny_config(residual=plain, formatter="cnn", formatter_network=plain))
    assert two_stages.descriptor.receptive_radius == 5 + 5  # the stages' reaches add up
    assert not FormResNet(tiny_config(formatter="bm3d")).descriptor.supports_half


@pytest.mark.parametrize(("change", "message"), [
    ({"task": "inpaint"}, "task must be one of denoise, jpeg, sr"),
    ({"channels": 2}, "channels must be 1 or 3"),
    ({"size_multiple": 0}, "size_multiple must be an integer >= 1"),
    ({"size_multiple": 2.5}, "size_multiple must be an integer >= 1"),
    ({"receptive_radius": -1}, "receptive_radius must be an integer >= 0"),
    ({"receptive_radius": None}, "receptive_radius must be an integer >= 0"),
    ({"supports_half": "yes"}, "supports_half must be True or False")])
def test_an_invalid_descriptor_cannot_be_made(change, message):
    values = {"task": "denoise", "channels": 1, "size_multiple": 4, "receptive_radius": 52,
              "supports_half": True, **change}
    with pytest.raises(ValueError, match=f"invalid model descriptor: {message}"):
        ModelDescriptor(**values)


def test_describe_refuses_a_model_without_a_descriptor():
    with pytest.raises(TypeError, match="Conv2d has no model descriptor"):
        describe(torch.nn.Conv2d(1, 1, 3))
