"""The cross-level loss of FormResNet (Jiao et al., CVPRW 2017): pixel, gradient, perceptual.

Every term is a module with ``loss_weight`` and ``reduction`` (``'mean'``, ``'sum'``
or ``'none'``) and returns ``loss_weight * reduce(elementwise loss)``.
:class:`CrossLevelLoss` sums named terms and reports each one, so the trainer can
log them separately. The adversarial term (:class:`AdversarialLoss`, defined in
:mod:`formnet_cli.training.discriminator` and re-exported here) is applied by the
trainer, since it needs the discriminator.

Tensors are ``(B, C, H, W)`` in [0, 1].
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from formnet_cli.training.discriminator import AdversarialLoss
from formnet_cli.training.vgg import freeze, load_vgg16_relu2_2

__all__ = [
    "AdversarialLoss",  # defined with the discriminator; re-exported so every loss is importable from here
    "CrossLevelLoss",
    "PerceptualLoss",
    "PixelLoss",
    "SobelGradientLoss",
    "reduce_loss",
    "sobel_responses",
]

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean or sum over every element, or the elementwise tensor unchanged (``'none'``)."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_same_shape(output: torch.Tensor, target: torch.Tensor) -> None:
    if output.shape != target.shape:
        raise ValueError(f"output and target shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}")


class PixelLoss(nn.Module):
    """Pixel term: ``loss_weight * reduce(rho(output - target))``.

    ``rho(d)`` is ``d**2`` (``'l2'``, the paper's choice), ``|d|`` (``'l1'``) or
    ``sqrt(d**2 + eps**2)`` (``'charbonnier'``, a differentiable L1; with
    ``eps = 1e-3`` as in LapSRN).

    >>> PixelLoss('l1', reduction='sum')(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, -3.0]]]]))
    tensor(4.)
    """

    def __init__(
        self,
        kind: Literal["l2", "l1", "charbonnier"] = "l2",
        loss_weight: float = 1.0,
        reduction: Reduction = "mean",
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        if kind not in ("l2", "l1", "charbonnier"):
            raise ValueError(f"kind must be 'l2', 'l1' or 'charbonnier', got {kind!r}")
        self.kind = kind
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction)
        self.eps = float(eps)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_same_shape(output, target)
        difference = output - target
        if self.kind == "l2":
            loss = difference.square()
        elif self.kind == "l1":
            loss = difference.abs()
        else:
            loss = torch.sqrt(difference.square() + self.eps**2)
        return self.loss_weight * reduce_loss(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"


SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel_kernels(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
    """The 3x3 Sobel kernels ``(gx, gy)``, each shaped ``(1, 1, 3, 3)``; ``gy`` is ``gx`` transposed."""
    gx = torch.tensor(SOBEL_X, dtype=dtype, device=device)
    return gx.view(1, 1, 3, 3), gx.t().contiguous().view(1, 1, 3, 3)


def sobel_responses(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel responses of every channel, same shape as ``image``.

    Cross-correlation with ``Gx = [[-1,0,1],[-2,0,2],[-1,0,1]]`` and ``Gy = Gx^T`` after one
    pixel of replicate padding ``p``:
    ``gx[i, j] = sum_r w_r (p[i+r, j+2] - p[i+r, j])`` and
    ``gy[i, j] = sum_c w_c (p[i+2, j+c] - p[i, j+c])`` with ``w = (1, 2, 1)``.
    An image increasing to the right has positive ``gx``.

    The kernel is applied in its separable form (difference first, then smoothing)
    rather than by ``F.conv2d``: the result is the same up to rounding, but equal
    neighbours give exactly zero, so a constant image has zero gradient everywhere,
    borders included (a 3x3 convolution may leave ~1e-8 rounding residue).

    >>> gx, gy = sobel_responses(torch.arange(4.0).expand(1, 1, 3, 4))
    >>> gx[0, 0, 0].tolist(), int(gy.abs().sum())
    ([4.0, 8.0, 8.0, 4.0], 0)
    """
    if image.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(image.shape)}")
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    across = padded[..., :, 2:] - padded[..., :, :-2]  # (H + 2, W): x[j+1] - x[j-1]
    gx = across[..., :-2, :] + 2 * across[..., 1:-1, :] + across[..., 2:, :]
    down = padded[..., 2:, :] - padded[..., :-2, :]  # (H, W + 2): x[i+1] - x[i-1]
    gy = down[..., :, :-2] + 2 * down[..., :, 1:-1] + down[..., :, 2:]
    return gx, gy


class SobelGradientLoss(nn.Module):
    """Gradient term: mean of the L1 distances between Sobel responses of output and target.

    ``loss = loss_weight * (reduce(|Gx*o - Gx*t|) + reduce(|Gy*o - Gy*t|)) / 2`` with
    ``Gx = [[-1,0,1],[-2,0,2],[-1,0,1]]``, ``Gy = Gx^T``, per channel, replicate padding
    (see :func:`sobel_responses`). With ``'none'`` the elementwise map
    ``(|dGx| + |dGy|) / 2`` of shape ``(B, C, H, W)`` is returned. The kernels
    (``kernel_x``, ``kernel_y``, shaped ``(1, 1, 3, 3)``) are fixed buffers, not
    trained and not saved in the state dict; they define the operator, which
    :func:`sobel_responses` evaluates in exact separable form.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction)
        kernel_x, kernel_y = sobel_kernels()
        self.register_buffer("kernel_x", kernel_x, persistent=False)
        self.register_buffer("kernel_y", kernel_y, persistent=False)

    def sobel_responses(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gx, gy)`` of ``image``, each shaped like it: the per-channel (``groups=C``)
        cross-correlation with :attr:`kernel_x` and :attr:`kernel_y`, computed exactly in
        separable form by :func:`sobel_responses`."""
        return sobel_responses(image)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_same_shape(output, target)
        output_x, output_y = self.sobel_responses(output)
        target_x, target_y = self.sobel_responses(target)
        loss = ((output_x - target_x).abs() + (output_y - target_y).abs()) / 2
        return self.loss_weight * reduce_loss(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, reduction={self.reduction!r}"


class PerceptualLoss(nn.Module):
    """Perceptual term: distance between VGG16 ``relu2_2`` features of output and target.

    ``loss = loss_weight * reduce(rho(phi(n(output)) - phi(n(target))))`` where ``n``
    replicates a gray channel to three and applies ImageNet normalisation
    (``(x - mean) / std`` on [0, 1] inputs), ``phi`` is the frozen feature extractor and
    ``rho`` is the square (``criterion='l2'``) or absolute value (``'l1'``). Target
    features are computed without gradient. With ``'none'`` the elementwise map of
    shape ``(B, 128, H/2, W/2)`` is returned.

    ``feature_extractor`` (any module taking normalised ``(B, 3, H, W)``) is used as
    given, frozen; otherwise ImageNet VGG16 weights are loaded by
    :func:`formnet_cli.training.vgg.load_vgg16_relu2_2` from ``weights_path`` or the
    torch hub cache (an error with the fix when absent).
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        reduction: Reduction = "mean",
        feature_extractor: nn.Module | None = None,
        weights_path: str | None = None,
        criterion: Literal["l2", "l1"] = "l2",
    ) -> None:
        super().__init__()
        if criterion not in ("l2", "l1"):
            raise ValueError(f"criterion must be 'l2' or 'l1', got {criterion!r}")
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction)
        self.criterion = criterion
        if feature_extractor is None:
            feature_extractor = load_vgg16_relu2_2(weights_path)
        self.feature_extractor = freeze(feature_extractor)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """The feature extractor stays in eval mode whatever the mode of the loss."""
        super().train(mode)
        self.feature_extractor.eval()
        return self

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """Gray to three channels, then ImageNet normalisation."""
        if image.dim() != 4 or image.shape[1] not in (1, 3):
            raise ValueError(f"expected a (B, 1 or 3, H, W) tensor, got shape {tuple(image.shape)}")
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        return (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``relu2_2`` features of a [0, 1] image (gray or RGB)."""
        return self.feature_extractor(self.normalise(image))

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_same_shape(output, target)
        output_features = self.features(output)
        with torch.no_grad():
            target_features = self.features(target)
        difference = output_features - target_features
        loss = difference.square() if self.criterion == "l2" else difference.abs()
        return self.loss_weight * reduce_loss(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, reduction={self.reduction!r}, criterion={self.criterion!r}"


class CrossLevelLoss(nn.Module):
    """Sum of named loss terms, each ``term(output, target)`` returning a weighted scalar.

    ``forward`` returns ``(total, values)`` where ``values`` maps each name to the
    term's detached float value, for logging. Terms that are switched off (weight 0)
    are left out by the caller rather than computed and multiplied by zero.

    >>> loss = CrossLevelLoss({'pixel': PixelLoss(), 'gradient': SobelGradientLoss(0.5)})
    >>> total, values = loss(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4))
    >>> float(total), values
    (1.0, {'pixel': 1.0, 'gradient': 0.0})
    """

    def __init__(self, terms: dict[str, nn.Module]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("the cross-level loss needs at least one term")
        for name, term in terms.items():
            if getattr(term, "reduction", "mean") == "none":
                raise ValueError(f"loss term {name!r}: reduction 'none' does not give a scalar to sum")
        self.terms = nn.ModuleDict(terms)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total = None
        values: dict[str, float] = {}
        for name, term in self.terms.items():
            value = term(output, target)
            values[name] = float(value.detach())
            total = value if total is None else total + value
        return total, values
