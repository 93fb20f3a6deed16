"""The fuzz suite's seeded subset (issue 24): a few hundred files of every category through
``formnet restore`` (``benchmarks/fuzz.py``), and one interruption trial a signal,, each resumed
with ``--skip-existing`` (``benchmarks/interrupt_trials.py``). A tiny model: the files are what
is tested. The full runs and their tables are in ``docs/reliability.md``."""

from __future__ import annotations

from benchmarks import fuzz, interrupt_trials


def test_a_seeded_fuzz_subset_finds_nothing(tmp_path, tiny_models):
    tallies = fuzz.fuzz(tmp_path / "corpus", tmp_path / "out", seed=24, files=250,
                        model=str(tiny_models.denoise_gray), combined=True,
                        extra=["--threads", "1"])  # tiny images: no thread pool to wake
    total = tallies["total"]
    assert total.files >= 250
    assert total.problems == []
    assert (total.tracebacks, total.crashes, total.hangs, total.stray_lines, total.invalid_outputs,
            total.page_losses, total.unexpected, total.leftovers) == (0,) * 8
    assert total.peak_mib < 2048
    # every category gave both outcomes it should: restored files and one-line refusals
    assert total.restored > 80 and total.failed > 50 and total.skipped >= 2
    assert total.corrupt_restored > 0  # corrupt files that still decode: each output checked


def test_interruptions_at_random_points_resume_to_the_same_outputs(tmp_path, tiny_models):
    interrupt_trials.make_images(tmp_path / "images", count=4, size=48, seed=0)
    rows = interrupt_trials.trials(tmp_path / "images", tmp_path, count=3, seed=24,
                                   model=str(tiny_models.denoise_gray), extra=["--threads", "1"])
    assert [row.signal for row in rows.values()] == ["SIGINT", "SIGTERM", "SIGKILL"]
    for row in rows.values():
        assert row.problems == [], row.problems
        assert row.trials == 1 and row.resumed == 1 and row.wrong_exit == 0
        assert row.damaged_outputs == 0 and row.leftovers_after_resume == 0
        assert row.stopped + row.finished_first == 1
