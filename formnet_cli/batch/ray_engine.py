"""``formnet restore --engine ray``: a batch restored by Ray Data workers, here or on a cluster.

The plan is the local batch's (:func:`formnet_cli.batch.remote.plan`: :func:`plan_batch` for
local paths, the same rules on a store's listing for ``s3://`` URLs), made and checked on the
driver before any work. Ray Data runs the jobs on a pool of actors (``workers``), each with
``threads_per_worker`` CPU threads and ``gpus_per_worker`` GPUs, which load the model once and
run every file through the local batch's own restore-and-write
(:func:`formnet_cli.batch.run._run_job`: every page, alpha, 16 bits and metadata kept, written
atomically; a store file through a local copy and one whole-object upload). A file that fails
comes back as its row, and the driver gathers the rows in plan order into the local batch's
:class:`~formnet_cli.batch.summary.BatchSummary`: the summary, ``--json`` and the exit code are
those of a local batch. The driver holds the plan and one short row per file; the files
travel to the workers in blocks of up to :data:`MAX_FILES_PER_BLOCK` (paths, not pixels).

Faults:

- A worker process that dies (killed; a node lost) is restarted by Ray, and its block runs
  again: files of the block finished before are not restored again (:class:`_AttemptBook`
  keeps their rows until the driver has them); the one in progress is redone from the start,
  its unfinished temporary file removed. Outputs are never partial (a local file is renamed
  into place whole; an object is one whole PUT) and every file has one row.
- A file whose worker died :data:`MAX_DEATHS` times while restoring it (a worker out of
  memory is killed by the system) fails alone, with that reason; an allocation that fails
  inside the worker (GPU or host memory) fails its file as in a local batch.
- An interrupted driver (Ctrl-C, SIGTERM) ends the dataset (its workers are killed, and
  waited for; a cluster also ends a job's actors when its driver leaves), takes the rows of the files
  finished meanwhile, marks those being restored ``interrupted`` (removing the temporary files
  of their killed writes) and the others ``not_started``, as a local batch does: only whole
  outputs remain, and ``--skip-existing`` finishes the rest. A full disk or a bug stops the
  run the same way.

Nothing here imports Ray (or torch) until a run: without the ``ray`` extra the command says
what to install.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formnet_cli.batch import remote
from formnet_cli.batch.plan import BatchOptions, BatchPlan, Job, check_before_any_file, left_as_is
from formnet_cli.batch.summary import BatchSummary, FileResult
from formnet_cli.errors import (FormnetError, ImageReadError, ImageWriteError, InvalidOptionError,
                                OutOfSpaceError)
from formnet_cli.inference.backends import cpu_threads
from formnet_cli.options import RestoreOptions

if TYPE_CHECKING:
    import numpy as np

    from formnet_cli.batch.run import Reporter

__all__ = ["MAX_DEATHS", "RayEngine", "restore_on_ray"]

MAX_DEATHS = 2
"""A file whose worker process died this many times while restoring it fails (not tried again)."""
MAX_FILES_PER_BLOCK = 16
"""Most files sent to a worker in one task: fewer tasks for a large archive, while a small
batch still spreads one file per task over the workers."""
_INSTALL = "pip install 'formnet[ray]'"
_FATAL, _DISK_FULL, _BUG = "fatal", "the output's disk is full", "a bug in formnet"
"""Why a row stops the run: an error every file would meet (raised on the driver), a full disk
or a bug (the run stops, as a local batch does)."""


@dataclass(frozen=True)
class RayEngine:
    """Where and how ``--engine ray`` runs."""

    address: str | None = None
    """``None``: start Ray on this machine; ``auto``: the running cluster; ``ray://host:port``."""
    workers: int | None = None
    """Actors restoring files; ``None``: as many as the cluster's GPUs (with
    ``gpus_per_worker``) or CPUs allow."""
    gpus_per_worker: float = 0.0
    """GPUs each worker reserves (0.5: two share one); 0: the workers run on the CPU."""
    threads_per_worker: int = 1
    """CPU threads (and Ray CPUs) each worker uses."""

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InvalidOptionError(f"--workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise InvalidOptionError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.threads_per_worker < 1:
            raise InvalidOptionError(f"--threads-per-worker must be >= 1, got {self.threads_per_worker}")


def restore_on_ray(inputs: Sequence[str | os.PathLike[str]], output: str, options: BatchOptions,
                   engine: RayEngine = RayEngine(), *, recursive: bool = False,
                   reporter: Reporter | None = None, dry_run: bool = False,
                   show_tracebacks: bool = False) -> BatchSummary:
    """Restore ``inputs`` into ``output`` (local paths or store URLs) on Ray; see the module
    docstring. ``dry_run``: the plan and its checks only, as :func:`~formnet_cli.batch.plan.dry_run`.

    Raises :class:`FormnetError` without the ``ray`` extra and for what would fail every file
    (as :func:`~formnet_cli.batch.run.run_batch`), :class:`InvalidOptionError` for a bad plan.
    """
    from formnet_cli.batch.run import SilentReporter, remove_leftovers

    reporter = reporter or SilentReporter()
    batch = remote.plan(inputs, output, recursive=recursive, ext=options.ext)
    for note in batch.notes:
        reporter.note(note)
    kept = _outputs_kept(batch.jobs, options)
    _check_before_any_file(batch, kept, options, engine)
    if dry_run:
        planned = [FileResult(job.input, job.output, "skipped", "output exists") if index in kept
                   else FileResult(job.input, job.output, "planned")
                   for index, job in enumerate(batch.jobs)]
        return BatchSummary(results=[*batch.settled, *planned], dry_run=True)
    _import_ray()
    results = {index: FileResult(batch.jobs[index].input, batch.jobs[index].output, "skipped",
                                 "output exists") for index in sorted(kept)}
    summary = BatchSummary()
    summary.leftovers_removed = remove_leftovers(
        (job.output for job in batch.jobs if isinstance(job.output, Path)), reporter)
    started = time.perf_counter()
    reporter.start(len(batch.jobs))
    for result in results.values():
        reporter.file_finished(result)
    try:
        if len(kept) < len(batch.jobs):
            # Ray prints the errors its nodes report (a worker died) on standard output, which
            # holds the summary or --json: they go to standard error, with the notes.
            with contextlib.redirect_stdout(sys.stderr), \
                    _ray_session(engine, quiet=not show_tracebacks):
                _run(batch.jobs, results, options, engine, reporter, summary, show_tracebacks)
    finally:
        summary.seconds = time.perf_counter() - started
        reporter.stop()
    summary.results = [*batch.settled, *(results.get(index) or FileResult(job.input, job.output,
                                                                          "not_started")
                                         for index, job in enumerate(batch.jobs))]
    return summary


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs ray[data]: pyarrow, pandas)
    except ModuleNotFoundError as error:
        raise FormnetError(f"--engine ray needs the ray extra ({error.name} is not installed): "
                           f"{_INSTALL}") from None
    return ray


# -- on the driver -----------------------------------------------------------------------------
def _outputs_kept(jobs: Sequence[Job], options: BatchOptions) -> set[int]:
    """Indexes of the jobs ``--skip-existing`` leaves alone (decided once, on the driver: the
    workers then write every file they are given)."""
    if not options.skip_existing:
        return set()
    in_store = [job.output for job in jobs if isinstance(job.output, remote.StorePath)]
    present = remote.outputs_present(in_store) if in_store else set()
    return {index for index, job in enumerate(jobs)
            if (job.output in present if isinstance(job.output, remote.StorePath)
                else left_as_is(job, options))}


def _check_before_any_file(batch: BatchPlan, kept: set[int], options: BatchOptions,
                           engine: RayEngine) -> None:
    """The local batch's checks (:func:`check_before_any_file`) of the jobs to run, and that
    the buckets of store outputs are there. With GPU workers the device is theirs, not the
    driver's: the driver checks the options on the CPU, each worker its device as it starts."""
    to_run = [job for index, job in enumerate(batch.jobs) if index not in kept]
    local = [job for job in to_run if isinstance(job.output, Path)]
    stored = [job.output for job in to_run if isinstance(job.output, remote.StorePath)]
    restore = options.restore
    if engine.gpus_per_worker > 0:
        restore = dataclasses.replace(restore, device="cpu", precision="auto")
    check_before_any_file(BatchPlan(jobs=local), dataclasses.replace(options, restore=restore))
    if stored:
        remote.check_writable(stored)
        if not local and restore.model is not None:  # checked above only with a local job
            _check_model(restore)


def _check_model(restore: RestoreOptions) -> None:
    """Raise :class:`FormnetError` when a model cannot be loaded on ``restore``'s device under
    its backend or does not take its options (as :func:`check_before_any_file`): the model
    given, else the default of each step (of each step ``auto`` may run)."""
    from formnet_cli import api, auto

    if restore.model is not None:
        models = [api.load_options_model(restore)]
    else:
        models = [api.load_model(None, task=task, device=restore.device, backend=restore.backend)
                  for task in restore.tasks or auto.STEPS]
    for loaded in models:
        api.check_model_options(loaded, sigma=restore.sigma, scale=restore.scale,
                                precision=restore.precision, device=restore.device)


@contextmanager
def _ray_session(engine: RayEngine, *, quiet: bool) -> Iterator[None]:
    """Ray, connected for the block: the session already open in this process (tests, a
    notebook), else a new one (and shut down after): this machine's, or ``engine.address``'s.
    ``quiet``: Ray's own log lines on the terminal only for fatal errors (the command reports
    every failure itself)."""
    import ray

    if ray.is_initialized():
        yield
        return
    if quiet:  # read as Ray starts: its C++ core would warn of what a Ray Data pool always does
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    arguments: dict[str, Any] = {"address": engine.address, "log_to_driver": False,
                                 "logging_level": logging.ERROR}
    if engine.address is None:  # a Ray of this machine, with room for the workers asked for
        arguments.update(include_dashboard=False, num_cpus=max(
            os.cpu_count() or 1, (engine.workers or 1) * engine.threads_per_worker))
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces the command's handler
    try:
        with _descriptor_2_silenced() if quiet else contextlib.nullcontext():
            ray.init(**arguments)  # (which says, on descriptor 2, that it read the level)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise FormnetError(f"cannot start or reach Ray at {engine.address or 'this machine'} "
                           f"({' '.join(str(error).split())})") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _descriptor_2_silenced() -> Iterator[None]:
    """File descriptor 2 (standard error) to the null device for the block: Ray's C++ core
    writes there directly, not through ``sys.stderr``. Errors still come as exceptions."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _run(jobs: Sequence[Job], results: dict[int, FileResult], options: BatchOptions,
         engine: RayEngine, reporter: Reporter, summary: BatchSummary,
         show_tracebacks: bool) -> None:
    """Run the jobs without a result yet on Ray and record each one's row in ``results``
    (see the module docstring); an interruption or a stop is recorded in ``summary``."""
    import ray

    pending = [index for index in range(len(jobs)) if index not in results]
    book = ray.remote(num_cpus=0, max_restarts=0)(_AttemptBook).options(
        scheduling_strategy=_this_node()).remote()
    try:
        _gather(_dataset(jobs, pending, options, engine, book, show_tracebacks),
                book, jobs, results, reporter, summary)
        if summary.interrupted or summary.stopped:
            _settle_outstanding(book, jobs, results, reporter)
    finally:
        ray.kill(book)


def _gather(dataset: Any, book: Any, jobs: Sequence[Job], results: dict[int, FileResult],
            reporter: Reporter, summary: BatchSummary) -> None:
    """Take the rows as the workers send them, until the last, an interruption or a stop."""
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        for rows in batches:
            stop = _take_rows(rows, jobs, results, reporter)
            book.forget.remote([int(index) for index in rows["index"]])
            if stop:
                summary.stopped = stop
                return
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # ends the dataset's execution: its workers are stopped


def _settle_outstanding(book: Any, jobs: Sequence[Job], results: dict[int, FileResult],
                        reporter: Reporter) -> None:
    """After a run stopped early: the rows of files finished but not yet received, and the
    files being restored marked ``interrupted``, the temporary files of their killed writes
    removed (the others stay ``not_started``)."""
    import ray

    _stop_workers(ray.get(book.workers.remote()))
    rows, begun = ray.get(book.outstanding.remote())
    if rows:
        _take_rows({"index": list(rows), "row": list(rows.values())}, jobs, results, reporter)
    for index in begun:
        job = jobs[index]
        results[index] = FileResult(job.input, job.output, "interrupted",
                                    "interrupted while being restored")
        if isinstance(job.output, Path):
            _remove_leftovers(job.output)


def _stop_workers(workers: list[Any]) -> None:
    """Kill the workers and wait until they are gone (at most :data:`_STOP_WAIT` s each):
    closing the dataset only asks Ray to kill them, and a worker still running could begin a
    write after its leftovers were removed."""
    import ray

    for worker in workers:
        ray.kill(worker, no_restart=True)
    for worker in workers:
        try:
            ray.get(worker.__ray_ready__.remote(), timeout=_STOP_WAIT)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            continue


_STOP_WAIT = 30.0


def _remove_leftovers(output: Path) -> None:
    """Remove the temporary files of writes of ``output`` that a killed worker left."""
    from formnet_cli.io import leftover_temporaries

    for leftover in leftover_temporaries([output]):
        leftover.unlink(missing_ok=True)


def _take_rows(rows: dict[str, Any], jobs: Sequence[Job], results: dict[int, FileResult],
               reporter: Reporter) -> str:
    """Record a block's rows; returns why the run stops there (``""``: it goes on)."""
    for index, text in zip(list(rows["index"]), list(rows["row"])):
        index = int(index)
        job = jobs[index]
        fields = json.loads(text)
        notes, stop = fields.pop("notes"), fields.pop("stop")
        if fields["sigma_map_range"] is not None:
            fields["sigma_map_range"] = tuple(fields["sigma_map_range"])
        result = FileResult(job.input, job.output, **fields)
        for note in notes:
            reporter.note(note)
        if stop == _FATAL:
            raise FormnetError(result.reason)
        results[index] = result
        reporter.file_finished(result)
        if stop == _DISK_FULL:
            reporter.note(f"stopped: the disk of {job.output.parent} is full; free space and "
                          "run the same command with --skip-existing to go on")
        if stop:
            return stop
    return ""


def _dataset(jobs: Sequence[Job], pending: list[int], options: BatchOptions, engine: RayEngine,
             book: Any, show_tracebacks: bool) -> Any:
    """The Ray Data pipeline: blocks of jobs (index, input, output) through the pool of
    :class:`_FileRestorer` actors, each returning one row per file."""
    import pyarrow as pa
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().enable_progress_bars = False  # the command draws its own
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", "The minimum number of concurrent actors", UserWarning)
    # (Ray Data's advice to feed a pool more blocks than it has workers: a small batch has fewer)
    workers = engine.workers or _workers_available(engine)
    per_block = max(1, min(MAX_FILES_PER_BLOCK, len(pending) // (4 * workers)))
    table = pa.table({"index": pending,
                      "input": [str(jobs[index].input) for index in pending],
                      "output": [str(jobs[index].output) for index in pending]})
    blocks = [table.slice(start, per_block) for start in range(0, len(pending), per_block)]
    restore = options.restore
    if engine.gpus_per_worker == 0 and restore.device == "auto":
        restore = dataclasses.replace(restore, device="cpu")  # the workers have no GPU
    worker_options = dataclasses.replace(options, restore=restore, skip_existing=False)
    return ray.data.from_arrow(blocks).map_batches(
        _FileRestorer, batch_size=None,
        compute=ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
        fn_constructor_kwargs={"options": worker_options, "threads": engine.threads_per_worker,
                               "book": book, "show_tracebacks": show_tracebacks},
        num_cpus=engine.threads_per_worker, num_gpus=engine.gpus_per_worker or None)


def _workers_available(engine: RayEngine) -> int:
    """As many workers as the cluster's GPUs (or CPUs) hold now."""
    import ray

    resources = ray.cluster_resources()
    if engine.gpus_per_worker > 0:
        workers = int(resources.get("GPU", 0) // engine.gpus_per_worker)
        if workers == 0:
            raise InvalidOptionError("--gpus-per-worker: the Ray cluster has no GPU now; give "
                                     "--workers N (an autoscaling cluster then adds GPU nodes)")
        return workers
    return max(1, int(resources.get("CPU", 1) // engine.threads_per_worker))


def _this_node() -> Any:
    """Ray's scheduling onto the driver's node, where the attempt book belongs: it lives as
    long as the driver (a worker node may go away); elsewhere if that node is full."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)


# -- on the workers -------------------------------------------------------------------------------
class _AttemptBook:
    """How many times each file of the blocks in flight was begun, and the rows of those
    finished: a block run again after its worker died returns those rows without restoring
    them again. The driver forgets a block once it has its rows. (A Ray actor.)"""

    def __init__(self) -> None:
        self._begun: dict[int, int] = {}
        self._rows: dict[int, str] = {}
        self._workers: dict[str, Any] = {}

    def register(self, worker_id: str, worker: Any) -> None:
        """A worker (its actor handle), to be stopped by the driver after an interruption."""
        self._workers[worker_id] = worker

    def workers(self) -> list[Any]:
        return list(self._workers.values())

    def begin(self, index: int) -> tuple[int, str | None]:
        """Earlier beginnings of file ``index`` whose worker died, or its row when finished."""
        if index in self._rows:
            return 0, self._rows[index]
        begun = self._begun.get(index, 0)
        self._begun[index] = begun + 1
        return begun, None

    def finish(self, index: int, row: str) -> None:
        self._rows[index] = row

    def forget(self, indexes: list[int]) -> None:
        for index in indexes:
            self._begun.pop(index, None)
            self._rows.pop(index, None)

    def outstanding(self) -> tuple[dict[int, str], list[int]]:
        """The rows not forgotten yet, and the files begun and not finished."""
        return dict(self._rows), sorted(set(self._begun) - set(self._rows))


class _FileRestorer:
    """A Ray Data worker: the model loaded once, each file of a block restored and written by
    the local batch's :func:`~formnet_cli.batch.run._run_job`, one JSON row per file."""

    def __init__(self, options: BatchOptions, threads: int, book: Any,
                 show_tracebacks: bool) -> None:
        import ray

        from formnet_cli import api

        context = ray.get_runtime_context()
        ray.get(book.register.remote(context.get_actor_id(), context.current_actor))
        self._options, self._book, self._show_tracebacks = options, book, show_tracebacks
        self._threads = threads
        self._scratch = Path(tempfile.mkdtemp(prefix="formnet-ray-"))  # copies of store files
        self._fatal = ""
        try:  # what would fail every file: this worker's device, the model and its options
            api.check_device(options.restore)
            with cpu_threads(threads):
                _check_model(options.restore)  # and loads it, once for the worker's files
        except FormnetError as error:
            self._fatal = " ".join(str(error).split())

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        indexes = block["index"].tolist()
        with cpu_threads(self._threads):  # torch's or the ONNX runtime's, whichever runs
            rows = [self._row(index, remote.location(source), remote.location(target))
                    for index, source, target in zip(indexes, block["input"].tolist(),
                                                     block["output"].tolist())]
        return {"index": indexes, "row": rows}

    def _row(self, index: int, source: remote.Location, target: remote.Location) -> str:
        import ray

        if self._fatal:
            return _encode(FileResult(source, target, "failed", self._fatal), [], _FATAL)  # type: ignore[arg-type]
        deaths, row = ray.get(self._book.begin.remote(index))
        if row is not None:  # finished before this block's worker died
            return row
        if deaths and isinstance(target, Path):
            _remove_leftovers(target)  # of the write that was killed
        if deaths >= MAX_DEATHS:
            row = _encode(FileResult(source, target, "failed",  # type: ignore[arg-type]
                                     f"its worker process died {deaths} times while restoring "
                                     "it (killed: out of memory, most likely); not written"), [], "")
        else:
            row = self._restore(source, target, redone=bool(deaths))
        self._book.finish.remote(index, row)
        return row

    def _restore(self, source: remote.Location, target: remote.Location, *, redone: bool) -> str:
        """One file's row: restored as in a local batch, through local copies of store files;
        ``redone``: after its worker died restoring it."""
        from formnet_cli.batch.run import BUG_ADVICE, _one_line

        notes = _Notes()
        if redone:
            notes.note(f"{source}: restored again (its worker process died while restoring it)")
        scratch = Path(tempfile.mkdtemp(dir=self._scratch))
        local_source = source if isinstance(source, Path) else scratch / "in" / source.name
        local_target = target if isinstance(target, Path) else scratch / "out" / target.name
        stop = ""
        try:
            result = self._restore_copies(source, target, local_source, local_target, notes)
        except OutOfSpaceError as error:  # every later output would fail the same way
            result, stop = FileResult(source, target, "failed", _one_line(error, local_source)), _DISK_FULL  # type: ignore[arg-type]
        except FormnetError as error:  # would fail every file (no weights): one message
            result, stop = FileResult(source, target, "failed", _one_line(error, local_source)), _FATAL  # type: ignore[arg-type]
        except Exception as error:  # not an error of one file: a bug
            reason = f"{_one_line(error, local_source)} ({BUG_ADVICE})"
            result, stop = FileResult(source, target, "failed", reason), _BUG  # type: ignore[arg-type]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        named = {os.fspath(local_source): str(source), os.fspath(local_target): str(target)}
        return _encode(result, [_renamed(note, named) for note in notes.lines], stop,
                       reason=_renamed(result.reason, named))

    def _restore_copies(self, source: remote.Location, target: remote.Location,
                        local_source: Path, local_target: Path, notes: _Notes) -> FileResult:
        """The local batch's :func:`~formnet_cli.batch.run._run_job` from ``local_source`` to
        ``local_target``, with the store's object fetched before and put after."""
        from formnet_cli.batch.run import _one_line, _run_job

        if isinstance(source, remote.StorePath):
            try:
                remote.fetch(source, local_source)
            except ImageReadError as error:
                return FileResult(source, target, "failed", _one_line(error, source))  # type: ignore[arg-type]
        result = _run_job(Job(local_source, local_target), self._options, notes,
                          self._show_tracebacks)
        if result.status == "done" and isinstance(target, remote.StorePath):
            try:
                remote.put(local_target, target)
            except ImageWriteError as error:
                return FileResult(source, target, "failed", _one_line(error, target))  # type: ignore[arg-type]
        return result


class _Notes:
    """A :class:`~formnet_cli.batch.run.Reporter` that keeps a file's notes for its row."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def start(self, total: int) -> None: pass
    def file_started(self, job: Job) -> None: pass
    def tiles(self, done: int, total: int) -> None: pass
    def file_finished(self, result: FileResult) -> None: pass
    def stop(self) -> None: pass

    def note(self, message: str) -> None:
        self.lines.append(message)


def _encode(result: FileResult, notes: list[str], stop: str, *, reason: str | None = None) -> str:
    """A file's row: its result's fields but the paths (the driver has them), its notes and
    why the run stops there, if it does."""
    fields = dataclasses.asdict(result)
    del fields["input"], fields["output"]
    if reason is not None:
        fields["reason"] = reason
    return json.dumps({**fields, "notes": notes, "stop": stop})


def _renamed(text: str, names: dict[str, str]) -> str:
    """``text`` with the local copies' paths replaced by the store URLs they stand for."""
    for local, url in names.items():
        if local != url:
            text = text.replace(local, url)
    return text
