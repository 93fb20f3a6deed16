"""``python -m formnet_cli.training CONFIG [--resume RUN] [--set key=value]``: same as ``formnet train``."""

import typer

from ..cli_train import train

if __name__ == "__main__":
    typer.run(train)
