"""``formnet serve``'s HTTP API through Starlette's test client: results equal the library's,
formats and metadata kept, and every error status (400, 413, 415, 503, 500) with its one-line
message. Skipped without the ``serve`` extra (and httpx, which the test client needs)."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

pytest.importorskip("starlette", reason="formnet serve needs the serve extra: pip install 'formnet[serve]'")
pytest.importorskip("multipart", reason="formnet serve needs the serve extra: pip install 'formnet[serve]'")
pytest.importorskip("uvicorn", reason="formnet serve needs the serve extra: pip install 'formnet[serve]'")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx")

from starlette.testclient import TestClient

from formnet_cli import api
from formnet_cli.options import RestoreOptions
from formnet_cli.errors import InvalidOptionError
from formnet_cli import io as imageio
from formnet_cli.server.app import ServerSettings, _display_name, create_app

MAX_UPLOAD_MIB = 1.0
MAX_MEGAPIXELS = 0.25


@pytest.fixture(scope="module")
def client():
    """One worker, no waiting places: a second request at once is refused (503)."""
    settings = ServerSettings(device="cpu", workers=1, queue=0, max_upload_mib=MAX_UPLOAD_MIB,
                              max_megapixels=MAX_MEGAPIXELS)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def png_bytes(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", **options)
    return buffer.getvalue()


def noisy_photo(height: int = 48, width: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with Gaussian noise of sigma 20 (uint8)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    clean = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 128.0)], axis=2)
    return np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).round().astype(np.uint8)


def post(client, data: bytes, name: str = "photo.png", **fields):
    return client.post("/v1/restore", files={"image": (name, data, "application/octet-stream")},
                       data={key: str(value) for key, value in fields.items()})


def assert_error(response, status: int, text: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert text in message and "\n" not in message
    return message


# -- what works ----------------------------------------------------------------------------
def test_health_models_and_the_page(client):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["workers"] == 1 and health["capacity"] == 1
    models = {model["name"]: model for model in client.get("/v1/models").json()["models"]}
    assert models["denoise-color"]["task"] == "denoise" and models["denoise-color"]["default"]
    assert models["sr-y"]["channels"] == 1
    assert not any("path" in model for model in models.values())  # no server path shown
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        body = client.get(asset).text
        assert "http://" not in body and "https://" not in body  # nothing from elsewhere
    assert "http" not in page.text.replace("http-equiv", "")
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404  # only the page's own URLs


def test_restore_gives_the_library_result_in_the_input_format(client):
    pixels = noisy_photo()
    response = post(client, png_bytes(pixels), task="denoise", sigma=20, strength=0.6)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert 'filename="photo-restored.png"' in response.headers["content-disposition"]
    assert response.headers["x-formnet-task"] == "denoise"
    assert response.headers["x-formnet-level"] == "sigma 20.0"
    assert response.headers["x-formnet-model"] == "denoise-color"
    restored = np.asarray(Image.open(io.BytesIO(response.content)))
    expected = api.restore(pixels, "denoise", sigma=20, strength=0.6, device="cpu")
    assert restored.shape == pixels.shape
    assert np.abs(restored.astype(int) - expected).max() <= 1  # the library's result
    assert np.abs(restored.astype(int) - pixels).mean() > 4  # and it did denoise


def test_task_auto_calls_the_library_without_a_task(client):
    pixels = noisy_photo(64, 64, seed=1)
    response = post(client, png_bytes(pixels), task="auto")
    assert response.status_code == 200, response.text
    result = api.restore_with_info(pixels, device="cpu")
    assert response.headers["x-formnet-task"] == result.task
    assert response.headers["x-formnet-level"] == result.describe_level()
    restored = np.asarray(Image.open(io.BytesIO(response.content)))
    assert np.abs(restored.astype(int) - result.image).max() <= 1


def test_a_16_bit_rgba_png_keeps_its_depth_alpha_and_metadata(client):
    rng = np.random.default_rng(2)
    pixels = rng.random((32, 36, 3), dtype=np.float32)
    alpha = np.linspace(0, 1, 32 * 36, dtype=np.float32).reshape(32, 36)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = imageio.LoadedImage(pixels, alpha, bit_depth=16, icc_profile=profile,
                                 dpi=(300.0, 300.0), text={"Description": "scan 42", "Author": "A. Archivist"})
    data = imageio.encode_pages([source], "png")
    response = post(client, data, name="scan.png", task="denoise", sigma=10)
    assert response.status_code == 200, response.text
    body = response.content
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    bit_depth, colour_type = struct.unpack(">BB", body[24:26])  # IHDR, read independently
    assert (bit_depth, colour_type) == (16, 6)  # 16-bit RGBA
    restored = imageio.read_image_bytes(body, "restored.png")
    assert restored.bit_depth == 16 and restored.icc_profile == profile
    assert restored.text == {"Description": "scan 42", "Author": "A. Archivist"}
    assert restored.dpi == pytest.approx((300.0, 300.0), abs=0.01)
    original = imageio.read_image_bytes(data, "scan.png")
    np.testing.assert_array_equal(imageio.to_uint(restored.alpha, 16), imageio.to_uint(original.alpha, 16))
    expected = api.restore(np.concatenate([original.pixels, original.alpha[:, :, None]], axis=2),
                           "denoise", sigma=10, device="cpu")
    np.testing.assert_allclose(restored.pixels, expected[:, :, :3], atol=2 / 65535)


def test_jpeg_in_jpeg_out_and_ext_chooses_another_format(client):
    buffer = io.BytesIO()
    Image.fromarray(noisy_photo(40, 40)).save(buffer, "JPEG", quality=30)
    same = post(client, buffer.getvalue(), name="old.jpg", task="jpeg")
    assert same.status_code == 200, same.text
    assert same.headers["content-type"] == "image/jpeg" and same.content[:3] == b"\xff\xd8\xff"
    assert same.headers["x-formnet-level"] == "estimated quality 30"  # read from the upload
    as_tiff = post(client, buffer.getvalue(), name="old.jpg", task="sr", scale=2, ext="tiff")
    assert as_tiff.status_code == 200, as_tiff.text
    assert as_tiff.headers["content-type"] == "image/tiff"
    assert "old-restored.tif" in as_tiff.headers["content-disposition"]
    assert Image.open(io.BytesIO(as_tiff.content)).size == (80, 80)


def test_the_client_file_name_is_only_a_name(client):
    response = post(client, b"not an image", name="../../etc/evil.png")
    message = assert_error(response, 415, "not a supported image")
    assert message.startswith("evil.png: ")
    assert _display_name("C:\\photos\\a\x07b\u202e.png") == "ab.png"  # no control or format characters
    assert _display_name("../..") == "image" and _display_name(None) == "image"
    ok = post(client, png_bytes(noisy_photo(24, 24)), name="..\\dir\\x.png", task="denoise", sigma=5)
    assert 'filename="x-restored.png"' in ok.headers["content-disposition"]


def test_progress_is_readable_while_restoring(client):
    token = "progress-test-1"
    states = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            answer = client.get(f"/v1/progress/{token}")
            if answer.status_code == 200:
                states.append(answer.json())
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        # a gray model on a colour image: three passes, one per channel, counted as one run
        response = client.post("/v1/restore", headers={"X-Formnet-Progress": token},
                               files={"image": ("big.png", png_bytes(noisy_photo(200, 200)))},
                               data={"task": "denoise", "sigma": "20", "model": "denoise-gray"})
    finally:
        done.set()
        poller.join()
    assert response.status_code == 200, response.text
    assert response.headers["x-formnet-model"] == "denoise-gray"
    assert states[0] == {"state": "queued", "done": 0, "total": 0} or states[0]["state"] == "running"
    partial = [state for state in states if state["state"] == "running" and 0 < state["done"] < state["total"]]
    assert partial and partial[0]["total"] >= 3  # at least a tile per channel
    counts = [state["done"] for state in states if state["state"] == "running"]
    assert counts == sorted(counts)
    assert client.get(f"/v1/progress/{token}").status_code == 404  # forgotten once answered


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, text", [
    ({"task": "denoise", "sigma": 99}, "sigma must be in [0, 75] (0-255 scale), got 99"),
    ({"task": "deblur"}, "unknown task 'deblur'; choose one of auto, denoise, jpeg, sr"),
    ({"task": "sr", "scale": 5}, "scale must be one of 2, 3, 4, got 5"),
    ({"task": "sr"}, "super-resolution needs a scale (2, 3, 4)"),
    ({"task": "jpeg", "quality": "high"}, "quality must be an integer in [1, 100], 'auto' or 'blind'"),
    ({"task": "denoise", "scale": 2}, "scale applies to task 'sr', not 'denoise'"),
    ({"task": "auto", "sigma": 25}, "sigma applies to task 'denoise', not 'auto'"),
    ({"task": "denoise", "strength": 2}, "strength must be in [0, 1], got 2"),
    ({"strength": "lots"}, "strength must be a number in [0, 1], got 'lots'"),
    ({"ext": "gif"}, "ext must be one of"),
    ({"model": "../weights/denoise-gray"}, "unknown model '../weights/denoise-gray'"),
    ({"colour": "yes"}, "unknown field 'colour'"),
])
def test_bad_options_are_400_with_the_cli_message(client, fields, text):
    assert_error(post(client, png_bytes(noisy_photo(24, 24)), **fields), 400, text)


def test_the_400_message_is_the_library_s(client):
    with pytest.raises(InvalidOptionError) as caught:
        RestoreOptions("denoise", sigma="-3")
    response = post(client, png_bytes(noisy_photo(24, 24)), task="denoise", sigma=-3)
    assert assert_error(response, 400, "sigma") == str(caught.value)


def test_a_request_without_an_image_is_400(client):
    response = client.post("/v1/restore", files={"task": (None, "denoise")})
    assert_error(response, 400, "no image: send the file in the field 'image'")
    two = client.post("/v1/restore", files=[("image", ("a.png", b"1")), ("image", ("b.png", b"2"))])
    assert_error(two, 400, "malformed form")


def test_a_request_over_the_size_limit_is_413(client):
    too_big = bytes(int(MAX_UPLOAD_MIB * 1024 * 1024) + 1)
    declared = post(client, too_big)
    assert_error(declared, 413, "request too large (1.0 MiB; the limit is 1 MiB")

    def chunks():  # no Content-Length: counted while read
        for _ in range(3):
            yield bytes(512 * 1024)

    streamed = client.post("/v1/restore", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "request too large (more; the limit is 1 MiB")


def test_a_decompression_bomb_is_413_from_its_header(client):
    # A 50 000 x 50 000 PNG in 79 bytes: its header says 2.5 gigapixels, its data is a stub.
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))
    assert len(bomb) < 100
    # refused from its header: its data cannot hold what the header declares (io/limits)
    assert_error(post(client, bomb, name="bomb.png"), 415, "bomb.png: truncated or corrupt PNG image")
    # a real one: 4 MP of zeros in a few kB, over the server's limit, refused before decoding
    real = png_bytes(np.zeros((2000, 2000), np.uint8))
    assert len(real) < 100_000
    assert_error(post(client, real, name="bomb.png"), 413,
                 "bomb.png: image too large, refused as a possible decompression bomb")
    # a real image over the server's limit (0.25 MP) is refused the same way
    over = png_bytes(np.zeros((600, 500), np.uint8))
    assert_error(post(client, over, name="big.png"), 413, "decompression bomb")


@pytest.mark.parametrize("data, text", [
    (b"%PDF-1.7 not an image", "not a supported image"),
    (b"", "empty file (0 bytes)"),
    (png_bytes(np.zeros((8, 8), np.uint8))[:40], "truncated or corrupt"),
])
def test_what_is_not_an_image_is_415(client, data, text):
    assert_error(post(client, data, name="x.png"), 415, text)


def test_a_body_that_is_not_a_form_is_415(client):
    response = client.post("/v1/restore", json={"image": "photo.png"})
    assert_error(response, 415, "send a multipart/form-data form with the image in the field 'image'")


def test_a_full_queue_is_503_with_retry_after(client):
    pool = client.app.state.pool
    with pool.slot():  # the one place (1 worker, queue 0) taken by another request
        response = post(client, png_bytes(noisy_photo(24, 24)), task="denoise", sigma=5)
        assert_error(response, 503, "busy: the server holds as many images as it takes (1); try again shortly")
        assert response.headers["retry-after"] == "2"
    assert post(client, png_bytes(noisy_photo(24, 24)), task="denoise", sigma=5).status_code == 200


def test_a_lost_worker_is_500_then_replaced(client):
    import os
    import signal

    pool = client.app.state.pool
    for pid in list(pool._executor._processes):  # what the kernel's OOM killer would do
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    response = post(client, png_bytes(noisy_photo(24, 24)), task="denoise", sigma=5)
    assert_error(response, 500, "a worker process stopped while restoring")
    again = post(client, png_bytes(noisy_photo(24, 24)), task="denoise", sigma=5)
    assert again.status_code == 200, again.text
