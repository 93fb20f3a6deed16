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
the model's ONNX graph under onnxruntime or OpenVINO, which needs no torch at all. Models are
loaded by :mod:`formnet_cli.loading`; one step's level and passes are in
:mod:`formnet_cli.inference.steps`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from formnet_cli import auto
from formnet_cli.imaging import blockiness, degradations, samples
from formnet_cli.inference import backends, tiling
from formnet_cli.inference.steps import (Runner, Step, check_sigma_in_range, conditioning,
                                         estimate_noise, estimation_sample, restore_planes,
                                         restore_sr)
from formnet_cli.hub import registry
from formnet_cli.errors import InvalidOptionError, ModelNotFoundError
from formnet_cli.loading import (LoadedModel, check_model_task, clear_model_cache, load_model,
                                 model_task, run_device, torch_devices)
from formnet_cli.results import RestoreResult, StepResult
from formnet_cli.options import (AUTO, Ensemble, RestoreOptions, Sigma, parse_ensemble,
                                 parse_precision, parse_scale, read_sigma)

if TYPE_CHECKING:  # torch is imported where the torch backend runs, not here
    import torch

__all__ = [
    "LoadedModel", "Progress", "RestoreResult", "StepResult", "check_device",
    "check_model_options", "clear_model_cache", "ensemble_passes", "formatted_tasks",
    "load_model", "load_options_model", "model_task", "model_task_of", "restore",
    "restore_with_info", "restore_with_options",
]

Progress = tiling.ProgressCallback
"""``progress(done, total)``: called as tiles (or channel passes) complete."""


# -- restoring -----------------------------------------------------------------------------
def restore(image: np.ndarray, task: str = AUTO, *, tasks: list[str] | None = None,
            sigma: float | str | None = None, quality: int | str | None = None,
            scale: int | None = None, model: str | os.PathLike[str] | LoadedModel | None = None,
            device: str = "auto", precision: str = "auto", tile: int | str | None = "auto",
            tile_overlap: int | None = None, batch_size: int = 1, ensemble: int | str = "auto",
            progress: Progress | None = None, strength: float = 1.0,
            formatter: str | None = None, backend: str = "auto") -> np.ndarray:
    """Restore one image; same dtype and layout as ``image`` (``scale`` x larger for ``sr``).

    ``task``: ``'auto'`` (the default) decides per image what it needs (JPEG artifact removal,
    denoising, both or nothing: :mod:`formnet_cli.auto`), or runs the tasks the levels given
    imply (``sigma``: denoise, ``quality``: jpeg, ``scale``: sr; several in the order jpeg,
    denoise, sr); ``'denoise'``, ``'jpeg'`` or ``'sr'`` runs that task, ``'jpeg,denoise'`` (or
    ``tasks=['jpeg', 'denoise']``) those in that order, each on the previous one's output.
    ``sigma``: noise level on the 0-255 scale, or ``'auto'`` (also the default) to estimate it:
    one sigma for white noise, a per-pixel sigma where the measured noise varies with
    brightness, as camera noise does (:func:`~formnet_cli.imaging.estimation.estimate_noise_level_function`;
    after a JPEG step, measured as :func:`formnet_cli.auto.measure_noise` does). ``quality``: JPEG
    quality 1-100, ``'blind'``, or ``'auto'`` (the default; without the source file this is
    blind). ``scale``: 2, 3 or 4 for ``sr``. ``ensemble``: 1, 2, 4 or 8 flipped/rotated passes
    averaged (that many times the time), or ``'auto'`` for the number the model's card
    recommends. ``model``: a registry name, a checkpoint folder or a :class:`LoadedModel`, used
    for the step of its task (with ``task='auto'`` and no level, the only step);
    ``device``: where to run it (``'auto'`` with a :class:`LoadedModel`:
    where it was loaded; another device runs a copy there for each call, leaving the
    :class:`LoadedModel` as it is). ``strength``: how much of the restoration to apply, from 0
    (the input; bicubic-upscaled for ``sr``) to 1 (the model's output, the default), blended
    linearly. ``formatter`` (``none``, ``cnn``, ``bm3d``; without ``model``): the task's model
    with that formatting stage. ``backend``: ``auto``, ``torch``, ``onnxruntime`` or
    ``openvino`` (:mod:`formnet_cli.inference.backends`), for every step. The options are read as
    :class:`~formnet_cli.options.RestoreOptions` reads them.
    See :func:`restore_with_info`.
    """
    return restore_with_info(image, task, tasks=tasks, sigma=sigma, quality=quality, scale=scale,
                             model=model, device=device, precision=precision, tile=tile,
                             tile_overlap=tile_overlap, batch_size=batch_size, ensemble=ensemble,
                             progress=progress, strength=strength, formatter=formatter,
                             backend=backend).image


def restore_with_info(image: np.ndarray, task: str = AUTO, *, tasks: list[str] | None = None,
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
    """:func:`restore`, also returning the steps run, the levels used (e.g. the estimated
    sigma) and, for ``task='auto'``, why.

    ``source_path`` is the file ``image`` was read from (or its bytes, read from a stream):
    with ``quality='auto'`` and a JPEG file, the quality is estimated from its quantisation
    tables (``task='auto'`` reads them too).
    """
    options = RestoreOptions(task, tasks=tasks, sigma=sigma, quality=quality, scale=scale,
                             model=model, device=device, precision=precision, tile=tile,
                             tile_overlap=tile_overlap, batch_size=batch_size,
                             ensemble=ensemble, strength=strength, formatter=formatter,
                             backend=backend)
    return restore_with_options(image, options, progress=progress, source_path=source_path)


def restore_with_options(image: np.ndarray, options: RestoreOptions, *,
                         progress: Progress | None = None,
                         source_path: str | os.PathLike[str] | bytes | None = None) -> RestoreResult:
    """:func:`restore_with_info` with its options already parsed (a batch parses them once
    for all its files).

    Several steps run one after the other in memory, each over the whole image (tiled by the
    engine within the step, not across steps: the noise after a JPEG step is measured on the
    whole of its output), each on the previous one's output clipped to [0, 1]; the image is
    converted from its dtype once and back once.
    """
    pixels, alpha, layout = _split(image)
    gray_as_rgb = pixels.shape[2] == 3 and _channels_equal(pixels)
    if gray_as_rgb:  # a black-and-white photo saved as RGB: restore it as the gray image it is
        pixels = pixels[:, :, :1]
    # An 8- or 16-bit image restored in full is written by its last step, band by band, into
    # the output (see formnet_cli.inference.tiling): no float copy of the whole image is made.
    output = (np.empty_like(image) if image.dtype in samples.INTEGER_MAXIMUM
              and options.strength == 1.0 else None)

    steps = _Steps(options, progress, source_path,
                   None if output is None else _colour_planes(output, layout))
    tasks = options.tasks or ((model_task_of(options.model),) if options.model is not None else ())
    restored = steps.run_given(pixels, tasks) if tasks else steps.run_auto(pixels)
    if restored is None:  # written into output
        assert output is not None
        if alpha is not None:
            output[:, :, -1] = image[:, :, -1]
        return RestoreResult(output, tuple(steps.done), steps.reason)

    if restored.dtype in samples.INTEGER_MAXIMUM:  # no step ran
        return RestoreResult(image.copy(), tuple(steps.done), steps.reason)
    scale = next((step.scale for step in steps.done if step.task == "sr"), None)
    alpha_values = None if alpha is None else samples.float_values(alpha)
    if alpha_values is not None and scale is not None:
        alpha_values = degradations.imresize(alpha_values, scale=scale)
    if options.strength < 1.0:  # input + strength * (the output at strength 1 - input)
        values = samples.float_values(pixels)
        before = degradations.imresize(values, scale=scale) if scale is not None else values
        restored = before.astype(np.float32) + np.float32(options.strength) * (
            np.clip(restored, 0.0, 1.0) - before)

    if gray_as_rgb:
        restored = np.repeat(restored, 3, axis=2)
    result = _from_float(restored, alpha_values, image.dtype, layout)
    if alpha is not None and scale is None:
        result[:, :, -1] = image[:, :, -1]  # bit-exact, not through float
    return RestoreResult(result, tuple(steps.done), steps.reason)


def model_task_of(model: str | LoadedModel) -> str:
    """The task of a model given by name, checkpoint folder or as loaded."""
    return model.task if isinstance(model, LoadedModel) else model_task(model)


class _Steps:
    """Runs the steps of one image, each on the previous one's output, and records them."""

    def __init__(self, options: RestoreOptions, progress: Progress | None,
                 source_path: str | os.PathLike[str] | bytes | None,
                 out: np.ndarray | None = None) -> None:
        self.options, self.progress, self.source_path = options, progress, source_path
        self.out = out
        """Where the last step may write its result (``(C, H, W)``, the output's dtype)."""
        self.done: list[StepResult] = []
        self.reason = ""
        self.model_task: str | None = None
        """The step ``options.model`` runs (``None``: every step runs its task's default)."""
        self._compression: auto.Compression | None = None
        self.formatted = (formatted_tasks(options.tasks or auto.STEPS, options.formatter)
                          if options.formatter is not None else ())
        """The steps whose model ``options.formatter`` picks (the others run their default)."""

    def run_given(self, pixels: np.ndarray, tasks: tuple[str, ...]) -> np.ndarray | None:
        """The tasks given, in order, at their given or estimated levels (``None``: written
        into :attr:`out`). A noise level estimated after a JPEG step is measured as ``auto``
        measures it on a JPEG (:func:`formnet_cli.auto.noise_after_jpeg`)."""
        options = self.options
        if options.model is not None and len(tasks) > 1:
            self.model_task = model_task_of(options.model)
            _check_step_of_chain(self.model_task, options)
        elif options.model is not None:
            self.model_task = tasks[0]  # a model of another task is refused by its step
        current: np.ndarray | None = pixels
        for index, task in enumerate(tasks):
            assert current is not None
            step = Step(task, sigma=AUTO if options.sigma is None else options.sigma,
                        quality=AUTO if options.quality is None else options.quality,
                        scale=options.scale)  # auto levels: a step the model's task implies
            if task == "denoise" and options.sigma == AUTO and "jpeg" in tasks[:index]:
                compression = self._examine(pixels)
                before = auto.measure_noise(estimation_sample(pixels), compression)
                if before is None:
                    estimate_noise(current)  # raises: too small
                reading = auto.noise_after_jpeg(before, estimation_sample(current), compression)
                step = Step(task, sigma=AUTO, noise=reading.function)
            current = self._run(current, step, index, len(tasks))
        return current

    def run_auto(self, pixels: np.ndarray) -> np.ndarray | None:
        """What :mod:`formnet_cli.auto` decides: JPEG artifacts, then noise, or nothing
        (``None``: written into :attr:`out`)."""
        compression = self._examine(pixels)
        reading = auto.measure_noise(estimation_sample(pixels), compression)
        noisy = auto.is_noisy(reading, compression)
        jpeg = auto.jpeg_step(compression, noisy)
        self.reason = auto.explain(compression, jpeg, reading, noisy)
        current: np.ndarray | None = pixels
        if jpeg is not None:
            quality = AUTO if compression.file_quality is not None else "blind"
            current = self._run(pixels, Step("jpeg", quality=quality), 0, 1 + noisy)
        if noisy:
            assert reading is not None and current is not None
            if jpeg is not None:  # the noise left
                reading = auto.noise_after_jpeg(reading, estimation_sample(current), compression)
            step = Step("denoise", sigma=AUTO, noise=reading.function)
            current = self._run(current, step, len(self.done), len(self.done) + 1)
        return current

    def _examine(self, pixels: np.ndarray) -> auto.Compression:
        if self._compression is None:
            # the luminance it measures, made in strips: no float copy of a colour image
            self._compression = auto.examine(blockiness.luminance(pixels), self.source_path)
        return self._compression

    def _run(self, pixels: np.ndarray, step: Step, index: int, count: int) -> np.ndarray | None:
        """The step's result clipped to [0, 1]; the last step's written into :attr:`out` where
        it can be (then ``None``)."""
        model = self.options.model if step.task == self.model_task else None
        formatter = self.options.formatter if step.task in self.formatted else None
        out = self.out if index == count - 1 and step.task != "sr" else None
        restored, result = _restore_step(pixels, step, model, formatter, self.options,
                                         self.source_path,
                                         tiling.pass_progress(self.progress, index, count), out)
        self.done.append(result)
        if restored is None:
            return None
        return np.clip(restored, 0.0, 1.0)  # what the next step sees: an image, as if saved


def _restore_step(pixels: np.ndarray, step: Step, model: str | LoadedModel | None,
                  formatter: str | None, options: RestoreOptions,
                  source_path: str | os.PathLike[str] | bytes | None,
                  progress: Progress | None,
                  out: np.ndarray | None = None) -> tuple[np.ndarray | None, StepResult]:
    """One step on ``H x W x C`` pixels (C 1 or 3; float32 in [0, 1], or 8- or 16-bit) with
    ``model`` (``None``: the task's default, or its model in ``formatter``'s form): the
    restored pixels (float, not clipped; ``None`` where they went into ``out``, see
    :func:`~formnet_cli.inference.steps.restore_planes`) and what ran."""
    color = pixels.shape[2] == 3
    loaded = _select_model(model, step.task, 3 if color else 1, options, formatter)
    passes = ensemble_passes(options.ensemble, loaded)
    levels = conditioning(step, loaded, pixels, source_path)
    run = Runner(loaded, options, device=run_device(loaded, options.device), level=levels.level,
                 ensemble=passes, progress=progress)
    if step.task == "sr":
        assert step.scale is not None
        restored = restore_sr(run, pixels, step.scale)
    else:
        restored = restore_planes(run, pixels, step.task, levels.noise, out)
    return restored, StepResult(
        task=step.task, model_name=loaded.name, model_source=loaded.source,
        model_path=str(loaded.path), sigma=levels.noise.sigma if levels.noise else None,
        quality=levels.quality, scale=step.scale, estimated=levels.estimated, ensemble=passes,
        sigma_map_range=levels.noise.map_range if levels.noise else None)


def formatted_tasks(tasks: Sequence[str], formatter: str) -> tuple[str, ...]:
    """The steps among ``tasks`` whose model ``formatter`` (``formnet restore --formatter``)
    picks: a task alone must have a model in that form; of several (a chain, or the steps
    ``auto`` may run), those that have one (the others run their default model), at least one.
    Raises :class:`ModelNotFoundError` naming the forms there are."""
    found, missing = [], []
    for task in tasks:
        try:
            registry.model_with_formatter(task, 1, formatter)
            found.append(task)
        except ModelNotFoundError as error:
            if len(tasks) == 1:
                raise
            missing.append(str(error))
    if not found:
        raise ModelNotFoundError(f"none of the steps {','.join(tasks)} has a model that formats "
                                 f"with '{formatter}': {'; '.join(missing)}")
    return tuple(found)


# -- internals -----------------------------------------------------------------------------
def _channels_equal(pixels: np.ndarray) -> bool:
    """Whether the three channels of an ``H x W x 3`` image are identical (a gray image)."""
    return bool(np.array_equal(pixels[:, :, 0], pixels[:, :, 1])
                and np.array_equal(pixels[:, :, 0], pixels[:, :, 2]))


def _select_model(model: str | LoadedModel | None, task: str, channels: int,
                  options: RestoreOptions, formatter: str | None) -> LoadedModel:
    """The given model, the task's model with ``formatter``, or :func:`load_model`'s for
    ``task`` preferring ``channels``, on ``options.device`` under ``options.backend`` (a
    :class:`LoadedModel` for another backend: its checkpoint loaded for it)."""
    device, backend = options.device, options.backend
    if isinstance(model, LoadedModel):
        check_model_task(model, task)
        if backend == "auto" and model.backend == "torch":
            return model  # a torch model the caller loaded runs as it is
        if backend in ("auto", model.backend):
            backends.choose_backend(model.backend, device=device, folder=model.path,
                                    formatter=model.config.formatter)  # device and graph checked
            return model
        return load_model(model.path, task=task, device=device, backend=backend)
    if model is None and formatter is not None:
        model = registry.model_with_formatter(task, channels, formatter)
    return load_model(model, task=task, channels=channels, device=device, backend=backend)


def check_device(options: RestoreOptions) -> None:
    """Raise :class:`InvalidOptionError` when ``options.device`` is unknown or not on this
    machine, or cannot compute in ``options.precision``, or ``options.backend`` cannot run
    there: before any work (a batch makes it one error, not one failure per file)."""
    if backends.choose_backend(options.backend, device=options.device,
                               precision=options.precision) == "torch":
        devices = torch_devices()
        devices.check_precision(options.precision, devices.resolve_device(options.device))


def load_options_model(options: RestoreOptions) -> LoadedModel:
    """The model ``options`` name, loaded on their device, checked against their tasks: the
    task given, one of a chain's (with ``auto``, whatever its task: it is the one step)."""
    assert options.model is not None
    task = options.tasks[0] if len(options.tasks) == 1 else None
    if isinstance(options.model, LoadedModel):
        loaded = options.model
        if task is not None:
            check_model_task(loaded, task)
    else:
        loaded = load_model(options.model, task=task, device=options.device,
                            backend=options.backend)
    _check_step_of_chain(loaded.task, options)
    return loaded


def _check_step_of_chain(model_task: str, options: RestoreOptions) -> None:
    """Raise :class:`InvalidOptionError` when ``options`` give a chain of which the model's
    task is not a step."""
    if len(options.tasks) > 1 and model_task not in options.tasks:
        raise InvalidOptionError(f"the model given restores '{model_task}', which is not a "
                                 f"step of {options.task}")


def check_model_options(loaded: LoadedModel, *, sigma: Sigma | str | None = None,
                        scale: int | None = None, precision: str = "auto",
                        device: str | torch.device = "auto") -> None:
    """Raise :class:`InvalidOptionError` when a given sigma or scale is outside ``loaded``'s
    range, or it cannot run in ``precision`` on ``device`` (what :func:`restore_with_info`
    would raise for every image)."""
    if loaded.backend == "torch":
        assert loaded.model is not None
        torch_devices().resolve_precision(parse_precision(precision), run_device(loaded, device),
                                          loaded.model.descriptor.supports_half)
    else:
        backends.choose_backend(loaded.backend, device=str(device), precision=precision)
    if loaded.task == "denoise" and sigma is not None:
        value = read_sigma(sigma)
        if value != "auto":
            check_sigma_in_range(value, loaded.config)
    if loaded.task == "sr" and scale is not None:
        parse_scale(scale, loaded.config.scales)


def ensemble_passes(ensemble: Ensemble | str, loaded: LoadedModel) -> int:
    """How many self-ensemble passes ``ensemble`` means for ``loaded`` (``auto``: its card's).

    Raises :class:`InvalidOptionError` for anything but ``auto``, 1, 2, 4 or 8.
    """
    option = parse_ensemble(ensemble)
    return loaded.info.ensemble if option == "auto" else option


def _split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """``(H x W x C with C in {1, 3}, alpha H x W x 1 or None, layout)``: the pixels as views
    of an 8- or 16-bit image, or as float32 in [0, 1] (checked); alpha as a view.

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
    if dtype in samples.INTEGER_MAXIMUM:
        pixels = image
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
    return pixels, alpha, layout


def _colour_planes(output: np.ndarray, layout: tuple[int, ...]) -> np.ndarray:
    """The colour channels of an output of ``layout`` as a ``(C, H, W)`` view."""
    if not layout:
        return output[None]
    channels = 3 if layout[0] in (3, 4) else 1
    return output[:, :, :channels].transpose(2, 0, 1)


def _from_float(pixels: np.ndarray, alpha: np.ndarray | None, dtype: np.dtype,
                layout: tuple[int, ...]) -> np.ndarray:
    if alpha is not None:
        pixels = np.concatenate([pixels, alpha.astype(pixels.dtype)], axis=2)
    if not layout:
        pixels = pixels[:, :, 0]
    if dtype in samples.INTEGER_MAXIMUM:
        return samples.quantise(pixels, dtype)
    return np.clip(pixels, 0.0, 1.0).astype(dtype)
