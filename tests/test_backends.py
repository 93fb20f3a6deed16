"""``--backend``: the ONNX runtimes restore as torch does, through the same tiling, without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import formnet_cli
from formnet_cli import api
from formnet_cli.cli.app import app
from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.hub.checkpoint import save_checkpoint
from formnet_cli.inference import backends, tiling
from formnet_cli.inference.onnx_graph import SHIPPED_GRAPH_FILE, cached_graph_path, weights_sha256

pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (formnet[onnx])")
RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(
    not backends.runtime_installed(name), reason=f"{name} is not installed"))
    for name in backends.RUNTIMES]
runner = CliRunner()


def noisy_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)


# -- the same result as torch ------------------------------------------------------------
@pytest.mark.parametrize("backend", RUNTIMES)
def test_a_runtime_restores_as_torch_tiled_untiled_with_a_level_map_and_ensemble(
        tiny_models, backend):
    network = backends.open_network(tiny_models.denoise_gray, backend)
    torch_network = _torch_network(tiny_models.denoise_gray)
    image = noisy_image((1, 45, 67))
    level_map = np.broadcast_to(np.linspace(0.02, 0.2, 67, dtype=np.float32), (1, 45, 67)).copy()
    for options in ({"tile": None}, {"tile": 24, "tile_overlap": 4}, {"ensemble": 4, "tile": 32}):
        expected = tiling.restore_array(torch_network, image, level_map, **options)
        restored = tiling.restore_array(network, image, level_map, **options)
        assert np.abs(restored - expected).max() < 1e-4, options
    untiled = tiling.restore_array(network, image, level_map, tile=None)
    tiled = tiling.restore_array(network, image, level_map, tile=24, tile_overlap=4)
    assert np.abs(tiled - untiled).max() < 1e-4
    assert np.abs(untiled - image).mean() > 0.01  # the model does change the image


def test_openvino_compiles_a_graph_once_and_remembers_its_metadata(tiny_models, monkeypatch):
    openvino = pytest.importorskip("openvino")
    path = backends.graph_for(tiny_models.denoise_gray)
    monkeypatch.setattr(backends, "_SESSIONS", {})
    first = backends.open_network(tiny_models.denoise_gray, "openvino")
    cache = backends._openvino_cache()
    assert cache is not None and backends._remembered_metadata(cache, path) is not None

    class NoParsing(openvino.Core):
        def read_model(self, *args, **kwargs):
            raise AssertionError("the graph was parsed again")

    monkeypatch.setattr(openvino, "Core", NoParsing)
    monkeypatch.setattr(backends, "_SESSIONS", {})
    second = backends.open_network(tiny_models.denoise_gray, "openvino")
    assert second.info == first.info
    image, level = noisy_image((1, 1, 32, 40)), np.full(1, 0.1, np.float32)
    assert np.abs(second.run(image, level) - first.run(image, level)).max() < 1e-6
    path.touch()  # another file now: read again
    monkeypatch.setattr(backends, "_SESSIONS", {})
    with pytest.raises(AssertionError, match="parsed again"):
        backends.open_network(tiny_models.denoise_gray, "openvino")


@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("model, task, levels, shape", [
    ("denoise_gray", "denoise", {"sigma": "auto"}, (64, 80, 3)),   # a gray model per channel
    ("denoise_color", "denoise", {"sigma": 20}, (33, 41, 3)),
    ("jpeg_gray", "jpeg", {"quality": 30}, (33, 41)),
    ("sr_gray", "sr", {"scale": 2}, (21, 17, 3)),                   # Y of the enlarged image
])
def test_every_task_restores_as_under_torch(tiny_models, backend, model, task, levels, shape):
    image = noisy_image(shape, seed=3)
    folder = getattr(tiny_models, model)
    options = dict(task=task, model=folder, ensemble=2, tile=32, **levels)
    expected = formnet_cli.restore(image, backend="torch", **options)
    restored = formnet_cli.restore(image, backend=backend, **options)
    assert restored.shape == expected.shape
    assert np.abs(restored - expected).max() < 1e-4


@pytest.mark.parametrize("backend", RUNTIMES)
def test_the_command_line_writes_what_torch_writes(tiny_models, tmp_path, backend):
    source = tmp_path / "noisy.png"
    Image.fromarray((noisy_image((37, 50)) * 255).round().astype(np.uint8)).save(source)
    for name in ("torch", backend):
        result = runner.invoke(app, ["restore", str(source), "-o", str(tmp_path / f"{name}.png"),
                                     "--model", str(tiny_models.denoise_gray), "--sigma", "25",
                                     "--backend", name, "--threads", "1"])
        assert result.exit_code == 0, result.output
    by_torch, by_runtime = (np.asarray(Image.open(tmp_path / f"{name}.png"), dtype=int)
                            for name in ("torch", backend))
    assert np.abs(by_torch - by_runtime).max() <= 1  # float rounding at a grey level's edge


@pytest.fixture
def tiny_defaults(tiny_models, tmp_path, monkeypatch) -> Path:
    """The tiny models as the gray denoise and JPEG defaults (the weights folder comes first)."""
    folder = tmp_path / "weights"
    for name, model in (("denoise-gray", tiny_models.denoise_gray),
                        ("jpeg-gray", tiny_models.jpeg_gray)):
        shutil.copytree(model, folder / name)
    monkeypatch.setenv("FORMNET_WEIGHTS_DIR", str(folder))
    return folder


@pytest.mark.parametrize("backend", RUNTIMES)
def test_auto_and_a_chain_run_every_step_under_the_runtime(tiny_defaults, monkeypatch, backend):
    opened = []
    open_network = backends.open_network
    monkeypatch.setattr(backends, "open_network",
                        lambda folder, name: opened.append((Path(folder).name, name))
                        or open_network(folder, name))
    noisy = noisy_image((96, 96))
    chain = dict(tasks=["jpeg", "denoise"], quality=30, sigma=15, strength=0.5, tile=32)
    for options in ({}, chain):  # auto finds the noise (and only the noise); a chain of two
        expected = formnet_cli.restore_with_info(noisy, backend="torch", **options)
        opened.clear()
        restored = formnet_cli.restore_with_info(noisy, backend=backend, **options)
        tasks = [step.task for step in restored.steps]
        assert tasks == [step.task for step in expected.steps] == options.get("tasks", ["denoise"])
        assert {name for name, _ in opened} == {f"{task}-gray" for task in tasks}
        assert {name for _, name in opened} == {backend}
        assert np.abs(restored.image - expected.image).max() < 1e-4
        assert np.abs(restored.image - noisy).mean() > 0.01


def torch_no_grad():
    import torch

    return torch.no_grad()


def _torch_network(folder: Path):
    from formnet_cli.inference.engine import TorchNetwork

    return TorchNetwork.for_cpu(api.load_model(folder, device="cpu").model)


# -- no torch ------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["denoise", "auto"])
def test_restore_under_onnxruntime_does_not_import_torch(tiny_models, tiny_defaults, tmp_path,
                                                          task):
    pytest.importorskip("onnxruntime")
    backends.graph_for(tiny_models.denoise_gray)  # cached (exported once per session)
    source = tmp_path / "noisy.png"
    Image.fromarray((noisy_image((96, 96)) * 255).astype(np.uint8)).save(source)
    given = (["--model", str(tiny_models.denoise_gray), "--sigma", "25"] if task == "denoise"
             else [])  # auto: decides from the image (denoise, with the default model)
    script = (
        "import sys\n"
        "from formnet_cli.cli.app import main\n"
        "sys.argv = ['formnet', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('hub client imported:', 'huggingface_hub.file_download' in sys.modules)\n"
        "    print('torch imported:', 'torch' in sys.modules)\n")
    environment = {**os.environ, "PYTHONPATH": str(Path(formnet_cli.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", script, "restore", str(source), "-o", str(tmp_path / "out.png"),
         *given, "--backend", "onnxruntime"],
        capture_output=True, text=True, env=environment, timeout=300)
    assert "restored 1" in result.stdout, result.stderr
    assert (f"{source}: denoise sigma " in result.stderr) == (task == "auto")  # auto says why
    assert result.stdout.strip().endswith("torch imported: False")
    assert "hub client imported: False" in result.stdout  # bundled weights: no HTTP client either
    assert (tmp_path / "out.png").is_file()


# -- the graph: exported once, cached by weights, or shipped -----------------------------------
def test_the_graph_is_cached_by_the_weights_sha256_and_exported_once(tiny_models, tmp_path):
    pytest.importorskip("onnxruntime")
    path = backends.graph_for(tiny_models.denoise_gray)
    assert path == cached_graph_path(weights_sha256(tiny_models.denoise_gray))
    stamp = path.stat().st_mtime_ns
    copy = shutil.copytree(tiny_models.denoise_gray, tmp_path / "same-weights")
    assert backends.graph_for(copy) == path and path.stat().st_mtime_ns == stamp  # shared
    other = shutil.copytree(tiny_models.denoise_gray, tmp_path / "other-weights")
    model = api.load_model(other, device="cpu").model
    with torch_no_grad():
        next(model.parameters()).add_(0.01)
    save_checkpoint(model, other, "other-weights")
    assert backends.find_graph(other) is None  # new weights: a new graph, not the old one


def test_a_shipped_graph_is_used_only_if_made_from_the_folder_weights(tiny_models, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = shutil.copytree(tiny_models.denoise_gray, tmp_path / "with-graph")
    shutil.copy(backends.graph_for(tiny_models.denoise_gray), folder / SHIPPED_GRAPH_FILE)
    assert backends.find_graph(folder) == folder / SHIPPED_GRAPH_FILE
    assert backends.open_network(folder, "onnxruntime").info.descriptor.channels == 1
    stale = shutil.copytree(tiny_models.jpeg_gray, tmp_path / "stale")
    shutil.copy(folder / SHIPPED_GRAPH_FILE, stale / SHIPPED_GRAPH_FILE)
    with pytest.raises(FormnetError, match="exported from other weights"):
        backends.open_network(stale, "onnxruntime")


# -- choosing ------------------------------------------------------------------------------
def test_auto_picks_the_fastest_installed_runtime_on_a_cpu_and_torch_where_it_must(monkeypatch):
    monkeypatch.delenv(backends.BACKEND_ENV)
    monkeypatch.setattr(backends, "_gpu_available", lambda: False)
    installed = [name for name in backends.CPU_PREFERENCE if backends.runtime_installed(name)]
    assert backends.choose_backend("auto") == (installed[0] if installed else "torch")
    assert backends.choose_backend("auto", precision="bf16") == "torch"
    assert backends.choose_backend("auto", formatter="bm3d") == "torch"
    assert backends.choose_backend("auto", device="cuda") == "torch"
    monkeypatch.setattr(backends, "_gpu_available", lambda: True)
    assert backends.choose_backend("auto") == "torch"
    assert backends.choose_backend("auto", device="cpu") == (installed[0] if installed else "torch")
    monkeypatch.setenv(backends.BACKEND_ENV, "torch")
    assert backends.choose_backend("auto", device="cpu") == "torch"


@pytest.mark.parametrize("options, message", [
    ({"device": "cuda"}, "--backend onnxruntime runs on the CPU; use --backend torch"),
    ({"precision": "bf16"}, "--backend onnxruntime computes in fp32; use --backend torch"),
    ({"formatter": "bm3d"}, "formatter is BM3D, which runs under torch only"),
])
def test_a_runtime_that_cannot_serve_is_a_usage_error(options, message):
    pytest.importorskip("onnxruntime")
    with pytest.raises(InvalidOptionError, match=message):
        backends.choose_backend("onnxruntime", **options)


def test_a_missing_runtime_says_how_to_install_it(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "runtime_installed", lambda name: False)
    source = tmp_path / "noisy.png"
    Image.fromarray((noisy_image((30, 40)) * 255).astype(np.uint8)).save(source)
    result = runner.invoke(app, ["restore", str(source), "-o", str(tmp_path / "out.png"),
                                 "--backend", "openvino", "--sigma", "5",
                                 "--model", str(tiny_models.denoise_gray)])
    assert result.exit_code == 2
    assert "openvino is not installed (pip install 'formnet[openvino]')" in result.output
    with pytest.raises(InvalidOptionError, match="unknown backend 'tensorrt'"):
        backends.choose_backend("tensorrt")


def test_threads_reach_the_runtime_session(tiny_models):
    pytest.importorskip("onnxruntime")
    with backends.cpu_threads(1):
        network = backends.open_network(tiny_models.denoise_gray, "onnxruntime")
    assert network.threads == 1
    assert network._session.get_session_options().intra_op_num_threads == 1


def test_running_out_of_memory_under_a_runtime_halves_the_tile(tiny_models, monkeypatch):
    onnxruntime = pytest.importorskip("onnxruntime")
    network = backends.open_network(tiny_models.denoise_gray, "onnxruntime")
    image = noisy_image((1, 120, 90))
    expected = tiling.restore_array(network, image, 0.1, tile=None)
    run, sides = network.run, []

    def run_with_little_memory(inputs, levels):
        sides.append(max(inputs.shape[-2:]))
        if sides[-1] > 64:
            raise onnxruntime.capi.onnxruntime_pybind11_state.RuntimeException(
                "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory")
        return run(inputs, levels)

    monkeypatch.setattr(network, "run", run_with_little_memory)
    restored = tiling.restore_array(network, image, 0.1, tile=None, tile_overlap=4)
    assert sides[0] == 120 and 64 < sides[1] < 120 and sides[-1] <= 64  # halved, then tighter
    assert np.abs(restored - expected).max() < 1e-4
