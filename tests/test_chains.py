"""Several steps in one call: ``--task jpeg,denoise,sr``, ``tasks=[...]``, and the steps the
levels given imply (``--sigma 25 --scale 2``: denoise, then x2), on one read and one write."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import invoke
from formnet_cli import api
from formnet_cli.errors import InvalidOptionError
from formnet_cli.options import RestoreOptions


@pytest.mark.parametrize("keywords, tasks", [
    ({"sigma": 25, "scale": 2}, ("denoise", "sr")),
    ({"quality": 30, "sigma": "auto"}, ("jpeg", "denoise")),
    ({"scale": 3, "quality": "blind", "sigma": 5}, ("jpeg", "denoise", "sr")),
    ({"task": "sr,denoise", "scale": 2}, ("sr", "denoise")),  # the order given
    ({"tasks": ["jpeg", "sr"], "scale": 4}, ("jpeg", "sr")),
    ({"task": "auto", "sigma": 10}, ("denoise",)),
])
def test_levels_imply_steps_in_the_natural_order_and_a_given_order_is_kept(keywords, tasks):
    options = RestoreOptions(**keywords)
    assert options.tasks == tasks and options.task == ",".join(tasks)


def test_a_level_for_a_task_not_run_is_refused():
    with pytest.raises(InvalidOptionError, match=r"^scale applies to task 'sr', not 'jpeg,denoise'$"):
        RestoreOptions("jpeg,denoise", scale=2)
    with pytest.raises(InvalidOptionError, match="super-resolution needs a scale"):
        RestoreOptions("denoise,sr")


def float_image(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_a_chain_is_its_steps_one_after_the_other(tiny_models):
    image = float_image((20, 24))
    denoise = dict(model=tiny_models.denoise_gray, device="cpu", tile=None)
    result = api.restore_with_info(image, "denoise,sr", sigma=10, scale=2, device="cpu", tile=None)
    assert [step.task for step in result.steps] == ["denoise", "sr"]
    assert result.task == "denoise,sr" and result.sigma == 10 and result.scale == 2
    assert result.image.shape == (40, 48)
    by_hand = api.restore(api.restore(image, sigma=10, device="cpu", tile=None), scale=2,
                          device="cpu", tile=None)
    np.testing.assert_allclose(result.image, by_hand, atol=1e-6)
    other_way = api.restore(image, tasks=["sr", "denoise"], sigma=10, scale=2, device="cpu",
                            tile=None)
    assert np.abs(other_way - result.image).max() > 1e-3
    with_model = api.restore_with_info(image, "denoise,sr", sigma=10, scale=2, **denoise)
    assert [step.model_name for step in with_model.steps] == ["tiny-denoise-gray", "sr-y"]
    assert with_model.describe() == "denoise sigma 10.0, then sr x2"


def test_a_model_of_no_step_of_the_chain_is_refused(tiny_models):
    with pytest.raises(InvalidOptionError, match="restores 'jpeg', which is not a step of denoise,sr"):
        api.restore(float_image((16, 16)), "denoise,sr", sigma=5, scale=2,
                    model=tiny_models.jpeg_gray, device="cpu")


def test_alpha_and_strength_follow_the_whole_chain():
    image = (float_image((16, 16, 4)) * 255).astype(np.uint8)
    out = api.restore(image, sigma=5, scale=2, device="cpu", tile=None)
    assert out.shape == (32, 32, 4)
    none = api.restore(image[:, :, :3], sigma=5, scale=2, device="cpu", strength=0, tile=None)
    from formnet_cli.imaging.degradations import imresize
    bicubic = np.rint(np.clip(imresize(image[:, :, :3] / 255.0, scale=2), 0, 1) * 255)
    assert np.abs(none.astype(int) - bicubic).max() <= 1


def test_the_cli_runs_a_chain_on_one_read_and_records_each_step(tmp_path, gray_png, tiny_models):
    out = tmp_path / "big.png"
    result = invoke("restore", gray_png, "-o", out, "--task", "jpeg,denoise,sr", "--sigma", "5",
                    "--scale", "2", "--model", tiny_models.jpeg_gray, "--device", "cpu",
                    "--tile", "none", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["files"]
    assert entry["task"] == "jpeg,denoise,sr"
    assert [step["task"] for step in entry["steps"]] == ["jpeg", "denoise", "sr"]
    jpeg, denoise, sr = entry["steps"]
    assert jpeg["model"] == "tiny-jpeg-gray" and jpeg["quality"] is None  # a PNG: blind
    assert denoise["sigma"] == 5 and not denoise["estimated"] and sr["scale"] == 2
    from PIL import Image
    with Image.open(out) as written:
        assert written.size == (56, 40)
    assert f"{gray_png}: jpeg blind, then denoise sigma 5.0, then sr x2" in result.stderr


def test_the_cli_infers_denoise_then_sr_from_the_levels(tmp_path, gray_png):
    result = invoke("restore", gray_png, "-o", tmp_path / "big.png", "--sigma", "5", "--scale", "2",
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["files"]
    assert [step["task"] for step in entry["steps"]] == ["denoise", "sr"]
    refused = invoke("restore", gray_png, "-o", tmp_path / "x.png", "--task", "denoise",
                     "--scale", "2")
    assert refused.exit_code == 2 and "scale applies to task 'sr', not 'denoise'" in refused.stderr


def test_a_formatter_picks_the_model_of_each_step_that_has_that_form(tmp_path, gray_png):
    chain = invoke("restore", gray_png, "-o", tmp_path / "out.png", "--task", "jpeg,denoise",
                   "--quality", "30", "--sigma", "25", "--formatter", "bm3d", "--device", "cpu",
                   "--json")
    assert chain.exit_code == 0, chain.output
    steps = json.loads(chain.stdout)["files"][0]["steps"]
    assert [(step["task"], step["model"]) for step in steps] == [
        ("jpeg", "jpeg-gray"), ("denoise", "denoise-gray-bm3d")]  # no JPEG model formats with BM3D
    assert api.formatted_tasks(("jpeg", "denoise"), "bm3d") == ("denoise",)
    none = invoke("restore", gray_png, "-o", tmp_path / "none.png", "--formatter", "cnn")  # auto
    assert none.exit_code == 1 and none.stderr.startswith(
        "error: none of the steps jpeg,denoise has a model that formats with 'cnn': no model for "
        "task 'jpeg' formats with 'cnn' (formatters there are: none: jpeg-gray); ")
    assert not (tmp_path / "none.png").exists()
