"""The ``formnet`` app: help and usage lines, one-line errors and their exit codes,
``FORMNET_DEBUG``, signals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from cli_helpers import invoke, restore, runner
from formnet_cli.cli.app import app


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


def test_unknown_command_is_a_one_line_usage_error():
    result = invoke("restor")
    assert result.exit_code == 2 and result.stderr.startswith("error: No such command 'restor'")
    assert result.stderr.count("\n") == 1


def test_python_m_formnet_cli_help():
    completed = subprocess.run([sys.executable, "-m", "formnet_cli", "--help"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "restore" in completed.stdout


def test_debug_variable_shows_the_exception(tmp_path, gray_png, monkeypatch):
    monkeypatch.setenv("FORMNET_DEBUG", "1")
    result = restore(tmp_path / "no-such-model", gray_png, "-o", tmp_path / "o.png")
    assert result.exit_code == 1 and result.exception is not None
    assert "error: " not in result.stderr


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


@pytest.mark.parametrize("debug", ["", "1"])
def test_exit_codes_do_not_depend_on_formnet_debug(tmp_path, gray_png, monkeypatch, debug):
    monkeypatch.setenv("FORMNET_DEBUG", debug)
    out_of_range = invoke("restore", "x.png", "-o", "y.png", "--sigma", "-5")
    assert out_of_range.exit_code == 2
    unreadable = invoke("restore", "x.png", "-o", "y.png", "--sigma", "loud")
    assert unreadable.exit_code == 2 and unreadable.stderr.count("\n") == 1  # a usage error: one line
    no_model = restore(tmp_path / "no-such-model", gray_png, "-o", tmp_path / "o.png")
    assert no_model.exit_code == 1
    if debug:
        assert "Traceback" in out_of_range.stderr and "error: " not in out_of_range.stderr
        assert "InvalidOptionError: sigma must be in [0, 75] (0-255 scale), got -5" in out_of_range.stderr
    else:
        assert out_of_range.stderr == ("error: sigma must be in [0, 75] (0-255 scale), got -5 "
                                       "(see 'formnet restore -h')\n")


def test_the_installed_command_exits_2_for_a_bad_sigma_with_formnet_debug(tmp_path):
    # The command, through the real entry point (typer's exception handling included).
    code = "import sys; from formnet_cli.cli.app import main; sys.argv[0] = 'formnet'; main()"
    for debug in ("", "1"):
        completed = subprocess.run([sys.executable, "-c", code, "restore", "x.png", "-o", "y.png",
                                    "--sigma", "-5"], capture_output=True, text=True, timeout=60,
                                   cwd=tmp_path, env={**os.environ, "FORMNET_DEBUG": debug})
        assert completed.returncode == 2, completed.stderr
        assert ("Traceback" in completed.stderr) == bool(debug)


def test_a_ctrl_c_after_the_summary_changes_neither_the_outputs_nor_the_exit_code(tiny_models, tmp_path,
                                                                                   gray_png):
    output = tmp_path / "out.png"
    script = f"""
import os, signal, sys
from formnet_cli.batch import summary
from formnet_cli.cli import app as cli

lines = summary.BatchSummary.lines

def interrupted_while_printing(self):
    os.kill(os.getpid(), signal.SIGINT)
    return lines(self)

summary.BatchSummary.lines = interrupted_while_printing
sys.argv = ["formnet", "restore", {str(gray_png)!r}, "-o", {str(output)!r}, "--sigma", "5",
            "--model", {str(tiny_models.denoise_gray)!r}, "--device", "cpu"]
cli.main()
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("restored 1, skipped 0, failed 0") and output.is_file()


def test_typer_is_extended_not_patched():
    from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

    for cls in (TyperArgument, TyperCommand, TyperGroup, TyperOption):  # the app is imported above
        ours = [name for name, value in vars(cls).items()
                if getattr(value, "__module__", "").startswith("formnet_cli")]
        assert ours == [], cls


def test_the_commands_share_one_definition_of_their_common_options():
    import typer.main

    commands = typer.main.get_command(app).commands

    def option(command: str, name: str) -> tuple:
        [param] = [param for param in commands[command].params if param.name == name]
        return param.opts, param.metavar, param.help

    for name in ("ensemble", "device", "precision", "tile", "threads"):
        assert option("eval", name) == option("restore", name), name
    assert option("eval", "model")[:2] == option("restore", "model")[:2]  # eval's repeats
    # restore's --task also takes auto and chains (jpeg,denoise); eval scores one task
    assert option("eval", "task")[0] == option("restore", "task")[0] == ["--task", "-t"]
    assert option("restore", "task")[1] == "auto|denoise|jpeg|sr|TASK,TASK..."
    assert "repeat to compare several" in option("eval", "model")[2]
