"""Downloads through the real huggingface_hub code against a local fake hub (no internet).

The fake hub is ``http.server`` on 127.0.0.1 serving ``/{repo}/resolve/{revision}/{path}``
(HEAD and GET) with the headers huggingface_hub relies on: ``X-Repo-Commit``, ``ETag`` and
``Content-Length``; a 404 carries ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) the way the hub does. Every request is counted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from huggingface_hub import constants, try_to_load_from_cache
from typer.testing import CliRunner

import formnet_cli.hub.download as hub
from formnet_cli.hub import manifest as manifest_module
from formnet_cli.hub import registry as registry
from formnet_cli.hub.checkpoint import load_checkpoint, save_checkpoint
from formnet_cli.config import ModelConfig, NetworkConfig
from formnet_cli.errors import DownloadError, InvalidOptionError
from formnet_cli.models import FormResNet

REPO = "formnet/formnet-weights"
COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
NAME = "denoise-gray"
CHECK_REACHABLE = hub._check_reachable


class FakeHub:
    """Serves the files under ``root`` as repository ``repo`` at commit ``commit``."""

    def __init__(self, root: Path, repo: str = REPO, commit: str = COMMIT) -> None:
        self.root, self.repo, self.commit = root, repo, commit
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                fake._answer(self, body=False)

            def do_GET(self) -> None:
                fake._answer(self, body=True)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def downloads(self) -> int:
        return sum(method == "GET" for method, _ in self.requests)

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append((handler.command, path))
        parts = path.lstrip("/").split("/")
        repo, revision = "/".join(parts[:2]), parts[3] if len(parts) > 3 else ""
        filename = "/".join(parts[4:])
        headers: dict[str, str] = {}
        if len(parts) < 5 or parts[2] != "resolve" or repo != self.repo:
            status, headers["X-Error-Code"] = 404, "RepoNotFound"
        elif revision not in (self.commit, "main"):
            status, headers["X-Error-Code"] = 404, "RevisionNotFound"
        elif not (self.root / filename).is_file():
            status, headers["X-Error-Code"] = 404, "EntryNotFound"
            headers["X-Repo-Commit"] = self.commit
        else:
            status = 200
        data = (self.root / filename).read_bytes() if status == 200 else b"not found"
        handler.send_response(status)
        if status == 200:
            headers["X-Repo-Commit"] = self.commit
            headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
        headers["Content-Length"] = str(len(data))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)


def make_checkpoint(folder: Path) -> Path:
    config = ModelConfig(residual=NetworkConfig(kind="plain", widths=(4,), depth=2, unshuffle=1))
    return save_checkpoint(FormResNet(config), folder, folder.name, card="# tiny\n",
                           scores={"set12_sigma25_psnr": 30.5})


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """The repository's content: ``denoise-gray/{config.json, model.safetensors, README.md}``."""
    root = tmp_path_factory.mktemp("repo")
    make_checkpoint(root / NAME)
    return root


@pytest.fixture
def fake_hub(published):
    server = FakeHub(published)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    for name in ("FORMNET_WEIGHTS_DIR", "FORMNET_HUB_REPO", "FORMNET_HUB_REVISION", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(hub, "_check_reachable", lambda endpoint, entry: None)  # no DNS query


def test_a_hub_that_does_not_resolve_fails_at_once(published, tmp_path, monkeypatch):
    def no_network(host, port):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(hub, "_check_reachable", CHECK_REACHABLE)
    monkeypatch.setattr(hub.socket, "getaddrinfo", no_network)
    requests = []
    monkeypatch.setattr(hub, "hf_hub_download", lambda *args, **kwargs: requests.append(args))
    manifest = manifest_for(published, tmp_path / "weights")
    with pytest.raises(DownloadError) as caught:
        hub.download_models([NAME], manifest=manifest, dest=tmp_path / "new" / "dest")
    assert one_line(caught.value).startswith(
        f"cannot reach the hub at https://huggingface.co (huggingface.co does not resolve: no "
        f"network?) and '{NAME}' is not downloaded")
    assert requests == [] and not (tmp_path / "new").exists()


def test_a_hub_that_refuses_connections_fails_at_once(published, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a local port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(hub, "_check_reachable", CHECK_REACHABLE)
    requests = []
    monkeypatch.setattr(hub, "hf_hub_download", lambda *args, **kwargs: requests.append(args))
    manifest = manifest_for(published, tmp_path / "weights")
    with pytest.raises(DownloadError) as caught:
        hub.download_models([NAME], manifest=manifest, endpoint=f"http://127.0.0.1:{port}")
    assert one_line(caught.value).startswith(
        f"cannot reach the hub at http://127.0.0.1:{port} (127.0.0.1:{port}: connection refused) "
        f"and '{NAME}' is not downloaded")
    assert requests == []


@pytest.mark.parametrize("dest", [None, "dest"])
def test_models_already_downloaded_need_no_network(published, fake_hub, tmp_path, monkeypatch, dest):
    manifest = manifest_for(published, tmp_path / "weights")
    dest = dest and tmp_path / dest
    first = hub.download_models([NAME], manifest=manifest, dest=dest, endpoint=fake_hub.url)
    assert first[0].status == "downloaded"
    monkeypatch.setattr(hub, "_check_reachable", CHECK_REACHABLE)
    monkeypatch.setattr(hub.socket, "getaddrinfo", lambda host, port: pytest.fail("DNS query"))
    assert hub.download_models([NAME], manifest=manifest, dest=dest)[0].status == "present"


def test_a_repository_without_a_revision_is_refused(published, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights", revision=None)
    with pytest.raises(DownloadError, match="pinned commit only; give --revision COMMIT"):
        hub.download_models([NAME], manifest=manifest, repo="someone/formnet")


def manifest_for(published: Path, folder: Path, *, revision: str | None = COMMIT,
                 tamper: str | None = None) -> manifest_module.Manifest:
    """A manifest listing the published model; ``tamper`` gives one file a wrong sha256."""
    entry = manifest_module.manifest_entry_for(published / NAME, default=True, revision=revision)
    for file in entry["files"]:
        if file["path"] == tamper:
            file["sha256"] = "0" * 64
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"schema_version": 1, "hub": {"repo": REPO, "revision": None},
                                "models": [entry]}))
    return manifest_module.load_manifest(path)


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and message
    return message


def test_fresh_download_lands_verified_in_the_cache_and_resolves(published, fake_hub, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights")
    [result] = hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    assert result.status == "downloaded"
    assert sorted(result.files_downloaded) == ["README.md", "config.json", "model.safetensors"]
    assert fake_hub.downloads == 3
    for file in manifest.require(NAME).files:
        cached = try_to_load_from_cache(REPO, f"{NAME}/{file.path}", revision=COMMIT)
        assert isinstance(cached, str)
        assert hashlib.sha256(Path(cached).read_bytes()).hexdigest() == file.sha256
    found = registry.resolve_model(None, "denoise", 1, manifest=manifest)
    assert (found.name, found.source, found.path) == (NAME, "cache", result.path)
    model, info = load_checkpoint(found.path)
    assert info.scores == {"set12_sigma25_psnr": 30.5}


def test_second_run_makes_no_request(published, fake_hub, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights")
    hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    before = len(fake_hub.requests)
    [again] = hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    assert again.status == "present"
    assert len(fake_hub.requests) == before


def test_hash_mismatch_removes_the_file_and_is_an_error(published, fake_hub, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights", tamper="model.safetensors")
    with pytest.raises(DownloadError) as caught:
        hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    assert "does not match the manifest's sha256 and was removed" in one_line(caught.value)
    assert try_to_load_from_cache(REPO, f"{NAME}/model.safetensors", revision=COMMIT) is None
    blobs = tmp_path / "hub-cache" / f"models--{REPO.replace('/', '--')}" / "blobs"
    weights_sha = hashlib.sha256((published / NAME / "model.safetensors").read_bytes()).hexdigest()
    assert not (blobs / weights_sha).exists()
    with pytest.raises(registry.ModelNotFoundError):  # never visible as a usable model
        registry.resolve_model(NAME, manifest=manifest)


def test_download_into_a_folder_is_atomic_and_not_repeated(published, fake_hub, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights")
    dest = tmp_path / "dest"
    [result] = hub.download_models([NAME], dest=dest, manifest=manifest, endpoint=fake_hub.url)
    assert (result.status, result.path) == ("downloaded", dest / NAME)
    assert sorted(p.name for p in dest.iterdir()) == [NAME]  # no staging folder left behind
    assert sorted(p.name for p in (dest / NAME).iterdir()) == ["README.md", "config.json",
                                                               "model.safetensors"]
    requests = len(fake_hub.requests)
    [again] = hub.download_models([NAME], dest=dest, manifest=manifest, endpoint=fake_hub.url)
    assert again.status == "present" and len(fake_hub.requests) == requests
    found = registry.resolve_model(NAME, weights_dir=dest, manifest=manifest)
    assert (found.source, found.path) == ("folder", dest / NAME)


def test_folder_download_with_a_bad_hash_leaves_nothing_visible(published, fake_hub, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights", tamper="model.safetensors")
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError):
        hub.download_models([NAME], dest=dest, manifest=manifest, endpoint=fake_hub.url)
    assert not dest.exists()  # made for the download, removed with it
    dest.mkdir()
    with pytest.raises(DownloadError):
        hub.download_models([NAME], dest=dest, manifest=manifest, endpoint=fake_hub.url)
    assert list(dest.iterdir()) == []  # the user's folder stays, empty


@pytest.mark.parametrize("options, expected", [
    ({"repo": "someone/missing"}, "hub repository 'someone/missing' not found"),
    ({"revision": "f" * 40}, f"revision {'f' * 40} not found in hub repository"),
])
def test_missing_repository_or_revision_is_a_one_line_error(published, fake_hub, tmp_path,
                                                            options, expected):
    manifest = manifest_for(published, tmp_path / "weights")
    with pytest.raises(DownloadError) as caught:
        hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url, **options)
    assert one_line(caught.value).startswith(expected)
    assert fake_hub.downloads == 0


def test_missing_file_is_a_one_line_error(published, fake_hub, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights")
    entry = manifest.require(NAME)
    renamed = manifest_module.ModelEntry(**{**entry.__dict__, "subfolder": "gone"})
    with pytest.raises(DownloadError) as caught:
        hub.download_model(renamed, manifest=manifest, endpoint=fake_hub.url)
    assert one_line(caught.value).startswith("file gone/config.json not found in "
                                             "'formnet/formnet-weights'")


def test_environment_overrides_repository_and_revision(published, fake_hub, tmp_path,
                                                      monkeypatch):
    manifest = manifest_for(published, tmp_path / "weights")
    monkeypatch.setenv("FORMNET_HUB_REPO", "mirror/weights")
    with pytest.raises(DownloadError, match="'mirror/weights' not found"):
        hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    monkeypatch.delenv("FORMNET_HUB_REPO")
    monkeypatch.setenv("FORMNET_HUB_REVISION", "main")  # a branch could move: a commit only
    with pytest.raises(InvalidOptionError, match="FORMNET_HUB_REVISION must be a full 40-digit commit"):
        hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    with pytest.raises(InvalidOptionError, match="--revision must be a full 40-digit commit"):
        hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url, revision="v1.0")
    monkeypatch.setenv("FORMNET_HUB_REVISION", COMMIT)
    [result] = hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    assert result.status == "downloaded"


def test_offline_uses_the_cache_and_otherwise_says_the_fix(published, fake_hub, tmp_path,
                                                           monkeypatch):
    manifest = manifest_for(published, tmp_path / "weights")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError) as caught:
        hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    assert one_line(caught.value) == (
        f"offline mode (HF_HUB_OFFLINE=1) and '{NAME}' is not downloaded; unset HF_HUB_OFFLINE "
        "to download it, or restore with a model folder you have (formnet restore --model PATH)")
    assert fake_hub.requests == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests = len(fake_hub.requests)
    [result] = hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url)
    assert result.status == "present"
    assert registry.resolve_model(NAME, manifest=manifest).source == "cache"
    assert len(fake_hub.requests) == requests


def test_unreachable_hub_says_the_fix(published, tmp_path, monkeypatch):
    import huggingface_hub.utils._http as hub_http

    monkeypatch.setattr(hub_http.time, "sleep", lambda seconds: None)  # skip retry back-off
    manifest = manifest_for(published, tmp_path / "weights")
    with pytest.raises(DownloadError) as caught:  # nothing listens on port 9 of localhost
        hub.download_models([NAME], manifest=manifest, endpoint="http://127.0.0.1:9")
    assert one_line(caught.value).startswith("cannot reach the hub at http://127.0.0.1:9")


def test_unpublished_bundled_model_needs_no_network(published, tmp_path):
    weights = tmp_path / "weights"
    manifest = manifest_for(published, weights, revision=None)
    make_checkpoint(weights / NAME)
    [result] = hub.download_models([NAME], manifest=manifest, endpoint="http://127.0.0.1:9")
    assert (result.status, result.path) == ("bundled", weights / NAME)
    (weights / NAME / "config.json").unlink()
    with pytest.raises(DownloadError, match="not published on the hub yet and is not bundled"):
        hub.download_models([NAME], manifest=manifest, endpoint="http://127.0.0.1:9")


@pytest.mark.parametrize("code, expected", [
    (errno.ENOSPC, "no space left on the device holding"),
    (errno.EACCES, "cannot write to"),
])
def test_disk_errors_become_one_line_errors(published, tmp_path, monkeypatch, code, expected):
    manifest = manifest_for(published, tmp_path / "weights")

    def fail(*args, **kwargs):
        raise OSError(code, "simulated")

    monkeypatch.setattr(hub, "hf_hub_download", fail)
    with pytest.raises(DownloadError) as caught:
        hub.download_models([NAME], manifest=manifest)
    assert one_line(caught.value).startswith(expected)


def test_unknown_model_name_is_refused_before_any_download(published, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights")
    with pytest.raises(registry.ModelNotFoundError, match=r"unknown model 'sr-x4' \(known: "):
        hub.download_models([NAME, "sr-x4"], manifest=manifest)


# -- the commands ----------------------------------------------------------------------------
@pytest.fixture
def cli(published, tmp_path, monkeypatch):
    """A Typer app with the two commands, reading a temporary manifest."""
    import typer

    from formnet_cli.cli import hub as cli_hub

    manifest = manifest_for(published, tmp_path / "weights")
    monkeypatch.setattr(manifest_module, "load_manifest", lambda path=None: manifest)
    monkeypatch.setattr(registry, "load_manifest", lambda path=None: manifest)
    monkeypatch.setenv("COLUMNS", "200")
    from formnet_cli.cli.app import FormnetGroup

    app = typer.Typer(cls=FormnetGroup)  # the main app's one-line error handling
    cli_hub.register(app)
    return app


def test_cli_download_then_models_table(cli, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    runner = CliRunner()
    result = runner.invoke(cli, ["download-weights", NAME])
    assert result.exit_code == 0, result.output
    assert f"{NAME}: downloaded 3 file(s), sha256 verified" in result.output
    again = runner.invoke(cli, ["download-weights"])
    assert f"{NAME}: already downloaded and verified" in again.output
    table = runner.invoke(cli, ["models"])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if NAME in line)
    assert all(word in row for word in ("denoise", "gray", "113", "cache")), row
    assert "30.50" in table.output.split("PSNR (dB) measured on each model card:")[1]


def test_card_scores_are_grouped_one_line_per_set():
    from formnet_cli.cli.hub import score_lines

    assert score_lines({"BSD68 sigma 15": 31.72, "BSD68 sigma 25": 29.291, "Set5 x2": 37.57,
                        "Set5 x3": 33.8, "PSNR": 30.0}) == [
        "BSD68 sigma 15/25: 31.72 / 29.29", "Set5 x2/x3: 37.57 / 33.80", "PSNR: 30.00"]


def test_cli_errors_are_one_line_with_exit_code_one(cli, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    result = CliRunner().invoke(cli, ["download-weights", NAME, "--repo", "someone/missing"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: hub repository 'someone/missing'")
    monkeypatch.setenv("FORMNET_DEBUG", "1")
    result = CliRunner().invoke(cli, ["download-weights", NAME, "--repo", "someone/missing"])
    assert isinstance(result.exception, DownloadError)


def test_progress_shows_one_bar_per_file_with_its_bytes(published, fake_hub, tmp_path):
    import io

    from rich.console import Console
    from rich.progress import Progress

    manifest = manifest_for(published, tmp_path / "weights")
    console = Console(file=io.StringIO(), force_terminal=True)
    with Progress(console=console) as progress:
        hub.download_models([NAME], manifest=manifest, endpoint=fake_hub.url, progress=progress)
    done = {task.description: (task.completed, task.total) for task in progress.tasks}
    sizes = {f"{NAME}/{file.path}": (file.size, file.size)
             for file in manifest.require(NAME).files}
    assert done == sizes


def test_a_corrupt_file_is_fetched_again_and_only_that_one(published, fake_hub, tmp_path):
    manifest = manifest_for(published, tmp_path / "weights")
    dest = tmp_path / "dest"
    for target in (dest, None):  # (a folder download may copy from the hub cache)
        [first] = hub.download_models([NAME], dest=target, manifest=manifest,
                                      endpoint=fake_hub.url)
        weights = (first.path / "model.safetensors").resolve()
        weights.write_bytes(weights.read_bytes()[:-1] + b"x")
        if target is None:
            with pytest.raises(DownloadError, match="does not match the manifest's sha256"):
                registry.resolve_model(NAME, manifest=manifest)
        else:
            assert not hub.folder_matches(first.path, manifest.require(NAME))
        downloads = fake_hub.downloads
        [again] = hub.download_models([NAME], dest=target, manifest=manifest,
                                      endpoint=fake_hub.url)
        assert (again.status, again.files_downloaded) == ("downloaded", ("model.safetensors",))
        assert fake_hub.downloads == downloads + 1
        assert hub.folder_matches(again.path, manifest.require(NAME))


def test_cli_hides_huggingface_hub_retry_chatter(cli, monkeypatch):
    """huggingface_hub logs a warning per connection retry (5 of them when offline); the
    command's only output is its one-line error."""
    import logging

    retry_logger = logging.getLogger("huggingface_hub.utils._http")
    logged: list[logging.LogRecord] = []

    def retry_then_fail(*args, **kwargs):
        retry_logger.warning("Retrying in 1s [Retry 1/5].")
        raise DownloadError("cannot reach the hub at https://hub.example")

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record)

    monkeypatch.setattr(hub, "download_models", retry_then_fail)
    level = logging.getLogger("huggingface_hub").level
    handler = Collect()
    retry_logger.addHandler(handler)
    try:
        result = CliRunner().invoke(cli, ["download-weights", NAME])
    finally:
        retry_logger.removeHandler(handler)
    assert result.exit_code == 1
    assert result.output.strip() == "error: cannot reach the hub at https://hub.example"
    assert logged == []
    assert logging.getLogger("huggingface_hub").level == level  # restored after
