"""FormResNet: a formatting stage, then a residual CNN; output = formatted + residual.

Jiao et al., "FormResNet: Formatted Residual Learning for Image Restoration", CVPRW 2017.

Every model here is a conditional restorer ``model(x, level) -> restored`` on tensors in
[0, 1]. ``level`` is the task's degradation level, normalised by :func:`condition_level`
(noise sigma / 255, JPEG quality / 100 or :data:`~formnet_cli.config.BLIND`, SR scale / 4),
given per image as shape ``(B,)`` or per pixel as ``(B, 1, H, W)``. It enters the networks
as an extra constant input channel, so any level in the trained range works.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from formnet_cli.config import ModelConfig, NetworkConfig, condition_level  # noqa: F401  (re-exported)
from formnet_cli.models.descriptor import ModelDescriptor
from formnet_cli.models.networks import build_network


def level_map(level: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a level (scalar, ``(B,)`` or ``(B, 1, H, W)``) to a ``(B, 1, H, W)`` map."""
    batch, _, height, width = like.shape
    level = torch.as_tensor(level, dtype=like.dtype, device=like.device)
    if level.dim() <= 1:
        level = level.reshape(-1, 1, 1, 1)
    return level.expand(batch, 1, height, width)


class ConditionalResidual(nn.Module):
    """``images[0] + network(cat(images, level_map, guides))``: the residual-learning unit.

    With a single input this is a DiffResNet; FormResNet's second stage sees both the
    formatted and the degraded image and adds its residual to the formatted one (or, with
    the formatted image as a guide, to the degraded one).
    """

    def __init__(self, image_channels: int, input_images: int, config: NetworkConfig,
                 guide_images: int = 0) -> None:
        super().__init__()
        in_channels = image_channels * (input_images + guide_images) + 1
        self.network = build_network(in_channels, image_channels, config)

    def forward(self, images: list[torch.Tensor], level: torch.Tensor | float,
                guides: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        stacked = torch.cat([*images, level_map(level, images[0]), *guides], dim=1)
        return images[0] + self.network(stacked)


def bm3d_denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (CBM3D for 3 channels) of a ``(H, W, C)`` image in [0, 1] at noise level ``sigma``
    (on the same [0, 1] scale), by the ``bm3d`` package, on as many threads as torch uses
    (``--threads``; the package's default profile takes every core)."""
    try:
        import bm3d
    except ImportError as error:  # pragma: no cover - bm3d is a dependency
        raise RuntimeError("BM3D needs the bm3d package: pip install bm3d") from error
    sigma = max(float(sigma), 1e-3 / 255)  # BM3D divides by it
    profile = bm3d.BM3DProfile()
    profile.num_threads = torch.get_num_threads()
    if image.shape[2] == 3:
        return np.asarray(bm3d.bm3d_rgb(image, sigma, profile=profile))
    return np.asarray(bm3d.bm3d(image[..., 0], sigma, profile=profile))[..., None]


class BM3DFormatter(nn.Module):
    """BM3D (the ``bm3d`` package) as a formatting stage: CPU only, not differentiable."""

    def forward(self, x: torch.Tensor, level: torch.Tensor | float) -> torch.Tensor:
        levels = level_map(level, x)[:, 0, 0, 0].detach().cpu().double().numpy()
        images = x.detach().cpu().double().numpy().transpose(0, 2, 3, 1)
        formatted = np.stack([bm3d_denoise(image, sigma) for image, sigma in zip(images, levels)])
        return torch.from_numpy(formatted.transpose(0, 3, 1, 2)).to(device=x.device, dtype=x.dtype)


class FormResNet(nn.Module):
    """Formatter (``none``, ``cnn`` or ``bm3d``) followed by a conditional residual CNN.

    >>> from formnet_cli.config import ModelConfig, NetworkConfig
    >>> model = FormResNet(ModelConfig(residual=NetworkConfig(widths=(8, 16), blocks_per_level=1)))
    >>> model(torch.rand(1, 1, 16, 16), torch.tensor([25 / 255])).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        channels = config.channels
        self.formatter: nn.Module | None
        if config.formatter == "cnn":
            assert config.formatter_network is not None
            self.formatter = ConditionalResidual(channels, 1, config.formatter_network)
        elif config.formatter == "bm3d":
            self.formatter = BM3DFormatter()
        else:
            self.formatter = None
        if self.formatter is None:
            self.residual = ConditionalResidual(channels, 1, config.residual)
        elif config.formatter_role == "guide":
            self.residual = ConditionalResidual(channels, 1, config.residual, guide_images=1)
        else:
            self.residual = ConditionalResidual(channels, 2, config.residual)
        networks = [stage.network for stage in (self.formatter, self.residual)
                    if isinstance(stage, ConditionalResidual)]
        self.descriptor = ModelDescriptor(
            task=config.task, channels=channels,
            size_multiple=int(np.lcm.reduce([network.size_multiple for network in networks])),
            # The stages run one after the other: their reaches add up. (BM3D's is not bounded,
            # which only the blend between tiles hides; see the engine.)
            receptive_radius=sum(network.receptive_radius for network in networks),
            supports_half=config.formatter != "bm3d")
        """What the inference engine needs to know of this model."""

    # -- forward -----------------------------------------------------------------------------
    def format(self, x: torch.Tensor, level: torch.Tensor | float) -> torch.Tensor:
        """The formatting stage's output (the input itself for a DiffResNet)."""
        if self.formatter is None:
            return x
        if isinstance(self.formatter, ConditionalResidual):
            return self.formatter([x], level)
        return self.formatter(x, level)

    def refine(self, x: torch.Tensor, formatted: torch.Tensor, level: torch.Tensor | float) -> torch.Tensor:
        """The residual stage on the degraded image ``x`` and its formatted version."""
        if self.formatter is None:
            return self.residual([x], level)
        if self.config.formatter_role == "guide":
            return self.residual([x], level, guides=(formatted,))
        return self.residual([formatted, x], level)

    def forward_with_formatted(self, x: torch.Tensor, level: torch.Tensor | float
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        formatted = self.format(x, level)
        return self.refine(x, formatted, level), formatted

    def forward(self, x: torch.Tensor, level: torch.Tensor | float) -> torch.Tensor:
        return self.forward_with_formatted(x, level)[0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
