"""Fuzz ``formnet restore`` with a seeded corpus of our own: unusual valid images, corrupted
ones, hostile forged headers for each format, damaged multi-page TIFFs, special files and odd
names (``benchmarks/fuzz_corpus.py``). The table in ``docs/reliability.md`` comes from::

    python benchmarks/fuzz.py --seed 0 --files 1130 --alone hostile
    python benchmarks/fuzz.py --seed 3 --files 300 --model path/to/checkpoint   # quicker

Each category is restored by ``python -m formnet_cli restore ... --json`` in subprocesses
(up to 100 files a batch; ``--alone CATEGORY`` runs each of its files in its own process, for
its own peak memory), each under a timeout and a memory ceiling, with the environment of the
caller (``FORMNET_MAX_MEGAPIXELS`` unset: the default limit). For each file it checks:

- no traceback, no crash (a signal, an exit code but 0 and 1), no hang (the timeout);
- peak memory: the process's high-water resident set (``VmHWM``, read every 10 ms while it
  runs; ``wait4``'s maximum would include the forking parent's), in MiB;
- what the file should give: a valid image restored, a hostile one refused, a hidden one
  skipped (and listed), every refusal in one line of formnet's (no C library's line on
  standard error: ``stray lines``);
- every output written: readable by formnet, as many pages as the input declares (fewer: a
  ``silent page loss``), the input's size where known; no output for a failed file, and no
  temporary ``.part`` file left (``leftovers``).

``tests/test_fuzz.py`` runs a seeded subset of a few hundred files with a tiny model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from benchmarks.fuzz_corpus import CATEGORIES, Case, declared_tiff_pages, make_corpus  # noqa: E402

BATCH_FILES = 100
FOLDER_CATEGORIES = ("special", "names")
"""Categories restored as a folder (what a folder walk does with them is what is tested)."""
MEMORY_CEILING_MIB = 4096
"""A formnet process over this is killed (and its peak shown as over it)."""


# -- running formnet ---------------------------------------------------------------------
@dataclass
class Run:
    """One ``formnet`` process: how it ended, what it printed, its peak memory."""

    exit_code: int | None
    """The exit code, or -N for signal N; None when this runner killed it."""
    stdout: str
    stderr: str
    peak_mib: float
    seconds: float
    hung: bool = False
    over_memory: bool = False
    signalled: int | None = None
    """The signal this runner sent (interruption trials)."""


def formnet(args: Sequence[object], **options: object) -> Run:
    """Run ``python -m formnet_cli ARGS`` (``formnet ARGS``) as :func:`python` runs it."""
    return python(["-m", "formnet_cli", *args], **options)  # type: ignore[arg-type]


def _default_signals() -> None:
    """In the child before it runs Python: SIGINT and SIGTERM back to their defaults. A shell
    starts a background job (``nohup ... &``) with SIGINT ignored, the child inherits that, and
    Python then never raises KeyboardInterrupt: every SIGINT trial would read as finished."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def python(args: Sequence[object], *, timeout: float, memory_mib: float = MEMORY_CEILING_MIB,
           signal_at: tuple[float, int] | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``python ARGS`` (this interpreter, this repository first on its path) to its end,
    killed after ``timeout`` seconds or over ``memory_mib``; ``signal_at`` (seconds, signal)
    sends a signal on the way."""
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPOSITORY), environment.get("PYTHONPATH", "")]))
    environment.pop("FORMNET_DEBUG", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, *map(str, args)],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   env=environment, preexec_fn=_default_signals)
        verdict: dict[str, object] = {}
        done = threading.Event()
        watchdog = threading.Thread(target=_watch, args=(process, started, timeout, memory_mib,
                                                         signal_at, verdict, done), daemon=True)
        watchdog.start()
        _, status, _ = os.wait4(process.pid, 0)
        done.set()
        watchdog.join()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        killed = bool(verdict.get("hung") or verdict.get("over_memory"))
        return Run(None if killed else process.returncode,
                   out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                   float(verdict.get("peak_kib", 0)) / 1024, seconds,
                   hung=bool(verdict.get("hung")),
                   over_memory=bool(verdict.get("over_memory")),
                   signalled=verdict.get("signalled"))  # type: ignore[arg-type]


def _watch(process: subprocess.Popen, started: float, timeout: float, memory_mib: float,
           signal_at: tuple[float, int] | None, verdict: dict[str, object],
           done: threading.Event) -> None:
    try:
        watched = psutil.Process(process.pid)
    except psutil.Error:
        return
    while True:  # a reading first, then every 10 ms until the process has ended
        verdict["peak_kib"] = max(int(verdict.get("peak_kib", 0)), _high_water_kib(process.pid))
        if done.wait(0.01):
            return
        elapsed = time.monotonic() - started
        try:
            if signal_at is not None and "signalled" not in verdict and elapsed >= signal_at[0]:
                verdict["signalled"] = signal_at[1]
                watched.send_signal(signal_at[1])
            if elapsed > timeout:
                verdict["hung"] = True
                watched.kill()
                return
            if watched.memory_info().rss > memory_mib * 2**20:
                verdict["over_memory"] = True
                watched.kill()
                return
        except psutil.Error:  # it is ending: ``done`` is set once it is reaped
            continue


def _high_water_kib(pid: int) -> int:
    """The process's peak resident set since its exec (``VmHWM``), in KiB; 0 once it has ended."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- checking what it did ----------------------------------------------------------------
@dataclass
class Tally:
    """One row of the table: a category, or all of them."""

    name: str
    files: int = 0
    restored: int = 0
    failed: int = 0
    skipped: int = 0
    tracebacks: int = 0
    crashes: int = 0
    hangs: int = 0
    peak_mib: float = 0.0
    stray_lines: int = 0
    corrupt_restored: int = 0
    """Outputs written for corrupt inputs (each checked like any other)."""
    invalid_outputs: int = 0
    page_losses: int = 0
    unexpected: int = 0
    leftovers: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("files", "restored", "failed", "skipped", "tracebacks", "crashes", "hangs",
                     "stray_lines", "corrupt_restored", "invalid_outputs", "page_losses",
                     "unexpected", "leftovers"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.peak_mib = max(self.peak_mib, other.peak_mib)
        self.problems += other.problems

    def row(self) -> str:
        return (f"| {self.name} | {self.files} | {self.restored} | {self.failed} | {self.skipped} "
                f"| {self.tracebacks} | {self.crashes} | {self.hangs} | {self.peak_mib:,.0f} "
                f"| {self.stray_lines} | {self.corrupt_restored} | {self.invalid_outputs} "
                f"| {self.page_losses} | {self.unexpected} | {self.leftovers} |")


TABLE_HEAD = ("| category | files | restored | failed | skipped | tracebacks | crashes | hangs "
              "| peak memory (MiB) | stray library lines | outputs for corrupt inputs "
              "| invalid outputs | silent page losses | unexpected results | leftovers |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def check_run(run: Run, cases: Sequence[Case], tally: Tally, roots: Sequence[Path],
              out: Path) -> None:
    """Fold one process's run over ``cases`` into ``tally`` (see the module)."""
    tally.peak_mib = max(tally.peak_mib, run.peak_mib)
    tally.tracebacks += run.stderr.count("Traceback (most recent call last)")
    if run.hung:
        tally.hangs += 1
        tally.problems.append(f"hang ({run.seconds:.0f} s) over {len(cases)} files from {cases[0].path}")
    elif run.over_memory:
        tally.problems.append(f"over {MEMORY_CEILING_MIB} MiB over {len(cases)} files from {cases[0].path}")
    elif run.exit_code not in (0, 1):
        tally.crashes += 1
        tally.problems.append(f"exit {run.exit_code} over files from {cases[0].path}: "
                              f"{run.stderr.strip()[-300:]}")
    stray = stray_lines(run.stderr, cases, roots)
    tally.stray_lines += len(stray)
    tally.problems += [f"stray line: {line}" for line in stray[:5]]
    try:
        results = {entry["input"]: entry for entry in json.loads(run.stdout)["files"]}
    except (ValueError, KeyError, TypeError):
        results = {}
    for case in cases:
        tally.files += 1
        _check_case(case, results.get(str(case.path)), tally)
    leftovers = [path for path in out.rglob("*.part")] if out.exists() else []
    tally.leftovers += len(leftovers)
    tally.problems += [f"leftover {path}" for path in leftovers[:5]]


def _check_case(case: Case, result: dict | None, tally: Tally) -> None:
    status = result["status"] if result else "absent"
    reason = result.get("reason", "") if result else ""
    tally.restored += status == "done"
    tally.failed += status == "failed"
    tally.skipped += status == "skipped"
    if "a bug in formnet" in reason:
        tally.tracebacks += 1
    expected = {"done": status == "done", "refused": status in ("failed", "skipped"),
                "skipped": status == "skipped", "ignored": status == "absent",
                "any": status in ("done", "failed", "skipped")}[case.expect]
    if not expected:
        tally.unexpected += 1
        tally.problems.append(f"{case.path} ({case.kind}): expected {case.expect}, got {status} {reason}")
    output = Path(result["output"]) if result and result.get("output") else None
    if status != "done":
        if output is not None and output.exists() and status == "failed":
            tally.invalid_outputs += 1
            tally.problems.append(f"{case.path}: failed, yet {output} was written")
        return
    tally.corrupt_restored += case.category == "corrupt"
    problem = _output_problem(case, output)
    if problem:
        if "pages" in problem:
            tally.page_losses += 1
        else:
            tally.invalid_outputs += 1
        tally.problems.append(f"{case.path} ({case.kind}): {problem}")


def _output_problem(case: Case, output: Path | None) -> str | None:
    """Why a restored file's output is wrong (unreadable, fewer pages, another size), or None."""
    from formnet_cli import io as imageio
    from formnet_cli.errors import FormnetError

    if output is None or not output.is_file():
        return "restored, but no output file"
    try:
        pages = imageio.read_pages(output)
    except FormnetError as error:
        return f"its output cannot be read: {error}"
    wanted = case.pages
    if wanted is None and case.path.suffix.lower() in (".tif", ".tiff"):
        wanted = declared_tiff_pages(case.path.read_bytes())
    if wanted is not None and len(pages) < wanted:
        return f"{len(pages)} pages out of {wanted} declared"
    if case.size is not None and (pages[0].width, pages[0].height) != case.size:
        return f"output {pages[0].width} x {pages[0].height}, input {case.size[0]} x {case.size[1]}"
    return None


def stray_lines(stderr: str, cases: Sequence[Case], roots: Sequence[Path]) -> list[str]:
    """Lines of standard error formnet did not write: each of formnet's names a path under
    ``roots`` (a file name with a line break in it counts as one line) or says what happened
    to the run."""
    for case in cases:
        if "\n" in str(case.path):
            stderr = stderr.replace(str(case.path), "<file>" + str(roots[0]))
    own = tuple(map(str, roots))
    return [line for line in stderr.splitlines() if line.strip()
            and not any(root in line for root in own)
            and not line.startswith(("interrupted", "stopped", "removed"))]


# -- the whole run ------------------------------------------------------------------------
def fuzz(corpus: Path, out: Path, *, seed: int, files: int, model: str | None = None,
         alone: Sequence[str] = (), combined: bool = False, timeout: float = 900.0,
         extra: Sequence[str] = ()) -> dict[str, Tally]:
    """Write the corpus, restore it, and tally each category (and ``total``). ``combined``:
    two processes in all (every file named in one, the folder categories in the other), one
    tally (the tests' subset: each process costs seconds of start-up)."""
    cases = make_corpus(corpus, seed=seed, files=files)
    options = ["--sigma", "15", *(["--model", model] if model else []), *extra]
    roots = [corpus, out]
    tallies: dict[str, Tally] = {}
    if combined:
        tally = tallies["all"] = Tally("all")
        named = [case for case in cases if case.category not in FOLDER_CATEGORIES]
        walked = [case for case in cases if case.category in FOLDER_CATEGORIES]
        run = formnet(["restore", *(case.path for case in named), "-o", f"{out / 'named'}/",
                       "--json", *options], timeout=timeout)
        check_run(run, named, tally, roots, out / "named")
        run = formnet(["restore", *(corpus / category for category in FOLDER_CATEGORIES), "-o",
                       out / "walked", "--json", *options], timeout=timeout)
        check_run(run, walked, tally, roots, out / "walked")
    for category in () if combined else CATEGORIES:
        tally = tallies[category] = Tally(category)
        chosen = [case for case in cases if case.category == category]
        target = out / category
        if category in FOLDER_CATEGORIES:
            run = formnet(["restore", corpus / category, "-o", target, "--json", *options],
                          timeout=timeout)
            check_run(run, chosen, tally, roots, target)
            continue
        size = 1 if category in alone else BATCH_FILES
        for start in range(0, len(chosen), size):
            batch = chosen[start:start + size]
            folder = target / f"batch{start // size:04d}"
            run = formnet(["restore", *(case.path for case in batch), "-o", f"{folder}/",
                           "--json", *options], timeout=timeout if size > 1 else 120)
            check_run(run, batch, tally, roots, folder)
    total = Tally("**all**")
    for tally in tallies.values():
        total.add(tally)
    tallies["total"] = total
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    return "\n".join([TABLE_HEAD, *(tally.row() for tally in tallies.values())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", type=int, default=1130, help="about this many files")
    parser.add_argument("--model", help="a checkpoint (default: formnet's own models)")
    parser.add_argument("--threads", help="formnet restore --threads (default: its own)")
    parser.add_argument("--alone", nargs="*", default=["hostile"], choices=CATEGORIES,
                        help="categories whose files run one a process (their own peak memory)")
    parser.add_argument("--work", type=Path, help="where the corpus and outputs go (default: a "
                                                  "temporary folder, removed)")
    parser.add_argument("--json", type=Path, help="write every tally and problem here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="formnet-fuzz-") as temporary:
        work = args.work or Path(temporary)
        started = time.monotonic()
        tallies = fuzz(work / "corpus", work / "out", seed=args.seed, files=args.files,
                       model=args.model, alone=args.alone,
                       extra=["--threads", args.threads] if args.threads else [])
        minutes = (time.monotonic() - started) / 60
    print(table(tallies))
    print(f"\n{tallies['total'].files} files, seed {args.seed}, {minutes:.1f} min")
    for problem in tallies["total"].problems[:50]:
        print(f"- {problem}")
    if args.json:
        args.json.write_text(json.dumps({name: vars(tally) for name, tally in tallies.items()},
                                        indent=2, default=str))
    sys.exit(0 if not any(_failures(tallies["total"])) else 1)


def _failures(total: Tally) -> list[int]:
    """What the issue asks to be 0 (peak memory over 2 GiB counts as one)."""
    return [total.tracebacks, total.crashes, total.hangs, total.stray_lines, total.invalid_outputs,
            total.page_losses, total.unexpected, total.leftovers, int(total.peak_mib > 2048)]


if __name__ == "__main__":
    main()
