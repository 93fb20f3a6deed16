"""Export a FormResNet to ONNX with torch's exporter (``torch.onnx.export``, ``dynamo=True``).

Two graphs:

* the **two-input graph** ``restored = graph(image, level)``: ``image`` is ``(N, C, H, W)``
  float32 in [0, 1] with ``H`` and ``W`` multiples of the model's size multiple, ``level`` is
  ``(N, 1, H, W)``, the normalised level at every pixel (sigma / 255, quality / 100 or -1 for
  blind JPEG, scale / 4). This is what formnet's runtimes run, tile by tile
  (:mod:`formnet_cli.inference.backends`); a per-pixel sigma map is just another level map.
* the **one-input graph** ``restored = graph(image)`` with one level baked in: it pads ``image``
  at the bottom and right to the size multiple inside the graph (reflect, or replicate where
  the image is too small to reflect: exactly what :mod:`~formnet_cli.inference.tiling` does),
  runs the network and crops back, so that any tool (onnxruntime, OpenCV's dnn module,
  chaiNNer) can run it on an image of any size, untiled.

Both carry the model's descriptor as metadata (:class:`~formnet_cli.inference.onnx_graph.GraphInfo`).
Before a graph is written, onnxruntime (where installed) runs it on the export's example and it
must give torch's output within :data:`EXPORT_TOLERANCE`. A BM3D formatter is not a network and
cannot be exported.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from formnet_cli.config import LEVEL_NAMES, QUALITY_RANGE, ModelConfig
from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.imaging.degradations import _resize_weights  # MATLAB's bicubic weights, shared
from formnet_cli.inference.engine import TorchNetwork
from formnet_cli.inference.onnx_graph import CACHE_ENV, GraphInfo, cached_graph_path, weights_sha256
from formnet_cli.models import FormResNet, condition_level, describe

INPUT_NAMES = ("image", "level")
OUTPUT_NAME = "restored"
EXPORT_TOLERANCE = 1e-4
"""Largest difference from torch's output allowed of an exported graph, on [0, 1] pixels (an
exporter that gets an operator wrong, as onnxscript 0.7.0 did, differs by up to 0.37)."""


class LevelMapGraph(nn.Module):
    """``model(image, level)`` with the level given as an ``(N, 1, H, W)`` map."""

    def __init__(self, model: FormResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return self.model(image, level)


class BakedLevelGraph(nn.Module):
    """``model(image, level)`` at one fixed level, on images of any size: padded to the size
    multiple (as the tiling pads), restored, cropped back. With ``upscale`` > 1 (a super-
    resolution model) the image is first enlarged by MATLAB's bicubic resize, as
    :func:`formnet_cli.api.restore` does, so that the graph maps the low-resolution image to
    the restored large one."""

    def __init__(self, model: FormResNet, level: float, upscale: int = 1) -> None:
        super().__init__()
        self.model = model
        self.level = float(level)
        self.multiple = describe(model).size_multiple
        self.upscale = BicubicUpscale(upscale) if upscale > 1 else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.upscale is not None:
            image = self.upscale(image)
        height, width = image.shape[-2], image.shape[-1]
        pad_bottom = (height + self.multiple - 1) // self.multiple * self.multiple - height
        pad_right = (width + self.multiple - 1) // self.multiple * self.multiple - width
        # Reflect where the image is larger than its padding on both axes, else replicate:
        # chosen in the graph, per image, by gathering rows and columns.
        reflect = torch.logical_and(torch.tensor(pad_bottom) < height, torch.tensor(pad_right) < width)
        rows = _padding_index(height, pad_bottom, reflect)
        columns = _padding_index(width, pad_right, reflect)
        padded = image.index_select(2, rows).index_select(3, columns)
        level = torch.full_like(padded[:, :1], self.level)
        return self.model(padded, level)[:, :, :height, :width]


class BicubicUpscale(nn.Module):
    """:func:`formnet_cli.imaging.degradations.imresize` by an integer ``scale``, in the graph.

    Along an axis, output pixel ``scale * i + k`` is a fixed weighted sum of the input pixels
    near ``i`` (the same cubic weights for every ``i`` of phase ``k``; MATLAB's symmetric
    mirror beyond the edges). So each axis is: mirror-pad, one convolution with a kernel per
    phase, interleave the phases. Rows first, then columns, as MATLAB does on equal scales.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        middle = 8  # the weights of a pixel far from the edges, which every pixel shares
        weights, indices = _resize_weights(2 * middle, 2 * middle * scale, float(scale))
        rows = slice(middle * scale, (middle + 1) * scale)
        offsets = indices[rows] - middle
        self.before, self.after = int(-offsets.min()), int(offsets.max())
        kernel = torch.zeros(scale, 1, self.before + self.after + 1)
        for phase, (phase_weights, phase_offsets) in enumerate(zip(weights[rows], offsets)):
            for weight, offset in zip(phase_weights, phase_offsets):
                kernel[phase, 0, offset + self.before] += float(weight)
        self.register_buffer("kernel", kernel[..., None])  # (scale, 1, taps, 1): along rows
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        rows = self._along_rows(image)
        return self._along_rows(rows.transpose(2, 3)).transpose(2, 3)

    def _along_rows(self, image: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = image.shape
        period = torch.tensor(2 * height)  # a tensor: the exporter takes no symbolic divisor
        index = torch.remainder(torch.arange(-self.before, height + self.after), period)
        index = torch.where(index < height, index, 2 * height - 1 - index)  # symmetric mirror
        padded = image.index_select(2, index).reshape(batch * channels, 1, -1, width)
        phases = nn.functional.conv2d(padded, self.kernel)  # (B * C, scale, H, W)
        return phases.permute(0, 2, 1, 3).reshape(batch, channels, height * self.scale, width)


def _padding_index(length: torch.SymInt | int, pad: torch.SymInt | int,
                   reflect: torch.Tensor) -> torch.Tensor:
    """Indices that pad ``0:length`` by ``pad`` at the end: reflected, or replicated."""
    index = torch.arange(length + pad)
    reflected = torch.where(index < length, index, 2 * (length - 1) - index)
    return torch.where(reflect, reflected, torch.clamp(index, max=length - 1))


def export_onnx(model: FormResNet, path: str | os.PathLike[str], *, weights_sha256: str,
                level: float | None = None, upscale: int = 1) -> GraphInfo:
    """Write ``model``'s ONNX graph to ``path`` atomically: the two-input graph, or with
    ``level`` the one-input graph at that normalised level (enlarging its input ``upscale``
    times first: super-resolution). Returns its metadata."""
    if model.config.formatter == "bm3d":
        raise InvalidOptionError("this model's formatter is BM3D (a numpy algorithm, not a "
                                 "network): it cannot be exported to ONNX; it runs under torch only")
    model = model.eval()
    descriptor = describe(model)
    multiple, channels = descriptor.size_multiple, descriptor.channels
    side = 2 * multiple
    examples = 2  # a batch of one would be taken for a constant (torch 2.5's exporter)
    example = torch.rand(examples, channels, side, side)
    batch = torch.export.Dim("batch", min=1, max=1024)
    if level is None:
        graph: nn.Module = LevelMapGraph(model)
        height = torch.export.Dim("rows", min=1, max=2**14) * multiple
        width = torch.export.Dim("columns", min=1, max=2**14) * multiple
        arguments: tuple[torch.Tensor, ...] = (example, torch.full((examples, 1, side, side), 0.1))
        shapes = {"image": {0: batch, 2: height, 3: width}, "level": {0: batch, 2: height, 3: width}}
        names = list(INPUT_NAMES)
    else:
        graph = BakedLevelGraph(model, level, upscale)
        example = torch.rand(examples, channels, side + 1, side + 3)  # not a multiple: pads
        arguments = (example,)
        shapes = {"image": {0: batch, 2: torch.export.Dim("height", min=1, max=2**17),
                            3: torch.export.Dim("width", min=1, max=2**17)}}
        names = [INPUT_NAMES[0]]
    info = GraphInfo(descriptor=descriptor, weights_sha256=weights_sha256, level=level,
                     bytes_per_pixel=TorchNetwork.for_cpu(model).bytes_per_pixel(channels))
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(graph, arguments, dynamo=True, input_names=names,
                                        output_names=[OUTPUT_NAME], dynamic_shapes=shapes,
                                        optimize=True, verbose=False)
            assert program is not None
            program.model.metadata_props.update(info.to_metadata())
            _check_against_torch(graph, program, arguments)
            program.save(str(temporary), external_data=False)
        os.replace(temporary, target)
    except ImportError as error:  # onnxscript (or onnx) missing
        raise FormnetError(f"exporting to ONNX needs {error.name or 'onnxscript'}: "
                           "pip install 'formnet[onnx]'") from None
    except (RuntimeError, ValueError, TypeError) as error:  # torch's exporter failed
        summary = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FormnetError(f"torch could not export the model to ONNX ({summary}); run it "
                           "with --backend torch") from error
    finally:
        temporary.unlink(missing_ok=True)
    return info


def _check_against_torch(graph: nn.Module, program: torch.onnx.ONNXProgram,
                         arguments: tuple[torch.Tensor, ...]) -> None:
    """Run the exported ``program`` on ``arguments`` in onnxruntime and compare it with
    ``graph``'s own output; a difference over :data:`EXPORT_TOLERANCE` is refused (the graph
    is not written). Without onnxruntime (an OpenVINO-only install) nothing is checked."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    expected = graph(*arguments)
    (exported,) = program(*arguments)
    difference = float((exported - expected).abs().max())
    if not difference <= EXPORT_TOLERANCE:  # NaN too
        raise FormnetError(f"the exported ONNX graph differs from the model by {difference:.3g} "
                           f"(more than {EXPORT_TOLERANCE:g}): torch's exporter or onnxscript "
                           "got an operator wrong; update them, or run with --backend torch")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter prints its progress on standard output and logs warnings (and, under a
    logging capture, debug traces) of its own: standard output may carry an image (``-o -``),
    and none of it is the user's. Errors still raise."""
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def export_model(name_or_path: str | os.PathLike[str], output: str | os.PathLike[str], *,
                 sigma: float | None = None, quality: int | str | None = None,
                 scale: int | None = None) -> GraphInfo:
    """``formnet export``: a registry model or checkpoint folder to ``output``: the two-input
    graph, or with the model's level (``sigma``, ``quality`` or ``scale``) the one-input graph."""
    from formnet_cli.hub import registry
    from formnet_cli.hub.checkpoint import load_checkpoint

    folder = registry.resolve_model(name_or_path).path
    model, info = load_checkpoint(folder)
    level, upscale = baked_level(info.model, sigma=sigma, quality=quality, scale=scale)
    try:
        return export_onnx(model, output, weights_sha256=weights_sha256(folder), level=level,
                           upscale=upscale)
    except OSError as error:
        raise FormnetError(f"cannot write {output}: {error.strerror or error}") from None


def export_cached(folder: str | os.PathLike[str], model: FormResNet | None = None) -> Path:
    """The checkpoint's two-input graph in the cache (:func:`cached_graph_path`), exported now
    if it is not there yet (``model``: the checkpoint already loaded)."""
    from formnet_cli.hub.checkpoint import load_checkpoint

    digest = weights_sha256(folder)
    path = cached_graph_path(digest)
    if not path.is_file():
        if model is None:
            model, _info = load_checkpoint(folder)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            export_onnx(model, path, weights_sha256=digest)
        except OSError as error:
            raise FormnetError(f"cannot write the ONNX graph to {path.parent} "
                               f"({error.strerror or error}); set {CACHE_ENV} to a writable "
                               "folder") from None
    return path


def baked_level(config: ModelConfig, *, sigma: float | None, quality: int | str | None,
                scale: int | None) -> tuple[float | None, int]:
    """The normalised level to bake into a one-input graph of a ``config`` model (``None``:
    none given, the two-input graph) and how much the graph enlarges its input."""
    given = {name: value for name, value in (("sigma", sigma), ("quality", quality),
                                             ("scale", scale)) if value is not None}
    if len(given) > 1:
        raise InvalidOptionError(f"give one level, not {' and '.join(f'--{name}' for name in given)}")
    if not given:
        return None, 1
    (name, value), = given.items()
    task = config.task
    if LEVEL_NAMES[task] != name:
        raise InvalidOptionError(f"--{name} does not apply to this model: it restores '{task}' "
                                 f"(give --{LEVEL_NAMES[task]})")
    if task == "denoise":
        low, high = config.sigma_range
        if not low <= float(value) <= high:
            raise InvalidOptionError(f"sigma must be in [{low:g}, {high:g}] for this model, "
                                     f"got {float(value):g}")
        return condition_level("denoise", sigma=float(value)), 1
    if task == "jpeg":
        if str(value).lower() == "blind":
            return condition_level("jpeg", quality=None), 1
        low, high = config.quality_range
        if not (str(value).isdigit() and QUALITY_RANGE[0] <= int(value) <= QUALITY_RANGE[1]):
            raise InvalidOptionError(f"quality must be an integer in {list(QUALITY_RANGE)} or "
                                     f"'blind', got {value!r}")
        # As restore does: a quality outside the trained range is clamped to it.
        return condition_level("jpeg", quality=min(max(int(value), low), high)), 1
    if int(value) not in config.scales:
        raise InvalidOptionError(f"scale must be one of {', '.join(map(str, config.scales))}, "
                                 f"got {value}")
    return condition_level("sr", scale=int(value)), int(value)
