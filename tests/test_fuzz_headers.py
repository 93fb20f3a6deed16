"""Hostile headers (issue 24): every format's forged header refused from its header, before any
pixel is decoded, well under 2 GiB of memory; a damaged page fails its file, naming the page.

The forged files come from ``benchmarks/fuzz_corpus.py``; peak memory is measured in a child
process (its maximum resident set, from ``wait4``), since a decoder's allocation is the point.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from benchmarks.fuzz import formnet, python
from benchmarks.fuzz_corpus import (FORGERS, declared_tiff_pages, forged_tiff, ifd_offsets,
                                    mixed_pages, zeros_png)
from cli_helpers import restore

MOST_MIB = 2048
"""What no file under 1 MB may make formnet take before it is refused (the issue)."""

# (width, height) a format is forged at: over the limit, at it, or under it with no data for it.
FORGED = {"png": [(1, 10**9), (30000, 30000), (65535, 65535)],
          "jpg": [(65535, 65535), (30000, 30000), (16383, 16383)],
          "tif": [(1, 10**9), (10**9, 1), (40000, 40000)],
          "bmp": [(1, 10**9), (30000, 30000), (16383, 16383)],
          "webp": [(16383, 16383), (16383, 10000), (16383, 8192)],
          "avif": [(16383, 16383), (40000, 40000)],
          "heic": [(16383, 16383), (40000, 40000)],
          "jp2": [(16383, 16383), (1, 10**9), (40000, 40000)]}

READ_EACH = """
import json, sys
from formnet_cli import io
from formnet_cli.errors import FormnetError
reasons = {}
for path in sys.argv[1:]:
    try:
        io.read_pages(path)
        reasons[path] = "read"
    except FormnetError as error:
        reasons[path] = str(error)
print(json.dumps(reasons))
"""


@pytest.mark.parametrize("extension", sorted(FORGERS))
def test_a_forged_header_is_refused_before_decoding_in_little_memory(tmp_path, extension):
    paths = []
    for width, height in FORGED[extension]:
        data = FORGERS[extension](width, height)
        assert len(data) < 2**20
        paths.append(tmp_path / f"forged-{width}x{height}.{extension}")
        paths[-1].write_bytes(data)
    run = python(["-c", READ_EACH, *paths], timeout=120)
    assert run.exit_code == 0, run.stderr
    assert run.stderr == ""  # no C library's line
    assert 0 < run.peak_mib < MOST_MIB / 4, run.peak_mib  # refused before any large allocation
    reasons = json.loads(run.stdout)
    for path in paths:
        reason = reasons[str(path)]
        assert reason.startswith(f"{path}: ") and "\n" not in reason
        assert any(words in reason for words in (
            "too large", "cannot hold", "truncated or corrupt", "needs about")), reason


def test_the_issues_tiff_of_1_by_10_9_pixels_is_called_what_it_is(tmp_path):
    from formnet_cli import io as imageio
    from formnet_cli.errors import ImageReadError

    path = tmp_path / "tall.tif"
    path.write_bytes(forged_tiff(1, 10**9))
    assert path.stat().st_size < 1000
    with pytest.raises(ImageReadError, match="tall.tif: truncated or corrupt TIFF image: its header "
                                             "declares 1 x 1000000000 pixels, which its 256 bytes "
                                             "of image data cannot hold"):
        imageio.read_pages(path)


def test_forged_headers_and_bombs_through_formnet_restore(tmp_path, tiny_models):
    """The command line: each file fails in one line (exit 1), nothing else on standard error,
    no output, and the whole batch stays far under 2 GiB (a 900 MP PNG of zeros included)."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    for extension, forge in FORGERS.items():
        width, height = FORGED[extension][0]
        (folder / f"forged.{extension}").write_bytes(forge(width, height))
    (folder / "tall.tif").write_bytes(forged_tiff(1, 10**9))
    (folder / "zeros.png").write_bytes(zeros_png(30000, 30000))  # valid: 900 MP in 0.9 MB
    run = formnet(["restore", folder, "-o", tmp_path / "out", "--json", "--sigma", "15",
                   "--model", tiny_models.denoise_gray], timeout=300)
    assert run.exit_code == 1, run.stderr
    assert run.peak_mib < MOST_MIB, run.peak_mib
    summary = json.loads(run.stdout)
    assert summary["failed"] == len(FORGERS) + 2 and summary["done"] == 0
    assert run.stderr == ""  # with --json, the reasons are in the summary; no library's line
    assert all(entry["reason"] and "\n" not in entry["reason"] for entry in summary["files"])
    zeros = next(entry for entry in summary["files"] if entry["input"].endswith("zeros.png"))
    assert "refused as a possible decompression bomb (900 MP" in zeros["reason"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_issues_four_page_tiff_with_a_damaged_last_directory_fails_naming_it(tmp_path,
                                                                                  tiny_models):
    data = bytearray(mixed_pages(np.random.default_rng(0)))  # 16-bit grey, 1-bit, RGBA, palette
    last = ifd_offsets(bytes(data))[-1]
    data[last:last + 100] = np.random.default_rng(1).integers(0, 256, 100, np.uint8).tobytes()
    source = tmp_path / "scan.tif"
    source.write_bytes(bytes(data))
    assert declared_tiff_pages(bytes(data)) == 4
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert result.exit_code == 1
    assert "scan.tif: page 4: its directory (IFD) is damaged or missing" in result.stderr
    assert "restored 0, skipped 0, failed 1" in result.stdout
    assert not (tmp_path / "out.tif").exists()


def test_every_page_of_an_intact_four_page_tiff_is_restored(tmp_path, tiny_models):
    from formnet_cli import io as imageio

    source = tmp_path / "scan.tif"
    source.write_bytes(mixed_pages(np.random.default_rng(0)))
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert result.exit_code == 0, result.output
    pages = imageio.read_pages(tmp_path / "out.tif")
    assert [(page.channels, page.alpha is not None, page.bit_depth) for page in pages] == [
        (1, False, 16), (1, False, 8), (3, True, 8), (3, False, 8)]


def test_a_page_cut_off_by_a_truncation_fails_the_file(tmp_path, tiny_models):
    data = bytearray(mixed_pages(np.random.default_rng(2)))
    first = ifd_offsets(bytes(data))[0]
    end = first + 2 + 12 * struct.unpack("<H", data[first:first + 2])[0]
    data[end:end + 4] = struct.pack("<I", len(data) + 5000)  # page 2 lies past the end
    source = tmp_path / "cut.tif"
    source.write_bytes(bytes(data))
    result = restore(tiny_models.denoise_gray, source, "-o", tmp_path / "out.tif", "--sigma", "5")
    assert result.exit_code == 1 and "cut.tif: page 2: its directory" in result.stderr


# -- the same guarantees where eval, train and serve read files ----------------------------
@pytest.fixture
def hostile_folder(tmp_path):
    """A folder of one good image, a forged header and a hidden macOS resource fork."""
    from PIL import Image

    folder = tmp_path / "set"
    folder.mkdir()
    Image.new("L", (16, 16), 90).save(folder / "good.png")
    (folder / "forged.png").write_bytes(FORGERS["png"](30000, 30000))
    (folder / "._good.png").write_bytes(b"\0\5\26\7 AppleDouble resource fork")
    return folder


def test_eval_reads_a_data_set_with_the_same_checks(hostile_folder, capfd):
    from formnet_cli.errors import ImageReadError
    from formnet_cli.evaluation.datasets import read_dataset

    with pytest.raises(ImageReadError, match=r"forged.png: truncated or corrupt PNG image: its header "
                                             r"declares 30000 x 30000 pixels"):
        read_dataset(hostile_folder)
    (hostile_folder / "forged.png").unlink()
    assert [name for name, _ in read_dataset(hostile_folder)] == ["good"]  # ._good.png left out
    assert capfd.readouterr().err == ""


def test_training_data_is_read_with_the_same_checks(hostile_folder, capfd):
    import os

    from formnet_cli.errors import FormnetError
    from formnet_cli.training.data import list_images, load_images

    with pytest.raises(FormnetError, match=r"forged.png: cannot read this training image \(truncated "
                                           r"or corrupt PNG image: its header declares 30000 x 30000"):
        load_images([hostile_folder], 1)
    os.mkfifo(hostile_folder / "pipe.png")  # reading it would block the loader for ever
    (hostile_folder / "loop.png").symlink_to("loop.png")
    (hostile_folder / "forged.png").unlink()
    assert [path.name for path in list_images([str(hostile_folder)])] == ["good.png"]
    assert capfd.readouterr().err == ""


def test_the_servers_worker_refuses_a_forged_upload_from_its_header(monkeypatch, capfd):
    from formnet_cli.errors import FormnetError, ImageReadError, ImageTooLargeError
    from formnet_cli.io import decode
    from formnet_cli.server import work

    monkeypatch.setattr(decode, "_decode", lambda *args: pytest.fail("decoded before refusing"))
    with pytest.raises(ImageReadError, match="upload.tif: truncated or corrupt TIFF image: its header "
                                             "declares 1 x 1000000000 pixels"):
        work.restore_file(work.RestoreJob(forged_tiff(1, 10**9), "upload.tif", task="denoise"))
    with pytest.raises(ImageTooLargeError, match="upload.webp: image too large for its file"):
        work.restore_file(work.RestoreJob(FORGERS["webp"](16383, 16383), "upload.webp", task="denoise"))
    bilevel = forged_tiff(16, 16, "1")
    with pytest.raises(FormnetError, match="scan.tif: 1-bit .*image"):
        work.restore_file(work.RestoreJob(bilevel, "scan.tif", task="denoise"))
    assert capfd.readouterr().err == ""
