"""``formnet train``: a thin command over :mod:`formnet_cli.training`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Training config (TOML), e.g. examples/configs/denoise-gray.toml.")],
    resume: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Continue the run in this folder from its last state.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option("--run-dir", metavar="DIR", help="Run folder (default: runs/<name>).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a config value: key=value (repeatable).")] = None,
) -> None:
    """Train a FormResNet with the cross-level loss; the result loads with `formnet restore --model`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .config import ConfigError
    from .errors import FormnetError
    from .training.config import load_train_config
    from .training.trainer import Trainer

    console = Console(stderr=True)
    try:
        settings = load_train_config(config, overrides or [])
    except ConfigError as error:  # a ValueError, not a FormnetError: make it a one-line error
        raise FormnetError(str(error)) from error
    folder = resume or run_dir or Path("runs") / settings.name
    trainer = Trainer(settings, folder)
    if resume is not None:
        trainer.load_state()
        console.print(f"resuming {folder} at step {trainer.step}")
    console.print(f"training {settings.name}: {settings.model.task}, {trainer.device}, "
                  f"{settings.train.steps} steps -> {folder}")

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[speed]}"), TimeRemainingColumn(),
                        TextColumn("{task.fields[terms]}"), console=console)
    bar = progress.add_task(settings.name, total=settings.train.steps, completed=trainer.step,
                            speed="", terms="")
    last_validation = ""

    def show(record: dict) -> None:
        """Live line: step, it/s, ETA, each loss term and the last validation PSNR."""
        nonlocal last_validation
        if "val_psnr" in record:
            last_validation = f"  val {record['val_psnr']:.2f} dB"
        terms = "  ".join(f"{key} {value:.4g}" for key, value in record.items()
                          if key not in ("step", "it_per_s", "elapsed_s", "lr", "val_psnr"))
        progress.update(bar, completed=record["step"], speed=f"{record.get('it_per_s', 0):.1f} it/s",
                        terms=f"lr {record.get('lr', 0):.1e}  {terms}{last_validation}")

    try:
        with progress:
            output = trainer.fit(on_log=show)
    except KeyboardInterrupt:
        console.print(f"interrupted at step {trainer.step}; state saved, continue with --resume {folder}")
        raise typer.Exit(130)
    console.print(f"done: {output}")
