"""Adversarial term: a PatchGAN discriminator and the GAN losses (vanilla, LSGAN, hinge).

The trainer alternates a generator step (restorer loss including
``AdversarialLoss(D(output), target_is_real=True, is_discriminator=False)``) and a
discriminator step with its own optimiser
(``AdversarialLoss(D(target), True, True) + AdversarialLoss(D(output.detach()), False, True)``),
after a warm-up without the adversarial term.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix ``NLayerDiscriminator``): ``(B, C, H, W) -> (B, 1, h, w)`` logits.

    ``n_layers`` stride-2 4x4 convolutions (widths ``base_channels * min(2**k, 8)``),
    one stride-1 4x4 convolution, then a 4x4 convolution to one channel; LeakyReLU(0.2)
    between. Each output logit judges one overlapping patch (70x70 pixels for
    ``n_layers=3``). A 64x64 input gives a 6x6 map with ``n_layers=3``.

    ``norm`` is the normalisation after every convolution but the first and last;
    ``None`` picks ``'batch'`` (pix2pix) without spectral norm and ``'none'`` with it
    (SNGAN / Real-ESRGAN style: spectral norm on every convolution instead).
    Weights are initialised N(0, 0.02) as in pix2pix.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        n_layers: int = 3,
        spectral_norm: bool = False,
        norm: Literal["batch", "instance", "none"] | None = None,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        if norm is None:
            norm = "none" if spectral_norm else "batch"
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")
        self.in_channels = in_channels
        self.n_layers = n_layers

        def conv(in_c: int, out_c: int, stride: int, bias: bool) -> nn.Module:
            layer = nn.Conv2d(in_c, out_c, kernel_size=4, stride=stride, padding=1, bias=bias)
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if bias:
                nn.init.zeros_(layer.bias)
            return apply_spectral_norm(layer) if spectral_norm else layer

        def normalisation(channels: int) -> list[nn.Module]:
            if norm == "batch":
                layer = nn.BatchNorm2d(channels)
                nn.init.normal_(layer.weight, 1.0, 0.02)
                nn.init.zeros_(layer.bias)
                return [layer]
            if norm == "instance":
                return [nn.InstanceNorm2d(channels)]
            return []

        # A convolution followed by batch norm needs no bias (pix2pix convention).
        hidden_bias = norm != "batch"
        layers: list[nn.Module] = [
            conv(in_channels, base_channels, stride=2, bias=True),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = base_channels
        for k in range(1, n_layers + 1):
            next_width = base_channels * min(2**k, 8)
            stride = 2 if k < n_layers else 1
            layers += [conv(width, next_width, stride=stride, bias=hidden_bias)]
            layers += normalisation(next_width)
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            width = next_width
        layers.append(conv(width, 1, stride=1, bias=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class AdversarialLoss(nn.Module):
    """GAN loss on discriminator logits ``prediction``; returns a scalar (mean over the patch map).

    - ``'vanilla'``: binary cross-entropy with logits against ``real_label`` / ``fake_label``.
    - ``'lsgan'``: mean squared error against the label (Mao et al. 2017).
    - ``'hinge'``: discriminator ``relu(1 - D)`` on real and ``relu(1 + D)`` on fake;
      generator ``-mean(D)`` (``target_is_real`` is then ignored).

    The generator calls it with ``target_is_real=True, is_discriminator=False``.
    ``loss_weight`` multiplies the loss only when ``is_discriminator`` is False: it
    balances the adversarial term against the other terms of the restorer's loss,
    while the discriminator's own loss is used unweighted (BasicSR convention).
    """

    def __init__(
        self,
        gan_type: Literal["vanilla", "lsgan", "hinge"] = "lsgan",
        loss_weight: float = 1.0,
        real_label: float = 1.0,
        fake_label: float = 0.0,
    ) -> None:
        super().__init__()
        if gan_type not in ("vanilla", "lsgan", "hinge"):
            raise ValueError(f"gan_type must be 'vanilla', 'lsgan' or 'hinge', got {gan_type!r}")
        self.gan_type = gan_type
        self.loss_weight = float(loss_weight)
        self.real_label = float(real_label)
        self.fake_label = float(fake_label)

    def forward(self, prediction: torch.Tensor, target_is_real: bool, is_discriminator: bool = False) -> torch.Tensor:
        if self.gan_type == "hinge":
            if is_discriminator:
                sign = -1.0 if target_is_real else 1.0
                loss = F.relu(1.0 + sign * prediction).mean()
            else:
                loss = -prediction.mean()
        else:
            label = self.real_label if target_is_real else self.fake_label
            target = torch.full_like(prediction, label)
            if self.gan_type == "vanilla":
                loss = F.binary_cross_entropy_with_logits(prediction, target)
            else:
                loss = F.mse_loss(prediction, target)
        return loss if is_discriminator else self.loss_weight * loss

    def extra_repr(self) -> str:
        return f"gan_type={self.gan_type!r}, loss_weight={self.loss_weight}"
