"""The ``formnet`` command line: a thin Typer layer over :mod:`formnet_cli.api` and ``batch``.

Commands other than ``restore`` live in modules of :mod:`formnet_cli.cli`, each with
``register(app)``; :func:`register_commands` is the one place that lists them. How every
command parses, shows its help and reports errors (one line, exit 1 or 2; ``FORMNET_DEBUG=1``
for the traceback) is in :mod:`formnet_cli.cli.base`; the options shared by several commands
are in :mod:`formnet_cli.cli.options`.

Heavy imports (torch) happen inside the commands, so ``formnet --help`` stays fast.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from formnet_cli import __version__
from formnet_cli.cli.base import FormnetCommand, FormnetGroup, debug_enabled
from formnet_cli.cli.options import (
    BackendOption, BatchSizeOption, DeviceOption, EnsembleOption, FormatterOption, ModelOption,
    PrecisionName, PrecisionOption, QualityOption, RestoreTaskOption, ScaleOption, SigmaOption,
    StrengthOption, ThreadsOption, TileOption, TileOverlapOption, restore_task_for)
from formnet_cli.errors import InvalidOptionError

__all__ = ["FormnetGroup", "app", "main"]

app = typer.Typer(
    name="formnet",
    cls=FormnetGroup,
    help="Restore images with FormResNet: denoising, JPEG artifact removal, super-resolution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# -- commands -------------------------------------------------------------------------------
def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"formnet {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version_callback, is_eager=True, metavar="",
        help="Show the version and exit.")] = False,
) -> None:
    """Restore images with FormResNet: denoising, JPEG artifact removal, super-resolution."""


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


@app.command(cls=FormnetCommand)
def restore(
    inputs: Annotated[list[str], typer.Argument(  # str: a Path would spoil s3://bucket/key
        show_default=False, metavar="INPUT",
        help="Image files, folders or glob patterns (quote globs); - reads one image from "
             "standard input; s3://bucket/prefix (any fsspec URL) with --engine ray.")],
    output: Annotated[Optional[str], typer.Option(  # a str: a Path would drop a trailing / (a folder)
        "--output", "-o", show_default=False, metavar="PATH",
        help="Output file (one input file) or folder (created; a trailing / says folder); - "
             "writes the image to standard output (in the input's format, or --ext). Default: "
             "beside each input, its name ending in --suffix (photo_restored.jpg).")] = None,
    suffix: Annotated[str, typer.Option(
        "--suffix", metavar="TEXT",
        help="Without -o: what the name of each output written beside its input ends with.")] = "_restored",
    task: RestoreTaskOption = None,
    sigma: SigmaOption = None,
    quality: QualityOption = None,
    scale: ScaleOption = None,
    strength: StrengthOption = 1.0,
    model: ModelOption = None,
    formatter: FormatterOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = PrecisionName.auto,
    backend: BackendOption = "auto",
    tile: TileOption = "auto",
    tile_overlap: TileOverlapOption = None,
    batch_size: BatchSizeOption = 1,
    ensemble: EnsembleOption = "auto",
    threads: ThreadsOption = None,
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", metavar="", help="Walk folders and mirror their tree under the output.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", metavar="", help="Leave outputs that already exist untouched.")] = False,
    skip_clean: Annotated[bool, typer.Option(
        "--skip-clean", metavar="",
        help="With --task auto, write nothing for an image it finds nothing to restore in "
             "(default: write it unchanged).")] = False,
    ext: Annotated[Optional[str], typer.Option(
        "--ext", metavar="png|jpg|tif|webp|avif|heic|jp2|bmp",
        help="Output format for folder outputs and -o - (default: the input's).")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(
        "--jpeg-quality", min=1, max=100, metavar="INT",
        help="Quality of JPEG, AVIF and HEIC outputs (default: 95).")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", metavar="", help="Print a machine-readable summary (only that) on standard output.")] = False,
    list_only: Annotated[bool, typer.Option(
        "--dry-run", "-n", metavar="",
        help="List what would be written (input -> output) and check the options, model and "
             "output folders; read and restore nothing.")] = False,
    engine: Annotated[EngineName, typer.Option(
        "--engine", help="Restore in this process, or on Ray workers (this machine, or a "
                         "cluster with --address; object-store URLs as inputs and -o).")] = EngineName.local,
    address: Annotated[Optional[str], typer.Option(
        "--address", metavar="auto|ray://HOST:PORT",
        help="--engine ray: the Ray cluster to use (default: start Ray on this machine).")] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, metavar="N",
        help="--engine ray: workers, each with the model loaded once (default: as many as the "
             "cluster's GPUs, with --gpus-per-worker, or CPUs allow).")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(
        "--gpus-per-worker", min=0, metavar="F",
        help="--engine ray: GPUs per worker (0.5: two workers share one; default 0: CPU).")] = None,
    threads_per_worker: Annotated[Optional[int], typer.Option(
        "--threads-per-worker", min=1, metavar="T",
        help="--engine ray: CPU threads per worker (default: 1).")] = None,
) -> None:
    """Restore images: one file, or many files, folders and globs into an output folder.

    \b
    formnet restore photo.jpg                          # auto, to photo_restored.jpg beside it
    formnet restore photo.jpg -o photo_fixed.jpg       # auto: JPEG artifacts and/or noise, as found
    formnet restore photo.png -o photo_clean.png --sigma 25
    formnet restore scans/ -o restored/ --recursive --sigma auto
    formnet restore old.jpg -o old_fixed.png --task jpeg --quality auto
    formnet restore small.png -o big.png --scale 4                # --scale: super-resolution
    formnet restore scan.png -o big.png --sigma 25 --scale 2      # denoise, then x2
    formnet restore photo.jpg -o softer.jpg --strength 0.5        # half way to the restoration
    formnet restore scans/ -o restored/ -r --dry-run            # what would be written where
    formnet restore s3://archive/scans/ -o s3://archive/restored/ -r --engine ray --address auto
    curl -s https://example.org/noisy.jpg | formnet restore - -o - --ext png > clean.png
    """
    from rich.console import Console

    from formnet_cli.batch.summary import BatchSummary, FileResult  # no torch: reports an early interruption

    ray_options = {"--address": address, "--workers": workers,
                   "--gpus-per-worker": gpus_per_worker, "--threads-per-worker": threads_per_worker}
    _check_engine(engine, inputs, output, ray_options, threads)
    _check_standard_streams(inputs, output, json_output=json_output, list_only=list_only)
    console = Console(stderr=True)
    plan = None
    try:  # from the imports on (torch loads for seconds): an interruption still reports
        from formnet_cli.batch.plan import BatchOptions, dry_run, plan_batch
        from formnet_cli.batch.run import run_batch
        from formnet_cli.cli.progress import RichReporter
        from formnet_cli.inference.backends import cpu_threads  # torch's and the runtimes'
        from formnet_cli.options import RestoreOptions

        restore_options = RestoreOptions(
            restore_task_for(task, model), sigma=sigma, quality=quality, scale=scale,
            model=model, device=device, precision=precision.value, tile=tile,
            tile_overlap=tile_overlap, batch_size=batch_size, ensemble=ensemble,
            strength=strength, formatter=formatter, backend=backend)
        options = BatchOptions(restore_options, skip_existing=skip_existing,
                               skip_clean=skip_clean, ext=ext, jpeg_quality=jpeg_quality)
        reporter = RichReporter(console, plain_lines=not json_output)
        if engine is EngineName.ray:  # plans, checks and runs on Ray (remote: store URLs too)
            from formnet_cli.batch.ray_engine import RayEngine, restore_on_ray

            assert output is not None  # (_check_engine)
            summary = restore_on_ray(
                inputs, output, options, RayEngine(address, workers, gpus_per_worker or 0.0,
                                                   threads_per_worker or 1),
                recursive=recursive, reporter=reporter, dry_run=list_only,
                show_tracebacks=debug_enabled())
        else:
            plan = plan_batch(list(map(Path, inputs)), output, recursive=recursive, ext=ext,
                              suffix=suffix)
            for note in plan.notes:
                console.print(note, markup=False, highlight=False, soft_wrap=True)
            if list_only:
                summary = dry_run(plan, options)
            else:
                with cpu_threads(threads):
                    summary = run_batch(plan, options, reporter, show_tracebacks=debug_enabled())
    except KeyboardInterrupt:  # while starting, planning or loading the model: before any file
        console.print("interrupted before the first file; nothing was written", highlight=False)
        left = [FileResult(job.input, job.output, "not_started") for job in plan.jobs] if plan else []
        summary = BatchSummary(results=[*(plan.settled if plan else []), *left], interrupted=True)
    if _TERMINATED:
        summary.interrupted_by = signal.SIGTERM
    with _interruptions_ignored():  # the outputs are complete: a late Ctrl-C changes nothing
        if json_output:
            typer.echo(json.dumps(summary.to_dict(), indent=2))
        else:
            for line in summary.lines():  # standard output, unless the image went there
                typer.echo(line, err=output == "-")
            for line in summary.failure_lines():  # with the notes: 2>errors.log has them all
                typer.echo(line, err=True)
    raise typer.Exit(summary.exit_code)


def _check_engine(engine: EngineName, inputs: list[str], output: str | None,
                  ray_options: dict[str, object], threads: int | None) -> None:
    """Refuse the options of one engine given to the other, and store URLs without Ray."""
    from formnet_cli.batch.remote import is_url

    given = [name for name, value in ray_options.items() if value is not None]
    if engine is EngineName.local:
        if given:
            raise InvalidOptionError(f"{', '.join(given)}: options of --engine ray")
        url = next((item for item in [*inputs, output or ""] if is_url(item)), None)
        if url is not None:
            raise InvalidOptionError(f"{url}: object-store URLs are read and written by "
                                     "--engine ray")
    elif output is None:
        raise InvalidOptionError("--engine ray needs -o: the output folder or store URL")
    elif threads is not None:
        raise InvalidOptionError("--threads: with --engine ray, give --threads-per-worker")


def _check_standard_streams(inputs: list[str], output: str | None, *, json_output: bool,
                            list_only: bool) -> None:
    """Refuse ``-`` where the stream cannot serve: an image to or from a terminal, and
    ``--json`` with the image on standard output."""
    import sys

    if output == "-" and json_output:
        raise InvalidOptionError("--json and -o - would both write to standard output; "
                                 "choose one")
    if list_only:
        return
    if output == "-" and (sys.stdout is None or sys.stdout.isatty()):
        raise InvalidOptionError("-o - writes image data, and standard output is "
                                 f"{'closed' if sys.stdout is None else 'a terminal'}; redirect it "
                                 "(> out.png) or pipe it to a program")
    if Path("-") in map(Path, inputs) and (sys.stdin is None or sys.stdin.isatty()):
        raise InvalidOptionError("'-' reads an image from standard input, which is "
                                 f"{'closed' if sys.stdin is None else 'a terminal'}; redirect a "
                                 "file (< in.png) or pipe one in")


# -- commands from other modules: the one place that lists them ----------------------------
def register_commands(target: typer.Typer) -> None:
    """Add the commands of the ``cli_*`` modules (each has ``register(app)``), in help order."""
    from formnet_cli.cli import eval as cli_eval
    from formnet_cli.cli import export as cli_export
    from formnet_cli.cli import hub as cli_hub
    from formnet_cli.cli import serve as cli_serve
    from formnet_cli.cli import train as cli_train

    for module in (cli_hub, cli_eval, cli_train, cli_serve, cli_export):
        module.register(target)


register_commands(app)


def main() -> None:
    """Console-script entry point (``formnet``).

    SIGTERM is handled like Ctrl-C, so a killed run also removes its temporary files and
    reports what it finished; it then exits 143 (128 + SIGTERM) where Ctrl-C exits 130. Once
    the command is over, a late signal changes neither its work nor its exit code.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(prog_name="formnet")
    except SystemExit as exit_:
        if exit_.code == 130 and _TERMINATED:  # typer's exit for an interruption outside a
            raise SystemExit(128 + signal.SIGTERM) from None  # batch (planning, loading)
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


_TERMINATED: list[int] = []
"""The SIGTERM received, if any (a list, so that the handler can record it)."""


def _interrupt(signum: int, frame: object) -> None:
    if _TERMINATED:  # a second SIGTERM: the first is being handled (summary, clean-up)
        return
    _TERMINATED.append(signum)
    raise KeyboardInterrupt


@contextmanager
def _interruptions_ignored() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored within the block (its handlers are restored after it); as
    they are in a thread other than the main one, which cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(signum, signal.SIG_IGN) for signum in signals]
    try:
        yield
    finally:
        for signum, handler in zip(signals, previous):
            signal.signal(signum, handler)


if __name__ == "__main__":
    main()
