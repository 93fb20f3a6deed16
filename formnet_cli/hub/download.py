"""``formnet download-weights``: pinned, sha256-verified hub downloads of the manifest's models.

The manifest (:mod:`formnet_cli.hub.manifest`) gives each model's repository, pinned revision
and file checksums. ``FORMNET_HUB_REPO`` and ``FORMNET_HUB_REVISION`` (or
``--repo``/``--revision``) override the repository and revision for every model. A model whose
revision is ``null`` is not published on the hub yet: it is only bundled, and
``download-weights`` says so without touching the network.

Downloads go through ``huggingface_hub.hf_hub_download``, one call per file, revision pinned,
into the hub cache or into ``--dest``/``FORMNET_WEIGHTS_DIR`` as ``<dest>/<name>/``. Every file
is checked against the manifest's sha256 before it is used; a mismatch removes it and is an
error. A model downloaded into a folder is staged next to it and renamed into place once all
of its files are verified, so a partial download is never visible. Files already present and
verified are not requested again, so a second run makes no request at all.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import constants as hub_constants  # light; the rest is imported where
# it is used: huggingface_hub's download and error modules import its HTTP client (about 0.5 s),
# which a restore with the bundled weights never needs

from formnet_cli.errors import DownloadError, FormnetError, InvalidOptionError
from formnet_cli.hub.manifest import (
    Manifest,
    ManifestFile,
    ModelEntry,
    file_matches,
    folder_matches,
    is_commit,
    load_manifest,
)

REPO_ENV = "FORMNET_HUB_REPO"
REVISION_ENV = "FORMNET_HUB_REVISION"
WEIGHTS_DIR_ENV = "FORMNET_WEIGHTS_DIR"
"""The configured weights folder: where ``download-weights`` writes and models are looked up."""


# -- where a model is published --------------------------------------------------------------
@dataclass(frozen=True)
class HubSource:
    """The repository and revision a model is fetched from, after flags and environment."""

    repo: str
    revision: str | None


def hub_source(entry: ModelEntry, repo: str | None = None,
               revision: str | None = None) -> HubSource:
    """Flag, then ``FORMNET_HUB_REPO``/``FORMNET_HUB_REVISION``, then the manifest. A revision
    given by flag or environment must be a full commit, as the manifest's are: a branch or tag
    could move to files other than those the manifest's checksums describe."""
    given = revision or os.environ.get(REVISION_ENV)
    if given and not is_commit(given):
        where = "--revision" if revision else REVISION_ENV
        raise InvalidOptionError(f"{where} must be a full 40-digit commit hash, got {given!r}")
    return HubSource(repo=repo or os.environ.get(REPO_ENV) or entry.repo,
                     revision=given or entry.revision)


def hf_hub_download(*args: Any, **kwargs: Any) -> str:
    """``huggingface_hub.hf_hub_download``, imported when first called."""
    from huggingface_hub import hf_hub_download as download

    return download(*args, **kwargs)


def try_to_load_from_cache(*args: Any, **kwargs: Any) -> Any:
    """``huggingface_hub.try_to_load_from_cache``, imported when first called."""
    from huggingface_hub import try_to_load_from_cache as look_up

    return look_up(*args, **kwargs)


def configured_weights_dir(dest: str | os.PathLike[str] | None = None) -> Path | None:
    """``--dest`` when given, else ``FORMNET_WEIGHTS_DIR``, else None (use the hub cache)."""
    value = dest if dest is not None else os.environ.get(WEIGHTS_DIR_ENV) or None
    return Path(value).expanduser() if value is not None else None


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """huggingface_hub's cache (``HF_HUB_CACHE``/``HF_HOME``), read when called."""
    return Path(cache_dir if cache_dir is not None else hub_constants.HF_HUB_CACHE).expanduser()


def cached_model_folder(entry: ModelEntry, *, repo: str | None = None,
                        revision: str | None = None,
                        cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The model's folder in the hub cache when every file is there; never uses the network.

    Raises :class:`DownloadError` when a cached file does not match its sha256.
    """
    source = hub_source(entry, repo, revision)
    if source.revision is None:
        return None
    paths = []
    for file in entry.files:
        found = try_to_load_from_cache(source.repo, entry.repo_path(file),
                                       cache_dir=str(hub_cache_dir(cache_dir)),
                                       revision=source.revision)
        if not isinstance(found, str):
            return None
        paths.append(Path(found))
    for path, file in zip(paths, entry.files):
        if not file_matches(path, file, remember=True):
            raise DownloadError(f"{path}: does not match the manifest's sha256 (corrupt or "
                                f"modified); run 'formnet download-weights {entry.name}' to "
                                "fetch it again")
    return paths[0].parent


# -- downloading -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DownloadResult:
    """What ``download_model`` did: ``downloaded`` files, already ``present``, or ``bundled``
    (not published on the hub yet; nothing was requested)."""

    name: str
    status: Literal["downloaded", "present", "bundled"]
    path: Path
    files_downloaded: tuple[str, ...] = field(default=())


def download_models(names: Sequence[str] = (), *, repo: str | None = None,
                    revision: str | None = None, dest: str | os.PathLike[str] | None = None,
                    cache_dir: str | os.PathLike[str] | None = None,
                    endpoint: str | None = None, manifest: Manifest | None = None,
                    progress: Any | None = None) -> list[DownloadResult]:
    """Download the named models (all the manifest lists when ``names`` is empty).

    Every name is checked before anything is downloaded. ``progress`` is a
    ``rich.progress.Progress`` that shows one bar per file, or None for no output.
    """
    manifest = manifest or load_manifest()
    entries = [manifest.require(name) for name in names] if names else list(manifest.models)
    return [download_model(entry, repo=repo, revision=revision, dest=dest, cache_dir=cache_dir,
                           endpoint=endpoint, manifest=manifest, progress=progress)
            for entry in entries]


def download_model(entry: ModelEntry, *, repo: str | None = None, revision: str | None = None,
                   dest: str | os.PathLike[str] | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, endpoint: str | None = None,
                   manifest: Manifest | None = None, progress: Any | None = None
                   ) -> DownloadResult:
    """Fetch one model into ``dest/<name>/`` (or the hub cache) and verify every file."""
    manifest = manifest or load_manifest()
    source = hub_source(entry, repo, revision)
    if source.revision is None and (repo or os.environ.get(REPO_ENV)):
        raise DownloadError(f"no revision for '{entry.name}' in {source.repo}: formnet downloads "
                            "weights at a pinned commit only; give --revision COMMIT "
                            "(or FORMNET_HUB_REVISION)")
    if source.revision is None:
        bundled = manifest.bundled_folder(entry.name)
        if bundled is None:
            raise DownloadError(f"'{entry.name}' is not published on the hub yet and is not "
                                "bundled; train it ('formnet train') and pass --model PATH")
        return DownloadResult(entry.name, "bundled", bundled)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    folder = configured_weights_dir(dest)
    if folder is not None:
        return _download_to_folder(entry, source, folder, endpoint, progress)
    return _download_to_cache(entry, source, hub_cache_dir(cache_dir), endpoint, progress)


_LOCAL_MODEL_HINT = ", or restore with a model folder you have (formnet restore --model PATH)"


CONNECT_TIMEOUT_S = 10.0
"""How long the reachability check waits for the hub to accept a connection."""


def _check_reachable(endpoint: str, entry: ModelEntry) -> None:
    """Fail at once where the hub cannot be reached: its host name does not resolve (no
    network), or nothing accepts a connection on its port (a mirror that is down), instead of
    after huggingface_hub's retries. Not offline (huggingface_hub says why) nor behind a proxy
    (which resolves and connects for its clients)."""
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.hostname
    proxied = any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                                    "http_proxy", "ALL_PROXY", "all_proxy"))
    if not host or proxied or hub_constants.is_offline_mode():
        return
    fix = f"and '{entry.name}' is not downloaded; check the connection (or HF_ENDPOINT){_LOCAL_MODEL_HINT}"
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as error:
        raise DownloadError(f"cannot reach the hub at {endpoint} ({host} does not resolve: "
                            f"no network?) {fix}") from error
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise DownloadError(f"cannot reach the hub at {endpoint} ({host}:{port}: "
                            f"{reason.lower()}) {fix}") from error


def _download_to_cache(entry: ModelEntry, source: HubSource, cache: Path, endpoint: str | None,
                       progress: Any | None) -> DownloadResult:
    missing: list[ManifestFile] = []
    paths: dict[str, Path] = {}
    for file in entry.files:
        found = try_to_load_from_cache(source.repo, entry.repo_path(file), cache_dir=str(cache),
                                       revision=source.revision)
        if isinstance(found, str) and file_matches(found, file):
            paths[file.path] = Path(found)
            continue
        if isinstance(found, str):  # a corrupt or modified cache entry: fetch it again
            _remove_cached(Path(found))
        missing.append(file)
    if missing:
        _check_reachable(endpoint or hub_constants.ENDPOINT, entry)
    for file in missing:
        with _hub_errors(entry, source, file, where=cache, endpoint=endpoint):
            path = Path(hf_hub_download(source.repo, entry.repo_path(file),
                                        revision=source.revision, cache_dir=str(cache),
                                        endpoint=endpoint,
                                        tqdm_class=_bar_class(progress, entry, file)))
        _verify_or_remove(path, file, entry, source, remove=_remove_cached)
        paths[file.path] = path
    folder = paths[entry.files[0].path].parent
    status = "downloaded" if missing else "present"
    return DownloadResult(entry.name, status, folder, tuple(file.path for file in missing))


def _download_to_folder(entry: ModelEntry, source: HubSource, dest: Path, endpoint: str | None,
                        progress: Any | None) -> DownloadResult:
    target = dest / entry.name
    if folder_matches(target, entry):
        return DownloadResult(entry.name, "present", target)
    _check_reachable(endpoint or hub_constants.ENDPOINT, entry)
    created = [folder for folder in (dest, *dest.parents) if not folder.exists()]
    with _os_errors(dest):
        dest.mkdir(parents=True, exist_ok=True)
        staging = dest / f".formnet-download-{entry.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
    downloaded: list[str] = []
    try:
        for file in entry.files:
            # Keep what is already verified; only request what is missing or wrong.
            if file_matches(target / file.path, file):
                staged = staging / entry.subfolder / file.path
                with _os_errors(dest):
                    staged.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(target / file.path, staged)
                continue
            with _hub_errors(entry, source, file, where=dest, endpoint=endpoint):
                path = Path(hf_hub_download(source.repo, entry.repo_path(file),
                                            revision=source.revision, local_dir=str(staging),
                                            endpoint=endpoint,
                                            tqdm_class=_bar_class(progress, entry, file)))
            _verify_or_remove(path, file, entry, source, remove=lambda p: p.unlink(missing_ok=True))
            downloaded.append(file.path)
        staged_model = staging / entry.subfolder
        shutil.rmtree(staged_model / ".cache", ignore_errors=True)  # huggingface_hub's metadata
        with _os_errors(dest):
            _replace_folder(staged_model, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # made for this download and still empty: leave nothing behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return DownloadResult(entry.name, "downloaded", target, tuple(downloaded))


def _replace_folder(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` by renames; an old ``target`` goes only once it is replaced."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    try:
        source.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _verify_or_remove(path: Path, file: ManifestFile, entry: ModelEntry, source: HubSource,
                      remove) -> None:
    if file_matches(path, file):
        return
    remove(path)
    raise DownloadError(f"{entry.repo_path(file)} from {source.repo}@{source.revision[:12]} "
                        "does not match the manifest's sha256 and was removed; the repository "
                        "or revision differs from this formnet release (check --repo/--revision)")


def _remove_cached(pointer: Path) -> None:
    """Remove a hub-cache file: its snapshot link and the blob it points to."""
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


@contextmanager
def _os_errors(where: Path) -> Iterator[None]:
    try:
        yield
    except FormnetError:
        raise
    except OSError as error:
        raise _os_error(error, where) from error


def _os_error(error: OSError, where: Path) -> DownloadError:
    if error.errno == errno.ENOSPC:
        return DownloadError(f"no space left on the device holding {where}; free some space or "
                             "pass --dest DIR on another disk")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DownloadError(f"cannot write to {where} ({error.strerror}); pass --dest DIR or set "
                             "HF_HUB_CACHE to a writable folder")
    return DownloadError(f"cannot write to {where} ({error}); pass --dest DIR")


@contextmanager
def _hub_errors(entry: ModelEntry, source: HubSource, file: ManifestFile, *, where: Path,
                endpoint: str | None) -> Iterator[None]:
    """huggingface_hub's exceptions as one-line :class:`DownloadError` messages with the fix."""
    from huggingface_hub.utils import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                       OfflineModeIsEnabled, RepositoryNotFoundError,
                                       RevisionNotFoundError)

    revision = source.revision or ""
    try:
        yield
    except RevisionNotFoundError as error:
        raise DownloadError(f"revision {revision} not found in hub repository '{source.repo}'; "
                            "check --revision/FORMNET_HUB_REVISION or update formnet") from error
    except RepositoryNotFoundError as error:  # also gated or private repositories
        raise DownloadError(f"hub repository '{source.repo}' not found (or private); check "
                            "--repo/FORMNET_HUB_REPO, or log in with 'hf auth login'") from error
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as error:
        if hub_constants.is_offline_mode():
            raise DownloadError(f"offline mode (HF_HUB_OFFLINE=1) and '{entry.name}' is not "
                                "downloaded; unset HF_HUB_OFFLINE to download it"
                                f"{_LOCAL_MODEL_HINT}") from error
        host = endpoint or hub_constants.ENDPOINT
        raise DownloadError(f"cannot reach the hub at {host} and '{entry.name}' is not "
                            "downloaded; check the connection (or HF_ENDPOINT)"
                            f"{_LOCAL_MODEL_HINT}") from error
    except EntryNotFoundError as error:
        raise DownloadError(f"file {entry.repo_path(file)} not found in '{source.repo}' at "
                            f"revision {revision[:12]}; the repository does not match this "
                            "formnet release (check --repo/--revision)") from error
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", "?")
        raise DownloadError(f"the hub answered HTTP {status} for {entry.repo_path(file)} from "
                            f"'{source.repo}'; retry later") from error
    except FormnetError:
        raise
    except OSError as error:
        raise _os_error(error, where) from error
    except Exception as error:  # transport errors of the HTTP client huggingface_hub uses
        if type(error).__module__.split(".")[0] not in ("httpx", "httpx2", "requests", "urllib3"):
            raise
        host = endpoint or hub_constants.ENDPOINT
        raise DownloadError(f"network error while downloading {entry.repo_path(file)} from "
                            f"{host} ({type(error).__name__}); check the connection and run "
                            "the command again") from error


def _bar_class(progress: Any | None, entry: ModelEntry, file: ManifestFile) -> type:
    """A class with the part of tqdm's interface huggingface_hub's downloader uses."""
    label = f"{entry.name}/{file.path}"

    class RichBar:
        def __init__(self, *_args: Any, total: int | None = None, initial: int = 0,
                     **_kwargs: Any) -> None:
            self.task = (progress.add_task(label, total=total or file.size, completed=initial)
                         if progress is not None else None)

        def update(self, count: int | float = 1) -> None:
            if self.task is not None:
                progress.advance(self.task, count)

        def close(self) -> None:
            pass

        def __enter__(self) -> RichBar:
            return self

        def __exit__(self, *_exc: object) -> None:
            self.close()

    return RichBar
