"""formnet: image restoration with FormResNet (formatted residual learning).

>>> import formnet_cli
>>> clean = formnet_cli.restore(noisy, task="denoise", sigma=25)   # doctest: +SKIP
>>> fixed = formnet_cli.restore(photo)   # task="auto": JPEG artifacts and/or noise, as found  # doctest: +SKIP

``restore``, ``restore_with_info``, ``load_model`` and ``clear_model_cache`` are imported on
first use, so that importing the package (and ``formnet --help``) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["LoadedModel", "RestoreResult", "StepResult", "__version__", "clear_model_cache",
           "load_model", "restore", "restore_with_info"]

if TYPE_CHECKING:
    from formnet_cli.api import (LoadedModel, RestoreResult, StepResult, clear_model_cache,
                                 load_model, restore, restore_with_info)


def __dir__() -> list[str]:
    # the public names, those imported on first use included (tab completion in a notebook)
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from formnet_cli import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
