"""``formnet export``: ONNX graphs that onnxruntime and OpenCV's dnn module run like torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from formnet_cli.cli.app import app
from formnet_cli.hub.checkpoint import load_checkpoint
from formnet_cli.imaging.degradations import imresize
from formnet_cli.inference.engine import restore_tensor

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (formnet[onnx])")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (formnet[onnx])")
cv2 = pytest.importorskip("cv2")

runner = CliRunner()
LEVEL = 25 / 255


def export(*args: object) -> None:
    result = runner.invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output


def run_onnxruntime(path, *inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))[0]


def run_opencv(path, *inputs: np.ndarray) -> np.ndarray:
    network = cv2.dnn.readNetFromONNX(str(path))
    for name, value in zip(("image", "level"), inputs):
        network.setInput(value, name)
    return network.forward()


@pytest.fixture(scope="module")
def two_input_graph(tiny_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "denoise.onnx"
    export(tiny_models.denoise_gray, "-o", path)
    return path


@pytest.fixture(scope="module")
def sigma_graph(tiny_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "denoise-s25.onnx"
    export(tiny_models.denoise_gray, "-o", path, "--sigma", 25)
    return path


def test_two_input_graph_equals_torch_with_a_level_map(tiny_models, two_input_graph):
    model, _info = load_checkpoint(tiny_models.denoise_gray)
    rng = np.random.default_rng(0)
    image = rng.random((2, 1, 16, 24), dtype=np.float32)  # multiples of the size multiple (4)
    level = np.broadcast_to(np.linspace(0.02, 0.2, 24, dtype=np.float32), (2, 1, 16, 24)).copy()
    with torch.no_grad():
        expected = model(torch.from_numpy(image), torch.from_numpy(level)).numpy()
    assert np.abs(expected - image).mean() > 0.01  # the model does change the image
    for run in (run_onnxruntime, run_opencv):
        assert np.abs(run(two_input_graph, image, level) - expected).max() < 1e-4, run.__name__
    metadata = ort.InferenceSession(str(two_input_graph)).get_modelmeta().custom_metadata_map
    assert metadata["formnet.size_multiple"] == "4" and "formnet.level" not in metadata


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (37, 53), (64, 48)])
def test_baked_sigma_graph_pads_inside_and_runs_any_size(tiny_models, sigma_graph, size):
    model, _info = load_checkpoint(tiny_models.denoise_gray)
    image = np.random.default_rng(1).random((1, 1, *size), dtype=np.float32)
    expected = restore_tensor(model, torch.from_numpy(image[0]), LEVEL, tile=None).numpy()
    for run in (run_onnxruntime, run_opencv):
        restored = run(sigma_graph, image)
        assert restored.shape == image.shape, run.__name__
        assert np.abs(restored[0] - expected).max() < 1e-4, run.__name__


@pytest.mark.slow
def test_baked_scale_graph_enlarges_and_restores_like_restore(tiny_models, tmp_path):
    import formnet_cli

    path = tmp_path / "sr-x3.onnx"
    export(tiny_models.sr_gray, "-o", path, "--scale", 3)
    small = np.random.default_rng(2).random((13, 21), dtype=np.float32)
    expected = formnet_cli.restore(small, task="sr", scale=3, model=tiny_models.sr_gray,
                                   device="cpu", tile=None, ensemble=1)
    for run in (run_onnxruntime, run_opencv):
        restored = run(path, small[None, None])[0, 0]
        assert restored.shape == (39, 63), run.__name__
        assert np.abs(np.clip(restored, 0, 1) - expected).max() < 1e-4, run.__name__


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (2, 5), (17, 12)])
def test_in_graph_bicubic_upscale_is_matlab_imresize(scale, size):
    from formnet_cli.inference.onnx_export import BicubicUpscale

    image = np.random.default_rng(3).random(size, dtype=np.float32)
    enlarged = BicubicUpscale(scale)(torch.from_numpy(image)[None, None])[0, 0].numpy()
    assert np.abs(enlarged - imresize(image, scale=scale)).max() < 1e-5


@pytest.mark.parametrize("args, message", [
    (["--quality", "20"], "--quality does not apply to this model: it restores 'denoise'"),
    (["--sigma", "80"], "sigma must be in [0, 75] for this model"),
    (["--sigma", "25", "--scale", "2"], "give one level, not --sigma and --scale"),
])
def test_a_level_the_model_does_not_take_is_a_usage_error(tiny_models, tmp_path, args, message):
    result = runner.invoke(app, ["export", str(tiny_models.denoise_gray), "-o",
                                 str(tmp_path / "x.onnx"), *args])
    assert result.exit_code == 2
    assert message in result.output and "\n" not in result.output.strip()
    assert not list(tmp_path.iterdir())


def test_a_bm3d_formatter_cannot_be_exported(tmp_path):
    from formnet_cli.config import ModelConfig, NetworkConfig
    from formnet_cli.hub.checkpoint import save_checkpoint
    from formnet_cli.models import FormResNet

    model = FormResNet(ModelConfig(formatter="bm3d", residual=NetworkConfig(widths=(4, 8),
                                                                            blocks_per_level=1)))
    folder = save_checkpoint(model, tmp_path / "bm3d", "bm3d")
    result = runner.invoke(app, ["export", str(folder), "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "cannot be exported to ONNX" in result.output


def test_a_graph_that_differs_from_torch_is_not_written(tiny_models, tmp_path, monkeypatch):
    """onnxruntime runs each exported graph on the export's example against torch; past the
    tolerance (here any difference at all) the export fails in one line and writes nothing."""
    from formnet_cli.inference import onnx_export

    monkeypatch.setattr(onnx_export, "EXPORT_TOLERANCE", -1.0)
    path = tmp_path / "x.onnx"
    result = runner.invoke(app, ["export", str(tiny_models.denoise_gray), "-o", str(path)])
    assert result.exit_code == 1, result.output
    assert "the exported ONNX graph differs from the model by " in result.output
    assert not path.exists() and list(tmp_path.iterdir()) == []
