"""FormResNet models: pure torch modules, no file or network I/O."""

from formnet_cli.models.formresnet import FormResNet, condition_level, count_parameters, level_map
from formnet_cli.models.networks import PlainResidualCNN, ResidualUNet, build_network

__all__ = [
    "FormResNet",
    "PlainResidualCNN",
    "ResidualUNet",
    "build_network",
    "condition_level",
    "count_parameters",
    "level_map",
]
