"""``formnet train``: a thin command over :mod:`formnet_cli.training`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from formnet_cli.cli.base import FormnetCommand

if TYPE_CHECKING:  # imported when used: `formnet --help` loads neither rich's console nor torch
    from rich.console import Console

    from formnet_cli.training.config import TrainConfig


def register(app: typer.Typer) -> None:
    app.command("train", cls=FormnetCommand)(train)


def train(
    config: Annotated[Optional[Path], typer.Argument(
        metavar="CONFIG", show_default=False,
        help="Training config (TOML), e.g. examples/configs/denoise-gray.toml; with --resume, "
             "optional (the run keeps its own settings: a CONFIG must agree with them).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Continue the run in this folder from its last state.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", metavar="DIR", help="Run folder of a new run (default: runs/<name>).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override a config value: key=value (repeatable); paths relative to the current folder.")] = None,
) -> None:
    """Train a FormResNet with the cross-level loss; the result loads with `formnet restore --model`.

    \b
    formnet train examples/configs/denoise-gray.toml --set train.steps=20000
    formnet train --resume runs/denoise-gray                      # continue where it stopped
    formnet train --resume runs/denoise-gray --set train.steps=40000  # and train longer
    """
    from rich.console import Console

    from formnet_cli.training.trainer import Trainer

    settings, folder = _plan_run(config, resume, run_dir, overrides or [])
    console = Console(stderr=True)
    trainer = Trainer(settings, folder)
    if resume is not None:
        trainer.load_state()
        nothing_to_do = trainer.work_left()
        if nothing_to_do:
            from formnet_cli.errors import InvalidOptionError

            raise InvalidOptionError(f"--resume {folder}: {nothing_to_do}")
        console.print(f"resuming {folder} at step {trainer.step}")
    limit = settings.train.time_limit_s
    length = f"{settings.train.steps} steps" + (f" or {limit:g} s of training" if limit else "")
    console.print(f"training {settings.name}: {settings.model.task}, {trainer.device}, {length} -> {folder}")
    try:
        with _progress(console, settings, trainer.step, trainer.elapsed) as show:
            output = trainer.fit(on_log=show)
    except KeyboardInterrupt:
        console.print(f"interrupted at step {trainer.step}; state saved, continue with --resume {folder}")
        raise typer.Exit(130) from None
    console.print(f"done at step {trainer.step}: {output}")


def _plan_run(config: Path | None, resume: Path | None, run_dir: Path | None,
              overrides: list[str]) -> tuple[TrainConfig, Path]:
    """The validated training config and the run folder, or a one-line usage error before
    anything is written."""
    from formnet_cli.config import ConfigError
    from formnet_cli.errors import InvalidOptionError
    from formnet_cli.training.config import load_train_config, resume_train_config
    from formnet_cli.training.data import list_images
    from formnet_cli.training.trainer import STATE_FILE, TRAINING_CONFIG_FILE, holds_run

    if resume is not None:
        if run_dir is not None and run_dir.resolve() != resume.resolve():
            raise InvalidOptionError("--resume continues a run in its own folder; drop --run-dir")
        if not (resume / STATE_FILE).is_file():
            raise InvalidOptionError(f"--resume {resume}: no {STATE_FILE} there (not a run folder, "
                                     "or the run saved no state yet)")
    elif config is None:
        raise InvalidOptionError("give a training config (e.g. examples/configs/denoise-gray.toml), "
                                 "or --resume RUN_FOLDER")
    try:
        if resume is None:
            settings = load_train_config(config, overrides)
        else:
            settings = resume_train_config(resume / TRAINING_CONFIG_FILE, overrides, config)
    except ConfigError as error:  # a ValueError, not a FormnetError: make it a usage error
        raise InvalidOptionError(str(error)) from None
    folder = resume or run_dir or Path("runs") / settings.name
    if resume is None and holds_run(folder):
        raise InvalidOptionError(f"{folder} holds a run already; continue it with --resume {folder}, "
                                 "or choose another --run-dir")
    list_images(settings.data.train_dirs)  # a missing or empty folder fails now, not after
    # the run folder is made (the run lists them again when it loads them)
    if settings.data.val_dir:
        list_images([settings.data.val_dir])
    return settings, folder


@contextmanager
def _progress(console: Console, settings: TrainConfig, step: int,
              elapsed: float) -> Iterator[Callable[[dict], None]]:
    """A live progress bar while the block runs, over the steps or, for a run with a time limit,
    over its time; yields the trainer's ``on_log`` callback (step, it/s, ETA, each loss term
    and the last validation PSNR)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    limit = settings.train.time_limit_s
    steps = settings.train.steps

    def position(step: int, elapsed: float) -> str:
        return f"step {step}, {elapsed:.0f}/{limit:.0f} s" if limit else f"{step}/{steps}"

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.fields[position]}"), TextColumn("{task.fields[speed]}"),
                        TimeRemainingColumn(), TextColumn("{task.fields[terms]}"), console=console)
    bar = progress.add_task(settings.name, total=limit or steps, completed=elapsed if limit else step,
                            position=position(step, elapsed), speed="", terms="")
    last_validation = ""

    def show(record: dict) -> None:
        nonlocal last_validation
        if "val_psnr" in record:
            last_validation = f"  val {record['val_psnr']:.2f} dB"
        terms = "  ".join(f"{key} {value:.4g}" for key, value in record.items()
                          if key not in ("step", "it_per_s", "elapsed_s", "lr", "val_psnr"))
        elapsed = record.get("elapsed_s", 0.0)
        progress.update(bar, completed=elapsed if limit else record["step"],
                        position=position(record["step"], elapsed),
                        speed=f"{record.get('it_per_s', 0):.1f} it/s",
                        terms=f"lr {record.get('lr', 0):.1e}  {terms}{last_validation}")

    with progress:
        yield show
