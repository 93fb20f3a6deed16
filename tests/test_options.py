"""One typed :class:`~formnet_cli.options.RestoreOptions`, parsed once where a value enters: the
command line and the API build the same options, and what is passed down is typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import invoke
from formnet_cli import api
from formnet_cli.batch import run as batch_run
from formnet_cli.batch.summary import BatchSummary
from formnet_cli.errors import InvalidOptionError
from formnet_cli.inference import engine
from formnet_cli.options import ENSEMBLE_SIZES, RestoreOptions, UnreadableOptionError


def test_the_spellings_become_typed_values():
    options = RestoreOptions(sigma=" 25 ", tile="NONE", ensemble="2", precision="FP32",
                             device=" CPU ", model=Path("runs/x"), tile_overlap=8, batch_size=3)
    assert options == RestoreOptions("denoise", sigma=25.0, tile=None, ensemble=2, precision="fp32",
                                     device="cpu", model="runs/x", tile_overlap=8, batch_size=3)
    assert isinstance(options.sigma, float) and options.model == "runs/x"
    assert RestoreOptions(tile="256").tile == 256 and RestoreOptions(tile="Auto").tile == "auto"
    assert RestoreOptions("jpeg", quality=" Blind ").quality == "blind"
    assert RestoreOptions("jpeg", quality="40").quality == 40
    assert RestoreOptions("jpeg", quality=40.0).quality == 40
    assert RestoreOptions("sr", scale="3").scale == 3 and RestoreOptions("sr", scale=2.0).scale == 2


def test_only_the_tasks_level_is_set_and_it_always_is():
    denoise = RestoreOptions("denoise")
    assert (denoise.sigma, denoise.quality, denoise.scale) == ("auto", None, None)
    auto = RestoreOptions()  # decided per image: no level, no step
    assert (auto.task, auto.tasks, auto.sigma, auto.quality, auto.scale) == ("auto", (), None, None, None)
    jpeg = RestoreOptions("jpeg")
    assert (jpeg.sigma, jpeg.quality, jpeg.scale) == (None, "auto", None)
    sr = RestoreOptions("sr", scale=4)
    assert (sr.sigma, sr.quality, sr.scale) == (None, None, 4)
    with pytest.raises(InvalidOptionError, match=r"^super-resolution needs a scale \(2, 3, 4\)$"):
        RestoreOptions("sr")
    with pytest.raises(InvalidOptionError, match=r"^scale applies to task 'sr', not 'denoise'$"):
        RestoreOptions("denoise", scale=2)
    with pytest.raises(InvalidOptionError, match=r"^sigma applies to task 'denoise', not 'jpeg'$"):
        RestoreOptions("jpeg", sigma=10)


@pytest.mark.parametrize("options, message", [
    ({"sigma": "loud"}, "sigma must be a number in [0, 75] or 'auto', got 'loud'"),
    ({"sigma": -5}, "sigma must be in [0, 75] (0-255 scale), got -5"),
    ({"task": "jpeg", "quality": 2.5}, "quality must be an integer in [1, 100], got 2.5"),
    ({"task": "jpeg", "quality": "101"}, "quality must be an integer in [1, 100], got '101'"),
    ({"task": "deblur"}, "unknown task 'deblur'; choose one of auto, denoise, jpeg, sr, or several "
                         "in the order to run them (jpeg,denoise)"),
    ({"tile": 0}, "tile must be a positive number of pixels, 'auto' or None, got 0"),
    ({"ensemble": 3}, "ensemble must be auto or one of 1, 2, 4, 8, got 3"),
    ({"precision": "fp8"}, "unknown precision 'fp8': use auto, fp32, fp16, bf16"),
    ({"tile_overlap": -1}, "tile overlap must be >= 0, got -1"),
    ({"batch_size": 0}, "batch size must be >= 1, got 0"),
    ({"batch_size": "2"}, "batch size must be a whole number, got '2'"),
])
def test_the_api_messages_are_as_before(options, message):
    with pytest.raises(InvalidOptionError) as refused:
        RestoreOptions(**options)
    assert str(refused.value) == message


def test_a_value_that_spells_nothing_says_so_in_the_words_of_the_command_line():
    with pytest.raises(UnreadableOptionError) as refused:
        RestoreOptions(sigma="loud")
    assert refused.value.usage == "'loud' is not a number or 'auto'"
    result = invoke("restore", "x.png", "-o", "y.png", "--task", "jpeg", "--quality", "2.5")
    assert result.exit_code == 2
    assert result.stderr == ("error: Invalid value for '--quality' / '-q': '2.5' is not an integer, "
                             "'auto' or 'blind' (see 'formnet restore -h')\n")


@pytest.mark.parametrize("flags, keywords, expected", [
    ([], {}, RestoreOptions()),
    (["--sigma", "25", "--tile", "none", "--ensemble", "2", "--precision", "fp32", "--device", "CPU"],
     {"sigma": "25", "tile": "none", "ensemble": "2", "precision": "fp32", "device": "CPU"},
     RestoreOptions("denoise", sigma=25.0, tile=None, ensemble=2, precision="fp32", device="cpu")),
    (["--task", "jpeg", "--quality", "blind", "--tile", "256", "--tile-overlap", "8", "--batch-size", "2"],
     {"task": "jpeg", "quality": "blind", "tile": 256, "tile_overlap": 8, "batch_size": 2},
     RestoreOptions("jpeg", quality="blind", tile=256, tile_overlap=8, batch_size=2)),
    (["--scale", "3"], {"task": "sr", "scale": "3"}, RestoreOptions("sr", scale=3)),
])
def test_the_cli_and_the_api_build_equal_options(tmp_path, gray_png, monkeypatch, flags, keywords,
                                                 expected):
    from_cli, from_api = [], []
    monkeypatch.setattr(batch_run, "run_batch", lambda plan, options, *args, **kwargs:
                        from_cli.append(options.restore) or BatchSummary())
    result = invoke("restore", gray_png, "-o", tmp_path / "o.png", *flags)
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(api, "restore_with_options", lambda image, options, **kwargs:
                        from_api.append(options))
    api.restore_with_info(np.zeros((8, 8), np.uint8), **keywords)
    assert from_cli == from_api == [expected]


def test_the_api_passes_a_loaded_model_in_its_options(tiny_models, random_image):
    loaded = api.load_model(tiny_models.denoise_gray, device="cpu")
    image = random_image((16, 20), np.uint8)
    options = RestoreOptions(sigma=10, model=loaded, tile=None)
    assert options.model is loaded
    result = api.restore_with_options(image, options)
    expected = api.restore(image, sigma=10, model=tiny_models.denoise_gray, device="cpu", tile=None)
    np.testing.assert_array_equal(result.image, expected)
    assert result.sigma == 10 and result.ensemble == 1 and result.model_name == loaded.name


def test_the_engine_takes_parsed_values_only():
    from formnet_cli.config import ModelConfig, NetworkConfig
    from formnet_cli.models import FormResNet

    model = FormResNet(ModelConfig(residual=NetworkConfig(widths=(4, 8), blocks_per_level=1)))
    image = torch.rand(1, 12, 12)
    assert engine.restore_tensor(model, image, 0.1, tile=256).shape == image.shape
    with pytest.raises(InvalidOptionError, match="got '256'"):  # a spelling is read at the edge
        engine.restore_tensor(model, image, 0.1, tile="256")
    assert tuple(engine.ENSEMBLE_VIEWS) == ENSEMBLE_SIZES


def test_options_are_parsed_without_importing_torch():
    code = ("import sys; from formnet_cli.options import RestoreOptions; RestoreOptions(tile='none'); "
            "print('torch' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and completed.stdout.strip() == "False", completed.stderr


def test_formatter_is_checked_and_excludes_a_model():
    assert RestoreOptions("denoise", formatter="bm3d").formatter == "bm3d"
    with pytest.raises(InvalidOptionError, match="unknown formatter 'wavelet'"):
        RestoreOptions("denoise", formatter="wavelet")
    with pytest.raises(InvalidOptionError, match="a model or a formatter, not both"):
        RestoreOptions("denoise", model="denoise-gray", formatter="none")


def test_the_backend_is_parsed_once_with_the_precision(monkeypatch):
    monkeypatch.setenv("FORMNET_BACKEND", "openvino")
    assert RestoreOptions().backend == "auto"  # chosen where the model is, not here
    assert RestoreOptions(backend=" OnnxRuntime ").backend == "onnxruntime"
    assert RestoreOptions(backend="auto", precision="bf16").backend == "auto"
    with pytest.raises(InvalidOptionError, match="--backend onnxruntime computes in fp32"):
        RestoreOptions(backend="onnxruntime", precision="fp16")
    with pytest.raises(InvalidOptionError, match="unknown backend 'tensorrt'"):
        RestoreOptions(backend="tensorrt")
