"""``formnet restore --engine ray`` (:mod:`formnet_cli.batch.ray_engine`) on a local Ray: the
local batch's outputs and JSON, an S3 server on loopback (moto), a worker killed mid-file, the
driver interrupted.

One Ray session (2 CPUs, no dashboard) serves the module, as Ray starts slowly; every run then
starts its workers (each loads torch and the tiny model). Without the ``ray`` extra these tests
are skipped (the command's own message is tested without it); without ``moto[server]`` and
``s3fs`` the S3 test is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cli_helpers import restore
from formnet_cli import api
from formnet_cli import io as imageio
from formnet_cli.batch.ray_engine import _check_model
from formnet_cli.errors import InvalidOptionError
from formnet_cli.options import RestoreOptions

RAY_RUN = ("--sigma", "10", "--json", "--engine", "ray", "--workers", "2")
"""The options of every Ray run here (with the tiny colour model, on the CPU, untiled)."""
LOCAL_RUN = ("--sigma", "10", "--json")
BUCKET = "formnet-test"


@dataclass(frozen=True)
class Cluster:
    address: str
    """The GCS address of the session (``--address`` for another process)."""
    s3: bool
    """Whether the S3 server runs (moto and s3fs installed); its endpoint is in the environment."""


@pytest.fixture(scope="module")
def cluster():
    """A local Ray (2 CPUs, no dashboard) for the module, and an S3 server on loopback whose
    endpoint and test credentials are in the environment of the tests and of Ray's workers."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    with contextlib.ExitStack() as stack:
        environment = stack.enter_context(pytest.MonkeyPatch.context())
        s3 = _start_s3_server(stack, environment)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
        stack.callback(ray.shutdown)
        yield Cluster(ray.get_runtime_context().gcs_address, s3)


def _start_s3_server(stack: contextlib.ExitStack, environment: pytest.MonkeyPatch) -> bool:
    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError:
        return False
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stack.callback(server.stop)
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        environment.setenv(name, value)
    return True


@dataclass(frozen=True)
class Tree:
    source: Path
    local: Path
    """The local batch's outputs of ``source``."""
    summary: dict[str, Any]
    """The local batch's ``--json``."""
    exit_code: int
    notes: str
    """What it said on standard error."""


@pytest.fixture(scope="module")
def tree(tmp_path_factory, tiny_models) -> Tree:
    """A small tree (grey PNG, colour JPEG, 16-bit RGBA PNG, two-page TIFF, a corrupt PNG, a
    text file) and what the local batch makes of it."""
    root = tmp_path_factory.mktemp("tree")
    source = root / "in"
    rng = np.random.default_rng(7)
    (source / "photos").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (24, 30), np.uint8)).save(source / "grey.png")
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), np.uint8)).save(source / "photos" / "colour.jpg")
    imageio.write_image(source / "photos" / "rgba16.png", imageio.LoadedImage(
        rng.random((20, 28, 3), np.float32), alpha=rng.random((20, 28), np.float32), bit_depth=16))
    pages = [Image.fromarray(rng.integers(0, 256, (16, 16), np.uint8)) for _ in range(2)]
    pages[0].save(source / "pages.tif", save_all=True, append_images=pages[1:])
    (source / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (source / "notes.txt").write_text("not an image")
    local = root / "local"
    result = restore(tiny_models.denoise_color, source, "-o", local, "-r", *LOCAL_RUN)
    return Tree(source, local, json.loads(result.stdout), result.exit_code, result.stderr)


def files_below(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) by its relative name, with its bytes."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def comparable(summary: dict[str, Any], source: str, output: str) -> dict[str, Any]:
    """A ``--json`` summary without its timings, its paths relative to ``source`` and ``output``."""
    def relative(path: str | None, root: str) -> str | None:
        return None if path is None else path.replace(root, "<root>", 1)

    kept = {key: value for key, value in summary.items()
            if key not in ("seconds", "megapixels_per_second", "files")}
    kept["files"] = [{**{key: value for key, value in row.items() if key != "seconds"},
                      "input": relative(row["input"], source),
                      "output": relative(row["output"], output)} for row in summary["files"]]
    return kept


@pytest.mark.ray
def test_ray_writes_what_the_local_batch_writes(cluster, tree, tiny_models, tmp_path):
    out = tmp_path / "ray"
    result = restore(tiny_models.denoise_color, tree.source, "-o", out, "-r", *RAY_RUN)
    assert result.exit_code == tree.exit_code == 1, result.output
    assert files_below(out) == files_below(tree.local)
    assert set(files_below(out)) == {"grey.png", "photos/colour.jpg", "photos/rgba16.png", "pages.tif"}
    written = imageio.read_image(out / "photos" / "rgba16.png")
    assert written.bit_depth == 16 and written.alpha is not None
    assert len(imageio.read_pages(out / "pages.tif")) == 2
    summary = json.loads(result.stdout)
    assert comparable(summary, str(tree.source), str(out)) == comparable(
        tree.summary, str(tree.source), str(tree.local))
    assert summary["failed"] == 1 and summary["done"] == 4 and summary["skipped"] == 1
    assert result.stderr == tree.notes


@pytest.mark.ray
def test_s3_inputs_and_outputs(cluster, tree, tiny_models, tmp_path):
    if not cluster.s3:
        pytest.skip("the S3 test needs moto[server] and s3fs")
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.mkdir(BUCKET)
    for name, data in files_below(tree.source).items():
        fs.pipe(f"{BUCKET}/in/{name}", data)
    model = tiny_models.denoise_color
    result = restore(model, f"s3://{BUCKET}/in", "-o", f"s3://{BUCKET}/out/", "-r", *RAY_RUN)
    assert result.exit_code == 1, result.output
    fs.invalidate_cache()
    written = {name.removeprefix(f"{BUCKET}/out/"): fs.cat(name)
               for name in fs.find(f"{BUCKET}/out")}
    assert written == files_below(tree.local)
    summary = json.loads(result.stdout)
    assert comparable(summary, f"s3://{BUCKET}/in", f"s3://{BUCKET}/out") == comparable(
        tree.summary, str(tree.source), str(tree.local))

    again = restore(model, f"s3://{BUCKET}/in", "-o", f"s3://{BUCKET}/out/", "-r", "--skip-existing",
                    *RAY_RUN)
    counts = json.loads(again.stdout)
    assert (counts["done"], counts["skipped"], counts["failed"]) == (0, 5, 1)
    one = restore(model, tree.source / "grey.png", "-o", f"s3://{BUCKET}/one/grey.png",
                  "--sigma", "10", "--engine", "ray", "--workers", "1")
    assert one.exit_code == 0, one.output
    assert fs.cat(f"{BUCKET}/one/grey.png") == (tree.local / "grey.png").read_bytes()
    back = restore(model, f"s3://{BUCKET}/in/photos", "-o", tmp_path / "back", *RAY_RUN)
    assert back.exit_code == 0, back.output
    assert files_below(tmp_path / "back") == {name.removeprefix("photos/"): data for name, data
                                              in files_below(tree.local).items()
                                              if name.startswith("photos/")}


class _WriterKiller:
    """Kills the process writing an output (a worker holding its hidden temporary file open),
    at most ``kills[name]`` times per output name: a worker killed mid-file."""

    def __init__(self, folder: Path, kills: dict[str, int]) -> None:
        self.folder, self.left, self.done = folder, dict(kills), Counter()
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> _WriterKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        while not self._stop.wait(0.005):
            for temporary in self.folder.glob(".*.part"):
                name = temporary.name[1:].rsplit(".", 2)[0]
                if self.left.get(name, 0) == 0 or temporary.name in self.seen:
                    continue
                for process in psutil.process_iter(["cmdline"]):
                    with contextlib.suppress(psutil.Error):
                        if (process.info["cmdline"] or [""])[0].startswith("ray::") and any(
                                Path(held.path) == temporary for held in process.open_files()):
                            process.kill()
                            self.seen.add(temporary.name)
                            self.left[name] -= 1
                            self.done[name] += 1


@pytest.mark.ray
def test_a_worker_killed_mid_file_is_restarted_and_its_file_redone(cluster, tiny_models, tmp_path):
    source, out = tmp_path / "in", tmp_path / "ray"
    source.mkdir()
    rng = np.random.default_rng(3)
    for name, side in (("a.png", 32), ("once.png", 1400), ("twice.png", 1400), ("z.png", 32)):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(source / name)
    model = tiny_models.denoise_color
    local = restore(model, source, "-o", tmp_path / "local", *LOCAL_RUN)
    assert local.exit_code == 0, local.output
    with _WriterKiller(out, {"once.png": 1, "twice.png": 2}) as killer:
        result = restore(model, source, "-o", out, *RAY_RUN)
    assert killer.done == {"once.png": 1, "twice.png": 2}
    assert result.exit_code == 1, result.output
    rows = {Path(row["input"]).name: row for row in json.loads(result.stdout)["files"]}
    assert len(json.loads(result.stdout)["files"]) == 4  # one row per file: none twice
    assert [rows[name]["status"] for name in ("a.png", "once.png", "twice.png", "z.png")] == [
        "done", "done", "failed", "done"]
    assert rows["twice.png"]["reason"] == ("its worker process died 2 times while restoring it "
                                           "(killed: out of memory, most likely); not written")
    assert f"{source / 'once.png'}: restored again (its worker process died while restoring it)" \
        in result.stderr
    expected = files_below(tmp_path / "local")
    del expected["twice.png"]
    assert files_below(out) == expected  # the redone file whole, no temporary file left


@pytest.mark.ray
def _default_sigint() -> None:
    """SIGINT back to its default in the driver: a suite started in the background by a shell
    (``nohup pytest &``) passes on an ignored SIGINT, and Python then ignores Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_driver_leaves_whole_outputs_and_skip_existing_finishes(
        cluster, tiny_models, tmp_path):
    source, out = tmp_path / "in", tmp_path / "ray"
    source.mkdir()
    rng = np.random.default_rng(5)
    for number in range(16):
        Image.fromarray(rng.integers(0, 256, (500, 500, 3), np.uint8)).save(source / f"{number:02}.png")
    model = tiny_models.denoise_color
    assert restore(model, source, "-o", tmp_path / "local", *LOCAL_RUN).exit_code == 0
    expected = files_below(tmp_path / "local")
    command = [sys.executable, "-c", "from formnet_cli.cli import main; main()", "restore",
               str(source), "-o", str(out), "--model", str(model), "--device", "cpu", "--tile",
               "none", *RAY_RUN, "--address", cluster.address]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                              preexec_fn=_default_sigint)
    deadline = time.monotonic() + 240
    while not any(path.suffix == ".png" and not path.name.startswith(".")
                  for path in (out.iterdir() if out.is_dir() else ())):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.02)
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=240)
    assert driver.returncode == 130, stderr
    summary = json.loads(stdout)
    statuses = Counter(row["status"] for row in summary["files"])
    assert summary["interrupted"] and statuses["done"] >= 1
    assert statuses["not_started"] + statuses["interrupted"] >= 1
    written = files_below(out)
    # A worker still writing when the driver's wait for its end ran out (a loaded machine)
    # leaves the temporary file of that write, never a partial output; the rerun removes it.
    temporaries = [name for name in written if name.startswith(".")]
    assert all(re.fullmatch(r"\.\d\d\.png\.[0-9a-f]{8}\.part", name) for name in temporaries)
    whole = {name: data for name, data in written.items() if name not in temporaries}
    assert all(name.endswith(".png") for name in whole)
    assert all(data == expected[name] for name, data in whole.items())  # whole outputs only
    for row in summary["files"]:
        name = Path(row["input"]).name
        assert (name in whole) == (row["status"] == "done") or row["status"] == "interrupted"

    for name in temporaries:  # older than the rerun's process, as for a rerun from a shell
        os.utime(out / name, (0, 0))  # (this one runs in pytest's process, started before)
    rerun = restore(model, source, "-o", out, "--skip-existing", *RAY_RUN)
    assert rerun.exit_code == 0, rerun.output
    counts = json.loads(rerun.stdout)
    assert (counts["skipped"], counts["done"]) == (len(whole), 16 - len(whole))
    assert sorted(Path(path).name for path in counts["leftovers_removed"]) == sorted(temporaries)
    assert files_below(out) == expected


def test_a_ray_run_removes_what_a_killed_run_left(cluster, tiny_models, tmp_path):
    """A temporary file a killed write left (a worker killed, SIGKILL) is removed by the next
    run and listed; one written after that run started (another live run's) is left alone."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(source / "a.png")
    out.mkdir()
    stale = out / ".a.png.0123abcd.part"
    stale.write_bytes(b"half a png")
    os.utime(stale, (0, 0))  # before this (pytest's) process started
    result = restore(tiny_models.denoise_color, source, "-o", out, *RAY_RUN)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["leftovers_removed"] == [str(stale)] and summary["done"] == 1
    assert sorted(path.name for path in out.iterdir()) == ["a.png"]


# -- without Ray ---------------------------------------------------------------------------------
def test_without_the_extra_the_command_says_what_to_install(tiny_models, gray_png, tmp_path,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "out.png", "--engine", "ray")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --engine ray needs the ray extra (ray is not "
                                     "installed): pip install 'formnet[ray]'")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("arguments, expected", [
    (["--workers", "2"], "--workers: options of --engine ray"),
    (["--address", "auto", "--gpus-per-worker", "1"], "--address, --gpus-per-worker: options of --engine ray"),
    (["--engine", "ray", "--threads", "2"], "--threads: with --engine ray, give --threads-per-worker"),
])
def test_options_of_the_other_engine_are_usage_errors(tiny_models, gray_png, tmp_path, arguments,
                                                      expected):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "out.png", *arguments)
    assert result.exit_code == 2 and expected in result.stderr


def test_store_urls_need_the_ray_engine(tiny_models, tmp_path):
    result = restore(tiny_models.denoise_gray, "s3://bucket/scans", "-o", tmp_path)
    assert result.exit_code == 2
    assert "s3://bucket/scans: object-store URLs are read and written by --engine ray" in result.stderr


def test_a_worker_loads_the_model_given_else_each_step_default_before_its_first_file(
        tiny_models, monkeypatch):
    loads = []
    load_model = api.load_model
    monkeypatch.setattr(api, "load_model", lambda model=None, **options: loads.append(
        (model, options["task"], options["backend"])) or load_model(model, **options))
    _check_model(RestoreOptions(device="cpu"))  # auto: the steps it may run
    _check_model(RestoreOptions("denoise,sr", sigma=10, scale=2, device="cpu"))
    _check_model(RestoreOptions("jpeg,denoise", model=tiny_models.jpeg_gray, device="cpu"))
    assert loads == [(None, "jpeg", "auto"), (None, "denoise", "auto"),
                     (None, "denoise", "auto"), (None, "sr", "auto"),
                     (str(tiny_models.jpeg_gray), None, "auto")]
    with pytest.raises(InvalidOptionError, match="restores 'jpeg', which is not a step of"):
        _check_model(RestoreOptions("denoise,sr", scale=2, model=tiny_models.jpeg_gray,
                                    device="cpu"))


def test_a_dry_run_needs_no_ray(tiny_models, gray_png, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = restore(tiny_models.denoise_gray, gray_png.parent, "-o", tmp_path / "out", "--engine",
                     "ray", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{gray_png} -> {tmp_path / 'out' / 'photo.png'}",
                                          "would restore 1, skip 0; failed 0"]
