"""Card scores recorded from an evaluation report into a checkpoint's config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formnet_cli.config import ModelConfig, NetworkConfig
from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.evaluation.protocol import Setting
from formnet_cli.evaluation.report import EvalReport, ImageResult, MeasuredCheckpoint, MethodResult
from formnet_cli.evaluation.scores import record_scores
from formnet_cli.hub.checkpoint import read_info, save_checkpoint
from formnet_cli.models import FormResNet


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A checkpoint whose card already has a score for another set (and one to be replaced)."""
    config = ModelConfig(residual=NetworkConfig(kind="plain", widths=(4,), depth=2, unshuffle=1))
    return save_checkpoint(FormResNet(config), tmp_path / "mine", "mine", ensemble=2,
                           scores={"Set12 sigma 25": 30.52, "BSD68 sigma 25": 1.0})


def _row(method: str, sigma: float, psnrs: list[float], checkpoint: MeasuredCheckpoint | None,
         note: str = "") -> MethodResult:
    images = [ImageResult(f"img{index}", psnr, 0.9, 0.1, 0.01) for index, psnr in enumerate(psnrs)]
    return MethodResult(method, Setting("denoise", sigma), images, note=note, checkpoint=checkpoint)


def _report(folder: Path, ensemble: int = 2) -> dict:
    mine = MeasuredCheckpoint(str(folder), "mine", ensemble)
    other = MeasuredCheckpoint(str(folder.parent / "other"), "other", ensemble)
    return EvalReport("BSD68", "denoise", [
        _row("formnet mine (2 passes)", 15, [31.004, 32.0], mine),
        _row("formnet other (2 passes)", 15, [20.0], other),
        _row("input", 15, [24.6], None),
        _row("formnet mine (2 passes)", 25, [29.111, 29.311], mine),
        _row("formnet mine (2 passes)", 90, [], mine, note="sigma outside the model's range"),
    ]).to_dict()


def test_scores_of_the_checkpoint_are_recorded_and_the_others_kept(checkpoint: Path) -> None:
    recorded = record_scores(checkpoint, _report(checkpoint))
    assert recorded == {"BSD68 sigma 15": 31.5, "BSD68 sigma 25": 29.21}  # means, to 0.01 dB
    assert read_info(checkpoint).scores == {"Set12 sigma 25": 30.52, "BSD68 sigma 25": 29.21,
                                            "BSD68 sigma 15": 31.5}


def test_scores_from_a_saved_report_under_another_set_name(checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "bsd68.json"
    path.write_text(json.dumps(_report(checkpoint)))
    assert record_scores(checkpoint, path, dataset="BSD68[:2]") == {
        "BSD68[:2] sigma 15": 31.5, "BSD68[:2] sigma 25": 29.21}
    assert read_info(checkpoint).scores["BSD68 sigma 25"] == 1.0  # not this key


def test_a_report_without_the_checkpoint_records_nothing(checkpoint: Path, tmp_path: Path) -> None:
    other = save_checkpoint(FormResNet(read_info(checkpoint).model), tmp_path / "other2", "other2",
                            ensemble=2)
    with pytest.raises(InvalidOptionError, match="no results for the checkpoint .*--model"):
        record_scores(other, _report(checkpoint))
    assert read_info(other).scores == {}


def test_scores_measured_with_another_ensemble_are_refused(checkpoint: Path) -> None:
    before = (checkpoint / "config.json").read_bytes()
    with pytest.raises(InvalidOptionError, match="with 1 self-ensemble pass.*runs 2; .*--ensemble auto"):
        record_scores(checkpoint, _report(checkpoint, ensemble=1))
    assert (checkpoint / "config.json").read_bytes() == before


@pytest.mark.parametrize("text, message", [("not json", "not a 'formnet eval --json' report"),
                                           ('{"results": []}', "no 'dataset' field"),
                                           ("[1, 2]", "not a 'formnet eval --json' report$")])
def test_a_file_that_is_no_report_is_a_one_line_error(checkpoint: Path, tmp_path: Path,
                                                      text: str, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(FormnetError, match=message) as raised:
        record_scores(checkpoint, path)
    assert "\n" not in str(raised.value)
