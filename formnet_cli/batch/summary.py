"""What a batch did: each file's :class:`FileResult` and the :class:`BatchSummary` (its lines
and JSON). Apart from :mod:`formnet_cli.batch.run`, so that the command line can report an
interruption that came before torch (which the batch needs) was even loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["BatchSummary", "FileResult", "Status"]

Status = Literal["done", "skipped", "failed", "interrupted", "not_started", "planned"]
"""``interrupted``: being restored when the run was interrupted (nothing written);
``not_started``: left after it (restore them again, e.g. with ``--skip-existing``);
``planned``: would be restored (a dry run)."""


@dataclass
class FileResult:
    """What happened to one input."""

    input: Path
    output: Path | None
    status: Status
    reason: str = ""
    """Why it was skipped or failed (one line)."""
    seconds: float = 0.0
    megapixels: float = 0.0
    """Size of the written image (all its pages), in millions of pixels."""
    input_megapixels: float = 0.0
    """Size of the image read (all its pages): what the run's MP/s counts, as ``formnet eval``'s."""
    sigma: float | None = None
    quality: int | None = None
    estimated: bool = False
    """The levels used (of the first page, for a multi-page TIFF) and whether estimated."""
    sigma_map_range: tuple[float, float] | None = None
    """Lowest and highest sigma of the per-pixel map used where the estimated noise varies
    with brightness (``sigma`` is then the map's mean)."""
    model: str = ""
    model_path: str = ""
    """The checkpoint folder ``model`` was loaded from (a trained run's, or the bundled one)."""
    task: str = ""
    """The tasks run, joined by commas (of the first page); ``none`` where ``--task auto``
    found nothing to restore (the image was written unchanged)."""
    steps: list[dict[str, Any]] = field(default_factory=list)
    """Each step run (of the first page): its task, the level it ran at and its model."""
    decision: str = ""
    """Why ``--task auto`` chose those steps (empty for tasks given)."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input"] = str(self.input)
        data["output"] = None if self.output is None else str(self.output)
        data["seconds"] = round(self.seconds, 4)
        data["megapixels"] = round(self.megapixels, 4)
        data["input_megapixels"] = round(self.input_megapixels, 4)
        return data


@dataclass
class BatchSummary:
    """Every file's result, the elapsed time, and whether the run was interrupted."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    interrupted_by: int = 2
    """The signal that interrupted the run: 2 (SIGINT, Ctrl-C; exit 130) or 15 (SIGTERM; 143)."""
    dry_run: bool = False
    """Planned only (:func:`dry_run`): nothing was read or written."""
    stopped: str = ""
    """Why the run stopped before its last file though not interrupted (a full disk)."""
    leftovers_removed: list[Path] = field(default_factory=list)
    """Temporary files of an earlier, killed run's writes, removed before this one began."""

    def _with(self, status: Status) -> list[FileResult]:
        return [result for result in self.results if result.status == status]

    @property
    def done(self) -> list[FileResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def not_started(self) -> int:
        """Jobs never started because of an interruption."""
        return len(self._with("not_started"))

    @property
    def megapixels(self) -> float:
        return sum(result.megapixels for result in self.done)

    @property
    def input_megapixels(self) -> float:
        return sum(result.input_megapixels for result in self.done)

    @property
    def megapixels_per_second(self) -> float:
        """Megapixels of input restored per second of the whole run (reading, loading the
        model, restoring and writing): ``formnet eval``'s count of megapixels, over the run's
        time rather than the restore call's."""
        return self.input_megapixels / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 128 + the signal after an interruption, 1 otherwise."""
        if self.interrupted:
            return 128 + self.interrupted_by
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "planned": len(self._with("planned")),
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "interrupted": self.interrupted,
            "stopped": self.stopped or None,
            "not_started": self.not_started,
            "leftovers_removed": [str(path) for path in self.leftovers_removed],
            "seconds": round(self.seconds, 3),
            "megapixels": round(self.megapixels, 4),
            "input_megapixels": round(self.input_megapixels, 4),
            "megapixels_per_second": round(self.megapixels_per_second, 4),
            "exit_code": self.exit_code,
            "files": [result.to_dict() for result in self.results],
        }

    def lines(self) -> list[str]:
        """The human summary: one line of counts (a dry run: one line per file it would
        restore or leave first, ``input -> output``). Failures: :meth:`failure_lines`."""
        if self.dry_run:
            planned = self._with("planned")
            left = [result for result in self.skipped if result.output is not None]
            return ([f"{result.input} -> {result.output}" for result in planned]
                    + [f"{result.input} -> {result.output} (exists: left as it is)" for result in left]
                    + [f"would restore {len(planned)}, skip {len(self.skipped)}; "
                       f"failed {len(self.failed)}"])
        head = (f"restored {len(self.done)}, skipped {len(self.skipped)}, "
                f"failed {len(self.failed)} in {self.seconds:.1f} s "
                f"({self.megapixels_per_second:.3g} MP/s)")
        if self.interrupted:
            head = f"interrupted: {head}; {self.not_started} not started"
        elif self.stopped:
            head = f"stopped ({self.stopped}): {head}; {self.not_started} not started"
        return [head]

    def failure_lines(self) -> list[str]:
        """One line per failed file, ``failed: <input>: <reason>``."""
        return [f"failed: {result.input}: {result.reason}" for result in self.failed]
