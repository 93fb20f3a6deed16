"""Run a batch: restore each planned file, write it atomically, and report what happened.

Every page of a multi-page TIFF is restored, into a multi-page TIFF, or the file fails naming
the page. Each input's header is checked before a pixel of it is decoded: its size against
the pixel limit, the memory its decoding and restore will take, and what the task and the
output can take (:func:`_before_decoding`). Every output is written atomically by
:func:`formnet_cli.io.write_pages`, so an interrupted run never leaves a partial image; the
temporary files a killed run (SIGKILL) could not remove are removed by the next run writing
the same outputs, ``--skip-existing`` or not, and listed. A file that fails with a known error (a :class:`~formnet_cli.errors.FormnetError`,
an ``OSError``, out of memory) is recorded as failed and the batch goes on; problems that would
hit every file (no weights, an option out of range) stop it before the first file
(:func:`~formnet_cli.batch.plan.check_before_any_file`), and so do a full disk (every later
output would fail the same way) and any other exception, a bug in formnet: the batch stops
there, the file failed with a line that says so, the files after it not started.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import traceback
from pathlib import Path
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import psutil

from formnet_cli import api
from formnet_cli import io as imageio
from formnet_cli.batch.plan import (STREAM, BatchOptions, BatchPlan, Job, check_before_any_file,
                                    left_as_is, normalise_ext)
from formnet_cli.batch.summary import BatchSummary, FileResult
from formnet_cli.errors import (FormnetError, ImageReadError, ImageWriteError, ModelNotFoundError,
                                OutOfSpaceError)
from formnet_cli.hub.checkpoint import CheckpointError
from formnet_cli.inference.tiling import restore_memory_needed
from formnet_cli.results import NOTHING, RestoreResult, StepResult

__all__ = ["Reporter", "SilentReporter", "run_batch"]

_FATAL_ERRORS = (ModelNotFoundError, CheckpointError)
"""Errors that would repeat for every file: they end the batch with one message."""
_FILE_ERRORS = (FormnetError, OSError, MemoryError)
"""Errors of one file: it fails, and the batch goes on (and torch's out of memory:
:func:`_file_errors`). Any other is a bug: it stops the batch."""
BUG_ADVICE = "a bug in formnet: please report it; FORMNET_DEBUG=1 shows its traceback"


def _file_errors() -> tuple[type[BaseException], ...]:
    """:data:`_FILE_ERRORS`, and torch's out of memory where torch runs (a batch under an ONNX
    runtime does not import it)."""
    torch = sys.modules.get("torch")
    return _FILE_ERRORS + ((torch.OutOfMemoryError,) if torch is not None else ())


class Reporter(Protocol):
    """Where a batch reports its progress (the CLI's is :class:`formnet_cli.cli.progress.RichReporter`)."""

    def start(self, total: int) -> None: ...
    def file_started(self, job: Job) -> None: ...
    def tiles(self, done: int, total: int) -> None: ...
    def file_finished(self, result: FileResult) -> None: ...
    def note(self, message: str) -> None: ...
    def stop(self) -> None: ...


class SilentReporter:
    """Reports nothing."""

    def start(self, total: int) -> None: pass
    def file_started(self, job: Job) -> None: pass
    def tiles(self, done: int, total: int) -> None: pass
    def file_finished(self, result: FileResult) -> None: pass
    def note(self, message: str) -> None: pass
    def stop(self) -> None: pass


def run_batch(plan: BatchPlan, options: BatchOptions, reporter: Reporter | None = None, *,
              show_tracebacks: bool = False) -> BatchSummary:
    """Run every job of ``plan``; stops early (``interrupted``) on KeyboardInterrupt, and
    (``stopped``) at a full disk or a bug in formnet (see the module docstring).

    Raises :class:`~formnet_cli.errors.FormnetError` for problems that would hit every file
    (no weights, an unloadable checkpoint, an option out of range). ``show_tracebacks``: the
    traceback of every failed file (and of a bug) is reported as a note too.
    """
    reporter = reporter or SilentReporter()
    check_before_any_file(plan, options)
    summary = BatchSummary(results=list(plan.settled))
    summary.leftovers_removed = remove_leftovers(
        (job.output for job in plan.jobs if job.output != STREAM), reporter)
    started = time.perf_counter()
    settled = len(summary.results)
    try:
        reporter.start(len(plan.jobs))
        for index, job in enumerate(plan.jobs):
            reporter.file_started(job)
            try:
                result = _run_job(job, options, reporter, show_tracebacks)
            except OutOfSpaceError as error:  # every later output would fail the same way
                summary.stopped = "the output's disk is full"
                summary.results.append(FileResult(job.input, job.output, "failed",
                                                  _one_line(error, job.input)))
                summary.results += [FileResult(left.input, left.output, "not_started")
                                    for left in plan.jobs[index + 1:]]
                reporter.note(f"stopped: the disk of {job.output.parent} is full; free space and "
                              "run the same command with --skip-existing to go on")
                break
            except KeyboardInterrupt:
                summary.results.append(FileResult(job.input, job.output, "interrupted",
                                                  "interrupted; not written"))
                reporter.note(f"interrupted while restoring {job.input}; "
                              f"{job.output} was not written")
                raise
            except FormnetError:  # one that would fail every file (_FATAL_ERRORS): one message
                raise
            except Exception as error:  # not an error of one file (_FILE_ERRORS): a bug
                if show_tracebacks:
                    reporter.note(_traceback(error))
                summary.stopped = "a bug in formnet"
                summary.results.append(FileResult(job.input, job.output, "failed",
                                                  f"{_one_line(error, job.input)} ({BUG_ADVICE})"))
                summary.results += [FileResult(left.input, left.output, "not_started")
                                    for left in plan.jobs[index + 1:]]
                break
            summary.results.append(result)
            reporter.file_finished(result)
    except KeyboardInterrupt:  # in a file, or between two: what was not reached is listed
        summary.interrupted = True
        summary.results += [FileResult(left.input, left.output, "not_started")
                            for left in plan.jobs[len(summary.results) - settled:]]
    finally:
        summary.seconds = time.perf_counter() - started
        reporter.stop()
    return summary


def remove_leftovers(outputs: Iterable[Path], reporter: Reporter) -> list[Path]:
    """Remove the temporary files that earlier runs, killed while writing (SIGKILL, a power
    cut, a Ray worker killed), left beside ``outputs`` (:func:`formnet_cli.io.leftover_temporaries`);
    one written since this process started is another live run's, and is left alone."""
    started = _process_start_time()
    removed = []
    for leftover in imageio.leftover_temporaries(outputs):
        try:
            if leftover.stat().st_mtime < started:
                leftover.unlink()
                removed.append(leftover)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    if removed:
        reporter.note(f"removed {len(removed)} temporary file(s) left by an interrupted run: "
                      + ", ".join(map(os.fspath, removed)))
    return removed


def _process_start_time() -> float:
    """When this process started (seconds since the epoch), to about 10 ms on Linux: its start
    in clock ticks since boot (``/proc/self/stat``) against ``CLOCK_BOOTTIME``. psutil's
    ``create_time`` adds the boot time in whole seconds, up to a second early, which kept the
    temporary file a run killed just before this one had written."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime; fields[0] is field 3
        since_start = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - since_start
    except (OSError, ValueError, IndexError, AttributeError):
        return psutil.Process().create_time()


def _run_job(job: Job, options: BatchOptions, reporter: Reporter,
             show_tracebacks: bool = False) -> FileResult:
    """Restore one file: every page of a multi-page TIFF, the one image of any other file."""
    started = time.perf_counter()
    tasks = options.restore.tasks
    if left_as_is(job, options):
        return FileResult(job.input, job.output, "skipped", "output exists")
    created: list[Path] = []
    try:
        if job.output != STREAM:
            created = _prepare_output_folder(job.output)  # before the model runs
        source, pages = _read_input(job, options)
        _note_decoder_warnings(job, pages, reporter)
        stream_format = _stream_format(job, options, pages)
        imageio.check_writable_as(job.output, pages,  # before the model runs
                                  scale=options.restore.scale or 1,
                                  format=stream_format)
        _check_bilevel(pages, tasks, job.input, reporter)
        restored_pages, results = [], []
        for number, page in enumerate(pages, start=1):
            where = f"{job.input}" if len(pages) == 1 else f"{job.input} page {number}"
            if page.bilevel and tasks != ("sr",):  # auto, or one of several pages (see _check_bilevel)
                reporter.note(f"{where}: 1-bit (black and white): nothing to restore" if not tasks
                              else f"{where}: 1-bit (black and white), written unchanged (as 8-bit grey)")
                restored_pages.append(page)
                continue
            try:
                restored_page, result = _restore_page(page, source, options, reporter)
            except FormnetError as error:  # say which page of several
                if len(pages) == 1 or isinstance(error, _FATAL_ERRORS):
                    raise
                raise FormnetError(f"page {number}: {_one_line(error, job.input)}") from None
            if len(tasks) != 1:  # auto, or a chain: what was done (and why)
                reporter.note(f"{where}: {result.describe()}")
            elif result.estimated:
                reporter.note(f"{where}: {result.describe_level()}")
            restored_pages.append(restored_page)
            results.append(result)
        unchanged = not any(result.steps for result in results)  # auto found nothing to do
        if unchanged and options.skip_clean:
            _remove_empty_folders(created)
            return FileResult(job.input, job.output, "skipped", "nothing to restore (--skip-clean)",
                              seconds=time.perf_counter() - started, task=NOTHING,
                              decision=results[0].reason if results else "")
        copied = unchanged and _same_format(job, pages, stream_format)
        if copied:
            written = _copy_input(job, source)
        else:
            written = _write_output(job, restored_pages, options, stream_format)
    except BaseException as error:  # leave no empty folder behind for an image not written
        _remove_empty_folders(created)
        if isinstance(error, (*_FATAL_ERRORS, OutOfSpaceError)) or not isinstance(error, _file_errors()):
            raise
        if show_tracebacks:
            reporter.note(_traceback(error))
        return FileResult(job.input, job.output, "failed", _one_line(error, job.input),
                          seconds=time.perf_counter() - started)
    megapixels = sum(page.height * page.width for page in restored_pages) / 1e6
    input_megapixels = sum(page.height * page.width for page in pages) / 1e6
    if not results:  # auto on 1-bit pages only: nothing to restore
        return FileResult(job.input, job.output, "done", seconds=time.perf_counter() - started,
                          megapixels=megapixels, input_megapixels=input_megapixels, task=NOTHING,
                          decision="1-bit (black and white): nothing to restore")
    if not copied:
        _note_what_the_output_lost(job, pages, reporter, written, stream_format)
    first = results[0]
    return FileResult(job.input, job.output, "done", seconds=time.perf_counter() - started,
                      megapixels=megapixels, input_megapixels=input_megapixels,
                      sigma=first.sigma, quality=first.quality,
                      estimated=first.estimated, sigma_map_range=first.sigma_map_range,
                      model=first.model_name, model_path=first.model_path, task=first.task,
                      steps=[_step_record(step) for step in first.steps],
                      decision=first.reason)


def _step_record(step: StepResult) -> dict[str, Any]:
    """One step as ``--json`` lists it."""
    record: dict[str, Any] = {"task": step.task}
    if step.task == "denoise":
        record["sigma"] = step.sigma
        record["sigma_map_range"] = step.sigma_map_range
    elif step.task == "jpeg":
        record["quality"] = step.quality
    else:
        record["scale"] = step.scale
    record.update(estimated=step.estimated, model=step.model_name, model_path=step.model_path)
    return record


def _same_format(job: Job, pages: list[imageio.LoadedImage], stream_format: str | None) -> bool:
    """Whether the output is written in the input's format (then an image auto left as it is
    is written as the input's very bytes)."""
    source_format = "JPEG" if pages[0].source_format == "MPO" else pages[0].source_format
    try:
        return imageio.output_format(job.output, stream_format) == source_format
    except FormnetError:
        return False


def _copy_input(job: Job, source: Path | bytes) -> Path | bytes:
    """Write the input's bytes, unchanged, to the job's output (atomically) or standard output."""
    data = source if isinstance(source, bytes) else source.read_bytes()
    if job.output == STREAM:
        _write_to_stdout(data)
        return data
    _prepare_output_folder(job.output)
    try:
        imageio.write_atomically(job.output, lambda handle: handle.write(data))
    except OSError as error:
        kind = OutOfSpaceError if error.errno in (errno.ENOSPC, errno.EDQUOT) else ImageWriteError
        raise kind(f"{job.output}: cannot write ({error.strerror or error})") from None
    return job.output


def _read_input(job: Job, options: BatchOptions) -> tuple[Path | bytes, list[imageio.LoadedImage]]:
    """The pages of the job's input, checked from their headers before they are decoded
    (:func:`_before_decoding`), and what the model may read again (the JPEG quality): the
    path, or the bytes read from standard input."""
    check = _before_decoding(job, options)
    if job.input != STREAM:
        return job.input, imageio.read_pages(job.input, restore_memory=check)
    data = sys.stdin.buffer.read()
    if not data:
        raise ImageReadError(f"{STREAM}: nothing on standard input (0 bytes)")
    return data, imageio.read_pages_bytes(data, os.fspath(STREAM), restore_memory=check)


def _before_decoding(job: Job, options: BatchOptions) -> imageio.RestoreMemory:
    """What the header of a job's input must pass before a pixel of it is decoded: pages the
    task can restore (not only 1-bit) and the output format can hold (as a file: standard
    output's format may be the input's, known once read); returns the memory their restore
    will take beside the decoded pages
    (:func:`~formnet_cli.inference.tiling.restore_memory_needed`)."""
    restore = options.restore
    scale = restore.scale or 1  # set where sr is a step
    passes = restore.ensemble if isinstance(restore.ensemble, int) else 2  # auto: the card's

    def check(pages: Sequence[imageio.DeclaredPage]) -> int:
        _refuse_bilevel(pages, restore.tasks)
        if job.output != STREAM:
            imageio.check_writable_as(job.output, pages, scale=scale)
        return restore_memory_needed(pages, scale=scale, passes=passes)

    return check


def _note_decoder_warnings(job: Job, pages: list[imageio.LoadedImage], reporter: Reporter) -> None:
    """A note where the decoder read the file despite damage it reported: the output may show it."""
    said = next((page.decoder_warnings for page in pages if page.decoder_warnings), ())
    if said:
        more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
        reporter.note(f"{job.input}: read despite damage, its decoder said: {said[0]}{more}; "
                      "its output may show it")


def _stream_format(job: Job, options: BatchOptions,
                   pages: list[imageio.LoadedImage]) -> str | None:
    """The extension an image written to standard output takes: ``--ext``, else the input's
    (its file's extension, or the format read from standard input); ``None`` for a file."""
    if job.output != STREAM:
        return None
    if options.ext is not None:
        return normalise_ext(options.ext)
    return job.input.suffix if job.input != STREAM else imageio.extension_of(pages[0].source_format)


def _write_output(job: Job, pages: list[imageio.LoadedImage], options: BatchOptions,
                  stream_format: str | None) -> Path | bytes:
    """Write ``pages`` to the job's output file (atomically) or to standard output; returns the
    file, or the bytes written to standard output."""
    write_options: dict[str, Any] = {}
    if options.jpeg_quality is not None:
        write_options["jpeg_quality"] = options.jpeg_quality
    if stream_format is None:
        _prepare_output_folder(job.output)  # again: another process may have removed it since
        imageio.write_pages(job.output, pages, **write_options)
        return job.output
    data = imageio.encode_pages(pages, stream_format, **write_options)
    _write_to_stdout(data)
    return data


def _write_to_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:  # the reader went away: say so once, not again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ImageWriteError("standard output was closed before the image was written") from None
    except OSError as error:  # e.g. a full disk behind a redirection
        raise ImageWriteError(f"cannot write to standard output ({error.strerror or error})") from None


def _note_what_the_output_lost(job: Job, pages: list[imageio.LoadedImage], reporter: Reporter,
                               written: Path | bytes, stream_format: str | None) -> None:
    """Notes on what the written file's format could not keep: alpha, metadata, a HEIC's
    colour description. Advice only: the file is written whatever happens here."""
    suffix = stream_format or job.output.suffix
    if (any(page.transparent for page in pages)
            and not imageio.keeps_alpha(job.output, stream_format)):
        reporter.note(f"{job.input}: transparency dropped ({suffix} has no alpha "
                      "channel; write .png, .tif, .webp, .jp2, .avif or .heic to keep it)")
    lost = imageio.metadata_not_kept(pages[0], written)
    if lost:
        them = "them" if len(lost) > 1 or lost[0].startswith("text") else "it"
        keep = job.input.suffix or imageio.extension_of(pages[0].source_format)
        reporter.note(f"{job.input}: {', '.join(lost)} not carried to {suffix}; "
                      f"write {keep} to keep {them}")
    if (any(imageio.describes_other_than_srgb(page) for page in pages)
            and not imageio.keeps_colour_description(job.output, stream_format)):
        reporter.note(f"{job.input}: its colour description (HEIF nclx, not sRGB, no ICC "
                      f"profile) is not carried to {suffix}; its colours may show "
                      "differently: write .heic to keep it")


def _restore_page(page: imageio.LoadedImage, source: Path | bytes, options: BatchOptions,
                  reporter: Reporter) -> tuple[imageio.LoadedImage, RestoreResult]:
    """One image through :func:`api.restore_with_options`, alpha included (resized for sr)."""
    pixels = page.pixels
    if page.alpha is not None:
        pixels = np.concatenate([pixels, page.alpha[:, :, None]], axis=2)
    result = api.restore_with_options(pixels, options.restore, progress=reporter.tiles,
                                      source_path=source)
    output = result.image
    if page.alpha is None:
        return imageio.resized(page, output, None), result
    return imageio.resized(page, output[:, :, :-1], output[:, :, -1]), result


def _check_bilevel(pages: list[imageio.LoadedImage], tasks: tuple[str, ...], path: Path,
                   reporter: Reporter) -> None:
    """Notes on 1-bit (black and white) pages once read: upscaled to 8-bit grey (the refusal
    of an all 1-bit file for another task comes before decoding: :func:`_refuse_bilevel`)."""
    _refuse_bilevel(pages, tasks)
    if tasks == ("sr",) and any(page.bilevel for page in pages):
        reporter.note(f"{path}: 1-bit image, upscaled to 8-bit grey")


def _refuse_bilevel(pages: Sequence[imageio.LoadedImage | imageio.DeclaredPage],
                    tasks: tuple[str, ...]) -> None:
    """Refuse to denoise or deblock a 1-bit (black and white) image: it holds no Gaussian noise
    or JPEG artefacts, and the models would only turn its edges grey (1-bit pages among others
    of a TIFF are kept as they are; ``auto``, no task given, finds nothing to restore in
    them). Upscaling it is fine."""
    if tasks and tasks != ("sr",) and all(page.bilevel for page in pages):
        raise FormnetError(f"1-bit (black and white) image: no {','.join(tasks)} model applies "
                           "to it (--task sr upscales it, as 8-bit grey)")


def _prepare_output_folder(output: Path) -> list[Path]:
    """Create the folders ``output`` goes in; returns those it created, outermost first."""
    created = [folder for folder in reversed(output.parents) if not folder.exists()]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        in_the_way = next((folder for folder in output.parents
                           if folder.exists() and not folder.is_dir()), None)
        reason = f"{in_the_way} is a file" if in_the_way is not None else error.strerror or error
        kind = OutOfSpaceError if error.errno in (errno.ENOSPC, errno.EDQUOT) else ImageWriteError
        raise kind(f"{output}: cannot create its folder ({reason})") from None
    return created


def _remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (outermost first), innermost first, where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:  # not empty (another file went there), or already gone
            return


def _one_line(error: BaseException, path: Path) -> str:
    """The error as one line, without a leading ``<path>: `` (the summary names the file)."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = text.removeprefix(f"{path}: ")
    if not isinstance(error, FormnetError):
        text = f"{type(error).__name__}: {text}"
    return text


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).rstrip()
