"""Running a batch (:mod:`formnet_cli.batch.run`): each file restored and written, failures,
interruptions, full disks, bugs."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from cli_helpers import restore
from formnet_cli import api
from formnet_cli.batch import plan as batch_plan
from formnet_cli.batch import run as batch_run
from formnet_cli.batch.plan import BatchOptions
from formnet_cli.batch.summary import FileResult
from formnet_cli.cli.progress import RichReporter
from formnet_cli.errors import ImageReadError, OutOfSpaceError
from formnet_cli import io as imageio
from formnet_cli.options import RestoreOptions


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
    real_run_job = batch_run._run_job

    def interrupt_the_second(job, *args, **kwargs):
        if job.input.name == "b.png":
            raise KeyboardInterrupt
        return real_run_job(job, *args, **kwargs)

    monkeypatch.setattr(batch_run, "_run_job", interrupt_the_second)
    result = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "out",
                     "--sigma", "5", "--json")
    assert result.exit_code == 130
    summary = json.loads(result.stdout)
    assert summary["interrupted"] and summary["not_started"] == 1 and summary["done"] == 1
    assert [(Path(f["input"]).name, f["status"]) for f in summary["files"]] == [
        ("a.png", "done"), ("b.png", "interrupted"), ("c.png", "not_started")]


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
    assert kept.exit_code == 0 and "transparency dropped" not in kept.stderr  # (the path says transparency)
    opaque = random_image((12, 12, 4), np.uint8)
    opaque[:, :, 3] = 255  # e.g. a screenshot: nothing is lost
    screenshot = write_png(tmp_path / "in" / "shot.png", opaque)
    plain = restore(tiny_models.denoise_gray, screenshot, "-o", tmp_path / "shot.jpg", "--sigma", "5")
    assert plain.exit_code == 0 and "transparency dropped" not in plain.stderr


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
    plan = batch_plan.plan_batch([tmp_path / "in"], tmp_path / "out")
    options = RestoreOptions(sigma=5, model=str(tiny_models.denoise_gray), device="cpu", tile=None)
    summary = batch_run.run_batch(plan, BatchOptions(options))
    assert [result.status for result in summary.results] == ["done", "failed", "not_started"]
    assert summary.stopped == "the output's disk is full" and summary.exit_code == 1
    assert summary.lines()[0].startswith("stopped (the output's disk is full): restored 1")
    assert summary.to_dict()["not_started"] == 1


def test_an_output_name_of_250_bytes_is_written(tmp_path):
    long_name = tmp_path / ("L" * 246 + ".png")  # its temporary name must fit in 255 bytes too
    imageio.write_image(long_name, imageio.LoadedImage(np.zeros((4, 4, 1), np.float32)))
    assert long_name.is_file() and [path.name for path in tmp_path.iterdir()] == [long_name.name]


def test_an_interruption_between_files_keeps_what_was_done(tiny_models, tmp_path, random_image, write_png):
    for name in "abc":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))

    class InterruptsAtTheThird(batch_run.SilentReporter):
        def file_started(self, job):
            if job.input.name == "c.png":
                raise KeyboardInterrupt

    plan = batch_plan.plan_batch([tmp_path / "in"], tmp_path / "out")
    options = RestoreOptions(sigma=5, model=str(tiny_models.denoise_gray), device="cpu", tile=None)
    summary = batch_run.run_batch(plan, BatchOptions(options), InterruptsAtTheThird())
    assert summary.interrupted
    assert [(r.input.name, r.status) for r in summary.results] == [
        ("a.png", "done"), ("b.png", "done"), ("c.png", "not_started")]


def test_a_full_disk_when_making_an_output_folder_stops_the_batch_too(tmp_path, monkeypatch):
    import errno

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(OutOfSpaceError, match="cannot create its folder"):
        batch_run._prepare_output_folder(tmp_path / "new" / "out.png")


def _bug_in(name: str, error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make restoring the file ``name`` raise ``error``, as a bug in formnet would."""
    real = api.restore_with_options

    def restore_with_options(image, options, **kwargs):
        if Path(kwargs["source_path"]).name == name:
            raise error
        return real(image, options, **kwargs)

    monkeypatch.setattr(api, "restore_with_options", restore_with_options)


def test_an_unexpected_exception_stops_the_batch_with_one_line_naming_the_file(
        tiny_models, tmp_path, random_image, write_png, monkeypatch):
    for name in "abc":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))
    _bug_in("b.png", ValueError("boom"), monkeypatch)  # a ValueError is no longer one file's failure
    result = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "out", "--sigma", "5")
    assert result.exit_code == 1
    progress, failure = result.stderr.splitlines()  # stderr is not a terminal: plain progress lines
    assert re.fullmatch(rf"\[1/3\] {re.escape(str(tmp_path / 'in' / 'a.png'))} -> "
                        rf"{re.escape(str(tmp_path / 'out' / 'a.png'))}: done \(\d+\.\d s\)", progress)
    assert failure == (f"failed: {tmp_path / 'in' / 'b.png'}: ValueError: boom (a bug in formnet: "
                       "please report it; FORMNET_DEBUG=1 shows its traceback)")
    assert result.stdout.startswith("stopped (a bug in formnet): restored 1, skipped 0, failed 1")
    assert result.stdout.rstrip().endswith("; 1 not started")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png"]
    as_json = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "again", "--sigma", "5",
                      "--json")
    assert as_json.exit_code == 1 and as_json.stderr == ""
    summary = json.loads(as_json.stdout)
    assert summary["stopped"] == "a bug in formnet" and summary["exit_code"] == 1
    assert [(Path(f["input"]).name, f["status"]) for f in summary["files"]] == [
        ("a.png", "done"), ("b.png", "failed"), ("c.png", "not_started")]


def test_with_formnet_debug_a_bug_shows_its_traceback_and_exits_the_same(
        tiny_models, tmp_path, random_image, write_png, monkeypatch):
    for name in "ab":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))
    _bug_in("a.png", KeyError("lost"), monkeypatch)
    monkeypatch.setenv("FORMNET_DEBUG", "1")
    result = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "out", "--sigma", "5")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'lost'" in result.stderr
    assert f"failed: {tmp_path / 'in' / 'a.png'}: KeyError: 'lost' (a bug in formnet" in result.stderr
    assert "restored 0, skipped 0, failed 1" in result.stdout and "1 not started" in result.stdout


def test_with_formnet_debug_a_failed_file_also_shows_its_traceback(tiny_models, tmp_path, random_image,
                                                                   write_png, monkeypatch):
    write_png(tmp_path / "in" / "a.png", random_image((8, 8), np.uint8))
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    quiet = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "quiet", "--sigma", "5")
    monkeypatch.setenv("FORMNET_DEBUG", "1")
    debugged = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "debug", "--sigma", "5")
    for result in (quiet, debugged):  # the batch goes on past it, with the same exit code
        assert result.exit_code == 1 and "restored 1, skipped 0, failed 1" in result.stdout
        assert f"failed: {tmp_path / 'in' / 'bad.png'}: " in result.stderr
    assert "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in debugged.stderr and "ImageReadError" in debugged.stderr


@pytest.mark.parametrize("error", [MemoryError(), torch.OutOfMemoryError("CUDA out of memory"),
                                   OSError(5, "Input/output error"), ImageReadError("truncated")])
def test_known_errors_fail_one_file_and_the_batch_goes_on(tiny_models, tmp_path, random_image, write_png,
                                                         monkeypatch, error):
    for name in "ab":
        write_png(tmp_path / "in" / f"{name}.png", random_image((8, 8), np.uint8))
    _bug_in("a.png", error, monkeypatch)
    plan = batch_plan.plan_batch([tmp_path / "in"], tmp_path / "out")
    options = RestoreOptions(sigma=5, model=str(tiny_models.denoise_gray), device="cpu", tile=None)
    summary = batch_run.run_batch(plan, BatchOptions(options))
    assert [(r.input.name, r.status) for r in summary.results] == [("a.png", "failed"), ("b.png", "done")]
    assert summary.stopped == "" and "a bug" not in summary.results[0].reason


def test_a_rerun_removes_and_lists_what_a_killed_run_left(tiny_models, tmp_path, random_image,
                                                          write_png):
    folder = tmp_path / "in"
    for name in ("a.png", "b.png"):
        write_png(folder / name, random_image((8, 8), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    left = out / ".b.png.0123abcd.part"  # write_atomically's name, as a SIGKILL leaves it
    left.write_bytes(b"half an image")
    os.utime(left, (0, 0))  # written before this run started
    someone_elses = out / ".notes.txt.0123abcd.part"
    someone_elses.write_bytes(b"not ours")
    os.utime(someone_elses, (0, 0))
    result = restore(tiny_models.denoise_gray, folder, "-o", out, "--sigma", "5", "--skip-existing",
                     "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["leftovers_removed"] == [str(left)]
    assert f"removed 1 temporary file(s) left by an interrupted run: {left}" in result.stderr
    assert not left.exists() and someone_elses.exists()
    assert sorted(path.name for path in out.iterdir()) == [".notes.txt.0123abcd.part", "a.png", "b.png"]


def test_a_temporary_file_of_a_live_run_is_left_alone(tmp_path, gray_png):
    out = tmp_path / "out"
    out.mkdir()
    live = out / ".photo.png.89abcdef.part"  # being written now, by another formnet
    live.write_bytes(b"in progress")
    assert batch_run.remove_leftovers([out / "photo.png"], batch_run.SilentReporter()) == []
    assert live.exists()


def test_a_file_read_despite_damage_is_noted(tiny_models, tmp_path):
    import io
    import struct

    buffer = io.BytesIO()
    Image.new("L", (16, 16), 9).save(buffer, "TIFF", compression="tiff_lzw", dpi=(72, 72))
    data = bytearray(buffer.getvalue())
    offset = struct.unpack("<I", data[4:8])[0]
    entry = data.find(struct.pack("<HH", 296, 3), offset)  # ResolutionUnit: a value libtiff warns of
    data[entry + 8:entry + 10] = struct.pack("<H", 65535)
    source = tmp_path / "odd.tif"
    source.write_bytes(bytes(data))
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert result.exit_code == 0, result.output
    assert (f"{source}: read despite damage, its decoder said: " in result.stderr
            and "ResolutionUnit" in result.stderr and "its output may show it" in result.stderr)


def test_a_1_bit_image_is_refused_from_its_header(tiny_models, tmp_path, random_image, monkeypatch):
    from formnet_cli.io import decode

    source = tmp_path / "page.tif"
    Image.fromarray(random_image((16, 16), np.uint8)).convert("1").save(source, compression="group4")
    monkeypatch.setattr(decode, "_decode", lambda *args: pytest.fail("decoded before refusing"))
    denoised = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert denoised.exit_code == 1 and "1-bit (black and white) image" in denoised.stderr


def test_progress_is_one_plain_line_per_file_where_stderr_is_not_a_terminal(tiny_models, tmp_path,
                                                                           random_image, write_png):
    for name, seed in (("a.png", 0), ("b.png", 1)):
        write_png(tmp_path / "in" / name, random_image((12, 12), np.uint8, seed=seed))
    (tmp_path / "in" / "c.png").write_bytes(b"not an image")
    result = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "out", "--sigma", "5")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    for number, name in enumerate(("a.png", "b.png"), start=1):
        assert re.fullmatch(rf"\[{number}/3\] {re.escape(str(tmp_path / 'in' / name))} -> "
                            rf"{re.escape(str(tmp_path / 'out' / name))}: done \(\d+\.\d s\)",
                            lines[number - 1])
    assert lines[2].startswith(f"[3/3] {tmp_path / 'in' / 'c.png'} -> {tmp_path / 'out' / 'c.png'}: "
                               "failed, ")
    quiet = restore(tiny_models.denoise_gray, tmp_path / "in", "-o", tmp_path / "json", "--sigma", "5",
                    "--json")  # --json: the summary alone
    assert "[1/3]" not in quiet.stderr
    shown = io.StringIO()  # a terminal: the bar, no lines
    reporter = RichReporter(Console(file=shown, force_terminal=True), plain_lines=True)
    reporter.start(1)
    reporter.file_finished(FileResult(tmp_path / "a.png", tmp_path / "b.png", "done", seconds=0.5))
    reporter.stop()
    assert "[1/1]" not in shown.getvalue()
