"""``python -m formnet_cli.training CONFIG [--resume RUN] [--set key=value]``: ``formnet train``."""

import sys

from formnet_cli.cli.app import app

if __name__ == "__main__":
    app(args=["train", *sys.argv[1:]], prog_name="formnet")
