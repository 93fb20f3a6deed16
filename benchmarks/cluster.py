"""``formnet restore --engine ray`` against the local batch: images/s, Ray's cost per file, the
driver's memory and planning rate (the figures ``docs/scaling.md`` projects from).

    python benchmarks/cluster.py                       # everything; writes the block of docs/scaling.md
    python benchmarks/cluster.py --images 8 --small 40 --paths 100000 --no-write   # a quick look

1. **Throughput**: ``--images`` noisy colour photos (``--side`` px square, sigma 25) restored
   with the bundled colour denoiser (the command's defaults: tile auto, ensemble auto) by the
   local batch (one thread), then by ``--engine ray`` with 1 and 2 workers (one thread each) on
   a local Ray (2 CPUs, no dashboard). Images/s over the whole call (Ray: its workers' start
   included) and *steady* (from the first file reported to the last: what a long run sees).
2. **Cost per file**: ``--small`` 32 px files through a tiny untrained model, so that restoring
   costs next to nothing: the time per file from the first result to the last, of the local
   batch and of Ray with one worker, less each file's own time (its result's ``seconds``): what
   each engine adds per file (Ray: the task round trip, the attempt book, the row).
3. **Driver memory**: a plan of ``--paths`` synthetic jobs (``archive/scan0000001.tif``
   -> ``restored/...``) in fsspec's in-memory store, planned by the store planner; the Arrow
   table of the jobs the engine hands to Ray Data; the summary's rows at the end: growth of
   this process's resident memory for each, and the planning's own rate.
4. **File I/O**: one ``--megapixels`` colour photo read and written (JPEG and PNG) by formnet's
   own reader and writer, one thread: the CPU work around the model for each file.
5. **Planning rate** (with ``moto[server]`` and ``s3fs``): ``--objects`` objects in an S3 server
   on loopback (moto), listed and planned by the driver: objects/s.

Prints a Markdown block and writes it between ``<!-- cluster:start -->`` and
``<!-- cluster:end -->`` of ``docs/scaling.md`` (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formnet_cli.batch.summary import FileResult  # noqa: E402  (no torch)

DOC = ROOT / "docs" / "scaling.md"
START, END = "<!-- cluster:start -->", "<!-- cluster:end -->"


class Clock:
    """A batch reporter that notes when each file's result came in."""

    def __init__(self) -> None:
        self.finished: list[float] = []
        self.restoring: list[float] = []
        """Each file's own time (reading, restoring, writing), as its result says."""

    def start(self, total: int) -> None: pass
    def file_started(self, job: object) -> None: pass
    def tiles(self, done: int, total: int) -> None: pass
    def note(self, message: str) -> None: pass
    def stop(self) -> None: pass

    def file_finished(self, result: FileResult) -> None:
        self.finished.append(time.perf_counter())
        self.restoring.append(result.seconds)


def write_photos(folder: Path, count: int, side: int, seed: int = 0) -> Path:
    """``count`` noisy colour photos: smooth random scenes with sigma 25 noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        coarse = rng.random((side // 16 + 1, side // 16 + 1, 3)) * 255
        scene = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((side, side), Image.BICUBIC),
                           np.float64)
        noisy = np.clip(scene + rng.normal(0, 25, scene.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{index:04}.png")
    return folder


def tiny_model(folder: Path) -> Path:
    """A tiny untrained colour denoiser (restoring with it costs next to nothing)."""
    import torch

    from formnet_cli.config import ModelConfig, NetworkConfig
    from formnet_cli.hub.checkpoint import save_checkpoint
    from formnet_cli.models import FormResNet

    torch.manual_seed(0)
    model = FormResNet(ModelConfig(task="denoise", channels=3, residual=NetworkConfig(
        kind="plain", widths=(4,), depth=3, unshuffle=1)))
    return save_checkpoint(model, folder, "tiny", card="# tiny\n", description="tiny benchmark model")


def run(engine: str, source: Path, output: Path, model: str | None, workers: int = 1) -> tuple[float, Clock, int]:
    """One batch of ``source`` into ``output``: seconds, its clock, files done."""
    from formnet_cli.batch.plan import BatchOptions, plan_batch
    from formnet_cli.batch.ray_engine import RayEngine, restore_on_ray
    from formnet_cli.batch.run import run_batch
    from formnet_cli.inference.device import cpu_threads
    from formnet_cli.options import RestoreOptions

    options = BatchOptions(RestoreOptions("denoise", sigma=25, model=model, device="cpu"))
    clock = Clock()
    started = time.perf_counter()
    if engine == "local":
        with cpu_threads(1):
            summary = run_batch(plan_batch([source], output), options, clock)
    else:
        summary = restore_on_ray([str(source)], str(output), options,
                                 RayEngine(workers=workers, threads_per_worker=1), reporter=clock)
    seconds = time.perf_counter() - started
    if summary.failed or len(summary.done) != len(clock.finished):
        raise SystemExit(f"{engine}: {len(summary.failed)} file(s) failed")
    return seconds, clock, len(summary.done)


def steady_rate(clock: Clock) -> float:
    """Files per second from the first result reported to the last (the files reported with
    the first one not counted)."""
    first = clock.finished[0]
    later = [moment for moment in clock.finished if moment > first]
    return len(later) / (clock.finished[-1] - first) if later else float("nan")


def throughput(work: Path, images: int, side: int) -> list[str]:
    source = write_photos(work / "photos", images, side)
    rows = []
    for name, engine, workers in (("local batch, 1 thread", "local", 1),
                                  ("Ray, 1 worker x 1 thread", "ray", 1),
                                  ("Ray, 2 workers x 1 thread", "ray", 2)):
        seconds, clock, done = run(engine, source, work / f"out-{engine}-{workers}", None, workers)
        rows.append(f"| {name} | {done} | {seconds:.1f} | {done / seconds:.3f} | {steady_rate(clock):.3f} |")
        print(rows[-1], flush=True)
    return rows


def cost_per_file(work: Path, count: int) -> list[str]:
    """Milliseconds per file, steady, of the local batch and of Ray with one worker, on files
    that cost next to nothing to restore, less each file's own time (its result's seconds):
    what each engine adds per file."""
    model = os.fspath(tiny_model(work / "tiny"))
    source = write_photos(work / "small", count, 32, seed=2)
    rows = []
    for engine in ("local", "ray"):
        seconds, clock, done = run(engine, source, work / f"small-{engine}", model)
        per_file = 1000 / steady_rate(clock)
        own = 1000 * float(np.mean(clock.restoring))
        rows.append(f"| {engine}{', 1 worker' if engine == 'ray' else ''} | {done} | {seconds:.1f} "
                    f"| {per_file:.1f} | {own:.1f} | {per_file - own:.1f} |")
        print(rows[-1], flush=True)
    return rows


def file_io(work: Path, megapixels: float) -> list[str]:
    """Seconds to read and to write one colour photo of ``megapixels`` (formnet's own reader
    and writer, one thread) as JPEG (quality 95) and PNG: the CPU work a worker does around
    the model for each file."""
    from formnet_cli import io as imageio

    side = int((megapixels * 1e6 / 12) ** 0.5)
    photo = write_photos(work / "large", 1, 4 * side, seed=3) / "0000.png"
    with Image.open(photo) as image:  # 4:3, as a camera's
        image.crop((0, 0, 4 * side, 3 * side)).save(photo)
    rows = []
    for extension in (".jpg", ".png"):
        source = photo.with_suffix(extension)
        imageio.write_pages(source, imageio.read_pages(photo))
        started = time.perf_counter()
        pages = imageio.read_pages(source)
        read = time.perf_counter() - started
        started = time.perf_counter()
        imageio.write_pages(work / f"written{extension}", pages)
        written = time.perf_counter() - started
        rows.append(f"| {extension[1:].upper()} | {pages[0].width * pages[0].height / 1e6:.1f} | "
                    f"{source.stat().st_size / 2**20:.1f} | {read:.2f} | {written:.2f} |")
        print(rows[-1], flush=True)
    return rows


def driver_memory(paths: int) -> list[str]:
    """Resident memory the driver grows by for the plan of ``paths`` objects (made by the
    store planner from fsspec's in-memory store, not counted), the Arrow table of its jobs,
    and the summary's rows; and the time the planning took."""
    import fsspec
    import pyarrow as pa
    from fsspec.implementations.memory import MemoryFile

    from formnet_cli.batch import remote

    process = psutil.Process()

    def resident() -> float:
        gc.collect()
        return process.memory_info().rss / 2**20

    pa.table({"warm-up": ["pyarrow's allocator"]})
    fs = fsspec.filesystem("memory")
    for index in range(paths):  # straight into the store: its pipe_file checks every object
        name = f"/bench/archive/scan{index:07}.tif"
        fs.store[name] = MemoryFile(fs, name, b"")
    base = resident()
    started = time.perf_counter()
    plan = remote.plan(["memory://bench/archive"], "memory://bench/restored", recursive=True)
    seconds = time.perf_counter() - started
    after_plan = resident()
    table = pa.table({"index": list(range(paths)),
                      "input": [str(job.input) for job in plan.jobs],
                      "output": [str(job.output) for job in plan.jobs]})
    after_table = resident()
    results = [FileResult(job.input, job.output, "done", seconds=1.0, megapixels=12.0, sigma=25.0,
                          model="denoise-color", model_path="/weights/denoise-color")
               for job in plan.jobs]
    after_results = resident()
    growth = {"the plan": after_plan - base, "the Arrow table of the jobs": after_table - after_plan,
              "the summary's rows": after_results - after_table, "all": after_results - base}
    rows = [f"| {what} | {mib:.0f} | {mib * 2**20 / paths:.0f} |" for what, mib in growth.items()]
    rows.append(f"| (planning {len(plan.jobs):,} objects took {seconds:.1f} s: "
                f"{len(plan.jobs) / seconds:,.0f} objects/s; Arrow data {table.nbytes / 2**20:.0f} MiB) | | |")
    del results, table, plan
    for name in [name for name in fs.store if name.startswith("/bench/")]:
        del fs.store[name]  # (fs.rm looks the store over for each object)
    for row in rows:
        print(row, flush=True)
    return rows


def planning_rate(objects: int) -> list[str]:
    """Objects per second the driver lists and plans from an S3 server on loopback."""
    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError:
        return ["(not measured: needs moto[server] and s3fs)"]
    import fsspec

    from formnet_cli.batch import remote

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
                           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
        fs = fsspec.filesystem("s3")
        fs.mkdir("bench")
        fs.pipe({f"bench/archive/box{index // 1000:04}/scan{index:07}.png": b"x"
                 for index in range(objects)})
        started = time.perf_counter()
        batch = remote.plan(["s3://bench/archive"], "s3://bench/restored", recursive=True)
        seconds = time.perf_counter() - started
    finally:
        server.stop()
    row = f"| {len(batch.jobs):,} objects, {-(-objects // 1000)} listing pages | {seconds:.2f} | {len(batch.jobs) / seconds:,.0f} |"
    print(row, flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=24, help="photos for the throughput rows")
    parser.add_argument("--side", type=int, default=384, help="their side in pixels")
    parser.add_argument("--small", type=int, default=400, help="tiny files for the cost per file")
    parser.add_argument("--paths", type=int, default=1_000_000, help="jobs of the memory rows")
    parser.add_argument("--objects", type=int, default=5000, help="S3 objects of the planning row")
    parser.add_argument("--megapixels", type=float, default=12.0, help="size of the file I/O photo")
    parser.add_argument("--no-write", action="store_true", help="print only")
    arguments = parser.parse_args()

    import ray

    memory = driver_memory(arguments.paths)  # first: a process not grown by Ray and torch yet
    planning = planning_rate(arguments.objects)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # as the command does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="formnet-cluster-") as folder:
            rates = throughput(Path(folder), arguments.images, arguments.side)
            costs = cost_per_file(Path(folder), arguments.small)
            io_rows = file_io(Path(folder), arguments.megapixels)
    finally:
        ray.shutdown()

    import torch

    command = "python benchmarks/cluster.py" + "".join(
        f" --{name.replace('_', '-')} {value}" for name, value in vars(arguments).items()
        if name != "no_write" and value != parser.get_default(name))
    megapixels = arguments.side ** 2 / 1e6
    block = "\n".join([
        START,
        f"Written by `{command}` on {time.strftime('%Y-%m-%d')}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs, torch {torch.__version__}, ray {ray.__version__}.",
        "",
        f"**Throughput**: {arguments.images} noisy colour photos of {arguments.side} x {arguments.side} px "
        f"({megapixels:.3f} MP), bundled colour denoiser, sigma 25, CPU.",
        "",
        "| engine | images | seconds | images/s (whole call) | images/s (steady) |",
        "|---|---:|---:|---:|---:|", *rates,
        "",
        f"**Cost per file**: {arguments.small} files of 32 x 32 px, tiny untrained model; ms per "
        "file from the first result to the last (steady), each file's own time (reading, restoring, "
        "writing: its result's seconds) and the difference, what the engine adds per file.",
        "",
        "| engine | files | seconds (whole call) | ms per file (steady) | ms in the file | ms added |",
        "|---|---:|---:|---:|---:|---:|", *costs,
        "",
        f"**File I/O** around the model: one {arguments.megapixels:g} MP colour photo (4:3) read and "
        "written by formnet's reader and writer (JPEG quality 95), one thread.",
        "",
        "| format | MP | file (MiB) | read (s) | write (s) |", "|---|---:|---:|---:|---:|", *io_rows,
        "",
        f"**Driver memory** (resident memory growth) for {arguments.paths:,} synthetic objects "
        "(`memory://bench/archive/scan0000001.tif` -> `memory://bench/restored/...`) planned by the store planner.",
        "",
        "| what | MiB | bytes per job |", "|---|---:|---:|", *memory,
        "",
        "**Planning** store inputs on the driver (listing on loopback S3 (moto) and planning).",
        "",
        "| listing | seconds | objects/s |", "|---|---:|---:|", *planning,
        END])
    print(block)
    if not arguments.no_write:
        text = DOC.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        DOC.write_text(head + block + tail)


if __name__ == "__main__":
    main()
