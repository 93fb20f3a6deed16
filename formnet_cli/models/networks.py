"""Residual CNN backbones: a pixel-unshuffled residual U-Net and a DnCNN-style plain stack.

Both map ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``; ``H`` and ``W``
must be multiples of :attr:`size_multiple`. No I/O here.
"""

from __future__ import annotations

import torch
from torch import nn

from formnet_cli.config import NetworkConfig


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))``, without normalisation (as in DRUNet)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def residual_blocks(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels) for _ in range(count)))


class ResidualUNet(nn.Module):
    """U-Net of residual blocks behind a pixel-unshuffle, for speed on the CPU.

    Pixel-unshuffle by ``u`` turns each ``u x u`` patch into channels, so every
    convolution runs on ``1/u**2`` of the pixels with wide, cache-friendly channels.
    Levels are joined by 2x2 strided convolutions (down) and 2x2 transposed
    convolutions (up), with additive skip connections.
    """

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig) -> None:
        super().__init__()
        widths = tuple(config.widths)
        u = config.unshuffle
        self.config = config
        self.unshuffle = nn.PixelUnshuffle(u) if u > 1 else nn.Identity()
        self.shuffle = nn.PixelShuffle(u) if u > 1 else nn.Identity()
        self.head = conv3x3(in_channels * u * u, widths[0], bias=False)
        self.encoders = nn.ModuleList(residual_blocks(w, config.blocks_per_level) for w in widths[:-1])
        self.downs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], kernel_size=2, stride=2, bias=False)
            for i in range(len(widths) - 1)
        )
        self.body = residual_blocks(widths[-1], config.blocks_per_level)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2, bias=False)
            for i in range(len(widths) - 1)
        )
        self.decoders = nn.ModuleList(residual_blocks(w, config.blocks_per_level) for w in widths[:-1])
        self.tail = conv3x3(widths[0], out_channels * u * u, bias=False)

    @property
    def size_multiple(self) -> int:
        return self.config.unshuffle * 2 ** (len(self.config.widths) - 1)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context on each side that can change an output pixel."""
        u, blocks = self.config.unshuffle, self.config.blocks_per_level
        levels = len(self.config.widths)
        radius = 2 * u  # head and tail convolutions
        for level in range(levels):
            factor = u * 2**level
            convs = 2 * blocks * (2 if level < levels - 1 else 1)
            radius += convs * factor
            if level < levels - 1:
                radius += 2 * factor  # 2x2 down and up convolutions
        return radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.unshuffle(x))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            features = encoder(features)
            skips.append(features)
            features = down(features)
        features = self.body(features)
        for up, decoder, skip in zip(reversed(self.ups), reversed(self.decoders), reversed(skips)):
            features = decoder(up(features) + skip)
        return self.shuffle(self.tail(features))


class PlainResidualCNN(nn.Module):
    """DnCNN-style ``depth`` 3x3 convolutions with ReLU, at full resolution."""

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig) -> None:
        super().__init__()
        width = config.widths[0]
        layers: list[nn.Module] = [conv3x3(in_channels, width), nn.ReLU(inplace=True)]
        for _ in range(config.depth - 2):
            layers += [conv3x3(width, width), nn.ReLU(inplace=True)]
        layers.append(conv3x3(width, out_channels))
        self.layers = nn.Sequential(*layers)
        self.config = config

    size_multiple = 1

    @property
    def receptive_radius(self) -> int:
        return self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build_network(in_channels: int, out_channels: int, config: NetworkConfig) -> nn.Module:
    config.validate()
    if config.kind == "unet":
        return ResidualUNet(in_channels, out_channels, config)
    return PlainResidualCNN(in_channels, out_channels, config)
