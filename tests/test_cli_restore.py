"""``formnet restore`` end to end on tiny saved models, through Typer's CliRunner: tasks,
levels, options and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import invoke, restore
from formnet_cli.batch import run as batch_run
from formnet_cli.inference import device as device_module


def test_one_file_keeps_size_and_dtype(tiny_models, tmp_path, gray_png):
    output = tmp_path / "clean.png"
    result = restore(tiny_models.denoise_gray, gray_png, "-o", output, "--sigma", "25")
    assert result.exit_code == 0, result.output
    with Image.open(output) as image:
        assert image.size == (28, 20) and image.mode == "L"
    assert "restored 1, skipped 0, failed 0" in result.stdout


def test_sixteen_bit_rgb_stays_sixteen_bit(tiny_models, tmp_path, random_image):
    import cv2

    source = tmp_path / "deep.png"
    cv2.imwrite(str(source), random_image((12, 10, 3), np.uint16))
    output = tmp_path / "deep_clean.png"
    result = restore(tiny_models.denoise_gray, source, "-o", output, "--sigma", "10")
    assert result.exit_code == 0, result.output
    restored = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
    assert restored.dtype == np.uint16 and restored.shape == (12, 10, 3)


def test_sigma_auto_is_reported(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "out.png",
                     "--sigma", "auto")
    assert result.exit_code == 0, result.output
    assert "estimated sigma" in result.stderr


def test_recursive_folder_with_a_corrupt_file(tiny_models, tmp_path, random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((16, 16), np.uint8))
    write_png(scans / "sub" / "b.png", random_image((12, 20, 3), np.uint8, seed=1))
    (scans / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (scans / "notes.txt").write_text("not an image")
    output = tmp_path / "restored"
    result = restore(tiny_models.denoise_gray, scans, "-o", output, "--recursive",
                     "--sigma", "15")
    assert result.exit_code == 1, result.output
    assert (output / "a.png").is_file() and (output / "sub" / "b.png").is_file()
    assert not (output / "sub" / "bad.png").exists()
    assert "restored 2, skipped 1, failed 1" in result.stdout
    assert any(line.startswith("failed: ") and "bad.png" in line  # on stderr, with the notes
               for line in result.stderr.splitlines())
    assert "skipped " in result.stderr and "'.txt' files are not read" in result.stderr


def test_json_summary_is_the_only_stdout(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "out.png",
                     "--sigma", "auto", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["done"] == 1 and summary["failed"] == 0 and summary["exit_code"] == 0
    (entry,) = summary["files"]
    assert entry["status"] == "done" and entry["estimated"] and entry["sigma"] >= 0
    assert Path(entry["model_path"]).resolve() == tiny_models.denoise_gray.resolve()  # which weights ran


def test_sigma_auto_reports_noise_that_varies_with_brightness(tiny_models, tmp_path, write_png):
    rows, cols = np.mgrid[0:128, 0:160]
    clean = 0.05 + 0.9 * cols / 159 + 0.04 * np.sin(rows / 5.0)
    noisy = clean + np.sqrt(0.006 * clean) * np.random.default_rng(0).normal(size=clean.shape)
    source = write_png(tmp_path / "camera.png", np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8))
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.png", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["files"]
    low, high = entry["sigma_map_range"]
    assert low < entry["sigma"] < high and entry["estimated"]
    shown = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "again.png")
    assert "varies with brightness" in shown.output


def test_jpeg_and_sr_tasks(tiny_models, tmp_path, random_image):
    source = tmp_path / "old.jpg"
    Image.fromarray(random_image((16, 16, 3), np.uint8)).save(source, quality=20)
    fixed = tmp_path / "old_fixed.png"
    result = restore(tiny_models.jpeg_gray, source, "-o", fixed, "--task", "jpeg",
                     "--quality", "auto", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["quality"] == 20
    big = tmp_path / "big.png"
    result = restore(tiny_models.sr_gray, fixed, "-o", big, "--task", "sr", "--scale", "3")
    assert result.exit_code == 0, result.output
    with Image.open(big) as image:
        assert image.size == (48, 48)


def test_unknown_task_is_a_one_line_usage_error(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png",
                     "--task", "deblur")
    assert result.exit_code == 2
    assert result.stderr == ("error: Invalid value for '--task' / '-t': 'deblur' is not auto, "
                             "denoise, jpeg, sr or several joined by commas (see 'formnet restore "
                             "-h')\n")


@pytest.mark.parametrize("flags, expected", [
    (["--sigma", "loud"], "'loud' is not a number or 'auto'"),
    (["--tile", "0"], "'0' is not 'auto', 'none' or a positive integer"),
    (["--jpeg-quality", "0"], "'--jpeg-quality'"),
    (["--no-such-flag"], "No such option: --no-such-flag"),
])
def test_bad_flags_are_one_line_usage_errors(tiny_models, tmp_path, gray_png, flags, expected):
    result = invoke("restore", gray_png, "-o", tmp_path / "o.png", *flags)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert expected in result.stderr and "restore -h" in result.stderr


def test_sigma_out_of_range_is_one_line_error(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png",
                     "--sigma", "80")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "sigma" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "o.png").exists()


def test_unsupported_ensemble_is_one_line_error(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png",
                     "--sigma", "25", "--ensemble", "3")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "ensemble" in result.stderr and not (tmp_path / "o.png").exists()


def test_precision_the_model_cannot_run_is_one_error_for_a_batch(tmp_path, gray_png, monkeypatch):
    # The BM3D-formatted model runs in fp32 only: refused before any file, not once per file.
    monkeypatch.setattr(device_module, "cpu_has_fast", lambda dtype: True)
    result = invoke("restore", gray_png, gray_png, "-o", tmp_path / "out", "--model",
                    "denoise-gray-bm3d", "--sigma", "25", "--device", "cpu", "--precision", "bf16")
    assert result.exit_code == 2
    assert result.stderr == ("error: this model does not support bf16; use --precision fp32 "
                             "(see 'formnet restore -h')\n")
    assert not (tmp_path / "out").exists()


def test_half_precision_the_cpu_would_emulate_is_one_error_for_a_batch(tiny_models, tmp_path,
                                                                         gray_png, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_fast", lambda dtype: dtype == torch.bfloat16)
    result = restore(tiny_models.denoise_gray, gray_png, gray_png, "-o", tmp_path / "out",
                     "--device", "cpu", "--precision", "fp16")
    assert result.exit_code == 2
    assert result.stderr == ("error: this CPU has no fp16 arithmetic (emulated, it would be far "
                             "slower than fp32); use --precision bf16 or fp32 (see 'formnet restore -h')\n")
    assert not (tmp_path / "out").exists()


def test_missing_weights_is_one_line_error(tmp_path, gray_png):
    result = restore(tmp_path / "no-such-model", gray_png, "-o", tmp_path / "o.png",
                     "--sigma", "5")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "no-such-model" in result.stderr


def test_threads_apply_to_the_batch_and_are_restored(tiny_models, tmp_path, gray_png, monkeypatch):
    seen = []
    run_batch = batch_run.run_batch
    monkeypatch.setattr(batch_run, "run_batch", lambda *args, **kwargs:
                        seen.append(torch.get_num_threads()) or run_batch(*args, **kwargs))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png", "--sigma", "5",
                         "--threads", "1")
        assert result.exit_code == 0, result.output
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_unknown_model_name_is_a_usage_error(gray_png, tmp_path):
    result = restore("denoise-grey", gray_png, "-o", tmp_path / "o.png")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown model 'denoise-grey' (known: denoise-gray, ")
    assert result.stderr.endswith("(see 'formnet restore -h')\n")
    assert not (tmp_path / "o.png").exists()


def test_an_interruption_before_the_first_file_still_reports(tiny_models, tmp_path, random_image,
                                                             write_png, monkeypatch):
    for name in "ab":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))

    def interrupted(*args, **kwargs):  # Ctrl-C while the model loads
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_run, "check_before_any_file", interrupted)
    result = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "out", "--sigma", "5", "--json")
    assert result.exit_code == 130
    assert "interrupted before the first file; nothing was written" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["interrupted"] and summary["not_started"] == 2 and summary["done"] == 0


def test_model_for_another_task_stops_the_batch_once(tiny_models, tmp_path, random_image,
                                                     write_png):
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "in" / name, random_image((8, 8), np.uint8))
    result = restore(tiny_models.jpeg_gray, tmp_path / "in", "-o", tmp_path / "out",
                     "--task", "denoise", "--sigma", "5")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "restores 'jpeg'" in result.stderr and not (tmp_path / "out").exists()


def test_a_level_of_another_task_is_one_line_error(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png", "--scale", "2")
    assert result.exit_code == 2 and not (tmp_path / "o.png").exists()
    assert result.stderr == "error: scale applies to task 'sr', not 'denoise' (see 'formnet restore -h')\n"


def test_a_level_outside_the_model_range_stops_the_batch_once(tiny_models, tmp_path,
                                                              random_image, write_png):
    import json as json_module
    import shutil

    model = tmp_path / "narrow"
    shutil.copytree(tiny_models.denoise_gray, model)
    config = json_module.loads((model / "config.json").read_text())
    config["model"]["sigma_range"] = [15.0, 50.0]
    (model / "config.json").write_text(json_module.dumps(config))
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "in" / name, random_image((8, 8), np.uint8))
    result = restore(model, tmp_path / "in", "-o", tmp_path / "out", "--sigma", "10")
    assert result.exit_code == 2
    assert result.stderr == ("error: sigma must be in [15, 50] for this model, got 10 "
                             "(see 'formnet restore -h')\n")


def test_the_task_comes_from_the_model_or_the_level_given(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.sr_gray, gray_png, "-o", tmp_path / "big.png", "--scale", "2")
    assert result.exit_code == 0, result.output  # no --task: the model's (sr)
    with Image.open(tmp_path / "big.png") as image:
        assert image.size == (56, 40)


@pytest.mark.parametrize("task, scale, quality, expected", [
    ("denoise", True, False, "denoise"), (None, True, False, "sr"), (None, False, True, "jpeg"),
    (None, False, False, "denoise")])
def test_task_for_without_a_model(task, scale, quality, expected):
    from formnet_cli.cli.options import task_for
    from formnet_cli.errors import InvalidOptionError

    assert task_for(task, [], scale=scale, quality=quality) == expected
    with pytest.raises(InvalidOptionError, match="both given; give --task"):
        task_for(None, [], scale=True, quality=True)


def test_task_for_models_of_several_tasks_asks_for_one(tiny_models):
    from formnet_cli.cli.options import task_for
    from formnet_cli.errors import InvalidOptionError

    assert task_for(None, [str(tiny_models.jpeg_gray)], scale=False, quality=False) == "jpeg"
    assert task_for(None, ["sr-y"], scale=False, quality=False) == "sr"  # a bundled name: its manifest
    with pytest.raises(InvalidOptionError, match=r"different tasks \(denoise, sr\); give --task"):
        task_for(None, [str(tiny_models.sr_gray), str(tiny_models.denoise_gray)], scale=False, quality=False)


def test_a_tile_size_in_other_digits_is_a_clear_error():
    assert restore_tile_error("²").startswith("error: Invalid value for '--tile': '²' is not 'auto', 'none'")


def restore_tile_error(value: str) -> str:
    return invoke("restore", "x.png", "-o", "y.png", "--tile", value).stderr


def test_formatter_picks_the_model_of_that_form_and_models_lists_the_forms(tmp_path, gray_png):
    source = gray_png
    result = invoke("restore", source, "-o", tmp_path / "out.png", "--sigma", "25", "--formatter",
                    "bm3d", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["model"] == "denoise-gray-bm3d"
    missing = invoke("restore", source, "-o", tmp_path / "out2.png", "--task", "denoise",
                     "--formatter", "cnn")
    assert missing.exit_code == 1 and "formatters there are: bm3d: denoise-gray-bm3d" in missing.output
    assert not (tmp_path / "out2.png").exists()
    both = invoke("restore", source, "-o", tmp_path / "out3.png", "--formatter", "none",
                  "--model", "denoise-gray")
    assert both.exit_code == 2 and "not both" in both.output
    listing = invoke("models")
    assert listing.exit_code == 0 and "formatter" in listing.output and "bm3d" in listing.output
