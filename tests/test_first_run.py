"""A first run that just works: the README's commands without the shared data sets (the
example images and the tiny training config), what ``download-weights`` says of the bundled
models, restore's throughput counted as ``formnet eval`` counts it, and outputs that would
replace an input refused before any work."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke, restore
from formnet_cli.batch.summary import BatchSummary, FileResult
from formnet_cli.hub.manifest import load_manifest
from formnet_cli.training.config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGES = ROOT / "examples" / "images"
TINY_CONFIG = ROOT / "examples" / "configs" / "tiny-denoise-gray.toml"


def _make_images_module():
    script = ROOT / "examples" / "make_images.py"
    spec = importlib.util.spec_from_file_location("make_images", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_images_are_what_their_script_makes(tmp_path):
    written = _make_images_module().make_images(tmp_path)
    names = sorted(path.relative_to(tmp_path).as_posix() for path in written)
    assert names == sorted(path.relative_to(EXAMPLE_IMAGES).as_posix()
                           for path in EXAMPLE_IMAGES.rglob("*.png"))
    modes = set()
    for name in names:
        made, committed = Image.open(tmp_path / name), Image.open(EXAMPLE_IMAGES / name)
        assert (made.mode, made.size) == (committed.mode, committed.size), name
        assert np.array_equal(np.asarray(made), np.asarray(committed)), name
        modes.add((name.split("/")[0], made.mode))
    # Both folders mix gray and colour (formnet eval takes such a folder as it is).
    assert modes == {("train", "L"), ("train", "RGB"), ("test", "L"), ("test", "RGB")}


def test_the_readme_eval_and_train_lines_need_no_shared_data():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines()
             if line.startswith(("formnet eval ", "formnet train ", "python examples/"))]
    assert lines, "the README shows no eval or train line"
    for line in lines:
        words = line.split("#")[0].split()
        assert "../shared" not in line, line
        paths = [word for word in words if word.startswith("examples/")]
        assert all((ROOT / path).exists() for path in paths), line
    config = load_train_config(TINY_CONFIG)
    assert [Path(folder) for folder in config.data.train_dirs] == [EXAMPLE_IMAGES / "train"]
    assert Path(config.data.val_dir) == EXAMPLE_IMAGES / "test"


def test_the_tiny_config_trains_a_model_that_eval_scores_on_the_example_set(tmp_path, monkeypatch):
    # From a folder with no ../shared: the README's first training run, cut to 2 steps, then
    # its model scored on the mixed gray and colour test images.
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    trained = invoke("train", TINY_CONFIG, "--run-dir", run, "--set", "train.steps=2",
                     "--set", "train.val_every=2", "--set", "train.checkpoint_every=2",
                     "--set", "optim.warmup_steps=0")
    assert trained.exit_code == 0, trained.output
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 and log[-1]["val_psnr"] > 0
    report = tmp_path / "r.json"
    scored = invoke("eval", EXAMPLE_IMAGES / "test", "--sigma", "25", "--model", run,
                    "--json", report, "--no-warmup", "--device", "cpu")
    assert scored.exit_code == 0, scored.output
    rows = {row["method"]: row for row in json.loads(report.read_text())["results"]}
    assert rows["formnet tiny-denoise-gray"]["images_scored"] == 4
    assert rows["input"]["mean_psnr"] == pytest.approx(20.7, abs=0.3)  # sigma 25, a little clipped


def test_download_weights_says_the_bundled_models_need_no_download(monkeypatch):
    helped = invoke("download-weights", "--help", env={"COLUMNS": "200"})
    assert helped.exit_code == 0
    assert "the bundled ones need no download" in helped.output
    assert "No model is published yet" in helped.output
    # What the help says must stay true: published models change it (and this test).
    models = load_manifest().models
    assert [entry.revision for entry in models] == [None] * len(models)

    def no_network(*args, **kwargs):
        raise AssertionError("a bundled model was requested from the hub")

    monkeypatch.setattr("formnet_cli.hub.download.hf_hub_download", no_network)
    result = invoke("download-weights")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line]  # rich 13.8: a blank one first
    assert [line.split(":")[0] for line in lines] == [entry.name for entry in models]
    assert all(line.endswith("nothing to download") and "bundled with formnet" in line
               for line in lines)


def test_restore_counts_megapixels_of_input_as_eval_does(tiny_models, tmp_path, random_image,
                                                         write_png):
    # x2: the output has four times the pixels; the summary's MP/s counts those read.
    source = write_png(tmp_path / "small.png", random_image((80, 100), np.uint8))
    result = restore(tiny_models.sr_gray, source, "-o", tmp_path / "big.png", "--scale", "2",
                     "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (file,) = summary["files"]
    assert (file["input_megapixels"], file["megapixels"]) == (0.008, 0.032)
    assert summary["input_megapixels"] == 0.008
    done = BatchSummary([FileResult(source, tmp_path / "big.png", "done", megapixels=0.032,
                                    input_megapixels=0.008)], seconds=2.0)
    assert done.megapixels_per_second == pytest.approx(0.004)


@pytest.mark.parametrize("spelling", ["in/sub/../photo.png", "in/link.png", "./in/photo.png"])
def test_an_output_onto_the_input_however_spelled_is_refused_before_any_work(
        tiny_models, tmp_path, gray_png, monkeypatch, spelling):
    (tmp_path / "in" / "sub").mkdir()
    (tmp_path / "in" / "link.png").symlink_to("photo.png")
    before = gray_png.read_bytes()
    loads = []
    monkeypatch.setattr("formnet_cli.api.load_model", lambda *a, **k: loads.append(a))
    monkeypatch.chdir(tmp_path)
    result = restore(tiny_models.denoise_gray, "in/photo.png", "-o", spelling, "--sigma", "5")
    assert result.exit_code == 2, result.output
    assert result.stderr == ("error: in/photo.png: the output would overwrite the input; "
                             "choose another -o (see 'formnet restore -h')\n")
    assert loads == [] and gray_png.read_bytes() == before
