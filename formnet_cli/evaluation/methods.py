"""Methods under test: what a restorer must answer, and formnet's checkpoints as one.

:class:`FormnetMethod` runs any checkpoint through :func:`formnet_cli.api.restore`, so that
it measures exactly what users get. The methods formnet is measured against are in
:mod:`formnet_cli.evaluation.baselines`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from formnet_cli.config import LEVEL_NAMES
from formnet_cli.errors import ModelNotFoundError
from formnet_cli.evaluation.protocol import Sample, Setting
from formnet_cli.evaluation.report import MeasuredCheckpoint

__all__ = ["FormnetMethod", "Method", "PerChannelsMethod", "load_default_methods"]


class Method:
    """A restorer under test: ``restore(sample)`` returns float ``H x W x C`` at the clean size."""

    name = "method"

    def label(self, setting: Setting) -> str:
        return self.name

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        """Why this method cannot run the setting (a short note), or ``None``."""
        return None

    def restore(self, sample: Sample) -> np.ndarray:
        raise NotImplementedError

    def timed(self, setting: Setting) -> bool:
        """Whether its time is worth reporting (the degraded input itself takes none)."""
        return True

    def formatted(self, sample: Sample) -> np.ndarray | None:
        """The formatting stage's output (FormResNet), for the comparison strips."""
        return None

    def checkpoint(self) -> MeasuredCheckpoint | None:
        """The formnet checkpoint this method runs, for the report; ``None`` for others."""
        return None


class FormnetMethod(Method):
    """A formnet checkpoint, run through :func:`formnet_cli.api.restore` (tiling included).

    Its name is ``name``, else ``formnet <model_label> (<n> passes, <backend>)``, where
    ``model_label`` defaults to the checkpoint's own name (the backend is named unless torch).
    """

    def __init__(self, loaded: Any, *, device: str = "auto", precision: str = "auto",
                 tile: int | str | None = "auto", ensemble: int | str = "auto",
                 name: str | None = None, model_label: str | None = None) -> None:
        from formnet_cli.api import check_model_options, ensemble_passes

        check_model_options(loaded, precision=precision, device=device)  # now, not per image
        self.loaded = loaded
        self.passes = ensemble_passes(ensemble, loaded)
        self.options = {"device": device, "precision": precision, "tile": tile,
                        "ensemble": self.passes}
        details = []
        if self.passes > 1:
            details.append(f"{self.passes} passes")
        if loaded.backend != "torch":
            details.append(loaded.backend)
        suffix = f" ({', '.join(details)})" if details else ""
        self.name = name or f"formnet {model_label or loaded.name}{suffix}"

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        config = self.loaded.config
        if setting.task != config.task:
            return f"model restores {config.task}"
        if setting.task == "denoise" and not config.sigma_range[0] <= setting.level <= config.sigma_range[1]:
            return f"sigma outside the model's range {config.sigma_range}"
        if setting.task == "sr" and int(setting.level) not in config.scales:
            return f"scale not among the model's {config.scales}"
        return None

    def _levels(self, setting: Setting) -> dict[str, Any]:
        name = LEVEL_NAMES[setting.task]
        return {name: setting.value if setting.task != "denoise" else float(setting.level)}

    def _run(self, loaded: Any, sample: Sample) -> np.ndarray:
        from formnet_cli import api

        image = api.restore(sample.degraded, sample.setting.task, model=loaded,
                            **self._levels(sample.setting), **self.options)
        return image if image.ndim == 3 else image[:, :, None]

    def restore(self, sample: Sample) -> np.ndarray:
        return self._run(self.loaded, sample)

    def checkpoint(self) -> MeasuredCheckpoint:
        return MeasuredCheckpoint(path=str(self.loaded.path), name=self.loaded.name,
                                  ensemble=self.passes)

    def formatted(self, sample: Sample) -> np.ndarray | None:
        if self.loaded.config.formatter == "none":
            return None  # a DiffResNet: the "formatted" image is the input itself
        # The same call with the model replaced by its formatting stage: same tiling and the
        # same colour handling (e.g. the Y channel of a gray SR model on an RGB image).
        from formnet_cli import api

        loaded = self.loaded  # the stage runs under torch, whatever runs the whole model
        if loaded.backend != "torch":
            loaded = api.load_model(loaded.path, device=self.options["device"])
        stage = dataclasses.replace(loaded, model=_FormattingStage(loaded.model))
        return self._run(stage, sample)


class PerChannelsMethod(Method):
    """One row for a folder mixing gray and colour images: each image restored by the method
    for its channel count (1 gray, 3 colour): the task's default model for each, as ``formnet
    restore`` picks it by each file's channels, or DnCNN-S and CDnCNN-S."""

    def __init__(self, methods: dict[int, Method], name: str) -> None:
        self.methods = methods
        self.name = name

    def _for(self, sample: Sample) -> Method:
        return self.methods[sample.degraded.shape[2]]

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        method = self.methods.get(channels)
        if method is None:
            return f"no model for {'gray' if channels == 1 else 'colour'} images"
        return method.unsupported(setting, channels)

    def restore(self, sample: Sample) -> np.ndarray:
        return self._for(sample).restore(sample)

    def formatted(self, sample: Sample) -> np.ndarray | None:
        return self._for(sample).formatted(sample)


class _FormattingStage(torch.nn.Module):
    """``model.format`` behind the restorer interface the engine expects; the whole model's
    descriptor (its context covers the formatting stage's)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.descriptor = model.descriptor

    def forward(self, x: torch.Tensor, level: torch.Tensor | float) -> torch.Tensor:
        return self.model.format(x, level)


def load_default_methods(task: str, channels: int | Sequence[int], *,
                         models: Sequence[str] | None = None, device: str = "auto",
                         precision: str = "auto", tile: int | str | None = "auto",
                         ensemble: int | str = "auto", backend: str = "torch",
                         ) -> tuple[list[Method], dict[str, str]]:
    """formnet methods for ``models`` (names or folders), or the task's default model.

    ``channels``: the images' channel count, or those of a folder mixing gray and colour.
    Named ``models`` run on every image whatever its channels (a gray model on each colour
    channel, a colour model on gray as gray RGB: what ``formnet restore`` does). Without them,
    the task's default model for each channel count, in one row (:class:`PerChannelsMethod`)
    where gray and colour images get different ones.

    Returns the methods and, when no ``models`` were named and the task has no weights, a
    note ``{"formnet": "no weights yet"}`` instead of failing. A checkpoint named twice is
    run once; checkpoints sharing a name (a fine-tuned copy of a bundled model) are labelled
    by the name or path they were given as, so that each has its own row and saved images.
    """
    from formnet_cli import api

    counts = [channels] if isinstance(channels, int) else sorted(set(channels))
    if models:
        given: dict[Path, tuple[str, Any]] = {}  # checkpoint folder -> (as given, loaded)
        for model in models:
            loaded = api.load_model(model, task=task, channels=counts[0], device=device,
                                    backend=backend)
            given.setdefault(loaded.path, (str(model), loaded))
        names = [loaded.name for _, loaded in given.values()]
        return [FormnetMethod(loaded, device=device, precision=precision, tile=tile, ensemble=ensemble,
                              model_label=model if names.count(loaded.name) > 1 else None)
                for model, loaded in given.values()], {}
    defaults: dict[Path, tuple[list[int], Any]] = {}  # checkpoint folder -> (channels, loaded)
    try:  # the task's default model, or else the one for the other channel count
        for count in counts:
            loaded = api.load_model(None, task=task, channels=count, device=device,
                                    backend=backend)
            defaults.setdefault(loaded.path, ([], loaded))[0].append(count)
    except ModelNotFoundError:
        return [], {"formnet": "no weights yet"}
    methods = {tuple(served): FormnetMethod(loaded, device=device, precision=precision, tile=tile,
                                            ensemble=ensemble)
               for served, loaded in defaults.values()}
    if len(methods) == 1:
        return list(methods.values()), {}
    name = " / ".join(method.name for method in methods.values())  # each with its passes
    by_channels = {count: method for served, method in methods.items() for count in served}
    return [PerChannelsMethod(by_channels, name)], {}
