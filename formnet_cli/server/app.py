"""The web app of ``formnet serve``: the page, and an HTTP API over the library.

Routes:

* ``GET /``, ``GET /static/app.js``, ``GET /static/style.css``: the page (plain files shipped
  in ``static/``, read once; nothing else is served, and no part of a URL names a file);
* ``POST /v1/restore``: a ``multipart/form-data`` form with the file in the field ``image`` and
  the options named as the CLI's (``task``: auto, denoise, jpeg or sr; ``sigma``, ``quality``,
  ``scale``, ``strength``; ``ext``: the output format, default the input's; ``model``: a name
  from ``/v1/models``); answers the restored file with its metadata, and ``X-Formnet-*``
  headers saying the task, level and model used. A header ``X-Formnet-Progress: <token>``
  makes its progress readable at ``GET /v1/progress/<token>``;
* ``GET /v1/models``, ``GET /v1/health``.

Errors are JSON, ``{"error": "<one line>"}``, with the CLI's messages: 400 for bad options, 413
for a request over ``max_upload_mib`` (checked from its ``Content-Length`` and again while it
is read) or an image over the pixel limit (from its header, before decoding), 415 for what is
not a readable image, 503 when every worker is busy and the queue is full, 500 for the
server's own failures (no weights, a worker lost). An upload stays in memory; it is decoded
and restored in a worker process (:mod:`formnet_cli.server.pool`).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from formnet_cli import __version__
from formnet_cli.errors import (FormnetError, ImageReadError, ImageTooLargeError, InvalidOptionError,
                                ModelNotFoundError, UnknownModelError)
from formnet_cli.hub.checkpoint import CheckpointError
from formnet_cli.hub.registry import ModelListing, list_models
from formnet_cli.server import work
from formnet_cli.server.pool import ServerBusyError, WorkerLostError, WorkerPool

MIB = 1024 * 1024
DEFAULT_MAX_UPLOAD_MIB = 200.0
FORM_FIELDS = ("image", "task", "sigma", "quality", "scale", "strength", "ext", "model")
PROGRESS_HEADER = "X-Formnet-Progress"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")
_STATIC = {"": ("index.html", "text/html; charset=utf-8"),
           "static/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "static/style.css": ("style.css", "text/css; charset=utf-8")}
"""URL path (without its leading /) -> file of ``static/`` and its content type."""
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_log = logging.getLogger("formnet.serve")


@dataclass(frozen=True)
class ServerSettings:
    """How ``formnet serve`` runs: where the models run, how many workers and waiting places,
    the largest request (MiB) and image (megapixels; ``None``: the library's limit)."""

    device: str = "auto"
    workers: int = 1
    queue: int = 8
    max_upload_mib: float = DEFAULT_MAX_UPLOAD_MIB
    max_megapixels: float | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mib * MIB)


class RequestTooLargeError(FormnetError):
    """A request body over the size limit (HTTP 413)."""


class NotAFormError(FormnetError):
    """A request body that is not a multipart form (HTTP 415)."""


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ServerBusyError, 503),
    (RequestTooLargeError, 413), (ImageTooLargeError, 413),
    (NotAFormError, 415), (ImageReadError, 415),
    (UnknownModelError, 400),
    (ModelNotFoundError, 500), (CheckpointError, 500), (WorkerLostError, 500),
    (FormnetError, 400),
)
"""HTTP status of each known error, the first that matches (400: the request cannot be done)."""


def create_app(settings: ServerSettings = ServerSettings()) -> Starlette:
    """The ASGI app; its workers start with it (its lifespan) and stop with it."""
    from formnet_cli.inference.engine import resolve_device

    resolve_device(settings.device)  # a bad --device is one error now, not one per request
    page = {path: (resources.files("formnet_cli.server").joinpath("static", name).read_bytes(),
                   media_type) for path, (name, media_type) in _STATIC.items()}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = WorkerPool(workers=settings.workers, queue=settings.queue, device=settings.device,
                          max_megapixels=settings.max_megapixels)
        app.state.pool = pool
        try:
            await pool.start()
            yield
        finally:
            await run_in_threadpool(pool.close)

    async def static(request: Request) -> Response:
        body, media_type = page[request.url.path.lstrip("/")]
        return Response(body, media_type=media_type, headers=_PAGE_HEADERS)

    async def health(request: Request) -> Response:
        pool: WorkerPool = request.app.state.pool
        return JSONResponse({"status": "ok", "version": __version__, "device": settings.device,
                             "workers": pool.workers, "in_progress": pool.in_progress,
                             "capacity": pool.capacity, "max_upload_mib": settings.max_upload_mib})

    async def models(request: Request) -> Response:
        listings = await run_in_threadpool(_model_listings)
        return JSONResponse({"models": [
            {"name": each.name, "task": each.task, "channels": each.channels,
             "parameters": each.parameters, "source": each.source, "default": each.default,
             "description": each.description, "scores": each.scores} for each in listings]})

    async def progress(request: Request) -> Response:
        entry = request.app.state.pool.progress.get(request.path_params["token"])
        if entry is None:
            return _error(404, "no request with this progress token is in progress")
        return JSONResponse({"state": entry.state, "done": entry.done, "total": entry.total})

    async def restore(request: Request) -> Response:
        pool: WorkerPool = request.app.state.pool
        token = request.headers.get(PROGRESS_HEADER)
        if token is not None and not _TOKEN.fullmatch(token):
            raise InvalidOptionError(f"{PROGRESS_HEADER} must be 8-64 letters, digits, - or _")
        _check_declared_size(request, settings)
        with pool.slot(token):
            job = await _read_job(request, settings, token)
            work.check_job(job)
            restored = await pool.run(job)
        return Response(restored.data, media_type=restored.media_type,
                        headers=_result_headers(job.name, restored))

    routes = [Route("/" + path, static) for path in page]
    routes += [Route("/v1/restore", restore, methods=["POST"]),
               Route("/v1/models", models), Route("/v1/health", health),
               Route("/v1/progress/{token}", progress)]
    handlers = {FormnetError: _formnet_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)  # type: ignore[arg-type]


# -- reading a request ---------------------------------------------------------------------
def _check_declared_size(request: Request, settings: ServerSettings) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise _too_large(int(declared), settings)


def _too_large(size: int, settings: ServerSettings) -> RequestTooLargeError:
    over = f"{size / MIB:.1f} MiB" if size else "more"
    return RequestTooLargeError(f"request too large ({over}; the limit is "
                                f"{settings.max_upload_mib:g} MiB: formnet serve --max-upload-mib)")


async def _read_job(request: Request, settings: ServerSettings, token: str | None) -> work.RestoreJob:
    """The form of ``request`` as a job: read in memory, up to the size limit."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise NotAFormError("send a multipart/form-data form with the image in the field 'image'")
    limit = settings.max_upload_bytes

    async def body() -> AsyncIterator[bytes]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(0, settings)
            yield chunk

    parser = MultiPartParser(request.headers, body(), max_files=1, max_fields=len(FORM_FIELDS))
    parser.spool_max_size = limit  # the upload stays in memory, never in a file
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise InvalidOptionError(f"malformed form: {error.message}") from None
    try:
        return await _job_from_form(form, token)
    finally:
        await form.close()


async def _job_from_form(form: FormData, token: str | None) -> work.RestoreJob:
    unknown = [key for key in form if key not in FORM_FIELDS]
    if unknown:
        raise InvalidOptionError(f"unknown field {unknown[0]!r}; the fields are "
                                 f"{', '.join(FORM_FIELDS)}")
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise InvalidOptionError("no image: send the file in the field 'image'")
    fields: dict[str, str | None] = {}
    for name in FORM_FIELDS[1:]:
        values = form.getlist(name)
        if len(values) > 1 or any(not isinstance(value, str) for value in values):
            raise InvalidOptionError(f"the field {name!r} must be given once, as text")
        text = str(values[0]).strip() if values else ""
        fields[name] = text or None
    model = await run_in_threadpool(_model_folder, fields.pop("model"))
    task = fields.pop("task") or _implied_task(fields, model)
    return work.RestoreJob(data=await upload.read(), name=_display_name(upload.filename),
                           task=task, model=model, token=token, **fields)


def _implied_task(fields: dict[str, str | None], model: Path | None) -> str:
    """The task when the form gives none: the CLI's rule (the model's task; else sr with a
    scale, jpeg with a quality, otherwise denoise)."""
    from formnet_cli.cli.options import task_for

    return task_for(None, [str(model)] if model else [], scale=fields["scale"] is not None,
                    quality=fields["quality"] is not None)


def _model_listings() -> list[ModelListing]:
    """The models ``/v1/models`` lists: those with weights on this machine."""
    return [each for each in list_models() if each.path is not None]


def _model_folder(name: str | None) -> Path | None:
    """The checkpoint folder of a model ``/v1/models`` lists by that name: the client's text
    only picks one of the server's own folders."""
    if name is None:
        return None
    for listing in _model_listings():
        if listing.name == name:
            return listing.path
    raise InvalidOptionError(f"unknown model {name!r}; GET /v1/models lists the models")


def _display_name(filename: str | None) -> str:
    """The upload's file name, for messages and the download's name only: its last part,
    without control characters, at most 100 characters; ``image`` if none is left."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C")[:100].strip()
    return name if name.strip(".") else "image"


# -- answering -----------------------------------------------------------------------------
def _result_headers(name: str, restored: work.RestoredFile) -> dict[str, str]:
    stem = PurePosixPath(name).stem or "image"
    download = f"{stem}-restored{restored.extension}"
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", download)
    return {"Content-Disposition": f"attachment; filename=\"{fallback}\"; "
                                   f"filename*=UTF-8''{quote(download)}",
            "X-Formnet-Task": restored.task, "X-Formnet-Level": _ascii(restored.level),
            "X-Formnet-Model": _ascii(restored.model), "X-Formnet-Size": f"{restored.width}x{restored.height}",
            "X-Formnet-Seconds": f"{restored.seconds:.3f}", "Cache-Control": "no-store"}


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _formnet_error(request: Request, error: Exception) -> Response:
    status = next(code for kind, code in _STATUS if isinstance(error, kind))
    message = " ".join(str(error).split()) or type(error).__name__
    if status >= 500:
        _log.error("%s %s: %s", request.method, request.url.path, message)
    return _error(status, message, {"Retry-After": "2"} if status == 503 else None)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(error.status_code, str(error.detail).lower(), error.headers)


async def _internal_error(request: Request, error: Exception) -> Response:
    if isinstance(error, MemoryError):
        return _error(500, "out of memory while restoring; send a smaller image")
    return _error(500, f"internal error ({type(error).__name__}: {error}); see the server's log")
