"""The progress bar of ``formnet restore``: a :class:`~formnet_cli.batch.run.Reporter` drawn by rich.

Apart from :mod:`formnet_cli.batch.run`, which reports to any ``Reporter`` and draws nothing.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from formnet_cli.batch.plan import Job
from formnet_cli.batch.summary import FileResult


class RichReporter:
    """A rich progress bar over images, and over tiles of the current image when it has many.

    Draws on ``console`` (standard error in the CLI); notes print above the bar. Where the
    console is not a terminal (a log file, a pipe), no bar: with ``plain_lines``, one line per
    finished file instead (``[2/10] in/b.png -> out/b.png: done (1.2 s)``).
    """

    def __init__(self, console: Console, *, show_progress: bool | None = None,
                 plain_lines: bool = False) -> None:
        self.console = console
        self.enabled = console.is_terminal if show_progress is None else show_progress
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True, disable=not self.enabled)
        self.plain_lines = plain_lines and not self.enabled
        self._images: TaskID | None = None
        self._tiles: TaskID | None = None
        self._total = self._finished = 0

    def start(self, total: int) -> None:
        self._total = total
        if self.enabled:  # rich before 14 prints a newline on stop even when disabled
            self.progress.start()
        self._images = self.progress.add_task("images", total=total)
        self._tiles = self.progress.add_task("tiles", total=None, visible=False)

    def file_started(self, job: Job) -> None:
        if self._tiles is not None:
            self.progress.update(self._tiles, completed=0, total=None, visible=False,
                                 description=f"  {job.input.name}")

    def tiles(self, done: int, total: int) -> None:
        if self._tiles is not None:
            self.progress.update(self._tiles, completed=done, total=total, visible=total > 1)

    def file_finished(self, result: FileResult) -> None:
        if self._images is not None:
            self.progress.advance(self._images)
        self._finished += 1
        if self.plain_lines:
            status = result.status if not result.reason else f"{result.status}, {result.reason}"
            self.note(f"[{self._finished}/{self._total}] {result.input} -> {result.output}: "
                      f"{status} ({result.seconds:.1f} s)")

    def note(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.enabled:
            self.progress.stop()
