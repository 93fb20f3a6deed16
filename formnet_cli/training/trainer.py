"""The training loop of ``formnet train``: cross-level loss, optional adversarial term, EMA.

A run folder holds ``config.json`` (the full training config), ``log.jsonl`` (each loss term,
learning rate, validation PSNR), ``state.pt`` (everything ``--resume`` needs) and
``model/``: the EMA weights as a checkpoint ``formnet restore --model`` loads, written with each
saved state (every ``train.checkpoint_every`` steps, on Ctrl-C) and at the end.
"""

from __future__ import annotations

import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from formnet_cli.hub.checkpoint import load_checkpoint, save_checkpoint
from formnet_cli.config import LEVEL_NAMES, ModelConfig
from formnet_cli.imaging.degradations import imresize, modcrop
from formnet_cli.inference.device import cpu_has_fast, resolve_device
from formnet_cli.inference.engine import restore_tensor
from formnet_cli.errors import FormnetError
from formnet_cli.io.atomic import write_atomically
from formnet_cli.evaluation.protocol import Sample, Setting, degrade, psnr_of
from formnet_cli.models import FormResNet, condition_level, count_parameters
from formnet_cli.hub.registry import RUN_EXPORT_FOLDER, RUN_STATE_FILE, resolve_model
from formnet_cli.training import data as training_data
from formnet_cli.training.config import OptimConfig, TrainConfig, dump_config
from formnet_cli.training.discriminator import PatchDiscriminator
from formnet_cli.training.losses import AdversarialLoss, CrossLevelLoss, PerceptualLoss, PixelLoss, SobelGradientLoss

STATE_FILE = RUN_STATE_FILE
LOG_FILE = "log.jsonl"
TRAINING_CONFIG_FILE = "config.json"
"""The run's full training config (not a checkpoint's ``config.json``)."""
MODEL_FOLDER = RUN_EXPORT_FOLDER


def holds_run(folder: Path) -> bool:
    """True if ``folder`` holds a training run to keep: a state to resume or an exported model
    (a run that failed before saving either left nothing to continue)."""
    return any((folder / name).exists() for name in (STATE_FILE, MODEL_FOLDER))


@dataclass
class ValidationSet:
    """The validation images degraded once as ``formnet eval`` degrades them
    (:func:`~formnet_cli.evaluation.protocol.degrade`: the benchmark protocol), to be scored as it scores."""

    samples: list[Sample] = field(default_factory=list)


class Trainer:
    """Trains one FormResNet from a :class:`TrainConfig` in a run folder."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, command: str = "") -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FormnetError(f"{self.run_dir}: cannot create the run folder "
                               f"({error.strerror or error})") from None
        # `python -m formnet_cli.training ...` is the same command as `formnet train ...`
        program = ["formnet", "train"] if Path(sys.argv[0]).name == "__main__.py" else [Path(sys.argv[0]).name]
        self.command = command or shlex.join([*program, *sys.argv[1:]])
        self.commands = [self.command]
        """The command that started the run, then each that resumed it (for the model card)."""
        run = config.train
        if run.threads:
            torch.set_num_threads(run.threads)
        self.device = resolve_device(run.device, cpu_hint="--set train.device=cpu")
        torch.manual_seed(run.seed)
        # bf16 autocast where the device computes in bf16: CUDA, or a CPU with AVX-512/AMX
        # (1.9x faster per step than fp32 on this project's CPU: benchmarks/train_speed.py).
        self.use_amp = run.amp and (self.device.type == "cuda" or (
            self.device.type == "cpu" and cpu_has_fast(torch.bfloat16)))

        self.model = FormResNet(config.model)
        if run.init_weights:
            initial, _ = load_checkpoint(_init_weights_folder(run.init_weights))
            _load_matching(self.model, initial.state_dict(), f"train.init_weights {run.init_weights}")
        self.model = self.model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = AveragedModel(self.model, multi_avg_fn=_warming_ema(config.optim.ema_decay),
                                 use_buffers=True)
        self.optimizer = _make_optimizer(config, self.model.parameters(), config.optim.lr)
        self.loss = _make_cross_level_loss(config).to(self.device)
        self.discriminator: nn.Module | None = None
        if config.loss.adversarial > 0:
            self.discriminator = PatchDiscriminator(config.model.channels).to(self.device)
            self.discriminator_optimizer = torch.optim.Adam(
                self.discriminator.parameters(), lr=config.optim.discriminator_lr, betas=(0.5, 0.999))
            self.adversarial = AdversarialLoss(config.loss.gan_type, loss_weight=config.loss.adversarial)
        self.forward = torch.compile(self.model) if run.compile else self.model
        self.step = 0
        self.elapsed = 0.0
        self.last_val_psnr: float | None = None
        self._set_learning_rate(0)

    # -- data ---------------------------------------------------------------------------------
    def _dataset(self) -> training_data.PatchBatches:
        config = self.config
        images = training_data.load_images(config.data.train_dirs, config.model.channels,
                                           luma=config.data.luma, holdout=config.data.val_holdout,
                                           limit=config.data.train_limit)
        cache = Path(config.data.cache_dir) if config.data.cache_dir else self.run_dir / "cache"
        pairs = formatted = None
        if config.model.task == "sr":
            images = [modcrop(image, 12) for image in images]
            size = config.data.patch_size
            small = sum(min(image.shape[:2]) < size for image in images)
            if small:
                raise FormnetError(f"{small} of {len(images)} training images are smaller than the "
                                   f"{size} px patch (after cropping to a multiple of 12); use a "
                                   "smaller data.patch_size or leave them out")
            pairs = training_data.bicubic_pairs(images, config.data.scales, cache)
        elif config.model.formatter == "bm3d":
            formatted = training_data.bm3d_outputs(images, config.data.bm3d_sigmas, config.train.seed, cache,
                                                     workers=config.data.workers)
        return training_data.PatchBatches(images, config.model, config.data, config.train.seed,
                                          pairs=pairs, formatted=formatted)

    def _validation_set(self) -> ValidationSet:
        config = self.config
        result = ValidationSet()
        if config.data.val_holdout:
            images = training_data.load_images(config.data.train_dirs, config.model.channels,
                                               limit=config.data.val_limit, luma=config.data.luma,
                                               holdout=config.data.val_holdout, part="val")
        elif config.data.val_dir:
            images = training_data.load_images([config.data.val_dir], config.model.channels,
                                               limit=config.data.val_limit, luma=config.data.luma)
        else:
            return result
        result.samples = [degrade(str(index), clean, Setting(config.model.task, level))
                          for level in config.val_levels for index, clean in enumerate(images)]
        return result

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "val_psnr": self.last_val_psnr,
            "commands": self.commands,
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["discriminator_optimizer"] = self.discriminator_optimizer.state_dict()
        return state

    def save_state(self) -> None:
        """Write the resumable state atomically: an interruption or a full disk while saving
        leaves the previous state to resume from."""
        state = self.state_dict()
        write_atomically(self.run_dir / STATE_FILE, lambda handle: torch.save(state, handle))

    def load_state(self) -> None:
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            raise FormnetError(f"--resume {self.run_dir}: no {STATE_FILE} in the run folder")
        state = torch.load(path, map_location=self.device, weights_only=True)
        _load_matching(self.model, state["model"], f"--resume {self.run_dir}")
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.last_val_psnr = state.get("val_psnr")
        self.commands = [*state.get("commands", []), self.command]
        self._set_learning_rate(self.step)

    def work_left(self) -> str | None:
        """Why a resumed run would train nothing (it reached ``train.steps`` or its time limit),
        or None."""
        run = self.config.train
        if self.step >= run.steps:
            return (f"the run has trained {self.step} steps and train.steps is {run.steps}; "
                    "raise train.steps to train longer")
        if run.time_limit_s and self.elapsed >= run.time_limit_s:
            return (f"the run has trained {self.elapsed:.0f} s and train.time_limit_s is "
                    f"{run.time_limit_s:g}; raise it to train longer")
        return None

    # -- one step -----------------------------------------------------------------------------
    def _model_output(self, batch: training_data.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        run = self.config.train
        staged_formatter_phase = (model.config.formatter == "cnn" and run.formatter_training == "staged"
                                  and self.step < run.formatter_steps)
        if staged_formatter_phase:
            formatted = model.format(batch.degraded, batch.level)
            return formatted, formatted
        if batch.formatted is not None:  # precomputed BM3D
            return model.refine(batch.degraded, batch.formatted, batch.level), batch.formatted
        if model.config.formatter == "cnn" and run.formatter_training == "staged":
            with torch.no_grad():
                formatted = model.format(batch.degraded, batch.level)
            return model.refine(batch.degraded, formatted, batch.level), formatted
        if self.forward is not model and model.config.formatter == "none":
            return self.forward(batch.degraded, batch.level), batch.degraded
        return model.forward_with_formatted(batch.degraded, batch.level)

    def train_step(self, batch: training_data.Batch) -> dict[str, float]:
        config = self.config
        self.model.train()
        if self.device.type == "cuda":
            batch.degraded = batch.degraded.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            output, formatted = self._model_output(batch)
            total, terms = self.loss(output.float(), batch.clean)
            if config.loss.formatter_weight > 0 and formatted is not batch.degraded:
                formatter_term = config.loss.formatter_weight * self.loss.terms["pixel"](formatted.float(), batch.clean)
                total = total + formatter_term
                terms["formatter"] = float(formatter_term.detach())
            adversarial_on = self.discriminator is not None and self.step >= config.loss.adversarial_warmup
            if adversarial_on:
                generator_term = self.adversarial(self.discriminator(output), True, is_discriminator=False)
                total = total + generator_term
                terms["adversarial"] = float(generator_term.detach())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.optim.grad_clip)
        self.optimizer.step()
        self._set_learning_rate(self.step + 1)
        self.ema.update_parameters(self.model)
        if adversarial_on:
            terms.update(self._discriminator_step(output.detach(), batch.clean))
        terms["total"] = float(total.detach())
        terms["lr"] = self.optimizer.param_groups[0]["lr"]
        return terms

    def _set_learning_rate(self, step: int) -> None:
        """The learning rate of ``step``, from the step count or, with a time limit, from the
        share of the time budget spent (a run sized in minutes still ends its decay in time).
        A closed form of the progress: a resumed run with more steps stretches its schedule."""
        run = self.config.train
        progress = (self.elapsed / run.time_limit_s if run.time_limit_s
                    else (step - self.config.optim.warmup_steps)
                    / max(1, run.steps - self.config.optim.warmup_steps))
        lr = scheduled_lr(self.config.optim, step, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _discriminator_step(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            loss_real = self.adversarial(self.discriminator(real), True, is_discriminator=True)
            loss_fake = self.adversarial(self.discriminator(fake), False, is_discriminator=True)
            loss = (loss_real + loss_fake) / 2
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.discriminator_optimizer.step()
        return {"discriminator": float(loss.detach())}

    # -- validation ---------------------------------------------------------------------------
    def validate(self, validation: ValidationSet) -> float | None:
        """Mean PSNR of the EMA model over the validation set, as ``formnet eval`` measures it
        (one untiled pass; the bicubic upscale for SR; Y channel and border crop for SR)."""
        if not validation.samples:
            return None
        scores = []
        for sample in validation.samples:
            setting = sample.setting
            degraded = sample.degraded
            if setting.task == "sr":
                degraded = imresize(degraded, scale=int(setting.level)).astype(np.float32)
            level = condition_level(setting.task, **{LEVEL_NAMES[setting.task]: setting.value})
            restored = restore_tensor(self.ema.module, torch.from_numpy(degraded.transpose(2, 0, 1).copy()),
                                      level, tile=None, device=self.device)
            scores.append(psnr_of(sample, restored.numpy().transpose(1, 2, 0)))
        return float(np.mean(scores))

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, on_log: Callable[[dict], None] | None = None) -> Path:
        config = self.config
        dataset = self._dataset()
        validation = self._validation_set()
        (self.run_dir / TRAINING_CONFIG_FILE).write_text(dump_config(config) + "\n")
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=range(self.step, config.train.steps),
            num_workers=config.data.workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False, prefetch_factor=4 if config.data.workers else None,
            collate_fn=lambda batch: batch)
        # a resumed run adds to its log; a new one starts it (over a failed run's, if any)
        log = (self.run_dir / LOG_FILE).open("a" if self.step else "w", encoding="utf-8")
        window_start, window_steps = time.perf_counter(), 0
        try:
            for batch in loader:
                step_start = time.perf_counter()
                terms = self.train_step(batch.to(self.device))
                self.step += 1
                window_steps += 1
                self.elapsed += time.perf_counter() - step_start
                record: dict = {}
                out_of_time = bool(config.train.time_limit_s) and self.elapsed >= config.train.time_limit_s
                last = self.step == config.train.steps or out_of_time  # always logged
                if self.step % config.train.log_every == 0 or last:
                    now = time.perf_counter()
                    record = {"step": self.step, **terms,
                              "it_per_s": window_steps / max(now - window_start, 1e-9)}
                    window_start, window_steps = now, 0
                if self.step % config.train.val_every == 0 or last:
                    self.last_val_psnr = self.validate(validation)
                    if self.last_val_psnr is not None:
                        record = {"step": self.step, **terms, **record, "val_psnr": self.last_val_psnr}
                if record:
                    record["elapsed_s"] = round(self.elapsed, 1)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    if on_log:
                        on_log(record)
                if self.step % config.train.checkpoint_every == 0:
                    self.save_state()
                    self.export()  # loadable (restore, eval) while the run goes on
                if out_of_time:
                    break
        except KeyboardInterrupt:
            self.save_state()
            self.export()
            raise
        finally:
            log.close()
        self.save_state()
        return self.export()

    def export(self) -> Path:
        """Write the EMA weights as a checkpoint folder ``run_dir/model`` with a model card."""
        model = FormResNet(self.config.model)
        model.load_state_dict(self.ema.module.state_dict())
        card = model_card(self.config, self.commands, self.step, self.elapsed, str(self.device),
                          count_parameters(model), self.last_val_psnr)
        return save_checkpoint(model, self.run_dir / MODEL_FOLDER, self.config.name, card=card,
                               description=self.config.description,
                               dtype=getattr(torch, self.config.train.export_dtype))


def _warming_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """The exponential moving average's update, with a decay that warms up: at the n-th update
    it is ``min(decay, (1 + n) / (10 + n))``, so the average of a short run (or of a run's first
    thousands of steps) is not mostly its random starting weights (with 0.999 from the start,
    2,000 steps keep 13 % of them). From about 9,000 updates on it is ``decay`` (0.999)."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not (torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0])):
            torch._foreach_copy_(averaged, current)  # integer buffers (counters) follow the model
            return
        count = int(updates)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + count) / (10 + count)))

    return update


def _validation_name(config: TrainConfig) -> str:
    """What the run validates on, for the model card."""
    if config.data.val_holdout:
        return f"{config.data.val_holdout} images held out of the training folders"
    return Path(config.data.val_dir).name


def _init_weights_folder(value: str) -> Path:
    """The checkpoint ``train.init_weights`` names: a checkpoint folder, a run folder (its
    exported ``model/``) or a model name such as ``denoise-gray`` (left unresolved by the
    config); a path that does not exist fails naming it."""
    return resolve_model(Path(value) if Path(value).is_absolute() else value).path


def _load_matching(model: nn.Module, weights: dict, source: str) -> None:
    """Load ``weights`` into ``model``; a different architecture is a one-line error.

    A model whose formatter is a guide starts from a DiffResNet of the same network: the
    guide's input weights of the first convolution start at zero (:func:`widen_first_layer`).
    """
    if isinstance(model, FormResNet) and model.config.formatter_role == "guide":
        weights = widen_first_layer(weights, model.state_dict())
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise FormnetError(f"{source}: its model differs from this config's model "
                           "(model.* settings: widths, blocks, channels, formatter)") from None


def widen_first_layer(weights: dict, target: dict) -> dict:
    """``weights`` with each convolution that takes fewer input channels than ``target``'s
    padded with zero weights for the extra (trailing) inputs: the model computes what it did."""
    widened = dict(weights)
    for key, value in weights.items():
        wanted = target.get(key)
        if (wanted is not None and value.dim() == 4 and wanted.dim() == 4
                and value.shape[0] == wanted.shape[0] and value.shape[2:] == wanted.shape[2:]
                and value.shape[1] < wanted.shape[1]):
            padded = torch.zeros(wanted.shape, dtype=value.dtype)
            padded[:, :value.shape[1]] = value
            widened[key] = padded
    return widened


def _make_optimizer(config: TrainConfig, parameters, lr: float) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if config.optim.optimizer == "adamw" else torch.optim.Adam
    return kind(parameters, lr=lr, weight_decay=config.optim.weight_decay)


def scheduled_lr(optim: OptimConfig, step: int, progress: float) -> float:
    """Linear warm-up from ``lr / 1000`` over ``optim.warmup_steps``, then the schedule at
    ``progress`` (0 to 1) of the rest of the run: cosine decay to ``min_lr``, halving at each
    of ``step_milestones`` (counted after the warm-up), or constant."""
    warmup = optim.warmup_steps
    if step < warmup:
        return optim.lr * (1e-3 + (1 - 1e-3) * step / warmup)
    if optim.schedule == "cosine":
        progress = min(1.0, max(0.0, progress))
        return optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1 + math.cos(math.pi * progress))
    if optim.schedule == "step":
        return optim.lr * 0.5 ** sum(step - warmup >= milestone for milestone in optim.step_milestones)
    return optim.lr


def _make_cross_level_loss(config: TrainConfig) -> CrossLevelLoss:
    loss = config.loss
    terms: dict[str, nn.Module] = {"pixel": PixelLoss(loss.pixel, loss_weight=loss.pixel_weight)}
    if loss.gradient > 0:
        terms["gradient"] = SobelGradientLoss(loss_weight=loss.gradient)
    if loss.perceptual > 0:
        terms["perceptual"] = PerceptualLoss(loss_weight=loss.perceptual, weights_path=loss.vgg_weights or None)
    return CrossLevelLoss(terms)


def model_card(config: TrainConfig, commands: list[str], steps: int, elapsed: float, device: str,
               parameters: int, val_psnr: float | None) -> str:
    """The exported model's card; ``commands``: the one that started the run, then each that
    resumed it."""
    model: ModelConfig = config.model
    device_name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "CPU"
    lines = [
        f"# {config.name}",
        "",
        config.description,
        "",
        f"- task: {model.task}, channels: {model.channels}, formatter: {model.formatter}",
        f"- residual network: {model.residual}",
        f"- parameters: {parameters:,}",
        f"- training command: `{commands[0]}`",
        *[f"- resumed with: `{command}`" for command in commands[1:]],
        f"- data: {', '.join(Path(d).name for d in config.data.train_dirs)}; patches "
        f"{config.data.patch_size}px, batch {config.data.batch_size}",
        f"- loss: {config.loss.pixel} x{config.loss.pixel_weight}, gradient x{config.loss.gradient}, "
        f"perceptual x{config.loss.perceptual}, adversarial x{config.loss.adversarial}",
        f"- steps: {steps}, training time: {elapsed / 60:.1f} min on {device} ({device_name})",
        f"- validation PSNR ({_validation_name(config)}, levels {config.val_levels}): "
        + (f"{val_psnr:.2f} dB" if val_psnr is not None else "n/a"),
        "",
    ]
    return "\n".join(lines)
