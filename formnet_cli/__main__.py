"""``python -m formnet_cli``: the same as the ``formnet`` command."""

from formnet_cli.cli import main

if __name__ == "__main__":
    main()
