"""``formnet train``: config parsing, the training loop, resume, export and the CLI.

Every run uses a tiny U-Net (widths 8, 16; size multiple 4) on a handful of generated
32 x 32 PNG images, with ``data.workers = 0``, so the whole file runs in seconds on a CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from formnet_cli.hub.checkpoint import load_checkpoint, save_checkpoint
from formnet_cli.config import ConfigError, ModelConfig, NetworkConfig
from formnet_cli.models import FormResNet
from formnet_cli.training.config import load_train_config
from formnet_cli.training.trainer import STATE_FILE, Trainer

TINY_UNET = """
[model.residual]
kind = "unet"
widths = [8, 16]
blocks_per_level = 1
unshuffle = 2
"""


def _smooth_image(seed: int, size: int = 32) -> np.ndarray:
    """A smooth RGB uint8 image (gradients and low-frequency waves): easy to denoise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        a, b, c, d = rng.uniform(0.5, 3.0, size=4)
        phase = rng.uniform(0, 2 * np.pi)
        channels.append(0.5 + 0.25 * np.sin(2 * np.pi * (a * x + b * y) / 2 + phase) + 0.2 * (c * x - d * y) / 3)
    return np.round(np.clip(np.stack(channels, axis=2), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four generated 32 x 32 RGB PNG images (the training and validation set)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("train-images")
    for index in range(4):
        Image.fromarray(_smooth_image(index)).save(folder / f"image{index}.png")
    return folder


def write_config(folder: Path, image_dir: Path, *, task: str = "denoise", model: str = "",
                 data: str = "", loss: str = "", optim: str = "", train: str = "") -> Path:
    """A tiny TOML training config in ``folder``; each argument adds lines to its section."""
    text = f"""
name = "tiny-{task}"
description = "tiny test model"

[model]
task = "{task}"
channels = 1
formatter = "none"
{model}
{TINY_UNET}

[data]
train_dirs = ["{image_dir.as_posix()}"]
patch_size = 16
batch_size = 4
workers = 0
{data}

[loss]
pixel = "l2"
{loss}

[optim]
lr = 3e-3
schedule = "constant"
ema_decay = 0.9
{optim}

[train]
steps = 2
log_every = 1
val_every = 1000
checkpoint_every = 1000
seed = 0
device = "cpu"
threads = 1
{train}
"""
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Every config sets ``train.threads = 1`` (fast next to busy cores); put torch's back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


# -- config ---------------------------------------------------------------------------------
def test_set_overrides_apply_with_type_coercion(tmp_path: Path, image_dir: Path) -> None:
    path = write_config(tmp_path, image_dir)
    config = load_train_config(path, ["train.steps=7", "loss.pixel=l1", "data.sigma_range=[5, 10]",
                                      "optim.lr=1e-3", "train.amp=false", "train.device=cpu"])
    assert config.train.steps == 7 and isinstance(config.train.steps, int)
    assert config.loss.pixel == "l1"
    assert config.data.sigma_range == [5.0, 10.0]
    assert all(isinstance(value, float) for value in config.data.sigma_range)
    assert config.optim.lr == 1e-3
    assert config.train.amp is False
    assert config.data.train_dirs == [str(image_dir)]


def test_relative_train_dirs_resolve_against_the_config_folder(tmp_path: Path, image_dir: Path) -> None:
    path = write_config(tmp_path, image_dir)
    text = path.read_text().replace(f'["{image_dir.as_posix()}"]', '["images"]')
    path.write_text(text)
    (tmp_path / "images").mkdir()
    config = load_train_config(path)
    assert config.data.train_dirs == [str((tmp_path / "images").resolve())]


@pytest.mark.parametrize(("override", "names"), [
    ("train.stepz=7", "train.stepz"),
    ('train.steps="a"', "train.steps"),
    ("train.steps=1.5", "train.steps"),
    ("loss.pixel=l3", "loss.pixel"),
    ("data.sigma_range=5", "data.sigma_range"),
    ("train.amp=1", "train.amp"),
    ("data.sigma_range=[0, 80]", "data.sigma_range"),
    ("data.patch_size=18", "data.patch_size"),
    ("loss.adversarial=0.1", "data.patch_size"),  # the PatchGAN discriminator needs 24 pixels
    ("data.sigma_focus_share=1.5", "data.sigma_focus_share"),
    ("data.sigma_focus_share=0.5", "data.sigma_focus_range"),  # a share needs its range
    ("data.patch_size=0", "data.patch_size"),
    ("optim.ema_decay=1.5", "optim.ema_decay"),
    ("optim.ema_decay=-1", "optim.ema_decay"),
    ("train.seed=-1", "train.seed"),
    ("optim.weight_decay=-1", "optim.weight_decay"),
    ("loss.pixel_weight=-1", "loss.pixel_weight"),
    ("loss.gradient=-1", "loss.gradient"),
    ("optim.grad_clip=-1", "optim.grad_clip"),
    ("data.blind_probability=2", "data.blind_probability"),
    ("data.blind_probability=-0.5", "data.blind_probability"),
    ("data.independent_channels=1.5", "data.independent_channels"),
    ("optim.min_lr=1.0", "optim.min_lr"),
    ("data.val_limit=-1", "data.val_limit"),
    ("optim.schedule=step", "optim.step_milestones"),
    ("optim.warmup_steps=100000", "optim.warmup_steps"),
    ('train.formatter_training="staged"', "train.formatter_training"),
])
def test_invalid_values_are_one_config_error_naming_the_key(tmp_path: Path, image_dir: Path,
                                                            override: str, names: str) -> None:
    path = write_config(tmp_path, image_dir)
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_train_config(path, [override])


def test_missing_train_dirs_is_a_config_error(tmp_path: Path, image_dir: Path) -> None:
    path = write_config(tmp_path, image_dir)
    with pytest.raises(ConfigError, match=r"data\.train_dirs"):
        load_train_config(path, ["data.train_dirs=[]"])


def test_missing_config_file_and_bad_set_syntax_are_config_errors(tmp_path: Path, image_dir: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_train_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="key=value"):
        load_train_config(write_config(tmp_path, image_dir), ["train.steps"])


def test_sigma_focus_share_draws_that_share_of_levels_from_the_focus_range(tmp_path: Path,
                                                                           image_dir: Path) -> None:
    from formnet_cli.training.data import PatchBatches, load_images

    path = write_config(tmp_path, image_dir, data="sigma_range = [0.0, 75.0]\n"
                                                  "sigma_focus_range = [0.0, 10.0]\n"
                                                  "sigma_focus_share = 0.75")
    config = load_train_config(path, ["data.batch_size=50"])
    batches = PatchBatches(load_images(config.data.train_dirs, 1), config.model, config.data, seed=0)
    sigmas = torch.cat([batches[step].level for step in range(40)]).numpy() * 255.0
    low_share = float(np.mean(sigmas <= 10.0))
    # 75 % from [0, 10] plus 25 % x 10/75 of the uniform draws: 0.783 in expectation
    assert low_share == pytest.approx(0.75 + 0.25 * 10 / 75, abs=0.03)
    assert sigmas.max() > 60.0  # the rest still covers the whole range


# -- the training loop ----------------------------------------------------------------------
def test_training_lowers_the_loss(tmp_path: Path, image_dir: Path) -> None:
    path = write_config(tmp_path, image_dir)
    config = load_train_config(path, ["train.steps=30", "data.sigma_range=[50, 50]"])
    losses: list[float] = []
    Trainer(config, tmp_path / "run", command="test").fit(on_log=lambda record: losses.append(record["total"]))
    assert len(losses) == 30
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize(("amp", "cpu_bf16", "expected"), [
    ("true", True, True), ("true", False, False), ("false", True, False)])
def test_cpu_training_autocasts_to_bf16_where_the_cpu_computes_in_it(
        tmp_path: Path, image_dir: Path, monkeypatch: pytest.MonkeyPatch,
        amp: str, cpu_bf16: bool, expected: bool) -> None:
    from formnet_cli.training import trainer

    monkeypatch.setattr(trainer, "cpu_has_fast", lambda dtype: cpu_bf16 and dtype == torch.bfloat16)
    config = load_train_config(write_config(tmp_path, image_dir), [f"train.amp={amp}", "train.device=cpu"])
    assert Trainer(config, tmp_path / "run", command="test").use_amp is expected


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path, image_dir: Path) -> None:
    steps = 3
    # warm-up then cosine: the resumed run must also restore the scheduler's position
    path = write_config(tmp_path, image_dir, optim="warmup_steps = 2\nmin_lr = 1e-4", loss="gradient = 0.05")
    overrides = [f"train.steps={2 * steps}", "optim.schedule=cosine"]
    config = lambda: load_train_config(path, overrides)  # noqa: E731

    uninterrupted = Trainer(config(), tmp_path / "a", command="test")
    uninterrupted.fit()

    def interrupt(record: dict) -> None:
        if record["step"] == steps:
            raise KeyboardInterrupt

    interrupted = Trainer(config(), tmp_path / "b", command="test")
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(on_log=interrupt)
    assert interrupted.step == steps
    assert (tmp_path / "b" / STATE_FILE).is_file()
    assert load_checkpoint(tmp_path / "b" / "model")[1].name  # an interrupted run can be evaluated

    resumed = Trainer(config(), tmp_path / "b", command="test")
    resumed.load_state()
    assert resumed.step == steps
    resumed.fit()
    assert resumed.step == uninterrupted.step == 2 * steps
    for name, module in (("model", "model"), ("ema", "ema")):
        expected = getattr(uninterrupted, module).state_dict()
        actual = getattr(resumed, module).state_dict()
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(expected[key], actual[key]), f"{name}.{key} differs after resume"
    assert resumed.optimizer.param_groups[0]["lr"] == uninterrupted.optimizer.param_groups[0]["lr"]


def test_exported_model_loads_and_its_card_names_command_steps_and_data(tmp_path: Path, image_dir: Path) -> None:
    config = load_train_config(write_config(tmp_path, image_dir),
                               ["train.steps=3", f'data.val_dir="{image_dir.as_posix()}"', "data.val_limit=2"])
    trainer = Trainer(config, tmp_path / "run", command="formnet train config.toml --set train.steps=3")
    folder = trainer.fit()
    assert folder == tmp_path / "run" / "model"
    model, info = load_checkpoint(folder)
    assert info.name == "tiny-denoise"
    assert info.model == config.model
    # float16 export of the EMA weights, loaded back as float32
    for key, value in trainer.ema.module.state_dict().items():
        loaded = model.state_dict()[key]
        assert loaded.dtype == value.dtype
        torch.testing.assert_close(loaded, value, rtol=1e-3, atol=1e-3)
    card = (folder / "README.md").read_text()
    assert "`formnet train config.toml --set train.steps=3`" in card
    assert "steps: 3" in card
    assert image_dir.name in card
    assert "validation PSNR" in card and "levels [25.0]" in card and " dB" in card  # the default
    assert (tmp_path / "run" / "config.json").is_file()
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(log) == 3 and '"val_psnr"' in log[-1]


def test_a_short_runs_average_is_not_its_random_start(tmp_path: Path, image_dir: Path) -> None:
    config = load_train_config(write_config(tmp_path, image_dir),
                               ["train.steps=30", "optim.lr=1e-2", "optim.warmup_steps=0"])
    trainer = Trainer(config, tmp_path / "run", command="test")
    start = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    trainer.fit()
    trained, averaged = trainer.model.state_dict(), trainer.ema.module.state_dict()
    moved = sum((trained[key] - start[key]).norm() for key in start)
    behind = sum((trained[key] - averaged[key]).norm() for key in start)
    assert behind < 0.5 * moved  # a plain 0.999 average would still be 97 % at the start


@pytest.mark.parametrize(("task", "extra"), [
    ("jpeg", ["data.quality_range=[10, 40]", "data.blind_probability=0.5"]),
    ("sr", ["data.patch_size=24", "data.scales=[2, 3, 4]"]),
])
def test_jpeg_and_sr_tasks_train(tmp_path: Path, image_dir: Path, task: str, extra: list[str]) -> None:
    config = load_train_config(write_config(tmp_path, image_dir, task=task), ["train.steps=2", *extra])
    records: list[dict] = []
    trainer = Trainer(config, tmp_path / "run", command="test")
    folder = trainer.fit(on_log=records.append)
    assert [record["step"] for record in records] == [1, 2]
    assert all(np.isfinite(record["total"]) for record in records)
    model, info = load_checkpoint(folder)
    assert info.model.task == task


def test_sr_patch_size_must_be_a_multiple_of_12(tmp_path: Path, image_dir: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of 12"):
        load_train_config(write_config(tmp_path, image_dir, task="sr"), ["data.patch_size=16"])


def test_staged_cnn_formatter_trains_only_the_formatter_first(tmp_path: Path, image_dir: Path) -> None:
    formatter = 'formatter_network = { kind = "unet", widths = [8, 16], blocks_per_level = 1, unshuffle = 2 }'
    path = write_config(tmp_path, image_dir, model=formatter, loss="formatter_weight = 0.5",
                        train='formatter_training = "staged"\nformatter_steps = 2')
    text = path.read_text().replace('formatter = "none"', 'formatter = "cnn"')
    path.write_text(text)
    config = load_train_config(path, ["train.steps=4"])
    trainer = Trainer(config, tmp_path / "run", command="test")
    initial_residual = _parameters(trainer.model.residual)
    initial_formatter = _parameters(trainer.model.formatter)
    snapshots: dict[int, tuple[dict, dict]] = {}

    def snapshot(record: dict) -> None:
        snapshots[record["step"]] = (_parameters(trainer.model.formatter), _parameters(trainer.model.residual))

    trainer.fit(on_log=snapshot)
    phase1_formatter, phase1_residual = snapshots[2]
    # phase 1: the formatter learns, the residual network is untouched
    assert all(torch.equal(initial_residual[k], phase1_residual[k]) for k in initial_residual)
    assert any(not torch.equal(initial_formatter[k], phase1_formatter[k]) for k in initial_formatter)
    # phase 2: the residual network learns on the frozen formatter's output
    final_formatter, final_residual = snapshots[4]
    assert all(torch.equal(phase1_formatter[k], final_formatter[k]) for k in phase1_formatter)
    assert any(not torch.equal(phase1_residual[k], final_residual[k]) for k in phase1_residual)


def test_joint_cnn_formatter_trains_both_networks(tmp_path: Path, image_dir: Path) -> None:
    formatter = 'formatter_network = { kind = "unet", widths = [8, 16], blocks_per_level = 1, unshuffle = 2 }'
    path = write_config(tmp_path, image_dir, model=formatter, loss="formatter_weight = 0.5")
    path.write_text(path.read_text().replace('formatter = "none"', 'formatter = "cnn"'))
    config = load_train_config(path, ["train.steps=2"])
    trainer = Trainer(config, tmp_path / "run", command="test")
    before = _parameters(trainer.model)
    records: list[dict] = []
    trainer.fit(on_log=records.append)
    after = trainer.model.state_dict()
    for prefix in ("formatter.", "residual."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    assert "formatter" in records[-1]


def test_adversarial_term_joins_after_warmup(tmp_path: Path, image_dir: Path) -> None:
    path = write_config(tmp_path, image_dir, loss="adversarial = 0.01\nadversarial_warmup = 1")
    records: list[dict] = []
    config = load_train_config(path, ["train.steps=2", "data.patch_size=24"])
    Trainer(config, tmp_path / "run", command="test").fit(on_log=records.append)
    assert "adversarial" not in records[0] and "discriminator" not in records[0]
    assert "adversarial" in records[1] and "discriminator" in records[1]


def test_time_limit_stops_and_exports(tmp_path: Path, image_dir: Path) -> None:
    path = write_config(tmp_path, image_dir, train="time_limit_s = 1e-9")
    trainer = Trainer(load_train_config(path, ["train.steps=1000"]), tmp_path / "run", command="test")
    folder = trainer.fit()
    assert trainer.step == 1
    assert (folder / "model.safetensors").is_file()


def test_resume_without_state_is_a_clear_error(tmp_path: Path, image_dir: Path) -> None:
    from formnet_cli.errors import FormnetError

    trainer = Trainer(load_train_config(write_config(tmp_path, image_dir)), tmp_path / "empty", command="test")
    with pytest.raises(FormnetError, match=STATE_FILE):
        trainer.load_state()


# -- the command line -----------------------------------------------------------------------
def test_cli_train_runs_and_writes_the_model(tmp_path: Path, image_dir: Path) -> None:
    from typer.testing import CliRunner

    from formnet_cli.cli.app import app

    path = write_config(tmp_path, image_dir)
    path.write_text(path.read_text().replace("steps = 2", "steps = 50"))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(path), "--run-dir", str(run), "--set", "train.steps=2"])
    assert result.exit_code == 0, result.output
    assert (run / "model" / "config.json").is_file()
    assert (run / "model" / "model.safetensors").is_file()
    assert (run / STATE_FILE).is_file()
    model, info = load_checkpoint(run / "model")
    assert info.name == "tiny-denoise"
    assert "steps: 2" in (run / "model" / "README.md").read_text()

    resumed = CliRunner().invoke(app, ["train", "--resume", str(run), "--set", "train.steps=3"])
    assert resumed.exit_code == 0, resumed.output
    assert "steps: 3" in (run / "model" / "README.md").read_text()


def test_cli_train_config_error_is_one_line(tmp_path: Path, image_dir: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from formnet_cli.cli.app import app

    monkeypatch.delenv("FORMNET_DEBUG", raising=False)
    path = write_config(tmp_path, image_dir)
    result = CliRunner().invoke(app, ["train", str(path), "--run-dir", str(tmp_path / "run"),
                                      "--set", "train.stepz=2"])
    assert result.exit_code == 2
    assert "error:" in result.output and "train.stepz" in result.output
    assert "(see 'formnet train -h')" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def _train(*args: object):
    from typer.testing import CliRunner

    from formnet_cli.cli.app import app

    return CliRunner().invoke(app, ["train", *map(str, args)])


def _one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output


@pytest.mark.parametrize(("override", "fragment"), [
    ("model.residual.widths=abc", "model.residual.widths: expected a list"),
    ("model.residual.blocks_per_level='3'", "model.residual.blocks_per_level: expected int"),
    ("model.channels=1.0", "model.channels: expected int"),
    ("model.residual=3", "model.residual: expected a section"),
    ("model.sigma_range=[10]", "model.sigma_range: expected 2 values"),
    ("model.residual.widths=[]", "model.residual.widths must be positive integers"),
    ("model.task='jpeg' --set model.formatter='bm3d'", "model.formatter 'bm3d' only applies"),
    ("data.sigma_range=[10]", "data.sigma_range must be [low, high]"),
    ("optim.lr=-1", "optim.lr must be positive"),
    ("data.workers=-1", "data.workers must be 0 or more"),
    ("train.log_every=0", "train.log_every must be positive"),
    ("data.quality_range=[0, 200]", "data.quality_range"),
    ("data.scales=[5]", "data.scales must be among [2, 3, 4]"),
    ("model.task='sr' --set data.patch_size=24", "task sr validates at scales"),  # sigmas given
])
def test_config_mistakes_are_one_line_usage_errors(tmp_path, image_dir, override, fragment):
    path = write_config(tmp_path, image_dir, data=f'val_levels = [25.0]\nval_dir = "{image_dir.as_posix()}"')
    settings = [item for value in override.split(" --set ") for item in ("--set", value)]
    _one_line_error(_train(path, "--run-dir", tmp_path / "run", *settings), 2, fragment)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_is_not_trained_over_and_resume_takes_the_run_as_it_was(tmp_path, image_dir):
    path = write_config(tmp_path, image_dir, optim="min_lr = 1e-5")
    run = tmp_path / "run"
    assert _train(path, "--run-dir", run, "--set", "optim.schedule='cosine'", "--set", "train.steps=4",
                  "--set", "train.checkpoint_every=2").exit_code == 0
    log = (run / "log.jsonl").read_text()
    _one_line_error(_train(path, "--run-dir", run), 2, "holds a run already", f"--resume {run}")
    assert (run / "log.jsonl").read_text() == log
    # the run's own config (cosine, 4 steps) with more steps: the decay stretches to the new end
    resumed = _train("--resume", run, "--set", "train.steps=8")
    assert resumed.exit_code == 0, resumed.output
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == list(range(1, 9))
    rates = [record["lr"] for record in records]
    assert rates[4:] == sorted(rates[4:], reverse=True) and rates[-1] == pytest.approx(1e-5)
    assert "steps: 8" in (run / "model" / "README.md").read_text()


def test_learning_rate_schedule_is_a_closed_form_of_the_progress() -> None:
    from formnet_cli.training.config import OptimConfig
    from formnet_cli.training.trainer import scheduled_lr

    steps = OptimConfig(lr=1.0, schedule="step", warmup_steps=2, step_milestones=[3])
    assert [round(scheduled_lr(steps, step, 0.0), 4) for step in range(6)] == [0.001, 0.5005, 1, 1, 1, 0.5]
    cosine = OptimConfig(lr=1.0, min_lr=0.0, schedule="cosine")
    assert [scheduled_lr(cosine, 0, progress) for progress in (0.0, 0.5, 1.0, 2.0)] == pytest.approx(
        [1.0, 0.5, 0.0, 0.0])


def test_a_failed_run_leaves_a_folder_a_new_run_may_use(tmp_path, image_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 1}\n')  # failed before its first checkpoint
    result = _train(write_config(tmp_path, image_dir), "--run-dir", run)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_an_sr_run_without_validation_keeps_any_val_levels(tmp_path, image_dir):
    """Runs saved before the task defaults hold val_levels [25.0] whatever their task."""
    config = load_train_config(write_config(tmp_path, image_dir, task="sr", data="val_levels = [25.0]"),
                               ["data.patch_size=24"])
    assert config.data.val_levels == [25.0] and not config.data.val_dir


def test_resume_mistakes_are_one_line_usage_errors(tmp_path, image_dir):
    path = write_config(tmp_path, image_dir)
    run = tmp_path / "run"
    _one_line_error(_train(path, "--resume", tmp_path / "nothing"), 2, "no state.pt")
    assert not (tmp_path / "nothing").exists()
    _one_line_error(_train(), 2, "give a training config")
    assert _train(path, "--run-dir", run).exit_code == 0
    _one_line_error(_train("--resume", run, "--run-dir", tmp_path / "elsewhere"), 2, "drop --run-dir")
    _one_line_error(_train(path, "--resume", run, "--set", "model.residual.widths=[8, 32]"), 2,
                    "differs from the run's")
    _one_line_error(_train("--resume", run), 2, "the run has trained 2 steps and train.steps is 2",
                    "raise train.steps")
    _one_line_error(_train("--resume", run, "--set", "train.steps=1"), 2, "raise train.steps")


def test_resume_with_config_keeps_the_runs_settings_or_refuses(tmp_path, image_dir):
    path = write_config(tmp_path, image_dir)
    run = tmp_path / "run"
    assert _train(path, "--run-dir", run, "--set", "data.batch_size=3").exit_code == 0
    # the config without the run's --set would train otherwise: refused, naming what differs
    _one_line_error(_train(path, "--resume", run, "--set", "train.steps=3"), 2,
                    "differs from the run's settings: data.batch_size (run: 3")
    # the original command with --resume (and more steps) goes on as the run was
    resumed = _train(path, "--resume", run, "--set", "data.batch_size=3", "--set", "train.steps=3")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "config.json").read_text())["data"]["batch_size"] == 3
    card = (run / "model" / "README.md").read_text()
    assert "- training command: `" in card and "- resumed with: `" in card


def test_data_and_weight_mistakes_are_one_line_errors(tmp_path, image_dir):
    path = write_config(tmp_path, image_dir)
    _one_line_error(_train(path, "--run-dir", tmp_path / "a", "--set", f'data.train_dirs=["{tmp_path / "none"}"]'),
                    1, "no such image folder")
    assert not (tmp_path / "a").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = _train(path, "--run-dir", tmp_path / "b", "--set", f'data.train_dirs=["{broken}"]')
    assert result.exit_code == 1  # after the run's first status lines: images are decoded by the run
    assert result.output.splitlines()[-1].startswith("error: ")
    assert "bad.png: cannot read this training image" in result.output.splitlines()[-1]
    other = save_checkpoint(FormResNet(ModelConfig(residual=NetworkConfig(widths=(4, 8), blocks_per_level=1))),
                            tmp_path / "other", "other")
    _one_line_error(_train(path, "--run-dir", tmp_path / "c", "--set", f'train.init_weights="{other}"'),
                    1, "its model differs from this config's model")
    _one_line_error(_train(path, "--run-dir", tmp_path / "d", "--set", 'train.init_weights="no-such-model"'),
                    2, "no-such-model")
    # a mistyped run path ending in a model's name is not taken for that model
    _one_line_error(_train(path, "--run-dir", tmp_path / "e", "--set", 'train.init_weights="runs/denoise-gray"'),
                    1, "runs/denoise-gray: no such checkpoint folder")


def test_init_weights_takes_a_run_folder_or_a_model_name(tmp_path, image_dir):
    path = write_config(tmp_path, image_dir)
    assert _train(path, "--run-dir", tmp_path / "first").exit_code == 0
    second = _train(path, "--run-dir", tmp_path / "second", "--set", f'train.init_weights="{tmp_path / "first"}"')
    assert second.exit_code == 0, second.output
    bundled = _train(path, "--run-dir", tmp_path / "third", "--set", 'train.init_weights="denoise-gray"')
    assert bundled.exit_code == 1 and "its model differs from this config's model" in bundled.output


def test_set_paths_are_relative_to_the_current_folder(tmp_path, image_dir, monkeypatch):
    config_folder = tmp_path / "configs"
    config_folder.mkdir()
    path = write_config(config_folder, image_dir)
    monkeypatch.chdir(image_dir.parent)
    config = load_train_config(path, [f'data.train_dirs=["{image_dir.name}"]'])
    assert config.data.train_dirs == [str(image_dir.resolve())]


def test_a_timed_run_logs_its_last_step(tmp_path, image_dir):
    config = load_train_config(write_config(tmp_path, image_dir), ["train.steps=1000", "train.log_every=1000",
                                                                     "train.time_limit_s=0.000001"])
    trainer = Trainer(config, tmp_path / "run", command="test")
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1] and trainer.step == 1


def test_python_m_training_is_formnet_train() -> None:
    result = subprocess.run([sys.executable, "-m", "formnet_cli.training", "-h"], capture_output=True, text=True)
    assert result.returncode == 0 and "formnet train" in result.stdout


def test_bm3d_formatter_outputs_are_computed_once_and_cached(tmp_path, image_dir, monkeypatch):
    """BM3D runs once per (image, sigma, seed); a second run reads the cache instead."""
    from formnet_cli.training import data as training_data

    path = write_config(tmp_path, image_dir, data="bm3d_sigmas = [25.0]")
    overrides = ["model.formatter=bm3d", f'data.cache_dir="{(tmp_path / "cache").as_posix()}"']
    calls = []
    real_bm3d = training_data.bm3d_denoise
    monkeypatch.setattr(training_data, "bm3d_denoise",
                        lambda image, sigma: calls.append(sigma) or real_bm3d(image, sigma))
    first = Trainer(load_train_config(path, overrides), tmp_path / "run1")
    first.fit()
    assert len(calls) == 4 and len(list((tmp_path / "cache").glob("bm3d-*.npz"))) == 4
    second = Trainer(load_train_config(path, overrides), tmp_path / "run2")
    second.fit()
    assert len(calls) == 4  # all four read back from the cache
    model, info = load_checkpoint(tmp_path / "run2" / "model")
    assert info.model.formatter == "bm3d"
    assert torch.equal(first.model.state_dict()["residual.network.head.weight"],
                       second.model.state_dict()["residual.network.head.weight"])


# slow: a pool of worker processes, each importing torch (about 50 s here)
@pytest.mark.slow
def test_bm3d_cache_in_worker_processes_matches_one_process(tmp_path):
    """The process pool computes the same BM3D outputs, noise and cache files as one process."""
    from formnet_cli.training.data import bm3d_outputs

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (24, 24, 1)).astype(np.float32) for _ in range(3)]
    serial = bm3d_outputs(images, [15.0, 50.0], 7, tmp_path / "serial")
    pooled = bm3d_outputs(images, [15.0, 50.0], 7, tmp_path / "pooled", workers=2)
    assert serial.keys() == pooled.keys() and len(serial) == 6
    for key in serial:
        np.testing.assert_array_equal(serial[key][0], pooled[key][0])
        np.testing.assert_allclose(serial[key][1], pooled[key][1], atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "pooled").iterdir()) == sorted(
        p.name for p in (tmp_path / "serial").iterdir())
    cached = bm3d_outputs(images, [15.0, 50.0], 7, tmp_path / "pooled", workers=2)
    np.testing.assert_array_equal(cached[0, 15.0][1], pooled[0, 15.0][1])


def test_edge_values_inside_the_ranges_are_accepted(tmp_path: Path, image_dir: Path) -> None:
    config = load_train_config(write_config(tmp_path, image_dir, task="jpeg"),
                               ["data.blind_probability=1.0", "optim.ema_decay=0", "data.val_limit=0"])
    assert config.data.blind_probability == 1.0 and config.optim.ema_decay == 0


@pytest.mark.parametrize("task, extra", [("denoise", []), ("sr", ["data.patch_size=24", "data.val_levels=[2.0]"])])
def test_validation_psnr_is_what_formnet_eval_measures(tmp_path: Path, image_dir: Path, task: str,
                                                       extra: list[str]) -> None:
    from formnet_cli import api
    from formnet_cli.evaluation.datasets import read_dataset
    from formnet_cli.evaluation.evaluate import evaluate
    from formnet_cli.evaluation.methods import FormnetMethod
    from formnet_cli.evaluation.protocol import Setting

    config = load_train_config(write_config(tmp_path, image_dir, task=task),
                               ["train.steps=2", f'data.val_dir="{image_dir.as_posix()}"',
                                'train.export_dtype="float32"', *extra])
    trainer = Trainer(config, tmp_path / "run", command="test")
    folder = trainer.fit()
    images = read_dataset(image_dir, channels="gray")
    method = FormnetMethod(api.load_model(folder, device="cpu"), device="cpu", tile=None, ensemble=1)
    report = evaluate(images, [Setting(task, config.val_levels[0])], [method], warmup=False)
    assert trainer.last_val_psnr == pytest.approx(report.results[0].mean_psnr, abs=1e-6)


def test_a_guide_model_started_from_a_diffresnet_computes_what_it_computes() -> None:
    from formnet_cli.hub.registry import resolve_model
    from formnet_cli.training.trainer import _load_matching

    base, _ = load_checkpoint(resolve_model("denoise-gray").path)
    config = ModelConfig.from_dict({**base.config.to_dict(), "formatter": "bm3d", "formatter_role": "guide",
                                    "sigma_range": [5.0, 75.0]})
    guided = FormResNet(config)
    _load_matching(guided, base.state_dict(), "denoise-gray")
    noisy, bm3d_output = torch.rand(1, 1, 48, 48), torch.rand(1, 1, 48, 48)
    level = torch.tensor([25 / 255])
    with torch.no_grad():
        assert torch.equal(guided.refine(noisy, bm3d_output, level), base(noisy, level))
        guided.residual.network.head.weight[:, -4:] += 0.1  # the guide's weights do enter
        assert not torch.equal(guided.refine(noisy, bm3d_output, level), base(noisy, level))


def test_color_jitter_keeps_greys_and_clips_and_holdout_is_disjoint() -> None:
    from formnet_cli.training.data import color_jitter, holdout_split

    rng = np.random.default_rng(0)
    flat = np.full((16, 16, 3), 0.5)
    np.testing.assert_allclose(color_jitter(flat, rng, [0.5, 3.0]), flat, atol=1e-5)  # mid-grey stays
    fine_detail_in_colour = []
    for _ in range(20):
        grey = np.repeat(rng.random((16, 16, 1)) * 0.2 + 0.4, 3, axis=2)
        jittered = color_jitter(grey, rng, [1.0, 1.0])
        fine_detail_in_colour.append(np.ptp(jittered - jittered.mean(axis=2, keepdims=True)) > 0.01)
    assert 0 < sum(fine_detail_in_colour) < 20  # some rotations keep greys grey, others colour them
    colour = rng.random((16, 16, 3))
    jittered = color_jitter(colour, rng, [3.0, 3.0])
    assert jittered.min() >= 0 and jittered.max() <= 1 and not np.allclose(jittered, colour)
    paths = [Path(f"{i:03d}.png") for i in range(40)]
    training, validation = holdout_split(paths, 5)
    assert len(validation) == 5 and not set(training) & set(validation)
    assert len(training) + len(validation) == 40


def test_independent_channels_put_detail_in_colour_alone() -> None:
    from formnet_cli.training.config import DataConfig
    from formnet_cli.training.data import PatchBatches

    rng = np.random.default_rng(1)
    greys = [np.repeat(rng.integers(0, 256, (24, 24, 1), dtype=np.uint8), 3, axis=2) for _ in range(4)]
    data = DataConfig(patch_size=16, batch_size=8, sigma_range=[0.0, 0.0])
    plain = PatchBatches(greys, ModelConfig(channels=3), data, seed=0)[0].clean
    assert torch.equal(plain[:, 0], plain[:, 1])  # grey photos give grey patches
    data.independent_channels = 1.0
    mixed = PatchBatches(greys, ModelConfig(channels=3), data, seed=0)[0].clean
    assert mixed.shape == plain.shape and 0 <= mixed.min() and mixed.max() <= 1
    chroma = mixed - mixed.mean(dim=1, keepdim=True)
    assert chroma.abs().mean() > 0.1  # uncorrelated channels: as much detail in colour as in grey


def test_color_augment_and_holdout_train(tmp_path: Path, image_dir: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"""
[model]
channels = 3
[model.residual]
widths = [8, 16]
blocks_per_level = 1
[data]
train_dirs = ["{image_dir}"]
val_holdout = 1
patch_size = 16
batch_size = 2
color_augment = 1.0
[train]
steps = 2
val_every = 2
log_every = 1
""")
    trainer = Trainer(load_train_config(config), tmp_path / "run")
    trainer.fit()
    assert trainer.last_val_psnr is not None
