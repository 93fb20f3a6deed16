"""Which runtime runs the network, and the ONNX runtimes themselves; no torch.

``--backend`` is one of :data:`~formnet_cli.options.BACKENDS` (read by
:func:`~formnet_cli.options.parse_backend`):

* ``torch``: the model in eager PyTorch (:mod:`formnet_cli.inference.engine`): every device
  and precision, and the BM3D formatter;
* ``onnxruntime`` / ``openvino``: the model's two-input ONNX graph
  (:mod:`formnet_cli.inference.onnx_export`, exported once per weights and cached, see
  :mod:`formnet_cli.inference.onnx_graph`) run on the CPU in float32 by that runtime. The tiling,
  padding, blending, self-ensemble and per-pixel level maps are the same code as under torch
  (:func:`formnet_cli.inference.tiling.restore_array`), so the result equals torch's to float
  rounding (~1e-6), tiled or not. With the graph in the cache, torch is not even imported;
* ``auto``: on a machine without a GPU, the fastest runtime installed
  (:data:`CPU_PREFERENCE`, measured: docs/benchmarks.md, block ``backends``), else torch.
  Torch where a runtime cannot serve: a GPU, half precision, a BM3D formatter, or no way to
  get the graph (neither cached nor exportable). ``FORMNET_BACKEND`` sets what ``auto`` means
  (e.g. ``torch`` to opt out).

The runtimes come with the extras ``formnet[onnx]`` (onnxruntime, and onnx + onnxscript for
torch's exporter) and ``formnet[openvino]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.inference import tiling
from formnet_cli.inference.onnx_graph import (METADATA_KEYS, SHIPPED_GRAPH_FILE, GraphInfo,
                                              cache_dir, cached_graph_path, weights_sha256)
from formnet_cli.io.atomic import write_atomically
from formnet_cli.options import BACKEND_ENV, BACKENDS, RUNTIMES, parse_backend

CPU_PREFERENCE: tuple[str, ...] = ("openvino", "onnxruntime")
"""The runtimes ``auto`` tries on the CPU, fastest first: measured (docs/benchmarks.md, block
``backends``) OpenVINO 1.15x onnxruntime's speed on the gray denoiser and level on the colour
one, both 1.2-1.35x torch's."""
_INSTALL = {"onnxruntime": "pip install 'formnet[onnx]'", "openvino": "pip install 'formnet[openvino]'"}
_OUT_OF_MEMORY_MARKERS = ("bad_alloc", "bad allocation", "failed to allocate", "out of memory",
                          "cannot allocate memory")


# -- choosing ------------------------------------------------------------------------------
def choose_backend(spec: str | None, *, device: str = "auto", precision: str = "auto",
                   formatter: str | None = None, folder: str | os.PathLike[str] | None = None
                   ) -> str:
    """The backend that runs a model with ``formatter`` (``None``: not known yet) from the
    checkpoint ``folder`` on ``device``: ``spec`` checked, or ``auto``'s choice (module
    docstring). Raises :class:`InvalidOptionError` for a runtime that cannot serve."""
    spec = _requested(spec, precision)
    device = str(device).strip().lower()
    if spec in RUNTIMES:
        if not runtime_installed(spec):
            raise InvalidOptionError(f"--backend {spec}: {spec} is not installed ({_INSTALL[spec]})")
        if device not in ("auto", "cpu"):
            raise InvalidOptionError(f"--backend {spec} runs on the CPU; use --backend torch "
                                     f"for --device {device}")
        if formatter == "bm3d":
            raise InvalidOptionError("this model's formatter is BM3D, which runs under torch "
                                     "only; use --backend torch")
        if folder is not None and find_graph(folder) is None and not can_export():
            raise InvalidOptionError(f"--backend {spec} needs the model's ONNX graph, and "
                                     "exporting it needs torch, onnx and onnxscript "
                                     "(pip install 'formnet[onnx]')")
        return spec
    if spec == "torch" or formatter == "bm3d" or device not in ("auto", "cpu"):
        return "torch"
    if device == "auto" and _gpu_available():
        return "torch"
    for runtime in CPU_PREFERENCE:
        if runtime_installed(runtime) and (can_export() or (folder is not None
                                                            and find_graph(folder) is not None)):
            return runtime
    return "torch"


def _requested(spec: str | None, precision: str) -> str:
    """``spec`` checked, with ``auto`` read from ``FORMNET_BACKEND`` where set, and ``torch`` for
    an ``auto`` with a half ``precision`` (the runtimes compute in fp32)."""
    backend = parse_backend(spec, precision)
    if backend == "auto":
        configured = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
        if configured not in BACKENDS:
            raise InvalidOptionError(f"{BACKEND_ENV}={configured!r} is not a backend: use "
                                     f"{', '.join(BACKENDS)}")
        backend = parse_backend(configured, precision)
    if backend == "auto" and str(precision).strip().lower() in ("fp16", "bf16"):
        return "torch"
    return backend


def runtime_installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def can_export() -> bool:
    """Whether torch's ONNX exporter can run here (torch, onnx and onnxscript installed)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "onnx", "onnxscript"))


def _gpu_available() -> bool:
    """Whether torch would run ``--device auto`` on a GPU. Asks torch only where a GPU may be
    (an NVIDIA or AMD driver, an Apple-silicon Mac), so that a CPU-only machine does not
    import it."""
    maybe = (sys.platform == "darwin" and platform.machine() == "arm64") or any(
        os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg"))
    if not maybe and "torch" not in sys.modules:
        return False
    from formnet_cli.inference.device import resolve_device

    return resolve_device("auto").type != "cpu"


# -- the graph -----------------------------------------------------------------------------
def find_graph(folder: str | os.PathLike[str]) -> Path | None:
    """The checkpoint's two-input graph if there is one: shipped in the folder, or cached."""
    shipped = Path(folder) / SHIPPED_GRAPH_FILE
    if shipped.is_file():
        return shipped
    cached = cached_graph_path(weights_sha256(folder))
    return cached if cached.is_file() else None


def graph_for(folder: str | os.PathLike[str]) -> Path:
    """The checkpoint's two-input graph, exported into the cache first if needed (this
    imports torch, once per weights)."""
    found = find_graph(folder)
    if found is not None:
        return found
    from formnet_cli.inference.onnx_export import export_cached

    return export_cached(folder)


# -- threads -------------------------------------------------------------------------------
_THREADS: list[int | None] = [None]
"""The ``--threads`` in force (innermost :func:`cpu_threads` last; ``None``: the runtime's own)."""


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` CPU threads (``None``: each runtime's default) for every
    backend: the ONNX runtimes' sessions are made with it, torch's threads are set now if torch
    is loaded, else by the torch backend when it runs (:func:`requested_threads`). Imports no
    torch."""
    if count is not None and count < 1:
        raise InvalidOptionError(f"threads must be >= 1, got {count}")
    torch = sys.modules.get("torch") if count is not None else None
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(count)
    _THREADS.append(count)
    try:
        yield
    finally:
        _THREADS.pop()
        if torch is not None:
            torch.set_num_threads(previous)


def requested_threads() -> int | None:
    return _THREADS[-1]


# -- the runtimes --------------------------------------------------------------------------
_SESSIONS: dict[tuple[str, str, int | None], Any] = {}
"""(graph path, backend, threads) -> the runtime's compiled graph: made once per process."""


class OnnxNetwork:
    """A formnet two-input graph run by onnxruntime or OpenVINO on the CPU in float32, as the
    tiling's :class:`~formnet_cli.inference.tiling.TileNetwork`."""

    def __init__(self, path: str | os.PathLike[str], backend: str,
                 threads: int | None = None) -> None:
        if backend not in RUNTIMES:
            raise ValueError(f"not an ONNX runtime: {backend!r}")
        self.path, self.backend, self.threads = Path(path), backend, threads
        key = (str(self.path), backend, threads)
        if key not in _SESSIONS:
            _SESSIONS[key] = (_onnxruntime_session if backend == "onnxruntime"
                              else _openvino_model)(self.path, threads)
        self._session, self.info = _SESSIONS[key]
        if self.info.level is not None:
            raise FormnetError(f"{self.path} has a level baked in; formnet runs the two-input "
                               "graph ('formnet export' without --sigma/--quality/--scale)")
        self.descriptor = self.info.descriptor

    def run(self, inputs: np.ndarray, levels: np.ndarray) -> np.ndarray:
        if levels.ndim == 1:  # one level per tile: the graph takes maps
            levels = np.broadcast_to(levels[:, None, None, None], (len(levels), 1, *inputs.shape[2:]))
        feeds = {"image": np.ascontiguousarray(inputs, np.float32),
                 "level": np.ascontiguousarray(levels, np.float32)}
        if self.backend == "onnxruntime":
            return self._session.run(None, feeds)[0]
        request = self._session.create_infer_request()  # its own output buffer, not reused
        return request.infer(feeds)[0]

    def window_side(self, channels: int, batch_size: int) -> int:
        return tiling.auto_window_side(self.info.bytes_per_pixel, self.free_host_memory(),
                                       batch_size, host=True)

    def free_host_memory(self) -> int:
        return int(psutil.virtual_memory().available)

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, MemoryError) or any(
            marker in str(error).lower() for marker in _OUT_OF_MEMORY_MARKERS)

    def release_memory(self) -> None:
        pass

    def out_of_memory_message(self, window: int, batch_size: int) -> str:
        advice = "a smaller --batch-size" if batch_size > 1 else "free some memory and try again"
        return f"out of memory on the CPU ({self.backend}) even with {window}-pixel tiles; {advice}"


def _onnxruntime_session(path: Path, threads: int | None) -> tuple[Any, GraphInfo]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: one per physical core
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, GraphInfo.from_metadata(session.get_modelmeta().custom_metadata_map, path)


def _openvino_model(path: Path, threads: int | None) -> tuple[Any, GraphInfo]:
    """The graph compiled by OpenVINO. Compiled models are cached (``openvino/`` in the graph
    cache, with each graph's metadata beside them), so that from the second run on neither the
    ONNX file is parsed nor the network compiled again: about 0.4 s less before the first
    pixel."""
    import openvino

    core = openvino.Core()
    compiled_cache = _openvino_cache()
    if compiled_cache is not None:
        core.set_property({"CACHE_DIR": str(compiled_cache)})
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    remembered = _remembered_metadata(compiled_cache, path)
    if remembered is not None:
        return core.compile_model(str(path), "CPU", config), GraphInfo.from_metadata(remembered, path)
    model = core.read_model(str(path))
    metadata = {key: model.get_rt_info(["framework", key]).astype(str) for key in METADATA_KEYS
                if model.has_rt_info(["framework", key])}
    info = GraphInfo.from_metadata(metadata, path)  # raises for a graph that is not formnet's
    compiled = core.compile_model(str(path) if compiled_cache is not None else model, "CPU", config)
    _remember_metadata(compiled_cache, path, metadata)
    return compiled, info


def _openvino_cache() -> Path | None:
    """Where OpenVINO keeps compiled models; ``None`` where it cannot be written."""
    folder = cache_dir() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _metadata_file(compiled_cache: Path, graph: Path) -> tuple[Path, dict[str, Any]]:
    """The sidecar that remembers ``graph``'s metadata, and what identifies that file."""
    stat = graph.stat()
    resolved = str(graph.resolve())
    key = hashlib.sha256(resolved.encode()).hexdigest()[:32]
    return compiled_cache / f"{key}.json", {"graph": resolved, "size": stat.st_size,
                                            "mtime_ns": stat.st_mtime_ns}


def _remembered_metadata(compiled_cache: Path | None, graph: Path) -> dict[str, str] | None:
    """The metadata read from ``graph`` before, if that very file was read (same path, size and
    modification time)."""
    if compiled_cache is None:
        return None
    sidecar, identity = _metadata_file(compiled_cache, graph)
    try:
        saved = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("file") != identity:
        return None
    metadata = saved.get("metadata")
    return metadata if isinstance(metadata, dict) else None


def _remember_metadata(compiled_cache: Path | None, graph: Path, metadata: dict[str, str]) -> None:
    if compiled_cache is None:
        return
    sidecar, identity = _metadata_file(compiled_cache, graph)
    text = json.dumps({"file": identity, "metadata": metadata})
    try:
        write_atomically(sidecar, lambda stream: stream.write(text.encode()))
    except OSError:
        pass  # not remembered: the next run reads the graph again


def open_network(folder: str | os.PathLike[str], backend: str) -> OnnxNetwork:
    """The checkpoint's graph under ``backend`` with the threads in force (:func:`cpu_threads`).
    A shipped graph must have been exported from the folder's weights."""
    path = graph_for(folder)
    network = OnnxNetwork(path, backend, requested_threads())
    if network.info.weights_sha256 != weights_sha256(folder):
        raise FormnetError(f"{path} was exported from other weights than {folder}; delete it "
                           "or export it again ('formnet export')")
    return network
