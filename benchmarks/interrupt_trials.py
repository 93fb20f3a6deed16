"""Interrupt ``formnet restore`` at random points of a batch (SIGINT, SIGTERM or SIGKILL), then
resume it with ``--skip-existing``, and check what was left. The table in
``docs/reliability.md`` comes from::

    python benchmarks/interrupt_trials.py --trials 50 --seed 0

A seeded folder of images (grey and colour PNG, JPEG, WebP, 16-bit PNG, two-page TIFF) is
restored once without interruption (the reference; its duration sets the range of the random
delays), then once a trial into its own folder, each trial's signal sent after a random delay
from half a second (Python's own start: :data:`_STARTUP`) to the reference's duration (formnet's
imports, the plan, the model's loading, every file, the summary).
After the signal: the exit code (130, 143, or -9 for SIGKILL; 0 where the batch had finished
first), every output present complete (equal to the reference's, byte for byte), the
temporary ``.part`` files left. After the resume: exit 0, every output there and equal to the
reference's, no ``.part`` file left (a killed run's are removed and listed as
``leftovers_removed``). ``tests/test_fuzz.py`` runs three trials with a tiny model.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from benchmarks.fuzz import formnet  # noqa: E402
from benchmarks.fuzz_corpus import textured  # noqa: E402

_STARTUP = 0.5
"""Seconds before the first signal: Python's own start (before formnet's code is loaded, a
Ctrl-C is Python's: a KeyboardInterrupt traceback)."""
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}


def make_images(folder: Path, *, count: int, size: int, seed: int) -> None:
    """``count`` seeded images of about ``size`` pixels a side, of several formats."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        height, width = int(size * rng.uniform(0.75, 1.0)), size
        kind = index % 6
        if kind == 0:
            Image.fromarray(textured(rng, height, width, 1)).save(folder / f"{index:03d}.png")
        elif kind == 1:
            Image.fromarray(textured(rng, height, width, 3), "RGB").save(folder / f"{index:03d}.jpg", quality=80)
        elif kind == 2:
            Image.fromarray(textured(rng, height, width, 3), "RGB").save(folder / f"{index:03d}.webp", lossless=True)
        elif kind == 3:
            import cv2
            cv2.imwrite(str(folder / f"{index:03d}.png"), textured(rng, height, width, 3, np.uint16))
        elif kind == 4:
            pages = [Image.fromarray(textured(rng, height, width, 1)) for _ in range(2)]
            pages[0].save(folder / f"{index:03d}.tif", save_all=True, append_images=pages[1:])
        else:
            Image.fromarray(textured(rng, height, width, 4), "RGBA").save(folder / f"{index:03d}.png")


@dataclass
class Row:
    """One signal's trials (a row of the table)."""

    signal: str
    trials: int = 0
    stopped: int = 0
    """Runs the signal stopped (exit 130, 143 or -9)."""
    finished_first: int = 0
    wrong_exit: int = 0
    outputs_after_signal: int = 0
    damaged_outputs: int = 0
    """Outputs present after the signal that differ from the reference (a partial file)."""
    leftovers_after_signal: int = 0
    resumed: int = 0
    """Resumes that exited 0 with every output present and equal to the reference."""
    leftovers_removed: int = 0
    leftovers_after_resume: int = 0
    problems: list[str] = field(default_factory=list)

    def row(self) -> str:
        return (f"| {self.signal} | {self.trials} | {self.stopped} | {self.finished_first} "
                f"| {self.wrong_exit} | {self.outputs_after_signal} | {self.damaged_outputs} "
                f"| {self.leftovers_after_signal} | {self.resumed} of {self.trials} "
                f"| {self.leftovers_removed} | {self.leftovers_after_resume} |")


TABLE_HEAD = ("| signal | trials | stopped by it | finished before it | wrong exit codes "
              "| outputs written before it | damaged outputs | leftovers after it "
              "| resumed correctly | leftovers removed by the resume | leftovers after the resume |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(".")}


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.part")) if folder.exists() else []


def trials(images: Path, work: Path, *, count: int, seed: int, model: str | None = None,
           timeout: float = 600.0, signals: Sequence[str] = tuple(SIGNALS),
           extra: Sequence[str] = ()) -> dict[str, Row]:
    """Run ``count`` trials (the signals in turn, seeded delays) over the images in ``images``;
    ``extra``: more ``formnet restore`` options (``--threads 1``)."""
    options = ["--sigma", "15", *(["--model", model] if model else []), *extra]
    reference_folder = work / "reference"
    started = time.monotonic()
    reference = formnet(["restore", images, "-o", reference_folder, *options], timeout=timeout)
    duration = time.monotonic() - started
    if reference.exit_code != 0:
        raise RuntimeError(f"the uninterrupted run failed: {reference.stderr[-500:]}")
    expected = _outputs(reference_folder)
    rng = np.random.default_rng(seed)
    rows = {name: Row(name) for name in signals}
    for trial in range(count):
        name = signals[trial % len(signals)]
        row = rows[name]
        row.trials += 1
        target = work / f"trial{trial:03d}"
        delay = float(rng.uniform(_STARTUP, duration * 1.05))
        run = formnet(["restore", images, "-o", target, *options], timeout=timeout,
                      signal_at=(delay, SIGNALS[name]))
        where = f"trial {trial} ({name} at {delay:.2f} s)"
        if run.signalled is None or run.exit_code == 0:
            row.finished_first += run.exit_code == 0
            if run.exit_code != 0:
                row.wrong_exit += 1
                row.problems.append(f"{where}: exit {run.exit_code}: {run.stderr[-300:]}")
        elif run.exit_code == EXIT_CODES[SIGNALS[name]]:
            row.stopped += 1
        else:
            row.wrong_exit += 1
            row.problems.append(f"{where}: exit {run.exit_code}, expected "
                                f"{EXIT_CODES[SIGNALS[name]]}: {run.stderr[-300:]}")
        written = _outputs(target) if target.exists() else {}
        row.outputs_after_signal += len(written)
        damaged = [output for output, data in written.items() if expected.get(output) != data]
        row.damaged_outputs += len(damaged)
        row.problems += [f"{where}: {output} differs from the uninterrupted run's" for output in damaged]
        left = _leftovers(target)
        row.leftovers_after_signal += len(left)
        resume = formnet(["restore", images, "-o", target, "--skip-existing", "--json", *options],
                         timeout=timeout)
        try:
            removed = json.loads(resume.stdout)["leftovers_removed"]
        except (ValueError, KeyError):
            removed = []
        row.leftovers_removed += len(removed)
        after = _leftovers(target)
        row.leftovers_after_resume += len(after)
        if resume.exit_code == 0 and _outputs(target) == expected and not after:
            row.resumed += 1
        else:
            row.problems.append(f"{where}: the resume exited {resume.exit_code}, "
                                f"{len(_outputs(target))} outputs of {len(expected)}, "
                                f"{len(after)} leftovers: {resume.stderr[-300:]}")
    return rows


def table(rows: dict[str, Row]) -> str:
    return "\n".join([TABLE_HEAD, *(row.row() for row in rows.values())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=24, help="images in the batch")
    parser.add_argument("--size", type=int, default=384, help="pixels a side, about")
    parser.add_argument("--model", help="a checkpoint (default: formnet's own models)")
    parser.add_argument("--threads", help="formnet restore --threads (default: its own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="formnet-interrupt-") as temporary:
        work = Path(temporary)
        make_images(work / "images", count=args.images, size=args.size, seed=args.seed)
        started = time.monotonic()
        rows = trials(work / "images", work, count=args.trials, seed=args.seed, model=args.model,
                      extra=["--threads", args.threads] if args.threads else [])
        minutes = (time.monotonic() - started) / 60
    print(table(rows))
    print(f"\n{args.trials} trials, {args.images} images of about {args.size} px, seed "
          f"{args.seed}, {minutes:.1f} min")
    problems = [problem for row in rows.values() for problem in row.problems]
    for problem in problems[:50]:
        print(f"- {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
