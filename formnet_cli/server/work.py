"""What a worker process of ``formnet serve`` does: one uploaded file in, the restored file out.

Runs in the pool's worker processes (:mod:`formnet_cli.server.pool`), never in the web
server's, and imports nothing of the web stack. :func:`start_worker` prepares a process (its
CPU threads, the pixel limit, the default models loaded once); :func:`restore_file` decodes
the bytes with :mod:`formnet_cli.io` (every page's header checked before decoding: the pixel
limit, the memory to decode and restore it, data enough for it, a 1-bit image or a format the
output cannot take refused; what the C libraries print folded into the one-line error),
restores every page through :func:`formnet_cli.api.restore_with_info` and encodes
the result in the input's format (or ``ext``) with its metadata. Nothing touches the disk.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path

import numpy as np

from formnet_cli import api
from formnet_cli.options import RestoreOptions
from formnet_cli.config import LEVEL_NAMES, TASKS
from formnet_cli.errors import FormnetError, InvalidOptionError, ModelNotFoundError
from formnet_cli.inference.backends import cpu_threads
from formnet_cli.inference.tiling import restore_memory_needed
from formnet_cli import io as imageio

SERVER_TASKS = ("auto", *TASKS)
"""The tasks the page and the API offer: ``auto`` lets the library choose (issue 22)."""

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".tif": "image/tiff",
               ".webp": "image/webp", ".avif": "image/avif", ".heic": "image/heic",
               ".jp2": "image/jp2", ".bmp": "image/bmp"}
"""Content type of each extension :func:`formnet_cli.io.extension_of` gives."""


@dataclass(frozen=True)
class RestoreJob:
    """One upload and how to restore it; the levels are the form's text, checked by the library.

    ``model`` is a checkpoint folder the server found itself (from ``/v1/models``' names),
    never a path a client sent.
    """

    data: bytes
    name: str
    task: str = "auto"
    sigma: str | None = None
    quality: str | None = None
    scale: str | None = None
    strength: str | None = None
    ext: str | None = None
    model: Path | None = None
    token: str | None = None
    """Where progress is reported (``/v1/progress/<token>``), if anywhere."""


@dataclass(frozen=True)
class RestoredFile:
    """The encoded result and what the response says about it."""

    data: bytes
    extension: str
    task: str
    level: str
    model: str
    width: int
    height: int
    seconds: float

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES.get(self.extension, "application/octet-stream")


_PROGRESS: Queue | None = None
"""This worker's channel to the server's progress table (set by :func:`start_worker`)."""
_DEVICE = "auto"
_THREADS: int | None = None
"""This worker's CPU threads, for whichever backend runs (set by :func:`start_worker`)."""


def start_worker(progress: Queue | None, device: str, threads: int,
                 max_megapixels: float | None) -> None:
    """Prepare this worker process: its CPU threads, the pixel limit, and the default models
    loaded once under the backend ``auto`` picks (a missing one is reported by the request
    that needs it)."""
    global _PROGRESS, _DEVICE, _THREADS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    _PROGRESS, _DEVICE, _THREADS = progress, device, threads
    if max_megapixels is not None:
        os.environ[imageio.MAX_MEGAPIXELS_VARIABLE] = f"{max_megapixels:g}"
    with cpu_threads(threads):
        for task, channels in (("denoise", 3), ("denoise", 1), ("jpeg", 1), ("sr", 1)):
            try:
                api.load_model(task=task, channels=channels, device=device, backend="auto")
            except ModelNotFoundError:
                continue


def ping() -> int:
    """Nothing: a started worker answers (the pool's warm-up); returns the process id."""
    return os.getpid()


def check_job(job: RestoreJob) -> None:
    """Raise :class:`InvalidOptionError` for options no image could be restored with, before
    the job is queued (the web server calls it; the library checks the rest per image)."""
    if job.task not in SERVER_TASKS:
        raise InvalidOptionError(f"unknown task {job.task!r}; choose one of {', '.join(SERVER_TASKS)}")
    if job.task == "auto":
        for task, name in LEVEL_NAMES.items():
            if getattr(job, name) is not None:
                raise InvalidOptionError(f"{name} applies to task '{task}', not 'auto' (which "
                                         "chooses the task and its level); give task={task}")
    else:
        RestoreOptions(job.task, sigma=job.sigma, quality=job.quality, scale=job.scale,  # parses, checks
                       strength=1.0 if job.strength is None else job.strength)
    _normalise_ext(job.ext)


def restore_file(job: RestoreJob) -> RestoredFile:
    """Decode ``job.data``, restore every page, encode the result (see the module)."""
    with cpu_threads(_THREADS):
        return _restore_file(job)


def _restore_file(job: RestoreJob) -> RestoredFile:
    started = time.perf_counter()
    _report(job.token, 0, 0)  # running
    extension = _normalise_ext(job.ext)
    scale = int(job.scale) if job.task == "sr" and job.scale else 1

    def before_decoding(declared: Sequence[imageio.DeclaredPage]) -> int:
        """Refuse what cannot be restored from the header; the memory the restore will take."""
        if all(page.bilevel for page in declared) and job.task != "sr":
            raise FormnetError(f"{job.name}: 1-bit (black and white) image: it holds no noise or "
                               "JPEG artifacts to remove (task sr upscales it, as 8-bit grey)")
        if extension is not None:
            imageio.check_writable_as(job.name, declared, format=extension, scale=scale)
        return restore_memory_needed(declared, scale=scale, passes=2)  # auto: the card's, 1 or 2

    pages = imageio.read_pages_bytes(job.data, job.name, restore_memory=before_decoding)
    extension = extension or imageio.extension_of(pages[0].source_format)
    imageio.check_writable_as(job.name, pages, format=extension, scale=scale)  # before the model runs
    restored, results = [], []
    for number, page in enumerate(pages):
        if page.bilevel and job.task != "sr":  # one page of several: kept as it is
            restored.append(page)
            continue

        def progress(done: int, total: int, number: int = number) -> None:
            _report(job.token, number * total + done, len(pages) * total)

        page_restored, result = _restore_page(page, job, progress)
        restored.append(page_restored)
        results.append(result)
    data = imageio.encode_pages(restored, extension, name=job.name)
    return RestoredFile(data=data, extension=extension, task=results[0].task,
                        level=results[0].describe_level(), model=results[0].model_name,
                        width=restored[0].width, height=restored[0].height,
                        seconds=time.perf_counter() - started)


def _restore_page(page: imageio.LoadedImage, job: RestoreJob, progress: api.Progress,
                  ) -> tuple[imageio.LoadedImage, api.RestoreResult]:
    """One page through :func:`_restore`, alpha included (resized for sr)."""
    pixels = page.pixels
    if page.alpha is not None:
        pixels = np.concatenate([pixels, page.alpha[:, :, None]], axis=2)
    result = _restore(pixels, job, progress)
    output = result.image
    if page.alpha is None:
        return imageio.resized(page, output, None), result
    return imageio.resized(page, output[:, :, :-1], output[:, :, -1]), result


def _restore(pixels: np.ndarray, job: RestoreJob, progress: api.Progress) -> api.RestoreResult:
    """The one call of the library. ``auto`` calls it without a task: the library decides
    per file (:mod:`formnet_cli.auto`: JPEG artifacts, noise, both or nothing), reading the
    upload's JPEG tables."""
    common = {"model": job.model, "device": _DEVICE, "progress": progress, "source_path": job.data,
              "strength": 1.0 if job.strength is None else job.strength}
    if job.task == "auto":
        return api.restore_with_info(pixels, **common)
    return api.restore_with_info(pixels, job.task, sigma=job.sigma, quality=job.quality,
                                 scale=job.scale, **common)


def _normalise_ext(ext: str | None) -> str | None:
    """``ext`` as the extension written (``"tiff"`` -> ``".tif"``), checked; None: the input's."""
    if ext is None:
        return None
    try:
        return imageio.extension_of(imageio.output_format("ext", ext))
    except FormnetError:
        raise InvalidOptionError(f"ext must be one of {', '.join(sorted(e[1:] for e in MEDIA_TYPES))}, "
                                 f"got {ext!r}") from None


def _report(token: str | None, done: int, total: int) -> None:
    if token is not None and _PROGRESS is not None:
        _PROGRESS.put_nowait((token, done, total))
