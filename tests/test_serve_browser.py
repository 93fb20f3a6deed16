"""``formnet serve``'s page in a real browser: Debian's headless Chromium driven by Playwright
(never a browser of Playwright's own). Starts ``formnet serve`` on a free loopback port, uploads
a noisy photo, waits for the result and checks the before/after slider, the side-by-side zoom,
the download (the library's result, with the input's metadata) and the phone layout.

Screenshots are saved in the test's temporary folder; ``FORMNET_SERVE_SCREENSHOT=PATH`` also
copies the desktop one there (``docs/serve.png`` is one, reduced to 256 colours). Skipped
without the ``serve`` extra, Playwright's Python package or ``/usr/bin/chromium``
(``.ci/serve-deps`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FORMNET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
"""Headless by Playwright; the rest keep Chromium off the (closed) network and root-safe."""

pytest.importorskip("starlette", reason="formnet serve needs the serve extra: pip install 'formnet[serve]'")
pytest.importorskip("uvicorn", reason="formnet serve needs the serve extra: pip install 'formnet[serve]'")
pytest.importorskip("multipart", reason="formnet serve needs the serve extra: pip install 'formnet[serve]'")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs Playwright: pip install playwright")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; see .ci/serve-deps)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """``formnet serve`` (the real command, under uvicorn) on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "formnet_cli", "serve", "--port", str(port),
                                    "--device", "cpu", "--workers", "1"],
                                   stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/health", timeout=5) as answer:
                    assert json.load(answer)["status"] == "ok"
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"formnet serve did not start:\n{log.read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0, log.read_text()
        finally:
            process.kill()


@pytest.fixture
def browser(tmp_path):
    """A Chromium page with a fresh profile, downloads allowed."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            accept_downloads=True, viewport={"width": 1280, "height": 860})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def noisy_photo_with_metadata(folder: Path) -> Path:
    """The README's noisy astronaut (sigma 25), 192 x 160, with a description and 300 dpi."""
    photo = Image.open(ROOT / "examples" / "astronaut_noisy25.png").convert("RGB").crop((64, 40, 256, 200))
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "astronaut, noisy")
    path = folder / "astronaut noisy.png"
    photo.save(path, pnginfo=info, dpi=(300, 300))
    return path


def test_the_page_restores_an_upload_compares_and_downloads(server_url, browser, tmp_path):
    from formnet_cli import api
    from formnet_cli import io as imageio

    page = browser
    page.goto(server_url)
    sync_api.expect(page.locator("#server-status")).to_contain_text("Ready: 1 worker on cpu")
    photo = noisy_photo_with_metadata(tmp_path)
    page.set_input_files("#files", str(photo))
    sync_api.expect(page.locator("#queue li .name")).to_have_text("astronaut noisy.png")

    # the options, by keyboard: task "Noise", sigma 25, strength 0.8
    page.get_by_label("Noise", exact=True).check()
    page.get_by_label("estimate").uncheck()
    page.fill("#sigma", "25")
    page.focus("#strength")
    for _ in range(4):
        page.keyboard.press("ArrowLeft")
    sync_api.expect(page.locator("#strength-value")).to_have_text("0.80")
    page.focus("#restore")
    page.keyboard.press("Enter")

    download_link = page.locator("#download")
    sync_api.expect(download_link).to_be_visible(timeout=240_000)
    sync_api.expect(page.locator("#queue .status")).to_contain_text("Done: denoise · sigma 25.0")
    page.wait_for_function("document.getElementById('after').naturalWidth > 0")
    assert page.eval_on_selector("#after", "image => image.naturalWidth") == 192
    assert page.eval_on_selector("#before", "image => image.naturalWidth") == 192

    # the before/after slider: half and half, then moved by the keyboard
    after_clip = "element => element.style.clipPath"
    assert page.eval_on_selector("#after", after_clip) == "inset(0px 0px 0px 50%)"
    page.focus("#split")
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert page.eval_on_selector("#after", after_clip) == "inset(0px 0px 0px 60%)"
    assert page.eval_on_selector("#divider", "element => element.style.left") == "60%"
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("FORMNET_SERVE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["FORMNET_SERVE_SCREENSHOT"])

    # side by side, zoomed: both panes at twice the result's size
    page.get_by_label("Side by side").check()
    page.select_option("#zoom", "2")
    assert page.is_visible("#side") and not page.is_visible("#compare")
    widths = page.eval_on_selector_all(
        "#side img", "images => images.map(image => image.getBoundingClientRect().width)")
    assert widths == [384, 384]

    # the download: the library's result, in the input's format, its metadata kept
    with page.expect_download() as caught:
        download_link.click()
    download = caught.value
    assert download.suggested_filename == "astronaut noisy-restored.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    restored = imageio.read_image(saved)
    assert restored.text == {"Description": "astronaut, noisy"}
    assert restored.dpi == pytest.approx((300, 300), abs=0.01)
    noisy = np.asarray(Image.open(photo))
    expected = api.restore(noisy, "denoise", sigma=25, strength=0.8, device="cpu")
    assert np.abs(imageio.to_uint(restored.pixels).astype(int) - expected).max() <= 1

    # readable on a phone: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_label("Slider").check()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "serve-phone.png"), full_page=True)


def test_the_page_shows_the_server_s_one_line_error(server_url, browser, tmp_path):
    page = browser
    page.goto(server_url)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("shopping list")
    page.set_input_files("#files", str(not_an_image))
    page.click("#restore")
    status = page.locator("#queue .status")
    sync_api.expect(status).to_have_text(
        "Failed: notes.png: not a supported image (PNG, JPEG, TIFF, BMP, WebP, AVIF, HEIC or JPEG 2000)",
        timeout=60_000)
    sync_api.expect(status).to_have_class("status failed")
    assert page.is_hidden("#download")
