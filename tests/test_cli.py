"""``formnet restore`` end to end on tiny saved models, through Typer's CliRunner."""

from __future__ import annotations

import io
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from formnet_cli.batch import run as batch
from formnet_cli.inference import device as device_module
from formnet_cli import io as imageio
from formnet_cli.cli.app import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(arg) for arg in args])


def restore(model: Path, *args: object):
    return invoke("restore", *args, "--model", model, "--device", "cpu", "--tile", "none")


@pytest.fixture
def gray_png(tmp_path, random_image, write_png):
    return write_png(tmp_path / "in" / "photo.png", random_image((20, 28), np.uint8))


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


def test_among_several_files_one_of_a_type_not_read_is_skipped(tiny_models, tmp_path, gray_png):
    # What a shell's scans/* gives: a Thumbs.db among the images must not fail the batch.
    thumbs = tmp_path / "in" / "Thumbs.db"
    thumbs.write_bytes(b"\0" * 16)
    result = restore(tiny_models.denoise_gray, gray_png, thumbs, "-o", tmp_path / "out", "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert "restored 1, skipped 1, failed 0" in result.stdout
    assert f"skipped {thumbs}: '.db' files are not read" in result.stderr


@pytest.mark.parametrize("name", ["anim.gif", "scan"])
def test_a_file_named_alone_of_a_type_not_read_fails(tiny_models, tmp_path, name):
    # Found in a folder it is skipped; named on the command line, the user asked for it.
    source = tmp_path / name
    Image.new("L", (8, 8)).save(source, format="GIF" if name.endswith(".gif") else "PNG")
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.png", "--sigma", "5")
    assert result.exit_code == 1, result.output
    assert "restored 0, skipped 0, failed 1" in result.stdout
    reason = "'.gif' files are not read" if name.endswith(".gif") else "files without an extension"
    assert f"failed: {source}: {reason}" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_a_1_bit_image_is_not_denoised_but_can_be_upscaled(tiny_models, tmp_path, random_image):
    source = tmp_path / "page.tif"
    Image.fromarray(random_image((16, 16), np.uint8)).convert("1").save(source, compression="group4")
    denoised = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert denoised.exit_code == 1 and "1-bit (black and white) image" in denoised.stderr
    assert not (tmp_path / "out.tif").exists()
    upscaled = restore(tiny_models.sr_gray, source, "-o", tmp_path / "big.tif", "--task", "sr",
                       "--scale", "2")
    assert upscaled.exit_code == 0, upscaled.output
    assert "1-bit image, upscaled to 8-bit grey" in upscaled.stderr
    assert Image.open(tmp_path / "big.tif").size == (32, 32)


def test_a_1_bit_page_of_a_multi_page_tiff_is_kept_as_it_is(tiny_models, tmp_path, random_image):
    source = tmp_path / "document.tif"
    cover = Image.fromarray(random_image((16, 16), np.uint8)).convert("1")
    page = Image.fromarray(random_image((16, 16), np.uint8, seed=1))
    cover.save(source, save_all=True, append_images=[page])
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert f"{source} page 1: 1-bit (black and white), written unchanged (as 8-bit grey)" in result.stderr
    with Image.open(tmp_path / "out.tif") as written:
        assert written.n_frames == 2
        assert np.array_equal(np.asarray(written.convert("L")), np.asarray(cover.convert("L")))


def test_a_16bit_colour_jpeg2000_too_small_to_write_fails_before_the_model_runs(
        tiny_models, tmp_path, monkeypatch):
    source = tmp_path / "small16.tif"
    imageio.write_image(source, imageio.LoadedImage(np.full((20, 40, 3), 0.5, np.float32),
                                                    bit_depth=16))
    calls = []
    monkeypatch.setattr("formnet_cli.api.restore_with_info", lambda *a, **k: calls.append(a))
    result = restore(tiny_models.denoise_color, source, "-o", tmp_path / "out.jp2", "--sigma", "5")
    assert result.exit_code == 1 and "needs 32 px a side" in result.stderr
    assert calls == [] and not (tmp_path / "out.jp2").exists()


def test_a_failed_file_leaves_no_empty_output_folder(tiny_models, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    result = restore(tiny_models.denoise_gray, empty, "-o", tmp_path / "out" / "deep" / "x.png",
                     "--sigma", "5")
    assert result.exit_code == 1 and "empty file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_metadata_the_output_format_cannot_hold_is_noted(tiny_models, tmp_path, random_image):
    scan = tmp_path / "in" / "scan.tif"
    scan.parent.mkdir()
    Image.fromarray(random_image((16, 16), np.uint8)).save(
        scan, tiffinfo={270: "Zürich harbour", 315: "José Müller"}, dpi=(600, 600))
    as_tiff = restore(tiny_models.denoise_gray, scan, "-o", tmp_path / "same.tif", "--sigma", "5")
    assert as_tiff.exit_code == 0 and "not carried" not in as_tiff.stderr
    as_webp = restore(tiny_models.denoise_gray, scan, "-o", tmp_path / "out.webp", "--sigma", "5")
    assert as_webp.exit_code == 0, as_webp.output
    assert (f"{scan}: resolution, text (Description, Author) not carried to .webp; "
            "write .tif to keep them") in as_webp.stderr


def test_links_are_planned_once_under_their_own_name_and_noted(tiny_models, tmp_path,
                                                                random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "sub" / "b.png", random_image((8, 8), np.uint8, seed=1))
    (scans / "link.png").symlink_to("a.png")
    (scans / "linkdir").symlink_to("sub")
    (scans / "dangling.png").symlink_to("nothing.png")
    result = restore(tiny_models.denoise_gray, scans, "-o", tmp_path / "out", "-r", "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "a.png", "sub/b.png"]
    assert "restored 2, skipped 3, failed 0" in result.stdout  # each link counted as skipped
    notes = " ".join(result.stderr.split())
    assert f"skipped {scans / 'link.png'}: the same file as {scans / 'a.png'}" in notes
    assert f"skipped {scans / 'dangling.png'}: a link to nothing" in notes
    assert f"skipped {scans / 'linkdir'}: a link to a folder (not followed)" in notes
    globbed = restore(tiny_models.denoise_gray, f"{scans}/**/*.png", "-o", tmp_path / "globbed",
                      "-r", "--sigma", "5")
    assert globbed.exit_code == 0, globbed.output  # sub/b.png under its own name, not linkdir/
    assert sorted(p.relative_to(tmp_path / "globbed").as_posix()
                  for p in (tmp_path / "globbed").rglob("*.png")) == ["a.png", "sub/b.png"]


def test_dry_run_lists_what_would_be_written_and_writes_nothing(tiny_models, tmp_path,
                                                                random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "sub" / "b.png", random_image((8, 8), np.uint8))
    output = tmp_path / "out"
    write_png(output / "a.tif", random_image((8, 8), np.uint8))  # exists: would be left as is
    result = restore(tiny_models.denoise_gray, scans, "-o", output, "-r", "--ext", "tif",
                     "--skip-existing", "--sigma", "5", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{scans / 'sub' / 'b.png'} -> {output / 'sub' / 'b.tif'}",
                                          f"{scans / 'a.png'} -> {output / 'a.tif'} (exists: left as it is)",
                                          "would restore 1, skip 1; failed 0"]
    assert sorted(p.name for p in output.rglob("*")) == ["a.tif"]  # nothing written, no folder made
    as_json = json.loads(restore(tiny_models.denoise_gray, scans, "-o", output, "-r", "--sigma", "5",
                                 "-n", "--json").stdout)
    assert as_json["dry_run"] and as_json["planned"] == 2 and as_json["done"] == 0
    assert {f["status"] for f in as_json["files"]} == {"planned"}
    refused = restore(tiny_models.denoise_gray, scans, "-o", output, "--sigma", "99", "--dry-run")
    assert refused.exit_code == 2 and "sigma" in refused.stderr  # options are checked too
    unknown = invoke("restore", scans, "-o", output, "--model", "bogus", "--sigma", "5", "-n")
    assert unknown.exit_code == 2 and "unknown model 'bogus'" in unknown.stderr  # and the model
    blocked = restore(tiny_models.denoise_gray, scans, "-o", scans / "a.png" / "out", "-r",
                      "--sigma", "5", "-n")  # and the output folders
    assert blocked.exit_code == 1 and f"{scans / 'a.png'} is a file" in blocked.stderr


def test_a_glob_does_not_restore_earlier_outputs_inside_the_output_folder(
        tiny_models, tmp_path, random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "restored" / "a.png", random_image((8, 8), np.uint8))  # an earlier run's
    result = restore(tiny_models.denoise_gray, f"{scans}/*", "-o", scans / "restored", "-r",
                     "--sigma", "5", "-n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:-1] == [f"{scans / 'a.png'} -> {scans / 'restored' / 'a.png'}"]


@pytest.mark.parametrize("glob", [False, True])
def test_an_output_folder_at_or_above_the_inputs_hides_none_of_them(
        tiny_models, tmp_path, random_image, write_png, monkeypatch, glob):
    # 'raw/*.png' -o raw --ext jpg, or raw -o . : the inputs are not earlier outputs.
    write_png(tmp_path / "raw" / "a.png", random_image((8, 8), np.uint8))
    monkeypatch.chdir(tmp_path)
    source = "raw/*.png" if glob else "raw"
    result = restore(tiny_models.denoise_gray, source, "-o", "raw" if glob else ".", "--ext", "jpg",
                     "--sigma", "5", "-n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == ("raw/a.png -> raw/a.jpg" if glob else "raw/a.png -> a.jpg")


def test_without_recursive_subfolders_are_not_entered(tiny_models, tmp_path, random_image,
                                                       write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    write_png(scans / "sub" / "b.png", random_image((8, 8), np.uint8))
    result = restore(tiny_models.denoise_gray, scans, "-o", tmp_path / "out", "--sigma", "5",
                     "--ext", "tif")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["a.tif"]
    assert "--recursive" in result.stderr


def test_skip_existing_leaves_outputs_untouched(tiny_models, tmp_path, gray_png):
    output = tmp_path / "out"
    first = restore(tiny_models.denoise_gray, gray_png, "-o", f"{output}/", "--sigma", "5")
    assert first.exit_code == 0, first.output
    written = output / "photo.png"
    os.utime(written, (1_000_000_000, 1_000_000_000))
    second = restore(tiny_models.denoise_gray, gray_png, "-o", f"{output}/", "--sigma", "5",
                     "--skip-existing")
    assert second.exit_code == 0, second.output
    assert "restored 0, skipped 1, failed 0" in second.stdout
    assert written.stat().st_mtime == 1_000_000_000


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


def test_metadata_survives_restoring_and_sr_keeps_the_print_size(tiny_models, tmp_path, random_image):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    source = tmp_path / "scan.tif"
    Image.fromarray(random_image((12, 16, 3), np.uint8)).save(
        source, dpi=(300, 300), tiffinfo={270: "Harbour, 1921", 33432: "(c) Archive", 700: xmp})
    for task, options, dpi in (("denoise", ["--sigma", "10"], 300), ("sr", ["--scale", "3"], 900)):
        model = tiny_models.denoise_color if task == "denoise" else tiny_models.sr_gray
        result = restore(model, source, "-o", tmp_path / f"{task}.tif", "--task", task, *options)
        assert result.exit_code == 0, result.output
        with Image.open(tmp_path / f"{task}.tif") as written:
            assert written.info["dpi"] == pytest.approx((dpi, dpi))
            assert written.tag_v2[270] == "Harbour, 1921" and written.tag_v2[33432] == "(c) Archive"
            assert written.info["xmp"] == xmp


def test_unknown_task_is_a_one_line_usage_error(tiny_models, tmp_path, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png",
                     "--task", "deblur")
    assert result.exit_code == 2
    assert result.stderr == ("error: Invalid value for '--task' / '-t': 'deblur' is not one of "
                             "'denoise', 'jpeg', 'sr' (see 'formnet restore -h')\n")


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


def test_unknown_command_is_a_one_line_usage_error():
    result = invoke("restor")
    assert result.exit_code == 2 and result.stderr.startswith("error: No such command 'restor'")
    assert result.stderr.count("\n") == 1


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
    from formnet_cli.batch import run as batch

    seen = []
    run_batch = batch.run_batch
    monkeypatch.setattr(batch, "run_batch",
                        lambda *args: seen.append(torch.get_num_threads()) or run_batch(*args))
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


def test_debug_variable_shows_the_exception(tmp_path, gray_png, monkeypatch):
    monkeypatch.setenv("FORMNET_DEBUG", "1")
    result = restore(tmp_path / "no-such-model", gray_png, "-o", tmp_path / "o.png")
    assert result.exit_code == 1 and result.exception is not None
    assert "error: " not in result.stderr


def test_unwritable_output_is_recorded_and_the_batch_goes_on(tiny_models, tmp_path,
                                                             random_image, write_png):
    first = write_png(tmp_path / "in" / "a.png", random_image((8, 8), np.uint8))
    second = write_png(tmp_path / "in" / "b.png", random_image((8, 8), np.uint8))
    output = tmp_path / "out"
    (output / "a.png" / "occupied").mkdir(parents=True)  # a folder where a.png should go
    result = restore(tiny_models.denoise_gray, first, second, "-o", output, "--sigma", "5",
                     "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    statuses = {Path(entry["input"]).name: entry for entry in summary["files"]}
    assert statuses["a.png"]["status"] == "failed" and statuses["a.png"]["reason"]
    assert statuses["b.png"]["status"] == "done" and (output / "b.png").is_file()


def test_interrupted_write_leaves_no_partial_file(tiny_models, tmp_path, gray_png, monkeypatch):
    real_save = Image.Image.save

    def save_half_then_interrupt(self, fp, *args, **kwargs):
        buffer = __import__("io").BytesIO()
        real_save(self, buffer, *args, **kwargs)
        fp.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", save_half_then_interrupt)
    output = tmp_path / "out"
    result = restore(tiny_models.denoise_gray, gray_png, "-o", f"{output}/", "--sigma", "5")
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.stdout
    assert not output.exists()  # neither the image, nor a temporary file, nor its folder


def test_json_of_an_interrupted_batch_lists_every_file(tiny_models, tmp_path, random_image,
                                                       write_png, monkeypatch):
    for name in "abc":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))
    real_run_job = batch._run_job

    def interrupt_the_second(job, *args, **kwargs):
        if job.input.name == "b.png":
            raise KeyboardInterrupt
        return real_run_job(job, *args, **kwargs)

    monkeypatch.setattr(batch, "_run_job", interrupt_the_second)
    result = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "out",
                     "--sigma", "5", "--json")
    assert result.exit_code == 130
    summary = json.loads(result.stdout)
    assert summary["interrupted"] and summary["not_started"] == 1 and summary["done"] == 1
    assert [(Path(f["input"]).name, f["status"]) for f in summary["files"]] == [
        ("a.png", "done"), ("b.png", "interrupted"), ("c.png", "not_started")]


def test_an_interruption_before_the_first_file_still_reports(tiny_models, tmp_path, random_image,
                                                             write_png, monkeypatch):
    for name in "ab":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))

    def interrupted(*args, **kwargs):  # Ctrl-C while the model loads
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_check_before_any_file", interrupted)
    result = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "out", "--sigma", "5", "--json")
    assert result.exit_code == 130
    assert "interrupted before the first file; nothing was written" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["interrupted"] and summary["not_started"] == 2 and summary["done"] == 0


def test_python_m_formnet_cli_help():
    completed = subprocess.run([sys.executable, "-m", "formnet_cli", "--help"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "restore" in completed.stdout


def test_output_folder_inside_the_input_folder_is_not_restored_again(
        tiny_models, tmp_path, random_image, write_png):
    scans = tmp_path / "scans"
    write_png(scans / "a.png", random_image((8, 8), np.uint8))
    for _ in range(2):
        result = restore(tiny_models.denoise_gray, scans, "-o", scans / "restored", "-r",
                         "--sigma", "5", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["done"] == 1
    assert sorted(p.relative_to(scans).as_posix() for p in scans.rglob("*.png")) == [
        "a.png", "restored/a.png"]


def test_output_folder_that_is_the_input_folder_is_refused(tiny_models, tmp_path, random_image,
                                                            write_png):
    original = write_png(tmp_path / "scans" / "a.png", random_image((8, 8), np.uint8)).read_bytes()
    result = restore(tiny_models.denoise_gray, tmp_path / "scans", "-o", tmp_path / "scans", "--sigma", "5")
    assert result.exit_code == 2
    assert "the output folder is the input folder" in result.stderr and "scans/restored" in result.stderr
    assert (tmp_path / "scans" / "a.png").read_bytes() == original


@pytest.mark.parametrize(("pattern", "flags"), [("scans/**/*.png", ["-r"]), ("scans/*/*.png", []),
                                               ("scans/*", []), ("scans/**/*.png", [])])
def test_glob_matches_mirror_the_folders_below_the_wildcard(tiny_models, tmp_path, random_image,
                                                            write_png, monkeypatch, pattern, flags):
    for box in ("box1", "box2"):  # the same file names in two folders must not clash
        write_png(tmp_path / "scans" / box / "0001.png", random_image((8, 8), np.uint8))
    monkeypatch.chdir(tmp_path)
    result = restore(tiny_models.denoise_gray, pattern, "-o", "out", *flags, "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert ("without --recursive" in result.stderr) == ("**" in pattern and not flags)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "box1/0001.png", "box2/0001.png"]


def test_clashing_outputs_and_bad_output_names(tiny_models, tmp_path, random_image, write_png):
    first = write_png(tmp_path / "x" / "a.png", random_image((8, 8), np.uint8))
    second = write_png(tmp_path / "y" / "a.png", random_image((8, 8), np.uint8))
    result = restore(tiny_models.denoise_gray, first, second, "-o", tmp_path / "out",
                     "--sigma", "5", "--json")
    assert result.exit_code == 1
    reasons = [entry["reason"] for entry in json.loads(result.stdout)["files"]]
    assert any("clashes" in reason for reason in reasons)
    result = restore(tiny_models.denoise_gray, first, "-o", tmp_path / "a.xyz", "--sigma", "5")
    assert result.exit_code == 2 and "unsupported output format" in result.stderr
    result = restore(tiny_models.denoise_gray, first, second, "-o", tmp_path / "b.png")
    assert result.exit_code == 2 and "must be a folder" in result.stderr


def test_missing_single_input_is_reported_as_missing(tiny_models, tmp_path):
    result = restore(tiny_models.denoise_gray, tmp_path / "nothere.png", "-o", tmp_path / "o.png",
                     "--sigma", "5", "--json")
    assert result.exit_code == 1, result.output
    [entry] = json.loads(result.stdout)["files"]
    assert entry["status"] == "failed" and entry["reason"] == "no such file or directory"


def test_folder_output_that_is_a_file_fails_before_any_work(tiny_models, tmp_path, gray_png):
    occupied = tmp_path / "occupied"
    occupied.write_text("not a folder")
    result = restore(tiny_models.denoise_gray, gray_png.parent, "-o", occupied, "--sigma", "5")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "not a folder" in result.stderr
    assert occupied.read_text() == "not a folder"


def test_model_for_another_task_stops_the_batch_once(tiny_models, tmp_path, random_image,
                                                     write_png):
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "in" / name, random_image((8, 8), np.uint8))
    result = restore(tiny_models.jpeg_gray, tmp_path / "in", "-o", tmp_path / "out",
                     "--task", "denoise", "--sigma", "5")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "restores 'jpeg'" in result.stderr and not (tmp_path / "out").exists()


def test_output_folder_that_cannot_be_made_fails_before_the_model_runs(tiny_models, tmp_path,
                                                                       gray_png, monkeypatch):
    blocker = tmp_path / "photo.png"
    blocker.write_text("a file where a folder is needed")
    calls = []
    monkeypatch.setattr("formnet_cli.api.restore_with_info", lambda *a, **k: calls.append(a))
    result = restore(tiny_models.denoise_gray, gray_png, "-o", blocker / "x.png", "--sigma", "5",
                     "--json")
    assert result.exit_code == 1, result.output  # one error for the batch, before any file
    assert result.stderr == f"error: {blocker}: cannot create it ({blocker} is a file)\n"
    assert calls == []  # no compute was spent on an output that cannot be written


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


def test_unwritable_output_folder_fails_before_the_model_runs(tiny_models, tmp_path, gray_png,
                                                              monkeypatch):
    import tempfile

    output = tmp_path / "read-only"
    output.mkdir()
    real = tempfile.TemporaryFile

    def refuse_in_output(*args, dir=None, **kwargs):  # chmod means nothing to root: simulate it
        if dir is not None and Path(dir) == output:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr("formnet_cli.io.atomic.tempfile.TemporaryFile", refuse_in_output)
    calls = []
    monkeypatch.setattr("formnet_cli.api.restore_with_info", lambda *a, **k: calls.append(a))
    result = restore(tiny_models.denoise_gray, gray_png, gray_png.parent, "-o", output / "sub",
                     "--sigma", "5")
    assert result.exit_code == 1 and calls == []
    assert result.stderr == f"error: {output / 'sub'}: cannot write there (Permission denied)\n"


def test_empty_folder_and_misplaced_ext_are_one_line_errors(tiny_models, tmp_path, gray_png):
    (tmp_path / "empty").mkdir()
    result = restore(tiny_models.denoise_gray, tmp_path / "empty", "-o", tmp_path / "out")
    assert result.exit_code == 2 and result.stderr.startswith("error: no files to restore in ")
    result = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.png", "--ext", "jpg")
    assert result.exit_code == 2 and "--ext applies to folder outputs" in result.stderr
    assert not (tmp_path / "o.png").exists()
    same = restore(tiny_models.denoise_gray, gray_png, "-o", tmp_path / "o.tif", "--ext", "tiff",
                   "--sigma", "5")
    assert same.exit_code == 0, same.output  # .tif and tiff name one format


def test_skip_existing_needs_no_writable_folder(tiny_models, tmp_path, gray_png, monkeypatch):
    output = tmp_path / "done"
    output.mkdir()
    (output / "photo.png").write_bytes(gray_png.read_bytes())

    def refuse(*args, **kwargs):  # every folder read-only (chmod means nothing to root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("formnet_cli.io.atomic.tempfile.TemporaryFile", refuse)
    result = restore(tiny_models.denoise_gray, gray_png, "-o", f"{output}/", "--sigma", "5",
                     "--skip-existing")
    assert result.exit_code == 0, result.output
    assert "skipped 1" in result.stdout


def test_dropping_transparency_is_reported(tiny_models, tmp_path, random_image, write_png):
    rgba = write_png(tmp_path / "in" / "logo.png", random_image((12, 12, 4), np.uint8))
    result = restore(tiny_models.denoise_gray, rgba, "-o", tmp_path / "logo.jpg", "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert "transparency dropped" in result.stderr and (tmp_path / "logo.jpg").is_file()
    kept = restore(tiny_models.denoise_gray, rgba, "-o", tmp_path / "logo.webp", "--sigma", "5")
    assert kept.exit_code == 0 and "transparency" not in kept.stderr
    opaque = random_image((12, 12, 4), np.uint8)
    opaque[:, :, 3] = 255  # e.g. a screenshot: nothing is lost
    screenshot = write_png(tmp_path / "in" / "shot.png", opaque)
    plain = restore(tiny_models.denoise_gray, screenshot, "-o", tmp_path / "shot.jpg", "--sigma", "5")
    assert plain.exit_code == 0 and "transparency" not in plain.stderr


@pytest.mark.parametrize("primaries", [12, 1])  # Display P3, sRGB's BT.709
def test_a_heic_colour_description_is_kept_or_its_loss_reported(tiny_models, tmp_path, random_image,
                                                                primaries):
    import formnet_cli.io.formats  # noqa: F401  (registers the HEIF plugin with Pillow)

    source = tmp_path / "phone.heic"
    Image.fromarray(random_image((16, 16, 3), np.uint8)).save(
        source, quality=90, color_primaries=primaries, transfer_characteristics=13,
        matrix_coefficients=6, full_range_flag=1)
    kept = restore(tiny_models.denoise_color, source, "-o", tmp_path / "out.heic", "--sigma", "5")
    assert kept.exit_code == 0 and "colour description" not in kept.stderr
    with Image.open(tmp_path / "out.heic") as written:
        assert written.info["nclx_profile"]["color_primaries"] == primaries
    png = restore(tiny_models.denoise_color, source, "-o", tmp_path / "out.png", "--sigma", "5")
    assert png.exit_code == 0
    assert ("colour description (HEIF nclx, not sRGB" in png.stderr) == (primaries != 1)


def test_every_page_of_a_multi_page_tiff_is_restored(tiny_models, tmp_path, random_image):
    from formnet_cli import api
    from formnet_cli import io as imageio

    pages = [random_image((16, 12), np.uint8, seed=1), random_image((10, 14), np.uint8, seed=2)]
    source = tmp_path / "in" / "scan.tif"
    source.parent.mkdir()
    Image.fromarray(pages[0]).save(source, save_all=True, append_images=[Image.fromarray(pages[1])])
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert result.exit_code == 0, result.output
    written = imageio.read_pages(tmp_path / "out.tif")
    assert len(written) == 2
    for page, restored in zip(pages, written):
        expected = api.restore(page, sigma=5, model=tiny_models.denoise_gray, device="cpu",
                               tile=None)
        np.testing.assert_array_equal(imageio.to_uint(restored.pixels, 8)[:, :, 0], expected)
    as_png = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.png", "--sigma", "5")
    assert as_png.exit_code == 1 and "2 pages need a TIFF output" in as_png.stderr
    assert not (tmp_path / "out.png").exists()
    Image.fromarray(random_image((48, 48), np.uint8)).save(
        source, save_all=True, append_images=[Image.fromarray(pages[1])])
    measured = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "auto.tif", "--sigma", "auto")
    assert measured.exit_code == 1  # a 14 x 10 page is too small to measure: which one is said
    assert "failed: " in measured.stderr and "page 2: cannot estimate the noise level" in measured.stderr


def test_bare_command_shows_help_without_an_error_line():
    result = invoke()
    assert "Usage" in result.output and "restore" in result.output
    assert "error:" not in result.output


@pytest.mark.parametrize("command", ["restore", "eval", "compare", "train", "models",
                                     "download-weights"])
def test_help_names_every_option_value_plainly(command):
    # Flags (--help too) take no value and show none; valued options show INT, PATH, choices...;
    # arguments show their name only (no typer type names such as <list[Path]>).
    result = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    options = [line for line in result.output.splitlines() if line.lstrip("│ *").startswith("--")]
    placeholders = re.compile(r"<(bool|int|float|str|path|list\[|auto\||denoise\|)")
    assert options and not placeholders.search(result.output)


@pytest.mark.parametrize("command, usage", [
    ("restore", "restore [OPTIONS] INPUT..."), ("eval", "eval [OPTIONS] DATASET"),
    ("compare", "compare [OPTIONS] IMAGE..."), ("train", "train [OPTIONS] [CONFIG]"),
    ("download-weights", "download-weights [OPTIONS] [NAME]...")])
def test_usage_line_names_arguments_as_click_does(command, usage):
    # typer 0.29 writes a required argument as {INPUT}...; the usage line keeps click's form.
    result = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
    assert f"Usage: formnet {usage}" in result.output


def test_sigterm_mid_batch_exits_143_and_reports_like_ctrl_c(tmp_path, gray_png):
    # A real SIGTERM through the real entry point (signal handler, batch, typer, exit code).
    script = f"""
import os, signal, sys, time
from formnet_cli.batch import run as batch
from formnet_cli.cli import app as cli

def terminated_while_restoring(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

batch._run_job = terminated_while_restoring
sys.argv = ["formnet", "restore", {str(gray_png)!r}, "-o", {str(tmp_path / "out.png")!r}, "--sigma", "5",
            "--json"]
cli.main()
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 143, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["interrupted"] and summary["exit_code"] == 143
    assert "was not written" in completed.stderr and not (tmp_path / "out.png").exists()


# -- standard input and output (-) ----------------------------------------------------------
def test_standard_input_to_standard_output_keeps_the_input_format(tiny_models, tmp_path, gray_png):
    as_file = tmp_path / "as_file.png"
    assert restore(tiny_models.denoise_gray, gray_png, "-o", as_file, "--sigma", "25").exit_code == 0
    result = runner.invoke(app, ["restore", "-", "-o", "-", "--sigma", "25", "--model",
                                 str(tiny_models.denoise_gray), "--device", "cpu"],
                           input=gray_png.read_bytes())
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.startswith(b"\x89PNG")  # the image alone: the summary is on stderr
    assert "restored 1" in result.stderr
    written = imageio.read_image_bytes(result.stdout_bytes, "stdout")
    np.testing.assert_array_equal(written.pixels, imageio.read_image(as_file).pixels)


def test_file_to_standard_output_in_the_format_ext_names(tiny_models, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", "-", "--ext", "jpg", "--sigma", "25")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.startswith(b"\xff\xd8")  # JPEG
    assert imageio.read_image_bytes(result.stdout_bytes, "stdout").pixels.shape == (20, 28, 1)


def test_standard_input_to_a_file_estimates_the_jpeg_quality(tiny_models, tmp_path, random_image):
    buffer = io.BytesIO()
    Image.fromarray(random_image((16, 24), np.uint8)).save(buffer, format="JPEG", quality=37)
    output = tmp_path / "out" / "clean.tif"
    result = runner.invoke(app, ["restore", "-", "-o", str(output), "--task", "jpeg", "--quality",
                                 "auto", "--model", str(tiny_models.jpeg_gray), "--device", "cpu"],
                           input=buffer.getvalue())
    assert result.exit_code == 0, result.stderr
    assert "-: estimated quality 37" in result.stderr  # read from the bytes, as from a file
    with Image.open(output) as image:
        assert image.format == "TIFF" and image.size == (24, 16)


@pytest.mark.parametrize("arguments, message", [
    (["-", "{png}", "-o", "{tmp}/out/"], "takes one image"),
    (["-", "-o", "{tmp}/out/"], "needs an output file"),
    (["{tmp}", "-o", "-"], "writes one image to standard output"),
    (["{png}", "-o", "-", "--json"], "--json and -o - would both write to standard output"),
])
def test_standard_streams_misused_are_usage_errors(tiny_models, tmp_path, gray_png, arguments, message):
    arguments = [arg.format(png=gray_png, tmp=tmp_path) for arg in arguments]
    result = restore(tiny_models.denoise_gray, *arguments, "--sigma", "25")
    assert result.exit_code == 2 and message in result.stderr
    assert result.stdout_bytes == b""


def test_empty_standard_input_fails_that_file(tiny_models):
    result = restore(tiny_models.denoise_gray, "-", "-o", "-", "--sigma", "25")
    assert result.exit_code == 1
    assert "failed: -: nothing on standard input (0 bytes)" in result.stderr
    assert result.stdout_bytes == b""


def test_image_data_is_not_written_to_or_read_from_a_terminal(monkeypatch):
    from formnet_cli.cli.app import _check_standard_streams
    from formnet_cli.errors import InvalidOptionError

    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    with pytest.raises(InvalidOptionError, match="standard output is a terminal"):
        _check_standard_streams([Path("a.png")], "-", json_output=False, list_only=False)
    _check_standard_streams([Path("a.png")], "-", json_output=False, list_only=True)  # writes none
    monkeypatch.setattr(sys, "stdin", Terminal())
    with pytest.raises(InvalidOptionError, match="standard input, which is a terminal"):
        _check_standard_streams([Path("-")], "out.png", json_output=False, list_only=False)
    monkeypatch.setattr(sys, "stdout", None)  # started with >&-
    with pytest.raises(InvalidOptionError, match="standard output is closed"):
        _check_standard_streams([Path("a.png")], "-", json_output=False, list_only=False)


def test_a_full_disk_behind_standard_output_fails_that_file_in_one_line(monkeypatch):
    import errno
    import types

    def full(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=types.SimpleNamespace(write=full)))
    page = imageio.LoadedImage(np.zeros((4, 4, 1), np.float32))
    with pytest.raises(batch.ImageWriteError, match=r"cannot write to standard output \(No space left"):
        batch._write_output(batch.Job(Path("a.png"), batch.STREAM), [page], batch.BatchOptions(), ".png")


@pytest.mark.parametrize("order", [("a.jpg", "a.png"), ("a.png", "a.jpg")])
def test_no_output_replaces_another_input(tmp_path, random_image, write_png, order):
    png = write_png(tmp_path / "a.png", random_image((8, 8), np.uint8))
    Image.fromarray(random_image((8, 8), np.uint8, seed=1)).save(tmp_path / "a.jpg")
    before = png.read_bytes()
    plan = batch.plan_batch([tmp_path / name for name in order], tmp_path, ext="png")
    assert plan.jobs == []
    reasons = {result.input.name: result.reason for result in plan.settled}
    assert reasons == {"a.png": "the output would overwrite the input",
                       "a.jpg": f"the output would overwrite the input {png}"}
    assert png.read_bytes() == before


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


def test_a_full_disk_stops_the_batch_instead_of_failing_every_file(tiny_models, tmp_path, random_image,
                                                                   write_png, monkeypatch):
    import errno

    for index in range(3):
        write_png(tmp_path / "in" / f"{index}.png", random_image((8, 8), np.uint8, seed=index))
    real_write = imageio.write_atomically
    written = []

    def fills_up(path, encode):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        real_write(path, encode)

    monkeypatch.setattr("formnet_cli.io.encode.write_atomically", fills_up)
    plan = batch.plan_batch([tmp_path / "in"], tmp_path / "out")
    summary = batch.run_batch(plan, batch.BatchOptions(sigma=5, model=str(tiny_models.denoise_gray),
                                                       device="cpu", tile=None))
    assert [result.status for result in summary.results] == ["done", "failed", "not_started"]
    assert summary.stopped == "the output's disk is full" and summary.exit_code == 1
    assert summary.lines()[0].startswith("stopped (the output's disk is full): restored 1")
    assert summary.to_dict()["not_started"] == 1


def test_a_recursive_glob_does_not_follow_links_to_folders(tmp_path, random_image, write_png):
    write_png(tmp_path / "g" / "a" / "x.png", random_image((8, 8), np.uint8))
    write_png(tmp_path / "g" / "a" / "b" / "y.png", random_image((8, 8), np.uint8, seed=1))
    (tmp_path / "g" / "a" / "b" / "up").symlink_to("..")  # loops: glob.glob would run for ever
    (tmp_path / "g" / "a" / "up2").symlink_to("..")
    plan = batch.plan_batch([str(tmp_path / "g" / "**" / "*.png")], tmp_path / "out", recursive=True)
    assert sorted(job.output.relative_to(tmp_path / "out").as_posix() for job in plan.jobs) == ["a/b/y.png", "a/x.png"]


def test_fifos_and_dangling_links_are_named_not_dropped(tmp_path, random_image, write_png):
    folder = tmp_path / "t"
    write_png(folder / "ok.png", random_image((8, 8), np.uint8))
    os.mkfifo(folder / "fifo.png")
    (folder / "broken.png").symlink_to("nowhere.png")
    for inputs in ([folder], [str(folder / "*.png")]):
        plan = batch.plan_batch(inputs, tmp_path / "out")
        assert [job.input.name for job in plan.jobs] == ["ok.png"]
        assert {result.input.name: result.reason for result in plan.settled} == {
            "fifo.png": "a FIFO, not an image file", "broken.png": "a link to nothing"}
    alone = batch.plan_batch([folder / "fifo.png"], tmp_path / "o.png")
    assert [(result.status, result.reason) for result in alone.settled] == [("failed", "a FIFO, not an image file")]


def test_a_file_met_twice_with_a_clashing_output_fails_once(tmp_path, random_image, write_png):
    write_png(tmp_path / "dup" / "b.PNG", random_image((8, 8), np.uint8))
    write_png(tmp_path / "dup" / "b.png", random_image((8, 8), np.uint8, seed=1))
    plan = batch.plan_batch([tmp_path / "dup", str(tmp_path / "dup" / "*.png")], tmp_path / "out", ext="png")
    assert [job.input.name for job in plan.jobs] == ["b.PNG"]
    assert [(result.input.name, result.status) for result in plan.settled] == [("b.png", "failed")]


def test_an_output_name_of_250_bytes_is_written(tmp_path):
    long_name = tmp_path / ("L" * 246 + ".png")  # its temporary name must fit in 255 bytes too
    imageio.write_image(long_name, imageio.LoadedImage(np.zeros((4, 4, 1), np.float32)))
    assert long_name.is_file() and [path.name for path in tmp_path.iterdir()] == [long_name.name]


def test_an_interruption_between_files_keeps_what_was_done(tiny_models, tmp_path, random_image, write_png):
    for name in "abc":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))

    class InterruptsAtTheThird(batch.SilentReporter):
        def file_started(self, job):
            if job.input.name == "c.png":
                raise KeyboardInterrupt

    plan = batch.plan_batch([tmp_path / "in"], tmp_path / "out")
    summary = batch.run_batch(plan, batch.BatchOptions(sigma=5, model=str(tiny_models.denoise_gray),
                                                       device="cpu", tile=None), InterruptsAtTheThird())
    assert summary.interrupted
    assert [(r.input.name, r.status) for r in summary.results] == [
        ("a.png", "done"), ("b.png", "done"), ("c.png", "not_started")]


def test_a_recursive_glob_enters_hidden_folders_only_by_name(tmp_path, random_image, write_png):
    for name in (".dot.png", "a/.q.png", ".hid/.k.png", ".git/objects/.pack.png", "a/x.png"):
        write_png(tmp_path / "in" / name, random_image((8, 8), np.uint8))
    hidden = batch.plan_batch([str(tmp_path / "in" / "**" / ".*.png")], tmp_path / "out", recursive=True)
    assert sorted(job.input.relative_to(tmp_path / "in").as_posix() for job in hidden.jobs) == [".dot.png", "a/.q.png"]
    named = batch.plan_batch([str(tmp_path / "in" / ".hid" / "**" / "*.png")], tmp_path / "out2", recursive=True)
    assert named.jobs == [] and [r.reason for r in named.settled] == ["no files match"]  # .k.png is hidden


def test_a_full_disk_when_making_an_output_folder_stops_the_batch_too(tmp_path, monkeypatch):
    import errno

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(batch.OutOfSpaceError, match="cannot create its folder"):
        batch._prepare_output_folder(tmp_path / "new" / "out.png")


def test_a_tile_size_in_other_digits_is_a_clear_error():
    assert restore_tile_error("²").startswith("error: Invalid value for '--tile': '²' is not 'auto', 'none'")


def restore_tile_error(value: str) -> str:
    return invoke("restore", "x.png", "-o", "y.png", "--tile", value).stderr


def test_outputs_differing_only_in_case_clash_where_the_output_ignores_case(tmp_path, random_image,
                                                                           write_png, monkeypatch):
    write_png(tmp_path / "in" / "A.png", random_image((8, 8), np.uint8))
    write_png(tmp_path / "in" / "a.png", random_image((8, 8), np.uint8, seed=1))
    assert len(batch.plan_batch([tmp_path / "in"], tmp_path / "out").jobs) == 2  # this file system: two files
    monkeypatch.setattr(batch, "_ignores_case", lambda folder: True)  # an exFAT or NTFS drive
    plan = batch.plan_batch([tmp_path / "in"], tmp_path / "out")
    assert [job.input.name for job in plan.jobs] == ["A.png"]
    assert [(r.input.name, r.reason) for r in plan.settled] == [
        ("a.png", f"output clashes with the output of {tmp_path / 'in' / 'A.png'}")]


def test_the_case_probe_only_looks(tmp_path):
    (tmp_path / "Scan.png").write_bytes(b"x")
    (tmp_path / "sCAN.PNG").write_bytes(b"y")  # a different file here: the case tells them apart
    assert batch._folder_ignores_case(tmp_path) is False  # this project's file systems tell case
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Scan.png", "sCAN.PNG"]  # nothing written
    assert batch._ignores_case(tmp_path / ("x" * 300) / "deeper") is False  # an over-long name: no error
