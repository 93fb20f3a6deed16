"""``formnet train``: a thin command over :mod:`formnet_cli.training`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    config: Annotated[Path, typer.Argument(help="Training config (TOML), e.g. examples/configs/denoise-gray.toml.")],
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this folder from its last state.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="Run folder (default: runs/<name>).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value: key=value (repeatable).")] = None,
) -> None:
    """Train a FormResNet with the cross-level loss; the result loads with `formnet restore --model`."""
    from rich.console import Console

    from .training.config import load_train_config
    from .training.trainer import Trainer

    console = Console(stderr=True)
    settings = load_train_config(config, overrides or [])
    folder = resume or run_dir or Path("runs") / settings.name
    trainer = Trainer(settings, folder)
    if resume is not None:
        trainer.load_state()
        console.print(f"resuming {folder} at step {trainer.step}")
    console.print(f"training {settings.name}: {settings.model.task}, {trainer.device}, "
                  f"{settings.train.steps} steps -> {folder}")

    def show(record: dict) -> None:
        terms = "  ".join(f"{k} {v:.4g}" for k, v in record.items()
                          if k not in ("step", "it_per_s", "elapsed_s", "lr", "val_psnr"))
        remaining = (settings.train.steps - record["step"]) / max(record.get("it_per_s", 0), 1e-9)
        val = f"  val {record['val_psnr']:.2f} dB" if "val_psnr" in record else ""
        console.print(f"step {record['step']}/{settings.train.steps}  {record.get('it_per_s', 0):.1f} it/s  "
                      f"ETA {remaining / 60:.0f} min  lr {record.get('lr', 0):.2e}  {terms}{val}")

    try:
        output = trainer.fit(on_log=show)
    except KeyboardInterrupt:
        console.print(f"interrupted at step {trainer.step}; state saved, continue with --resume {folder}")
        raise typer.Exit(130)
    console.print(f"done: {output}")
