"""``formnet eval`` end to end and formnet checkpoints as methods, on tiny generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from formnet_cli.evaluation import evaluate as evaluate_module
from formnet_cli.evaluation import methods as methods_module
from formnet_cli.evaluation.methods import FormnetMethod
from formnet_cli.evaluation.protocol import to_uint8
from formnet_cli.evaluation.strips import strip_width
from formnet_cli.inference import device as device_module
from formnet_cli.hub.checkpoint import save_checkpoint
from formnet_cli.cli.app import app
from formnet_cli.cli.eval import expand_multi_values
from formnet_cli.config import ModelConfig, NetworkConfig
from formnet_cli.models import FormResNet

runner = CliRunner()


@pytest.fixture()
def dataset(tmp_path: Path, textured_image) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(textured_image(index)[:, :, 0], "L").save(folder / f"img{index}.png")
    return folder


@pytest.fixture()
def color_dataset(tmp_path: Path, textured_image) -> Path:
    folder = tmp_path / "tinyrgb"
    folder.mkdir()
    for index in range(2):
        Image.fromarray(textured_image(index, (36, 42), color=True), "RGB").save(folder / f"rgb{index}.png")
    return folder


def _checkpoint(folder: Path, task: str = "denoise", channels: int = 1, formatter: str = "none") -> Path:
    torch.manual_seed(0)
    config = ModelConfig(task=task, channels=channels, formatter=formatter,
                         residual=NetworkConfig(widths=(8, 16), blocks_per_level=1),
                         formatter_network=(NetworkConfig(widths=(8, 16), blocks_per_level=1)
                                            if formatter == "cnn" else None))
    return save_checkpoint(FormResNet(config), folder, f"tiny-{task}")


def _invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_eval_table_json_and_markdown(dataset: Path, tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "model")
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    output = _invoke("eval", dataset, "--task", "denoise", "--sigma", "15", "25", "--model", model,
                     "--json", out_json, "--markdown", out_md, "--no-warmup")
    assert "sigma 15" in output and "sigma 25" in output and "formnet tiny-denoise" in output
    report = json.loads(out_json.read_text())
    rows = [(r["label"], r["method"]) for r in report["results"]]
    assert rows == [("sigma 15", "formnet tiny-denoise"), ("sigma 15", "input"),
                    ("sigma 25", "formnet tiny-denoise"), ("sigma 25", "input")]
    for row in report["results"]:
        assert [image["image"] for image in row["images"]] == ["img0", "img1", "img2"]
        assert row["mean_psnr"] == pytest.approx(np.mean([i["psnr"] for i in row["images"]]))
        if row["method"] == "input":  # the degraded input itself: nothing ran, no time
            assert row["megapixels_per_second"] is None and row["seconds_per_image"] is None
            assert all(image["seconds"] is None for image in row["images"])
        else:
            assert row["megapixels_per_second"] > 0
    noisy15 = report["results"][1]["mean_psnr"]
    noisy25 = report["results"][3]["mean_psnr"]
    assert 24 < noisy15 < 26 and 20 < noisy25 < 21.5  # 20 log10(255 / sigma), less clipping
    markdown = out_md.read_text()
    assert markdown.count("| sigma 15 |") == 2 and "| PSNR (dB) |" in markdown
    inputs = [line for line in markdown.splitlines() if "| input |" in line]
    assert len(inputs) == 2 and all(line.endswith("| - | - |  |") for line in inputs)


def test_eval_threads_are_reported_and_restored(dataset: Path, tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "model")
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # so that --threads 1 is a change
    try:
        out_json = tmp_path / "r.json"
        output = _invoke("eval", dataset, "--sigma", "15", "--model", model, "--threads", "1",
                         "--json", out_json, "--no-warmup")
        assert json.loads(out_json.read_text())["environment"]["threads"] == 1
        assert "1 thread," in output
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_level_spellings_are_equivalent() -> None:
    spaced = expand_multi_values(["BSD68", "--sigma", "15", "25", "50", "--baseline", "bm3d", "dncnn"])
    assert spaced == ["BSD68", "--sigma", "15", "--sigma", "25", "--sigma", "50",
                      "--baseline", "bm3d", "--baseline", "dncnn"]
    from formnet_cli.cli.eval import parse_levels

    assert parse_levels(["15,25", "50"], "denoise") == [15.0, 25.0, 50.0]
    assert parse_levels(None, "jpeg") == [10.0, 20.0, 30.0, 40.0]


def test_identical_images_report_inf(dataset: Path, tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    model = _checkpoint(tmp_path / "model")
    _invoke("eval", dataset, "--sigma", "0", "--model", model, "--json", out_json,
            "--markdown", out_md, "--no-warmup")
    text = out_json.read_text()
    report = json.loads(text)  # strict JSON: no bare Infinity
    assert "Infinity" not in text
    row = next(r for r in report["results"] if r["method"] == "input")
    assert row["mean_psnr"] == "inf" and all(i["psnr"] == "inf" for i in row["images"])
    assert row["mean_ssim"] == pytest.approx(1.0)
    assert "| input | inf |" in out_md.read_text()


def test_no_weights_row_and_bm3d(dataset: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from formnet_cli import api
    from formnet_cli.errors import ModelNotFoundError

    def missing(*args, **kwargs):
        raise ModelNotFoundError("no weights")

    monkeypatch.setattr(api, "load_model", missing)
    out_json = tmp_path / "r.json"
    _invoke("eval", dataset, "--sigma", "25", "--baseline", "bm3d", "--limit", "1",
            "--json", out_json, "--no-warmup")
    report = json.loads(out_json.read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert rows["formnet"]["note"] == "no weights yet" and rows["formnet"]["mean_psnr"] is None
    assert rows["BM3D"]["mean_psnr"] > rows["input"]["mean_psnr"] + 3


def test_sr_uses_y_channel_and_bicubic(color_dataset: Path, tmp_path: Path, textured_image) -> None:
    model = _checkpoint(tmp_path / "sr", task="sr")
    out_json = tmp_path / "r.json"
    _invoke("eval", color_dataset, "--task", "sr", "--scale", "2", "--model", model,
            "--json", out_json, "--no-warmup")
    report = json.loads(out_json.read_text())
    assert [r["method"] for r in report["results"]] == ["formnet tiny-sr", "bicubic"]
    bicubic = report["results"][1]
    assert bicubic["megapixels_per_second"] > 0  # bicubic upscaling runs: it is timed
    # The same figure by hand: modcrop, MATLAB bicubic down and up, Y of the 8-bit images.
    from formnet_cli.imaging import degradations as degradations
    from formnet_cli.imaging import metrics as metrics

    clean = degradations.modcrop(textured_image(0, (36, 42), color=True), 2)
    low = degradations.imresize(clean / 255.0, scale=0.5)
    up = to_uint8(degradations.imresize(low, scale=2))
    assert bicubic["images"][0]["psnr"] == pytest.approx(metrics.sr_psnr(clean, up, 2), abs=1e-6)


def test_save_images_writes_strips(dataset: Path, tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "model", formatter="cnn")
    out = tmp_path / "out"
    _invoke("eval", dataset, "--sigma", "25", "--model", model, "--limit", "1",
            "--save-images", out, "--no-warmup")
    folder = out / "sigma25"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["img0_degraded.png", "img0_formnet-tiny-denoise.png",
                     "img0_formnet-tiny-denoise_strip.png"]
    strip = Image.open(folder / "img0_formnet-tiny-denoise_strip.png")
    assert strip.width == strip_width(48, 4)  # degraded | formatted | restored | clean


def test_unwritable_report_path_is_one_line_error_before_any_work(
        dataset: Path, tmp_path: Path, monkeypatch) -> None:
    model = _checkpoint(tmp_path / "model")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    calls = []
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: calls.append(a))
    for option in ("--json", "--markdown"):
        result = runner.invoke(app, ["eval", str(dataset), "--sigma", "15", "--model", str(model),
                                     "--no-warmup", option, str(blocker / "r.json")])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert calls == []  # failed before evaluating, not after


def test_formnet_method_names_its_passes_and_rejects_unsupported_ensembles(tiny_models):
    from formnet_cli import api
    from formnet_cli.errors import InvalidOptionError

    loaded = api.load_model(tiny_models.denoise_gray, task="denoise", device="cpu")
    assert FormnetMethod(loaded).name == f"formnet {loaded.name}"  # its card says 1 pass
    assert FormnetMethod(loaded, ensemble="4").name == f"formnet {loaded.name} (4 passes)"
    with pytest.raises(InvalidOptionError, match="ensemble"):
        FormnetMethod(loaded, ensemble="x")


def test_precision_the_model_cannot_run_is_refused_before_evaluation(
        dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "cpu_has_fast", lambda dtype: True)
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: pytest.fail("evaluation started"))
    result = runner.invoke(app, ["eval", str(dataset), "--sigma", "25", "--model", "denoise-gray-bm3d",
                                 "--precision", "bf16", "--device", "cpu", "--baseline", "none"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: this model does not support bf16")


def _refused_before_any_work(monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """Run ``formnet eval`` expecting a one-line usage error before models load; its text."""
    def started(*args, **kwargs):
        raise AssertionError("models loaded or evaluation started before the refusal")

    monkeypatch.setattr(methods_module, "load_default_methods", started)
    monkeypatch.setattr(evaluate_module, "evaluate", started)
    result = runner.invoke(app, ["eval", *map(str, args), "--no-warmup"])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    return result.stderr


@pytest.fixture()
def mixed_dataset(tmp_path: Path, textured_image) -> Path:
    """A colour image that sorts first and a gray one."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(textured_image(0, color=True), "RGB").save(folder / "a_colour.png")
    Image.fromarray(textured_image(1)[:, :, 0], "L").save(folder / "b_gray.png")
    return folder


def _expected_scores(images: list[dict], folder: Path, loaded_for, sigma: float) -> None:
    """Each image's PSNR in a report row is the protocol's score of ``loaded_for(channels)``
    restoring it, in the image's own channels, as ``formnet_cli.restore`` runs that model."""
    from formnet_cli import api
    from formnet_cli.evaluation.protocol import Setting, degrade, score

    for image in images:
        clean = np.asarray(Image.open(folder / f"{image['image']}.png"))
        clean = clean if clean.ndim == 3 else clean[:, :, None]
        sample = degrade(image["image"], clean, Setting("denoise", sigma))
        restored = api.restore(sample.degraded, "denoise", model=loaded_for(clean.shape[2]),
                               sigma=sigma)
        assert restored.shape == sample.degraded.shape  # a colour image stays colour
        assert image["psnr"] == pytest.approx(score(sample, restored)[0], abs=1e-9)


def test_eval_scores_a_mixed_folder_each_image_in_its_own_channels(mixed_dataset: Path,
                                                                   tmp_path: Path) -> None:
    # --channels auto (the default) keeps each file's: a gray model named with --model runs on
    # each channel of the colour image, as restore runs it; nothing is converted.
    from formnet_cli import api

    model = _checkpoint(tmp_path / "model")
    out_json = tmp_path / "r.json"
    _invoke("eval", mixed_dataset, "--sigma", "25", "--model", model, "--json", out_json,
            "--no-warmup")
    rows = {row["method"]: row for row in json.loads(out_json.read_text())["results"]}
    assert list(rows) == ["formnet tiny-denoise", "input"]
    formnet, noisy = rows["formnet tiny-denoise"], rows["input"]
    assert [image["image"] for image in formnet["images"]] == ["a_colour", "b_gray"]
    assert formnet["note"] == "" and noisy["images_scored"] == 2
    _expected_scores(formnet["images"], mixed_dataset, lambda channels: api.load_model(model), 25.0)
    colour = np.asarray(Image.open(mixed_dataset / "a_colour.png"))
    from formnet_cli.evaluation.protocol import Setting, degrade, score

    sample = degrade("a_colour", colour, Setting("denoise", 25))
    assert noisy["images"][0]["psnr"] == pytest.approx(score(sample, sample.degraded)[0])


def test_eval_default_models_on_a_mixed_folder_are_each_images_own(
        mixed_dataset: Path, tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without --model: the task's default model for each image's channels, in one row, as
    # formnet restore picks it (here tiny stand-ins for the bundled denoise-gray/denoise-color).
    from formnet_cli import api

    real_load = api.load_model
    defaults = {1: tiny_models.denoise_gray, 3: tiny_models.denoise_color}
    asked = []

    def tiny_defaults(name=None, *, task=None, channels=1, device="auto", backend="torch"):
        asked.append((name, channels))
        return real_load(defaults[channels] if name is None else name, task=task, device=device,
                         backend=backend)

    monkeypatch.setattr(api, "load_model", tiny_defaults)
    out_json = tmp_path / "r.json"
    output = _invoke("eval", mixed_dataset, "--sigma", "25", "--json", out_json)
    assert asked == [(None, 1), (None, 3)]
    rows = json.loads(out_json.read_text())["results"]
    names = [row["method"] for row in rows]
    assert names == ["formnet tiny-denoise-gray / formnet tiny-denoise-color", "input"]
    assert "formnet tiny-denoise-gray / formnet tiny-denoise-color" in output
    assert rows[0]["images_scored"] == 2 and rows[0]["note"] == ""
    _expected_scores(rows[0]["images"], mixed_dataset,
                     lambda channels: real_load(defaults[channels]), 25.0)


class _Recorder(methods_module.Method):
    """A stand-in method that returns its input, records the channels of each call, and
    refuses colour images where asked."""

    def __init__(self, gray_only: bool) -> None:
        self.name = "gray only" if gray_only else "any"
        self.gray_only = gray_only
        self.calls: list[int] = []

    def unsupported(self, setting, channels: int) -> str | None:
        return "a gray method" if self.gray_only and channels == 3 else None

    def restore(self, sample):
        self.calls.append(sample.degraded.shape[2])
        return sample.degraded


def test_a_method_for_some_channels_says_which_images_it_left_out(textured_image) -> None:
    from formnet_cli.evaluation.evaluate import evaluate
    from formnet_cli.evaluation.protocol import Setting

    images = [("a_colour", textured_image(0, color=True)), ("b_gray", textured_image(1))]
    gray_only, both = _Recorder(gray_only=True), _Recorder(gray_only=False)
    report = evaluate(images, [Setting("denoise", 25)], [gray_only, both])
    partial, whole = report.results
    assert partial.note == "colour images not scored: a gray method"
    assert [image.image for image in partial.images] == ["b_gray"]
    assert whole.note == "" and [image.image for image in whole.images] == ["a_colour", "b_gray"]
    # Warmed up once per channel count (a mixed folder's two models), then timed once per image.
    assert gray_only.calls == [1, 1] and both.calls == [3, 3, 1, 1]
    only_colour = evaluate(images[:1], [Setting("denoise", 25)], [_Recorder(gray_only=True)])
    assert only_colour.results[0].note == "a gray method" and not only_colour.results[0].images


def test_eval_mixed_folder_with_channels_given_or_for_sr(mixed_dataset: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    _invoke("eval", mixed_dataset, "--sigma", "25", "--channels", "gray", "--model",
            _checkpoint(tmp_path / "model"), "--json", out_json, "--no-warmup")
    assert json.loads(out_json.read_text())["results"][0]["images_scored"] == 2
    # SR scores luma, so a Y model serves both (as on Set14, whose bridge.png is gray).
    _invoke("eval", mixed_dataset, "--task", "sr", "--scale", "2", "--model",
            _checkpoint(tmp_path / "sr", task="sr"), "--json", out_json, "--no-warmup")
    assert json.loads(out_json.read_text())["results"][0]["images_scored"] == 2


def test_models_sharing_a_name_are_labelled_by_what_was_passed(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for run in ("run1", "run2"):
        _checkpoint(tmp_path / run / "model")  # both named tiny-denoise
    monkeypatch.chdir(tmp_path)
    out_json, out = tmp_path / "r.json", tmp_path / "out"
    _invoke("eval", dataset, "--sigma", "25", "--model", "run1/model", "--model", "run2/model",
            "--limit", "1", "--json", out_json, "--save-images", out, "--no-warmup")
    methods = [r["method"] for r in json.loads(out_json.read_text())["results"]]
    assert methods == ["formnet run1/model", "formnet run2/model", "input"]
    names = sorted(p.name for p in (out / "sigma25").iterdir())
    assert names == ["img0_degraded.png", "img0_formnet-run1-model.png",
                     "img0_formnet-run1-model_strip.png", "img0_formnet-run2-model.png",
                     "img0_formnet-run2-model_strip.png"]


@pytest.mark.parametrize("option, values", [
    ("--sigma", ["15", "25"]), ("--quality", ["10", "20"]), ("--scale", ["2", "3"]),
    ("--baseline", ["bm3d", "dncnn"])])
def test_multi_values_after_an_equals_sign(option: str, values: list[str]) -> None:
    first, second = values
    assert expand_multi_values(["BSD68", f"{option}={first}", second, "x"]) == [
        "BSD68", f"{option}={first}", option, second, "x"]


@pytest.mark.parametrize("option, values", [("-s", ["15", "25"]), ("-q", ["10", "20"]),
                                            ("-b", ["bm3d", "dncnn"])])
def test_multi_values_after_an_attached_short_option(option: str, values: list[str]) -> None:
    first, second = values
    assert expand_multi_values(["BSD68", f"{option}{first}", second, "x"]) == [
        "BSD68", f"{option}{first}", option, second, "x"]


def test_json_and_markdown_cannot_both_go_to_stdout(
        dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refused_before_any_work(monkeypatch, dataset, "--sigma", "15", "--json", "-",
                                       "--markdown", "-")
    assert "--json" in message and "--markdown" in message


def test_an_image_too_small_to_score_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    Image.fromarray(np.full((6, 6), 128, np.uint8), "L").save(folder / "tiny.png")
    result = runner.invoke(app, ["eval", str(folder), "--sigma", "25", "--model", str(_checkpoint(tmp_path / "m")),
                                 "--baseline", "none", "--no-warmup"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: image 'tiny' cannot be scored: SSIM needs")


def test_the_reported_precision_says_what_the_baselines_ran_in() -> None:
    from formnet_cli.cli.eval import _precision_label

    assert _precision_label("auto", "cpu") == "fp32"
    assert _precision_label("bf16", "cpu") == "bf16 for formnet models, fp32 for the baselines"


# -- --record-scores ---------------------------------------------------------------------------
def test_record_scores_writes_what_the_json_says_into_the_card(dataset: Path, tmp_path: Path) -> None:
    from formnet_cli.hub.checkpoint import read_info

    model = _checkpoint(tmp_path / "model")
    weights = (model / "model.safetensors").read_bytes()
    out_json = tmp_path / "r.json"
    output = _invoke("eval", dataset, "--sigma", "15", "25", "--record-scores", model,
                     "--json", out_json, "--no-warmup")
    rows = [row for row in json.loads(out_json.read_text())["results"] if row["checkpoint"]]
    assert [row["method"] for row in rows] == ["formnet tiny-denoise"] * 2  # evaluated once
    assert rows[0]["checkpoint"] == {"path": str(model.resolve()), "name": "tiny-denoise", "ensemble": 1}
    expected = {f"tiny {row['label']}": round(row["mean_psnr"], 2) for row in rows}
    assert read_info(model).scores == expected and set(expected) == {"tiny sigma 15", "tiny sigma 25"}
    assert f"recorded in {model / 'config.json'}: tiny sigma 15" in " ".join(output.split())
    assert (model / "model.safetensors").read_bytes() == weights
    _invoke("eval", dataset, "--sigma", "25", "--record-scores", model, "--limit", "2", "--no-warmup")
    assert set(read_info(model).scores) == {"tiny sigma 15", "tiny sigma 25", "tiny[:2] sigma 25"}


def test_record_scores_is_refused_before_any_work(dataset: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = _checkpoint(tmp_path / "model")  # its card runs 1 pass
    message = _refused_before_any_work(monkeypatch, dataset, "--sigma", "25", "--record-scores",
                                       model, "--ensemble", "4")
    assert "leave --ensemble auto" in message
    result = runner.invoke(app, ["eval", str(dataset), "--sigma", "25", "--record-scores",
                                 str(tmp_path), "--no-warmup"])
    assert result.exit_code == 1 and "not a formnet checkpoint" in result.stderr
    assert result.stderr.count("\n") == 1
