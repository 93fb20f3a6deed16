"""Numpy in, numpy out: the library that ``formnet restore`` is a thin layer over.

>>> import numpy as np, formnet_cli
>>> noisy = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
>>> clean = formnet_cli.restore(noisy, task="denoise", sigma=25)   # doctest: +SKIP
>>> clean.dtype, clean.shape                                      # doctest: +SKIP
(dtype('uint8'), (64, 64))

Images of any supported layout (``H x W``, ``H x W x 1``, ``H x W x 3``, ``H x W x 4`` with
alpha, ``H x W x 2`` gray with alpha) and dtype (``uint8``, ``uint16``, float in [0, 1]) come
back in the same layout and dtype (``H`` and ``W`` times the scale for super-resolution).
Inside, the work is done on float32 in [0, 1]:

* a gray image uses the task's gray model, and so does an RGB image whose three channels
  are identical (a black-and-white photo saved as RGB), returned as RGB;
* an RGB image uses the task's color model when there is one, otherwise the gray model:
  ``denoise`` on each of R, G and B; ``jpeg`` on each of Y, Cb and Cr (JPEG compresses each
  of them); ``sr`` on Y of the bicubic-upscaled image, keeping the bicubic Cb and Cr;
* alpha passes through unchanged (bicubic-resized for super-resolution).

Super-resolution models work at scale 1 on the MATLAB-bicubic-upscaled image
(:func:`formnet_cli.imaging.degradations.imresize`), conditioned on ``scale / 4``.

Models come only from checkpoints through :mod:`formnet_cli.hub.registry`: an untrained network
is never run. ``backend`` picks what runs it (:mod:`formnet_cli.inference.backends`): torch, or
the model's ONNX graph under onnxruntime or OpenVINO, which needs no torch at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from formnet_cli.imaging import degradations
from formnet_cli.imaging import estimation
from formnet_cli.inference import backends, tiling
from formnet_cli.io import estimate_jpeg_quality
from formnet_cli.hub import registry
from formnet_cli.hub.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointInfo, load_checkpoint, read_info
from formnet_cli.config import ModelConfig, condition_level
from formnet_cli.errors import InvalidOptionError, ModelNotFoundError
from formnet_cli.options import (Backend, Ensemble, Quality, RestoreOptions, Sigma, parse_backend,
                                 parse_ensemble, parse_precision, parse_scale, parse_task, read_sigma)

if TYPE_CHECKING:  # torch is imported where the torch backend runs, not here
    import torch

    from formnet_cli.models import FormResNet

Progress = tiling.ProgressCallback
"""``progress(done, total)``: called as tiles (or channel passes) complete."""


# -- models --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: the network, what its ``config.json`` says, and where it came from.

    ``backend`` is what runs it: ``torch`` (``model`` on ``device``), or an ONNX runtime
    (``onnxruntime``, ``openvino``: ``model`` is ``None``, the checkpoint's ONNX graph, found or
    exported when it was loaded, runs on the CPU: ``device`` is ``"cpu"``).
    """

    model: FormResNet | None
    info: CheckpointInfo
    path: Path
    source: str
    device: torch.device | str
    backend: Backend = "torch"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def config(self) -> ModelConfig:
        return self.info.model

    @property
    def task(self) -> str:
        return self.info.model.task

    @property
    def channels(self) -> int:
        return self.info.model.channels


_FileStamp = tuple[int, int, int] | None
_MODEL_CACHE: dict[tuple[str, str], tuple[tuple[_FileStamp, ...], LoadedModel]] = {}
"""(checkpoint folder, device or runtime) -> (the stamp of its files when loaded, the model)."""


def load_model(name_or_path: str | os.PathLike[str] | None = None, *, task: str | None = None,
               channels: int = 1, device: str | torch.device = "auto",
               backend: Backend | str = "torch") -> LoadedModel:
    """A model by registry name or checkpoint folder, or the default model of ``task``.

    With a name or path, that model whatever its task; a ``task`` given too must be its task.
    Without one, the default model of ``task`` (``'denoise'`` if not given) for ``channels``
    (1 gray, 3 color), or else for the other channel count: :func:`restore` runs a gray model
    on color images and the reverse.

    Loaded once per (checkpoint folder, device) in this process, and again when the folder's
    files are rewritten. Raises :class:`~formnet_cli.errors.ModelNotFoundError` when there are
    no weights, and :class:`~formnet_cli.errors.InvalidOptionError` when the checkpoint is for
    another task than ``task``. ``backend``: ``torch`` (the default here), ``onnxruntime``,
    ``openvino`` or ``auto`` (see :mod:`formnet_cli.inference.backends`).
    """
    if task is not None:
        parse_task(task)
    backend = parse_backend(backend)
    if backend == "torch":
        device = _device().resolve_device(device)
    if name_or_path is None:
        resolved = _resolve_default(task or "denoise", channels)
    else:
        resolved = registry.resolve_model(name_or_path, task)
    path = Path(resolved.path).resolve()
    if backend != "torch":
        backend = backends.choose_backend(backend, device=str(device), folder=path,
                                          formatter=read_info(path).model.formatter)
    if backend == "torch":
        loaded = _load_cached(path, str(resolved.source), _device().resolve_device(device))
    else:
        loaded = _load_graph(path, str(resolved.source), backend)
    if task is not None:
        _check_model_task(loaded, task)
    return loaded


def model_task(name_or_path: str | os.PathLike[str]) -> str:
    """The task (denoise, jpeg or sr) a model name or checkpoint folder restores, from its
    manifest entry or ``config.json``, without loading its weights."""
    entry = registry.load_manifest().get(os.fspath(name_or_path))
    if entry is not None:
        return entry.task
    return read_info(registry.resolve_model(name_or_path).path).model.task


def clear_model_cache() -> None:
    """Forget every model :func:`load_model` has loaded (frees their memory)."""
    _MODEL_CACHE.clear()


def _resolve_default(task: str, channels: int) -> registry.ResolvedModel:
    """The default model of ``task`` for ``channels``, else the one for the other count."""
    try:
        return registry.resolve_model(None, task, channels)
    except ModelNotFoundError as preferred:
        try:
            return registry.resolve_model(None, task, 4 - channels)
        except ModelNotFoundError:
            raise preferred from None


def _engine() -> ModuleType:
    """:mod:`formnet_cli.inference.engine`, imported (with torch) when the torch backend runs."""
    from formnet_cli.inference import engine

    return engine


def _device() -> ModuleType:
    """:mod:`formnet_cli.inference.device`, imported (with torch) where torch runs."""
    from formnet_cli.inference import device

    return device


def _load_cached(path: Path, source: str, device: torch.device) -> LoadedModel:
    """The checkpoint folder ``path`` on ``device``, read again only when its files changed."""
    key = (str(path), str(device))
    stamp = _checkpoint_stamp(path)
    cached = _MODEL_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    model, info = load_checkpoint(path, device=device)
    _device().prepare_for_inference(model, device)  # not converted and back for every image
    loaded = LoadedModel(model=model, info=info, path=path, source=source, device=device)
    _MODEL_CACHE[key] = (stamp, loaded)
    return loaded


def _load_graph(path: Path, source: str, backend: Backend) -> LoadedModel:
    """The checkpoint folder ``path`` for an ONNX runtime: its config, and its graph found or
    exported now (before any image), read again when its files changed."""
    key = (str(path), backend)
    stamp = _checkpoint_stamp(path)
    cached = _MODEL_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    backends.graph_for(path)
    loaded = LoadedModel(model=None, info=read_info(path), path=path, source=source,
                         device="cpu", backend=backend)
    _MODEL_CACHE[key] = (stamp, loaded)
    return loaded


def _checkpoint_stamp(folder: Path) -> tuple[_FileStamp, ...]:
    """Inode, modification time and size of the checkpoint's files (None where missing).

    Rewriting a checkpoint in place (a training run exporting again) changes it: the files
    are replaced atomically, each by a new inode.
    """
    stamps: list[_FileStamp] = []
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        try:
            stat = (folder / name).stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _check_model_task(loaded: LoadedModel, task: str) -> None:
    if loaded.task != task:
        raise InvalidOptionError(
            f"model {loaded.name!r} ({loaded.path}) restores '{loaded.task}', not '{task}'")


# -- restoring -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore_with_info` made and the levels it used.

    ``sigma`` / ``quality`` / ``scale`` are the values the model was conditioned on
    (``quality`` is ``None`` for blind JPEG restoration); ``estimated`` says whether the
    level was estimated from the image (``sigma='auto'`` or ``quality='auto'``). When the
    estimated noise varies with brightness, each pixel had its own sigma: ``sigma_map_range``
    holds the lowest and highest of that map and ``sigma`` the map's mean.
    """

    image: np.ndarray
    task: str
    model_name: str
    model_source: str
    model_path: str = ""
    """The checkpoint folder the model was loaded from."""
    sigma: float | None = None
    quality: int | None = None
    scale: int | None = None
    estimated: bool = False
    ensemble: int = 1
    """Flipped/rotated passes averaged (1: a single pass)."""
    sigma_map_range: tuple[float, float] | None = None

    def describe_level(self) -> str:
        """A short phrase such as ``"estimated sigma 23.7"`` or ``"quality 20"``."""
        prefix = "estimated " if self.estimated else ""
        if self.task == "denoise" and self.sigma_map_range is not None:
            low, high = self.sigma_map_range
            return (f"{prefix}sigma {low:.1f}-{high:.1f} "
                    f"(varies with brightness; mean {self.sigma:.1f})")
        if self.task == "denoise":
            return f"{prefix}sigma {self.sigma:.1f}"
        if self.task == "jpeg":
            return "blind quality" if self.quality is None else f"{prefix}quality {self.quality}"
        return f"scale {self.scale}"


def restore(image: np.ndarray, task: str = "denoise", *, sigma: float | str | None = None,
            quality: int | str | None = None, scale: int | None = None,
            model: str | os.PathLike[str] | LoadedModel | None = None,
            device: str = "auto", precision: str = "auto", tile: int | str | None = "auto",
            tile_overlap: int | None = None, batch_size: int = 1, ensemble: int | str = "auto",
            progress: Progress | None = None, strength: float = 1.0,
            formatter: str | None = None, backend: str = "auto") -> np.ndarray:
    """Restore one image; same dtype and layout as ``image`` (``scale`` x larger for ``sr``).

    ``sigma``: noise level on the 0-255 scale, or ``'auto'`` (also the default) to estimate it:
    one sigma for white noise, a per-pixel sigma where the measured noise varies with
    brightness, as camera noise does (:func:`~formnet_cli.imaging.estimation.estimate_noise_level_function`).
    ``quality``: JPEG quality 1-100, ``'blind'``, or ``'auto'`` (the default; without the
    source file this is blind). ``scale``: 2, 3 or 4 for ``sr``. ``ensemble``: 1, 2, 4 or 8
    flipped/rotated passes averaged (that many times the time), or ``'auto'`` for the number
    the model's card recommends. ``model``: a registry name, a checkpoint folder or a
    :class:`LoadedModel`; ``device``: where to run it (``'auto'`` with a :class:`LoadedModel`:
    where it was loaded; another device runs a copy there for each call, leaving the
    :class:`LoadedModel` as it is). ``strength``: how much of the restoration to apply, from 0
    (the input; bicubic-upscaled for ``sr``) to 1 (the model's output, the default), blended
    linearly. ``formatter`` (``none``, ``cnn``, ``bm3d``; without ``model``): the task's model
    with that formatting stage. ``backend``: ``auto``, ``torch``, ``onnxruntime`` or
    ``openvino`` (:mod:`formnet_cli.inference.backends`). The options are read as
    :class:`~formnet_cli.options.RestoreOptions` reads them.
    See :func:`restore_with_info`.
    """
    return restore_with_info(image, task, sigma=sigma, quality=quality, scale=scale, model=model,
                             device=device, precision=precision, tile=tile,
                             tile_overlap=tile_overlap, batch_size=batch_size, ensemble=ensemble,
                             progress=progress, strength=strength, formatter=formatter,
                             backend=backend).image


def restore_with_info(image: np.ndarray, task: str = "denoise", *,
                      sigma: float | str | None = None, quality: int | str | None = None,
                      scale: int | None = None,
                      model: str | os.PathLike[str] | LoadedModel | None = None,
                      device: str = "auto", precision: str = "auto",
                      tile: int | str | None = "auto", tile_overlap: int | None = None,
                      batch_size: int = 1, ensemble: int | str = "auto",
                      progress: Progress | None = None,
                      source_path: str | os.PathLike[str] | bytes | None = None,
                      strength: float = 1.0, formatter: str | None = None,
                      backend: str = "auto") -> RestoreResult:
    """:func:`restore`, also returning the levels used (e.g. the estimated sigma).

    ``source_path`` is the file ``image`` was read from (or its bytes, read from a stream):
    with ``quality='auto'`` and a JPEG file, the quality is estimated from its quantisation
    tables.
    """
    options = RestoreOptions(task, sigma=sigma, quality=quality, scale=scale, model=model,
                             device=device, precision=precision, tile=tile,
                             tile_overlap=tile_overlap, batch_size=batch_size,
                             ensemble=ensemble, strength=strength, formatter=formatter,
                             backend=backend)
    return restore_with_options(image, options, progress=progress, source_path=source_path)


def restore_with_options(image: np.ndarray, options: RestoreOptions, *,
                         progress: Progress | None = None,
                         source_path: str | os.PathLike[str] | bytes | None = None) -> RestoreResult:
    """:func:`restore_with_info` with its options already parsed (a batch parses them once
    for all its files)."""
    task = options.task
    pixels, alpha, restore_shape = _to_float(image)
    gray_as_rgb = pixels.shape[2] == 3 and _channels_equal(pixels)
    if gray_as_rgb:  # a black-and-white photo saved as RGB: restore it as the gray image it is
        pixels = np.ascontiguousarray(pixels[:, :, :1])
    color = pixels.shape[2] == 3

    loaded = _select_model(options, 3 if color else 1)
    passes = ensemble_passes(options.ensemble, loaded)
    levels = _conditioning(options, loaded, pixels, source_path)
    run = _Runner(loaded, options, device=_run_device(loaded, options.device), level=levels.level,
                  ensemble=passes, progress=progress)
    if task == "sr":
        assert options.scale is not None
        restored = _restore_sr(run, pixels, options.scale)
        if alpha is not None:
            alpha = degradations.imresize(alpha, scale=options.scale)
    else:
        restored = _restore_planes(run, pixels, task, levels.noise)
    if options.strength < 1.0:  # input + strength * (the output at strength 1 - input)
        before = degradations.imresize(pixels, scale=options.scale) if task == "sr" else pixels
        restored = before.astype(np.float32) + np.float32(options.strength) * (
            np.clip(restored, 0.0, 1.0) - before)

    if gray_as_rgb:
        restored = np.repeat(restored, 3, axis=2)
    output = _from_float(restored, alpha, image.dtype, restore_shape)
    if alpha is not None and task != "sr":
        output[:, :, -1] = image[:, :, -1]  # bit-exact, not through float
    return RestoreResult(image=output, task=task, model_name=loaded.name,
                         model_source=loaded.source, model_path=str(loaded.path),
                         sigma=levels.noise.sigma if levels.noise else None, quality=levels.quality,
                         scale=options.scale, estimated=levels.estimated, ensemble=passes,
                         sigma_map_range=levels.noise.map_range if levels.noise else None)


@dataclass(frozen=True, eq=False)
class _Conditioning:
    """What the model is conditioned on: its ``level`` (a number or a per-pixel map), and the
    noise level (denoise) or JPEG quality (jpeg, ``None``: blind) it stands for."""

    level: float | np.ndarray
    estimated: bool = False
    noise: _NoiseLevel | None = None
    quality: int | None = None


def _conditioning(options: RestoreOptions, loaded: LoadedModel, pixels: np.ndarray,
                  source_path: str | os.PathLike[str] | bytes | None) -> _Conditioning:
    """The level the model runs at: the given or estimated sigma (a map where the noise varies
    with brightness), the given or estimated JPEG quality, or the scale."""
    if options.task == "denoise":
        assert options.sigma is not None
        noise = _noise_level(options.sigma, pixels, loaded.config,
                             per_channel=loaded.channels == 1 and pixels.shape[2] == 3)
        return _Conditioning(noise.condition(), noise.estimated, noise=noise)
    if options.task == "jpeg":
        assert options.quality is not None
        level_quality, estimated = _quality_level(options.quality, source_path, loaded.config)
        return _Conditioning(condition_level("jpeg", quality=level_quality), estimated,
                             quality=level_quality)
    scale = parse_scale(options.scale, loaded.config.scales)
    return _Conditioning(condition_level("sr", scale=scale))


def _restore_planes(run: _Runner, pixels: np.ndarray, task: str, noise: _NoiseLevel | None) -> np.ndarray:
    """Denoise or deblock ``pixels`` with the model of ``run``, whatever its channels: as they
    are; a gray model on each colour channel (at each channel's noise level where it is mapped;
    on Y, Cb and Cr for JPEG, whose artefacts live there); a colour model on a gray image as
    gray RGB, keeping the mean."""
    channels = run.loaded.channels
    if channels == pixels.shape[2]:
        return run([pixels])[0]
    if channels == 1 and task == "jpeg":
        ycbcr = degradations.rgb_to_ycbcr(pixels).astype(np.float32)
        planes = run([ycbcr[:, :, [index]] for index in range(3)])
        return degradations.ycbcr_to_rgb(np.concatenate(planes, axis=2))
    if channels == 1:
        levels = [noise.condition(index) for index in range(3)] if noise is not None else None
        return np.concatenate(run([pixels[:, :, [index]] for index in range(3)], levels), axis=2)
    return run([np.repeat(pixels, 3, axis=2)])[0].mean(axis=2, keepdims=True)


# -- internals -----------------------------------------------------------------------------
class _Runner:
    """Runs a model on ``H x W x C`` float32 planes through the tiling, under its backend.

    Several passes (e.g. three channels through a gray model) report one combined progress.
    """

    def __init__(self, loaded: LoadedModel, options: RestoreOptions, *,
                 device: torch.device | str, level: float | np.ndarray, ensemble: int,
                 progress: Progress | None) -> None:
        self.loaded, self.level, self.progress = loaded, level, progress
        self.tiling_options = dict(tile=options.tile, tile_overlap=options.tile_overlap,
                                   batch_size=options.batch_size, ensemble=ensemble)
        self.device, self.precision = device, options.precision

    def __call__(self, planes: list[np.ndarray],
                 levels: list[float | np.ndarray] | None = None) -> list[np.ndarray]:
        """The planes restored, each at its own level from ``levels`` where given."""
        outputs = []
        for index, plane in enumerate(planes):
            array = np.ascontiguousarray(plane.transpose(2, 0, 1))
            level = self.level if levels is None else levels[index]
            progress = tiling.pass_progress(self.progress, index, len(planes))
            outputs.append(self._restore(array, level, progress).transpose(1, 2, 0))
        return outputs

    def _restore(self, array: np.ndarray, level: float | np.ndarray,
                 progress: Progress | None) -> np.ndarray:
        if self.loaded.backend != "torch":
            network = backends.open_network(self.loaded.path, self.loaded.backend)
            return tiling.restore_array(network, array, level, progress=progress,
                                        **self.tiling_options)
        import torch

        engine = _engine()
        with _device().cpu_threads(backends.requested_threads()):
            result = engine.restore_tensor(self.loaded.model, torch.from_numpy(array), level,
                                           device=self.device, precision=self.precision,
                                           progress=progress, **self.tiling_options)
        return result.numpy()


def _channels_equal(pixels: np.ndarray) -> bool:
    """Whether the three channels of an ``H x W x 3`` image are identical (a gray image)."""
    return bool(np.array_equal(pixels[:, :, 0], pixels[:, :, 1])
                and np.array_equal(pixels[:, :, 0], pixels[:, :, 2]))


def _restore_sr(run: _Runner, pixels: np.ndarray, scale: int) -> np.ndarray:
    upscaled = degradations.imresize(pixels, scale=scale).astype(np.float32)
    if run.loaded.channels == upscaled.shape[2]:
        return run([upscaled])[0]
    if upscaled.shape[2] == 1:  # a color model on a gray image
        return run([np.repeat(upscaled, 3, axis=2)])[0].mean(axis=2, keepdims=True)
    ycbcr = degradations.rgb_to_ycbcr(upscaled).astype(np.float32)
    ycbcr[:, :, :1] = run([ycbcr[:, :, :1]])[0]
    return degradations.ycbcr_to_rgb(ycbcr)


def _select_model(options: RestoreOptions, channels: int) -> LoadedModel:
    """The given model, the task's model with the asked formatter, or :func:`load_model`'s
    for the task preferring ``channels``, under ``options.backend`` (a :class:`LoadedModel`
    for another backend: its checkpoint loaded for it)."""
    model, backend = options.model, options.backend
    if isinstance(model, LoadedModel):
        _check_model_task(model, options.task)
        if backend == "auto" and model.backend == "torch":
            return model  # a torch model the caller loaded runs as it is
        if backend in ("auto", model.backend):
            backends.choose_backend(model.backend, device=options.device, folder=model.path,
                                    formatter=model.config.formatter)  # device and graph checked
            return model
        return load_model(model.path, task=options.task, device=options.device, backend=backend)
    if model is None and options.formatter is not None:
        model = registry.model_with_formatter(options.task, channels, options.formatter)
    return load_model(model, task=options.task, channels=channels, device=options.device,
                      backend=backend)


def _run_device(loaded: LoadedModel, device: str | torch.device) -> torch.device | str:
    """Where to run ``loaded``: ``device`` (validated), or where the model is for ``'auto'``."""
    if loaded.backend != "torch":
        return "cpu"
    if str(device).strip().lower() == "auto":
        return loaded.device
    return _device().resolve_device(device)


def check_device(options: RestoreOptions) -> None:
    """Raise :class:`InvalidOptionError` when ``options.device`` is unknown or not on this
    machine, or cannot compute in ``options.precision``, or ``options.backend`` cannot run
    there: before any work (a batch makes it one error, not one failure per file)."""
    if backends.choose_backend(options.backend, device=options.device,
                               precision=options.precision) == "torch":
        device = _device()
        device.check_precision(options.precision, device.resolve_device(options.device))


def check_model_options(loaded: LoadedModel, *, sigma: Sigma | str | None = None,
                        scale: int | None = None, precision: str = "auto",
                        device: str | torch.device = "auto") -> None:
    """Raise :class:`InvalidOptionError` when a given sigma or scale is outside ``loaded``'s
    range, or it cannot run in ``precision`` on ``device`` (what :func:`restore_with_info`
    would raise for every image)."""
    if loaded.backend == "torch":
        assert loaded.model is not None
        _device().resolve_precision(parse_precision(precision), _run_device(loaded, device),
                                    loaded.model.descriptor.supports_half)
    else:
        backends.choose_backend(loaded.backend, device=str(device), precision=precision)
    if loaded.task == "denoise" and sigma is not None:
        value = read_sigma(sigma)
        if value != "auto":
            _check_sigma_in_range(value, loaded.config)
    if loaded.task == "sr" and scale is not None:
        parse_scale(scale, loaded.config.scales)


def ensemble_passes(ensemble: Ensemble | str, loaded: LoadedModel) -> int:
    """How many self-ensemble passes ``ensemble`` means for ``loaded`` (``auto``: its card's).

    Raises :class:`InvalidOptionError` for anything but ``auto``, 1, 2, 4 or 8.
    """
    option = parse_ensemble(ensemble)
    return loaded.info.ensemble if option == "auto" else option


@dataclass(frozen=True, eq=False)
class _NoiseLevel:
    """The noise level to denoise at: one sigma, or a per-pixel ``H x W`` sigma map (and one
    per channel, for a gray model run on each channel of a colour image)."""

    sigma: float
    estimated: bool
    sigma_map: np.ndarray | None = None
    channel_maps: list[np.ndarray] | None = None

    @property
    def map_range(self) -> tuple[float, float] | None:
        if self.sigma_map is None:
            return None
        return float(self.sigma_map.min()), float(self.sigma_map.max())

    def condition(self, channel: int | None = None) -> float | np.ndarray:
        """The model's conditioning level (for one ``channel`` where there is a map per
        channel): a number, or a ``(1, H, W)`` map."""
        if self.sigma_map is None:
            return condition_level("denoise", sigma=self.sigma)
        chosen = self.sigma_map
        if channel is not None and self.channel_maps is not None:
            chosen = self.channel_maps[channel]
        return (chosen[None] / np.float32(255.0)).astype(np.float32)


def _noise_level(sigma: Sigma, pixels: np.ndarray, config: ModelConfig,
                 per_channel: bool = False) -> _NoiseLevel:
    """``sigma`` as given, or estimated: a sigma map where the noise varies with brightness
    (``per_channel``: also one map per channel)."""
    low, high = config.sigma_range
    if sigma == "auto":
        function = _estimate_noise(pixels)
        if function.varies:
            sigma_map = np.clip(function.sigma_map(pixels), low, high)
            channel_maps = None
            if per_channel:
                channel_maps = [np.clip(each, low, high) for each in function.channel_sigma_maps(pixels)]
            return _NoiseLevel(float(sigma_map.mean()), True, sigma_map, channel_maps)
        return _NoiseLevel(float(min(max(function.sigma, low), high)), True)
    assert isinstance(sigma, float)
    _check_sigma_in_range(sigma, config)
    return _NoiseLevel(sigma, False)


def _check_sigma_in_range(sigma: float, config: ModelConfig) -> None:
    low, high = config.sigma_range
    if not low <= sigma <= high:
        raise InvalidOptionError(
            f"sigma must be in [{low:g}, {high:g}] for this model, got {sigma:g}")


_ESTIMATION_SIDE = 768
"""Largest side of the sample the noise is measured on (its cost grows with the area)."""

_ESTIMATION_BLOCKS = 3
"""Blocks per axis a larger image is sampled with."""


def _estimate_noise(pixels: np.ndarray) -> estimation.NoiseLevelFunction:
    """The noise level function (sigma against brightness) of the image, on a sample of it."""
    try:
        return estimation.estimate_noise_level_function(_estimation_sample(pixels))
    except estimation.TooSmallToMeasure as error:  # said of the image, not of the sample
        height, width = pixels.shape[:2]
        raise InvalidOptionError(
            f"cannot estimate the noise level (image too small to measure its noise: {width} x "
            f"{height} pixels, about {error.needed} x {error.needed} needed); give sigma") from None


def _estimation_sample(pixels: np.ndarray) -> np.ndarray:
    """The image, or where a side exceeds :data:`_ESTIMATION_SIDE` a mosaic of blocks spread
    evenly over it (3 x 3 of 256 pixels for a large photo: corners, edges and centre), so that
    the noise is measured over the image's whole range of brightness at a bounded cost."""
    block = _ESTIMATION_SIDE // _ESTIMATION_BLOCKS
    indices = []
    for length in pixels.shape[:2]:
        if length <= _ESTIMATION_SIDE:
            indices.append(np.arange(length))
            continue
        starts = np.linspace(0, length - block, _ESTIMATION_BLOCKS).round().astype(int)
        indices.append(np.concatenate([np.arange(start, start + block) for start in starts]))
    return pixels[np.ix_(indices[0], indices[1])]


def _quality_level(quality: Quality, source_path: str | os.PathLike[str] | bytes | None,
                   config: ModelConfig) -> tuple[int | None, bool]:
    """The quality to condition on (``None`` = blind) and whether it was estimated.

    A quality outside the model's trained range is clamped to it: the model has never seen
    stronger or weaker compression, so the nearest level it knows is the safest.
    """
    low, high = config.quality_range
    if quality == "blind":
        return None, False
    if quality == "auto":
        if source_path is None:
            return None, False
        estimate = estimate_jpeg_quality(source_path)
        if estimate is None:
            return None, False
        return int(min(max(estimate, low), high)), True
    assert isinstance(quality, int)
    return int(min(max(quality, low), high)), False


_INTEGER_MAXIMUM = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _to_float(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """``(H x W x C float32 in [0, 1] with C in {1, 3}, alpha H x W x 1 or None, layout)``.

    ``layout`` is the input's shape without H and W (``()`` for ``H x W``), used to give the
    output the same layout.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidOptionError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise InvalidOptionError(
            f"expected an H x W or H x W x C image with C in 1-4, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidOptionError(f"the image is empty (shape {image.shape})")
    dtype = image.dtype
    if dtype in _INTEGER_MAXIMUM:
        pixels = image.astype(np.float32) / np.float32(_INTEGER_MAXIMUM[dtype])
    elif np.issubdtype(dtype, np.floating):
        pixels = image.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise InvalidOptionError("the image contains NaN or infinite values")
        # Unclipped noisy inputs (sigma up to 75, the benchmark protocol) stray well outside
        # [0, 1]; values past [-4, 5] are 8-bit or 16-bit data passed as float by mistake.
        if pixels.size and (pixels.max() > 5.0 or pixels.min() < -4.0):
            raise InvalidOptionError(
                f"float images must hold values in [0, 1], got [{pixels.min():g}, {pixels.max():g}]"
                " (divide 8-bit values by 255)")
    else:
        raise InvalidOptionError(f"unsupported dtype {dtype}; use uint8, uint16 or float in [0, 1]")
    layout = image.shape[2:]
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    alpha = None
    if pixels.shape[2] in (2, 4):
        pixels, alpha = pixels[:, :, :-1], pixels[:, :, -1:]
    return np.ascontiguousarray(pixels), alpha, layout


def _from_float(pixels: np.ndarray, alpha: np.ndarray | None, dtype: np.dtype,
                layout: tuple[int, ...]) -> np.ndarray:
    if alpha is not None:
        pixels = np.concatenate([pixels, alpha.astype(pixels.dtype)], axis=2)
    if not layout:
        pixels = pixels[:, :, 0]
    pixels = np.clip(pixels, 0.0, 1.0)
    if dtype in _INTEGER_MAXIMUM:
        return np.rint(pixels * _INTEGER_MAXIMUM[dtype]).astype(dtype)
    return pixels.astype(dtype)
