"""FormResNet models: pure torch modules, no file or network I/O.

The descriptor (:mod:`formnet_cli.models.descriptor`) is imported without torch, so that the ONNX
runtimes can describe a graph's model; the torch modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from formnet_cli.models.descriptor import ModelDescriptor, describe

if TYPE_CHECKING:
    from formnet_cli.models.formresnet import FormResNet, condition_level, count_parameters, level_map
    from formnet_cli.models.networks import PlainResidualCNN, ResidualUNet, build_network

_TORCH_NAMES = {
    "FormResNet": "formresnet", "condition_level": "formresnet", "count_parameters": "formresnet",
    "level_map": "formresnet", "PlainResidualCNN": "networks", "ResidualUNet": "networks",
    "build_network": "networks",
}

__all__ = [
    "FormResNet",
    "ModelDescriptor",
    "PlainResidualCNN",
    "ResidualUNet",
    "build_network",
    "condition_level",
    "count_parameters",
    "describe",
    "level_map",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"formnet_cli.models.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
