"""VGG16 up to ``relu2_2``, for the perceptual term of the cross-level loss.

The layers are those of torchvision's ``vgg16().features[:9]`` with the same
state-dict keys (``0.weight``, ``2.weight``, ``5.weight``, ``7.weight`` and
biases), so the ImageNet checkpoint torchvision publishes
(``vgg16-397923af.pth``, keys ``features.0.weight`` ...) loads by stripping the
``features.`` prefix. torchvision itself is not needed.

This module is the only place in ``training/`` that reads weights from disk; it
loads with ``torch.load(..., weights_only=True)``, never by full unpickling.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from formnet_cli.errors import ModelNotFoundError

VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


class VGGWeightsError(ModelNotFoundError):
    """The VGG16 ImageNet weights are missing or unreadable; the message says how to get them."""


class VGG16Features(nn.Sequential):
    """VGG16 ``features`` up to ``relu2_2``: ``(B, 3, H, W) -> (B, 128, H/2, W/2)``.

    Layers (indices as in torchvision): 0 conv1_1, 1 relu1_1, 2 conv1_2, 3 relu1_2,
    4 maxpool, 5 conv2_1, 6 relu2_1, 7 conv2_2, 8 relu2_2. Input is expected
    ImageNet-normalised (see :class:`formnet_cli.training.losses.PerceptualLoss`).
    Constructed with random weights; use :func:`load_vgg16_relu2_2` for ImageNet ones.

    >>> VGG16Features()(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 128, 8, 8])
    """

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 64, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )


def default_vgg16_path() -> Path:
    """Where torchvision caches the checkpoint: ``<torch hub dir>/checkpoints/vgg16-397923af.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter and switch to eval mode; returns ``module``."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def load_vgg16_relu2_2(weights_path: str | Path | None = None) -> VGG16Features:
    """Frozen VGG16 up to ``relu2_2`` with ImageNet weights from a torchvision-format file.

    ``weights_path`` None means the torch hub cache (:func:`default_vgg16_path`).
    Keys ``features.N.*`` are used with the prefix stripped; other keys (the
    classifier) are ignored. A file without the ``features.`` prefix (a saved
    :class:`VGG16Features` state dict) is accepted as is. A missing file or one
    that lacks a needed key raises :class:`VGGWeightsError` with a one-line fix.
    """
    path = Path(weights_path).expanduser() if weights_path else default_vgg16_path()
    if not path.is_file():
        raise VGGWeightsError(
            f"VGG16 ImageNet weights not found at {path} (needed by the perceptual loss): "
            f"on a machine with internet run python -c \"import torch; "
            f"torch.hub.load_state_dict_from_url('{VGG16_URL}')\" and copy "
            f"checkpoints/{VGG16_FILENAME} from its torch hub folder to {default_vgg16_path()} "
            f"or pass its path as loss.vgg_weights"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, pickle with non-tensor objects, ...
        raise VGGWeightsError(
            f"{path}: not a readable torchvision VGG16 state dict ({type(error).__name__}); "
            f"download {VGG16_URL} again"
        ) from error
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path}: expected a state dict, found {type(state).__name__}")

    model = VGG16Features()
    prefix = "features."
    if any(key.startswith(prefix) for key in state):
        state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise VGGWeightsError(f"{path}: not a VGG16 checkpoint (missing features.{missing[0]})")
    for key, reference in expected.items():
        if tuple(state[key].shape) != tuple(reference.shape):
            raise VGGWeightsError(
                f"{path}: not a VGG16 checkpoint (features.{key} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(reference.shape)})"
            )
    model.load_state_dict({key: state[key] for key in expected}, strict=True)
    return freeze(model)
