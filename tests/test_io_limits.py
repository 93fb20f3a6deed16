"""The pixel limit (formnet_cli.io.limits) and the header checks (formnet_cli.io.header): decompression
bombs, the default limit, the memory, data enough for the header, threads."""

from __future__ import annotations

import pytest
from PIL import Image

from benchmarks.fuzz_corpus import FORGERS, zeros_png
from formnet_cli import io as imageio
from formnet_cli.errors import FormnetError, ImageReadError, ImageTooLargeError, InvalidOptionError
from formnet_cli.io import decode as decode_module
from formnet_cli.io import header, limits
from formnet_cli.io import read_image


@pytest.mark.parametrize("pixels_over_limit", [1.5, 3.0])  # warning zone and error zone
@pytest.mark.filterwarnings("error")  # no Pillow warning may leak past the one-line error
def test_decompression_bomb_raises_read_error(tmp_path, monkeypatch, pixels_over_limit):
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", str(100 * 100 / pixels_over_limit / 1e6))
    for read in (read_image, imageio.read_pages):
        with pytest.raises(ImageTooLargeError, match="decompression bomb.*set FORMNET_MAX_MEGAPIXELS"):
            read(path)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own limit is left as it was
    monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", "0.01")
    assert read_image(path).pixels.shape == (100, 100, 1)


def test_the_default_limit_reads_large_camera_frames(monkeypatch):
    monkeypatch.delenv("FORMNET_MAX_MEGAPIXELS", raising=False)
    assert imageio.max_pixels() >= 400e6  # a 400 MP pixel-shift frame; Pillow's own is 89.5 MP
    for bad in ("lots", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", bad)
        with pytest.raises(InvalidOptionError, match="FORMNET_MAX_MEGAPIXELS must be a positive"):
            imageio.max_pixels()


def test_threads_reading_at_once_leave_pillow_as_it_was(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    limit = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: read_image(tmp_path / "x.png"), range(40)))
    assert Image.MAX_IMAGE_PIXELS == limit


def test_the_limit_message_quotes_the_limit_not_twice_it(tmp_path, monkeypatch):
    Image.new("L", (1000, 1000)).save(tmp_path / "big.png")
    monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", "0.25")  # Pillow's own would say "500000"
    with pytest.raises(ImageTooLargeError) as caught:
        read_image(tmp_path / "big.png")
    message = str(caught.value)
    assert "(1000 x 1000 = 1 MP, over the limit of 0.25 MP; set FORMNET_MAX_MEGAPIXELS (now 0.25)" in message
    assert "500000" not in message and "250000" not in message


@pytest.mark.parametrize("gib, megapixels", [(8, 8 * 2**30 / 26 / 1e6), (16, 16 * 2**30 / 26 / 1e6),
                                             (64, 1000.0)])
def test_the_default_limit_is_what_the_machine_could_restore_under_a_ceiling(monkeypatch, gib,
                                                                            megapixels):
    import psutil

    monkeypatch.delenv("FORMNET_MAX_MEGAPIXELS", raising=False)
    memory = psutil.virtual_memory()._replace(total=gib * 2**30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    assert imageio.max_pixels() == int(megapixels * 1e6)
    words = limits.describe_limit()
    assert (f"what this machine's {gib} GiB of memory can restore" in words) == (megapixels < 1000)


def _never_decoded(monkeypatch):
    """Make decoding a pixel fail the test: what is refused must be refused from the header."""
    def decode(*args, **kwargs):
        raise AssertionError("decoded, though it should have been refused from its header")

    monkeypatch.setattr(decode_module, "_decode", decode)


def test_a_file_needing_more_memory_than_is_free_is_refused_before_decoding(tmp_path,
                                                                            monkeypatch):
    Image.new("RGB", (2000, 1500)).save(tmp_path / "photo.png")
    monkeypatch.setattr(header, "available_memory", lambda: 50 * 2**20)
    _never_decoded(monkeypatch)
    with pytest.raises(ImageTooLargeError, match=r"photo.png: a 2000 x 1500 image needs about "
                                                 r"0\.\d GiB of memory to read, 0\.0 GiB free"):
        imageio.read_pages(tmp_path / "photo.png")
    monkeypatch.setattr(header, "available_memory", lambda: 2**39)
    with pytest.raises(ImageTooLargeError, match="needs about 931.4 GiB of memory to read and "
                                                 "restore"):
        imageio.read_pages(tmp_path / "photo.png", restore_memory=lambda pages: 10**12)


def test_the_caller_sees_every_page_declared_before_any_is_decoded(tmp_path, monkeypatch):
    pages = [Image.new("I;16", (30, 20)), Image.new("RGBA", (16, 8)), Image.new("1", (5, 7)),
             Image.new("P", (9, 9))]
    pages[0].save(tmp_path / "doc.tif", save_all=True, append_images=pages[1:])
    seen = []

    def refuse(declared):
        seen.extend(declared)
        raise FormnetError("not these pages")

    _never_decoded(monkeypatch)
    with pytest.raises(FormnetError, match="not these pages"):
        imageio.read_pages(tmp_path / "doc.tif", restore_memory=refuse)
    assert [(page.number, page.width, page.height, page.channels, page.alpha, page.bit_depth,
             page.bilevel) for page in seen] == [
        (1, 30, 20, 1, False, 16, False), (2, 16, 8, 3, True, 8, False),
        (3, 5, 7, 1, False, 8, True), (4, 9, 9, 3, False, 8, False)]


def test_a_bomb_decoding_far_beyond_its_file_is_refused_unless_the_limit_is_set(tmp_path,
                                                                                monkeypatch):
    path = tmp_path / "zeros.png"
    path.write_bytes(zeros_png(20000, 20000))  # 400 MP of grey in about 0.4 MB: valid
    assert path.stat().st_size < 2**20
    monkeypatch.delenv("FORMNET_MAX_MEGAPIXELS", raising=False)
    _never_decoded(monkeypatch)
    with pytest.raises(ImageTooLargeError, match=r"zeros.png: image too large for its file, "
                                                 r"refused as a possible decompression bomb \(400 "
                                                 r"MP, 0\.7 GiB to decode from [\d,]+ bytes\); set "
                                                 "FORMNET_MAX_MEGAPIXELS to read it all the same"):
        imageio.read_pages(path)
    monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", "1000")  # the user vouches for it: on to the memory
    monkeypatch.setattr(header, "available_memory", lambda: 2**30)
    with pytest.raises(ImageTooLargeError, match="needs about 2.2 GiB of memory to read"):
        imageio.read_pages(path)


@pytest.mark.parametrize("name, make", [
    ("deflate.tif", lambda path: Image.new("L", (3000, 3000)).save(path, compression="tiff_adobe_deflate")),
    ("lzw.tif", lambda path: Image.new("L", (3000, 3000)).save(path, compression="tiff_lzw")),
    ("packbits.tif", lambda path: Image.new("L", (3000, 3000)).save(path, compression="packbits")),
    ("jpeg.tif", lambda path: Image.new("RGB", (3000, 3000)).save(path, compression="jpeg")),
    ("zeros.png", lambda path: path.write_bytes(zeros_png(3000, 3000))),
    ("flat.jpg", lambda path: Image.new("L", (4000, 4000), 128).save(path, quality=5)),
    ("flat.bmp", lambda path: Image.new("L", (999, 3)).save(path)),
])
def test_the_most_compressed_real_files_hold_data_enough_for_their_header(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    with Image.open(path) as image:
        data = path.read_bytes()
        assert header.missing_data(image, data, header.declare_page(image, data)) is None


@pytest.mark.parametrize("extension", ["png", "tif", "bmp", "jpg"])
def test_a_header_declaring_more_than_its_file_holds_is_called_truncated(tmp_path, extension):
    path = tmp_path / f"forged.{extension}"
    path.write_bytes(FORGERS[extension](3000, 2000))  # under the limit, fits in memory: data missing
    with pytest.raises(ImageReadError, match=f"forged.{extension}: truncated or corrupt .* image: its "
                                             "header declares 3000 x 2000 pixels, which its [\\d,]+ "
                                             "bytes of image data cannot hold"):
        imageio.read_pages(path)
