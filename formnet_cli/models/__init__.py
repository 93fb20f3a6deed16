"""FormResNet models: pure torch modules, no file or network I/O."""

from formnet_cli.models.descriptor import ModelDescriptor, describe
from formnet_cli.models.formresnet import FormResNet, condition_level, count_parameters, level_map
from formnet_cli.models.networks import PlainResidualCNN, ResidualUNet, build_network

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
