"""The ``formnet serve`` command: its options, the loopback default and its warning, the hint
when the ``serve`` extra is missing (runs without the extra; the server itself is not started)."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from formnet_cli.cli.app import app
from formnet_cli.cli.serve import is_loopback

runner = CliRunner()


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_is_listed_and_documented():
    listing = runner.invoke(app, ["--help"])
    assert listing.exit_code == 0 and "serve" in listing.output
    help_text = runner.invoke(app, ["serve", "--help"]).output
    for option in ("--host", "--port", "--device", "--workers", "--queue", "--max-upload-mib",
                   "--max-megapixels"):
        assert option in help_text


def test_without_the_extra_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: formnet serve needs the serve extra (uvicorn is not "
                                     "installed): pip install 'formnet[serve]'")


def test_bad_options_are_usage_errors():
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    assert runner.invoke(app, ["serve", "--workers", "0"]).exit_code == 2
    result = runner.invoke(app, ["serve", "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.output


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_another_host_than_loopback_is_warned_about(monkeypatch, host, warned):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    result = runner.invoke(app, ["serve", "--host", host, "--port", "8123", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == host and calls[0]["port"] == 8123
    assert ("warning: listening on 0.0.0.0: other machines can reach this server" in result.output) is warned
    assert f"http://{host}:8123/" in result.output
