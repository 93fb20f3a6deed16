"""Reading every format (formnet_cli.io.decode): modes, depths, orientation, pages, and bad
input as one line (what the C libraries print folded into it), special files."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile, ImageOps

from formnet_cli import io as imageio
from formnet_cli.errors import ImageReadError, ImageWriteError
from formnet_cli.io import LoadedImage, read_image, read_image_bytes, to_uint, write_image
from formnet_cli.io.formats import PNG_SIGNATURE
from image_samples import SRGB_ICC, XMP, exif_with_orientation, random_uint


def encode_png(samples: np.ndarray, colour_type: int) -> bytes:
    """A minimal 16-bit PNG (filter 0), for layouts no installed encoder writes."""
    height, width, _ = samples.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    size = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    header = size + bytes([16, colour_type, 0, 0, 0])  # depth, colour type, methods
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_16bit_grey_alpha_png_is_read_as_grey(tmp_path):
    grey_alpha = random_uint((3, 4, 2), 16)
    source = tmp_path / "la16.png"
    source.write_bytes(encode_png(grey_alpha, colour_type=4))

    image = read_image(source)
    assert image.float_pixels.shape == (3, 4, 1) and image.bit_depth == 16
    assert np.array_equal(to_uint(image.float_pixels, 16)[:, :, 0], grey_alpha[:, :, 0])
    assert np.array_equal(to_uint(image.float_alpha, 16), grey_alpha[:, :, 1])


@pytest.mark.parametrize(("mode", "key"), [("L", 7), ("RGB", (7, 8, 9))])
def test_png_colour_key_transparency_becomes_alpha(tmp_path, mode, key):
    pixels = np.full((3, 4) if mode == "L" else (3, 4, 3), 200, np.uint8)
    pixels[1, 2] = key
    Image.fromarray(pixels).save(tmp_path / "keyed.png", transparency=key)
    image = read_image(tmp_path / "keyed.png")
    expected = np.ones((3, 4), np.float32)
    expected[1, 2] = 0
    assert image.channels == (1 if mode == "L" else 3) and np.array_equal(image.float_alpha, expected)


def test_palette_image_becomes_rgb_or_rgba(tmp_path):
    palette_image = Image.fromarray(random_uint((5, 5, 3), 8)).quantize(colors=8)
    expected = np.asarray(palette_image.convert("RGB"))
    source = tmp_path / "palette.png"
    palette_image.save(source)
    image = read_image(source)
    assert image.float_pixels.shape == (5, 5, 3) and image.float_alpha is None
    assert np.array_equal(to_uint(image.float_pixels, 8), expected)

    transparent = tmp_path / "transparent.png"
    palette_image.save(transparent, transparency=0)
    image = read_image(transparent)
    index = np.asarray(palette_image)
    assert image.float_alpha is not None
    assert np.array_equal(image.float_alpha == 0, index == 0)


def test_one_bit_and_cmyk_images_are_converted(tmp_path):
    bits = Image.fromarray(np.eye(6, dtype=bool))
    bits.save(tmp_path / "bits.png")
    image = read_image(tmp_path / "bits.png")
    assert image.float_pixels.shape == (6, 6, 1)
    assert np.array_equal(image.float_pixels[:, :, 0], np.eye(6, dtype=np.float32))

    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    image = read_image(tmp_path / "cmyk.tif")
    assert image.float_pixels.shape == (3, 4, 3)
    assert np.allclose(image.float_pixels[0, 0], [1.0, 0.0, 0.0])  # pure red


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    values = random_uint((3, 5, 3), 8)
    source = tmp_path / "oriented.png"
    Image.fromarray(values).save(source, exif=exif_with_orientation(orientation))
    with Image.open(source) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened))
    assert np.array_equal(to_uint(read_image(source).float_pixels, 8), expected)


def test_orientation_is_applied_to_16bit_colour(tmp_path):
    rgb = random_uint((3, 5, 3), 16)
    source = tmp_path / "rgb16.png"
    ok, buffer = cv2.imencodeWithMetadata(
        ".png",
        np.ascontiguousarray(rgb[:, :, ::-1]),
        [cv2.IMAGE_METADATA_EXIF],
        [np.frombuffer(exif_with_orientation(6).tobytes()[6:], np.uint8)],
    )
    source.write_bytes(buffer.tobytes())
    image = read_image(source)
    assert np.array_equal(to_uint(image.float_pixels, 16), np.rot90(rgb, k=-1))


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_tiff_orientation_is_applied_once_at_any_depth(tmp_path, bit_depth):
    rgb = np.zeros((4, 8, 3), np.uint8 if bit_depth == 8 else np.uint16)
    rgb[0, 0] = 255  # top left as stored; orientation 6 turns it 90 degrees clockwise
    for pages in (1, 2):
        with tifffile.TiffWriter(tmp_path / f"o{pages}.tif") as writer:
            for _ in range(pages):
                writer.write(rgb, photometric="rgb", extratags=[(274, "H", 1, 6, True)],
                             resolution=(300, 150), resolutionunit="INCH", metadata=None)
        for image in imageio.read_pages(tmp_path / f"o{pages}.tif"):
            assert image.float_pixels.shape[:2] == (8, 4) and image.dpi == (150.0, 300.0)
            assert np.unravel_index(np.argmax(image.float_pixels[:, :, 0]), (8, 4)) == (0, 3)


def test_heic_rotation_is_applied_once(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[0, 0] = 255  # top left, before turning by EXIF orientation 6 (90 degrees clockwise)
    Image.fromarray(pixels).save(tmp_path / "phone.heic", exif=exif_with_orientation(6).tobytes(), quality=-1)
    image = read_image(tmp_path / "phone.heic")
    assert image.float_pixels.shape[:2] == (8, 4)
    assert np.unravel_index(np.argmax(image.float_pixels[:, :, 0]), (8, 4)) == (0, 3)  # now top right


def test_planar_16bit_rgb_tiff_is_decoded_exactly(tmp_path):
    rgb = random_uint((6, 5, 3), 16)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    assert np.array_equal(to_uint(read_image(tmp_path / "planar.tif").float_pixels, 16), rgb)
    pages = [LoadedImage(rgb.astype(np.float32) / 65535, bit_depth=16)] * 2
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        for _ in pages:
            writer.write(rgb, photometric="rgb", planarconfig="separate")
    assert all(np.array_equal(to_uint(page.float_pixels, 16), rgb)
               for page in imageio.read_pages(tmp_path / "pages.tif"))


def test_16bit_colour_page_after_a_thumbnail_is_the_right_page(tmp_path):
    rgb = random_uint((6, 5, 3), 16)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        writer.write(np.zeros((4, 4), np.uint8), metadata=None)
        writer.write(np.ones((2, 2, 3), np.uint16), photometric="rgb", subfiletype=1, metadata=None)
        writer.write(rgb, photometric="rgb", metadata=None)
    pages = imageio.read_pages(tmp_path / "pages.tif")
    assert len(pages) == 2 and np.array_equal(to_uint(pages[1].float_pixels, 16), rgb)


def test_signed_16bit_tiff_is_still_read(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.arange(16, dtype=np.int16).reshape(4, 4) * 1000)
    image = read_image(tmp_path / "s.tif")
    assert image.bit_depth == 16 and image.float_pixels.shape == (4, 4, 1)


def test_avif_of_any_brand_is_read_by_pillows_avif_plugin():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="AVIF", quality=90)
    data = buffer.getvalue()
    assert data[8:12] == b"avif"
    image = read_image_bytes(data[:8] + b"mif1" + data[12:], "x.avif")  # the HEIF plugin claims mif1
    assert image.source_format == "AVIF" and abs(image.float_pixels[0, 0, 0] - 200 / 255) < 0.02


AVIF_AFTER_HEIF_REGISTERED = """
import io, sys
import pillow_heif
pillow_heif.register_heif_opener()  # before Pillow's own plugins load, as a caller's code may
from PIL import Image
buffer = io.BytesIO()
Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="AVIF", quality=90)
assert Image.ID.index("HEIF") < Image.ID.index("AVIF")
from formnet_cli.io import read_image_bytes
image = read_image_bytes(buffer.getvalue()[:8] + b"mif1" + buffer.getvalue()[12:], "x.avif")
print(image.source_format, round(float(image.float_pixels[0, 0, 0]) * 255))
"""


def test_avif_goes_to_pillows_reader_whichever_opener_registered_first():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", AVIF_AFTER_HEIF_REGISTERED], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert run.returncode == 0, run.stderr
    source_format, red = run.stdout.split()
    assert source_format == "AVIF" and abs(int(red) - 200) <= 5


def test_heic_with_several_images_reads_the_primary_one(tmp_path):
    first, second = Image.new("RGB", (8, 6), (250, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 250))
    first.save(tmp_path / "burst.heic", save_all=True, append_images=[second], quality=-1)
    image = read_image(tmp_path / "burst.heic")
    assert image.float_pixels.shape == (6, 8, 3) and image.float_pixels[0, 0, 0] > 0.9


def test_10_bit_heic_is_read_at_16_bits(tmp_path):
    import pillow_heif

    ramp = np.linspace(0, 65535, 16 * 16 * 3).reshape(16, 16, 3).astype(np.uint16)
    pillow_heif.from_bytes(mode="RGB;16", size=(16, 16), data=ramp.tobytes()).save(
        tmp_path / "deep.heic", quality=-1)  # stored at 10 bits
    image = read_image(tmp_path / "deep.heic")
    assert image.bit_depth == 16 and len(np.unique(to_uint(image.float_pixels, 16))) > 256
    assert np.abs(image.float_pixels - ramp / 65535).max() < 2 / 1023
    image.icc_profile, image.xmp = SRGB_ICC, XMP
    write_image(tmp_path / "again.heic", image, jpeg_quality=100)  # written back at 10 bits
    again = read_image(tmp_path / "again.heic")
    assert again.bit_depth == 16 and len(np.unique(to_uint(again.float_pixels, 16))) > 256
    assert again.icc_profile == SRGB_ICC and again.xmp == XMP


def test_a_12bit_colour_jpeg2000_is_scaled_to_16_bits():
    # tests/data/rgb12bit.jp2: imagecodecs.jpeg2k_encode(c, codecformat="jp2", bitspersample=12,
    # reversible=True) of c = default_rng(0).integers(0, 4096, (12, 16, 3), dtype=np.uint16).
    expected = np.random.default_rng(0).integers(0, 4096, (12, 16, 3), dtype=np.uint16)
    image = read_image(Path(__file__).parent / "data" / "rgb12bit.jp2")
    assert image.bit_depth == 16 and image.float_pixels.shape == (12, 16, 3)
    assert np.array_equal(np.round(image.float_pixels * 4095).astype(np.uint16), expected)


def test_sixteen_bit_min_is_white_tiff_is_not_read_as_a_negative(tmp_path):
    samples = random_uint((6, 7), 16)
    tifffile.imwrite(tmp_path / "mw.tif", samples, photometric="miniswhite")  # 0 is white
    image = imageio.read_image(tmp_path / "mw.tif")
    np.testing.assert_array_equal(imageio.to_uint(image.float_pixels, 16)[:, :, 0], 65535 - samples)


def test_sixteen_bit_grey_png_colour_key_becomes_alpha(tmp_path):
    samples = random_uint((5, 6), 16)
    samples[0, 0] = key = 12345
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", 6, 5, 16, 0, 0, 0, 0)),
              (b"tRNS", struct.pack(">H", key)), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]
    data = PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks)
    image = imageio.read_image_bytes(data, "keyed.png")
    assert image.bit_depth == 16 and image.float_alpha is not None
    np.testing.assert_array_equal(image.float_alpha, (samples != key).astype(np.float32))


def test_read_image_bytes_matches_file(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(buffer, format="PNG")
    image = read_image_bytes(buffer.getvalue(), "memory.png")
    assert image.source_format == "PNG" and to_uint(image.float_pixels[0, 0], 8).tolist() == [1, 2, 3]


def test_multi_page_tiff_reads_and_writes_every_page(tmp_path):
    grey = random_uint((16, 20), 8)
    rgb = random_uint((12, 10, 3), 8)
    rgba = random_uint((8, 8, 4), 8)
    deep = random_uint((10, 6), 16)
    frames = [Image.fromarray(grey), Image.fromarray(rgb), Image.fromarray(rgba, "RGBA"),
              Image.fromarray(deep)]
    source = tmp_path / "scan.tif"
    frames[0].save(source, save_all=True, append_images=frames[1:])
    pages = imageio.read_pages(source)
    assert [page.float_pixels.shape for page in pages] == [(16, 20, 1), (12, 10, 3), (8, 8, 3), (10, 6, 1)]
    assert [page.bit_depth for page in pages] == [8, 8, 8, 16]
    np.testing.assert_array_equal(to_uint(pages[3].float_pixels, 16)[:, :, 0], deep)
    copy = tmp_path / "copy.tif"
    imageio.write_pages(copy, pages)
    again = imageio.read_pages(copy)
    assert len(again) == 4
    for before, after in zip(pages, again):
        np.testing.assert_array_equal(before.float_pixels, after.float_pixels)
        assert before.bit_depth == after.bit_depth and (after.float_alpha is None) == (before.float_alpha is None)
    np.testing.assert_array_equal(to_uint(again[2].float_alpha, 8), rgba[:, :, 3])
    with pytest.raises(ImageReadError, match="holds 4 pages"):
        read_image(source)  # a single image from a multi-page file would drop pages
    with pytest.raises(ImageWriteError, match="4 pages need a TIFF output"):
        imageio.write_pages(tmp_path / "copy.png", pages)


def _tiff_with_pages(path: Path, pages: list[tuple[Image.Image, dict]]) -> Path:
    """A TIFF whose pages are saved with their own options (Pillow's save_all shares them)."""
    from PIL import TiffImagePlugin

    with TiffImagePlugin.AppendingTiffWriter(str(path), new=True) as writer:
        for image, options in pages:
            image.save(writer, format="TIFF", **options)
            writer.newFrame()
    return path


def test_tiff_pages_keep_their_own_profiles_and_skip_thumbnails(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    first, second = (Image.fromarray(random_uint((16, 16, 3), 8)) for _ in range(2))
    thumbnail = Image.fromarray(random_uint((4, 4, 3), 8))
    source = _tiff_with_pages(tmp_path / "scan.tif", [
        (first, {"icc_profile": srgb}), (second, {}),
        (thumbnail, {"tiffinfo": {254: 1}}),  # NewSubfileType: reduced resolution
    ])
    pages = imageio.read_pages(source)
    assert [page.float_pixels.shape for page in pages] == [(16, 16, 3), (16, 16, 3)]
    assert pages[0].icc_profile == srgb and pages[1].icc_profile is None
    copy = tmp_path / "copy.tif"
    imageio.write_pages(copy, pages)  # each page keeps its own
    assert [page.icc_profile for page in imageio.read_pages(copy)] == [srgb, None]
    # One full-resolution page and its thumbnail: a single image, for read_image too.
    single = _tiff_with_pages(tmp_path / "single.tif",
                              [(first, {}), (thumbnail, {"tiffinfo": {254: 1}})])
    assert read_image(single).float_pixels.shape == (16, 16, 3)
    assert len(imageio.read_pages(single)) == 1


def test_tiff_with_a_broken_page_chain_fails_naming_the_page(tmp_path):
    path = tmp_path / "broken.tif"
    Image.fromarray(random_uint((12, 12), 8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"  # little-endian, as Pillow writes
    # Point the first IFD's next-IFD offset past the end of the file.
    ifd = int.from_bytes(data[4:8], "little")
    entries = int.from_bytes(data[ifd:ifd + 2], "little")
    next_offset = ifd + 2 + 12 * entries
    data[next_offset:next_offset + 4] = (len(data) + 1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    # a second page is declared and cannot be read: not one page out of two, but a failure
    for read in (read_image, imageio.read_pages):
        with pytest.raises(ImageReadError, match=r"broken.tif: page 2: its directory \(IFD\) "
                                                 r"is damaged or missing .* refused whole"):
            read(path)


def test_single_page_files_read_as_one_page(tmp_path):
    path = tmp_path / "one.png"
    Image.fromarray(random_uint((9, 7, 3), 8)).save(path)
    [page] = imageio.read_pages(path)
    np.testing.assert_array_equal(page.float_pixels, read_image(path).float_pixels)


def test_animations_are_refused_not_cut_to_their_first_frame(tmp_path):
    frames = [Image.fromarray(random_uint((16, 16, 3), 8)) for _ in range(3)]
    path = tmp_path / "clip.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    with pytest.raises(ImageReadError, match="holds 3 frames; formnet restores still images"):
        imageio.read_pages(path)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_uint((64, 64, 3), 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def corrupt_png_bytes() -> bytes:
    """A complete PNG whose compressed pixel data starts with a broken zlib header."""
    data = bytearray(png_bytes())
    assert data[37:41] == b"IDAT"
    data[41:43] = b"\xff\xff"
    return bytes(data)


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_uint((64, 64, 3), 8)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.png", b"", "empty file"),
        ("notes.png", b"just some text, not pixels\n", "not a supported image"),
        ("cut.png", png_bytes()[:400], "truncated or corrupt"),
        ("cut.jpg", jpeg_bytes()[:600], "truncated or corrupt"),
        ("bad.png", corrupt_png_bytes(), "truncated or corrupt"),
        ("cut.tif", b"II*\x00\x08\x00", "truncated or corrupt TIFF image"),
        ("cut.jp2", b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00", "truncated or corrupt"),
    ],
)
def test_bad_input_raises_one_line_read_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("extension", [".png", ".tif"])
def test_truncated_16bit_colour_raises_and_prints_nothing(tmp_path, capfd, extension):
    # Decoded by OpenCV: neither libpng's nor libtiff's own complaints reach standard error.
    full = tmp_path / f"full{extension}"
    write_image(full, LoadedImage(random_uint((64, 64, 3), 16).astype(np.float32) / 65535,
                                  bit_depth=16))
    cut = tmp_path / f"cut{extension}"
    cut.write_bytes(full.read_bytes()[:len(full.read_bytes()) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(cut)
    assert capfd.readouterr().err == ""


def test_missing_file_and_folder_raise_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("dtype, reason", [(np.int32, "signed 32-bit integer samples are not read"),
                                           (np.float32, "32-bit floating-point samples are not read")])
def test_32_bit_tiff_is_refused_not_clipped(tmp_path, dtype, reason):
    path = tmp_path / "deep.tif"
    Image.fromarray((np.arange(64).reshape(8, 8) * 100_000).astype(dtype)).save(path)
    with pytest.raises(ImageReadError, match=reason):
        read_image(path)


@pytest.mark.parametrize("samples, options, message", [
    (np.zeros((4, 5, 3), np.float32), {"photometric": "rgb"}, "32-bit floating-point samples are not read"),
    (np.full((4, 5), -3, np.int16), {}, "signed 16-bit samples with negative values are not read"),
    (np.zeros((4, 5), np.uint32), {}, "unsigned 32-bit integer samples are not read"),
    (np.zeros((4, 5, 4), np.uint16), {"photometric": "separated"}, "16-bit CMYK is not read"),
    (np.zeros((4, 5, 2), np.uint16), {"photometric": "minisblack", "extrasamples": ["unassalpha"]},
     "16-bit grey\\+alpha TIFF is not read"),
    (np.full((4, 5), -3, np.int8), {}, "signed 8-bit integer samples are not read"),
    (np.full((4, 5, 3), 3, np.int16), {"photometric": "rgb"}, "signed 16-bit integer samples are not read"),
])
def test_tiff_layouts_not_read_are_named_not_called_corrupt(tmp_path, samples, options, message):
    tifffile.imwrite(tmp_path / "odd.tif", samples, **options)
    with pytest.raises(ImageReadError, match=f"odd.tif: {message}"):
        imageio.read_pages(tmp_path / "odd.tif")


def test_a_truncated_tiff_is_reported_once_without_library_log_lines(tmp_path, caplog):
    tifffile.imwrite(tmp_path / "whole.tif", random_uint((8, 8), 16))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:8])
    with pytest.raises(ImageReadError, match="cut.tif: truncated or corrupt TIFF image"):
        imageio.read_pages(tmp_path / "cut.tif")
    assert not [record for record in caplog.records if record.name.startswith("tifffile")]


def _damaged(data: bytes, start: int = 20, end: int = 200) -> bytes:
    damaged = bytearray(data)
    for at in range(start, min(end, len(damaged))):
        damaged[at] ^= 0x33
    return bytes(damaged)


def _compressed_tiff(compression: str, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    samples = np.random.default_rng(seed).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(samples).save(buffer, "TIFF", compression=compression)
    return buffer.getvalue()


@pytest.mark.parametrize("compression, said", [("tiff_adobe_deflate", "ZIPDecode: Decoding error"),
                                               ("tiff_lzw", "Using code not yet in table")])
def test_what_libtiff_prints_is_folded_into_the_one_line(tmp_path, capfd, compression, said):
    path = tmp_path / "damaged.tif"
    path.write_bytes(_damaged(_compressed_tiff(compression)))
    with pytest.raises(ImageReadError) as caught:
        imageio.read_pages(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: truncated or corrupt image") and "\n" not in message
    assert f"; the decoder said: " in message and said in message
    assert capfd.readouterr().err == ""  # not a line of libtiff's beside formnet's


def test_what_pillow_logs_is_folded_into_the_one_line(capfd):
    """Pillow logs some refusals (the fuzz suite's one stray line) instead of raising them."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    directory = struct.unpack("<I", data[4:8])[0]
    for entry in range(struct.unpack("<H", data[directory:directory + 2])[0]):
        at = directory + 2 + 12 * entry
        if struct.unpack("<H", data[at:at + 2])[0] == 277:  # SamplesPerPixel
            data[at + 8:at + 10] = struct.pack("<H", 259)
    with pytest.raises(ImageReadError, match=r"^x.tif: .*; the decoder said: More samples per pixel "
                                             r"than can be decoded: 259$"):
        read_image_bytes(bytes(data), "x.tif")
    assert capfd.readouterr().err == ""


def test_what_libpng_prints_under_opencv_is_folded_into_the_one_line(tmp_path, capfd):
    encoded = bytearray(cv2.imencode(".png", random_uint((32, 32, 3), 16))[1].tobytes())
    at = encoded.find(b"IDAT")
    length = struct.unpack(">I", encoded[at - 4:at])[0]
    encoded[at + 24:at + 64] = bytes(40)  # damage reaching the inflater: its CRC made right
    encoded[at + 4 + length:at + 8 + length] = struct.pack(">I", zlib.crc32(bytes(encoded[at:at + 4 + length])))
    (tmp_path / "deep.png").write_bytes(bytes(encoded))
    with pytest.raises(ImageReadError, match=r"deep.png: .*; the decoder said: libpng error: "):
        read_image(tmp_path / "deep.png")
    assert capfd.readouterr().err == ""


def test_an_image_decoded_despite_its_decoders_warnings_carries_them(tmp_path, capfd):
    buffer = io.BytesIO()  # what the fuzz found: libtiff warns of a bad ResolutionUnit, reads on
    Image.new("L", (64, 64), 9).save(buffer, "TIFF", compression="tiff_lzw", dpi=(72, 72))
    data = bytearray(buffer.getvalue())
    offset = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[offset:offset + 2])[0]
    resolution_unit = data.find(struct.pack("<HH", 296, 3), offset, offset + 2 + 12 * entries)
    data[resolution_unit + 8:resolution_unit + 10] = struct.pack("<H", 65535)
    (tmp_path / "odd.tif").write_bytes(bytes(data))
    image = read_image(tmp_path / "odd.tif")
    assert image.float_pixels.shape == (64, 64, 1)
    assert any("ResolutionUnit" in line for line in image.decoder_warnings), image.decoder_warnings
    assert capfd.readouterr().err == ""


def test_threads_decoding_at_once_each_get_their_own_library_lines(tmp_path, capfd):
    """Descriptor 2 is the process's: captures take turns, and a line formnet itself prints
    from another thread meanwhile still reaches standard error."""
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    for index in range(8):
        compression = "tiff_adobe_deflate" if index % 2 else "tiff_lzw"
        (tmp_path / f"{index}.tif").write_bytes(_damaged(_compressed_tiff(compression, seed=index)))
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            print("progress", file=sys.stderr, flush=True)
            stop.wait(0.001)

    talker = threading.Thread(target=chatter)
    talker.start()

    def reason(index: int) -> str:
        with pytest.raises(ImageReadError) as caught:
            imageio.read_pages(tmp_path / f"{index}.tif")
        return str(caught.value)

    try:
        with ThreadPoolExecutor(4) as pool:
            reasons = list(pool.map(reason, range(8)))
    finally:
        stop.set()
        talker.join()
    for index, text in enumerate(reasons):
        said = "ZIPDecode" if index % 2 else "Using code not yet in table"
        assert text.startswith(f"{tmp_path / f'{index}.tif'}: ") and said in text, text
    err = capfd.readouterr().err
    assert set(err.split()) == {"progress"}  # every line of its own, none of a library


@pytest.mark.parametrize("make, reason", [
    (lambda path: os.mkfifo(path), "not a regular file"),
    (lambda path: path.symlink_to(path), "a link loop"),
    (lambda path: path.symlink_to("/dev/zero"), "not a regular file"),
    (lambda path: os.truncate(path.open("wb").name, 256 * 2**20), "not a supported image"),
])
def test_special_files_are_refused_in_one_line_without_reading_them(tmp_path, make, reason):
    path = tmp_path / "special.png"
    make(path)
    with pytest.raises(ImageReadError, match=f"special.png: .*{reason}"):
        imageio.read_pages(path)  # a FIFO would block, /dev/zero and a sparse file never end
