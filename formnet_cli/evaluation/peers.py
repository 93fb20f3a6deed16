"""Peer models for side-by-side measurement: DnCNN read from its MatConvNet files.

The published DnCNN models (Zhang et al., 2017, cszn/DnCNN) ship as MatConvNet ``.mat``
files in MATLAB's v7.3 format, which is HDF5. This module reads them with ``h5py`` (an
optional dependency: ``pip install formnet[bench]``) into a plain PyTorch stack of 3x3
convolutions and ReLUs. The network predicts the residual, so

    restored = x - net(x),    x in [0, 1] (gray: 1 channel, color: RGB).

Peer weights are a yardstick only: they are read from wherever the user keeps them
(``FORMNET_PEERS`` or ``--peers-root``), never copied, shipped or used to initialise formnet.

Layout of a file, as h5py shows it: ``net/layers`` is an ``(N, 1)`` array of object
references, one per layer; each points at a group (a MATLAB struct) whose ``type`` is a
``uint16`` char array (``conv`` or ``relu``) and, for a convolution, whose ``weights`` is a
``(2, 1)`` array of references to ``W`` and ``b``. HDF5 stores MATLAB's column-major arrays
with their axes reversed, so the filter bank ``W`` of MATLAB shape ``(kh, kw, in, out)``
appears as ``(out, in, kw, kh)``; MATLAB drops trailing singleton axes, so a last layer with
one output channel appears as ``(in, kw, kh)``. MatConvNet's ``vl_nnconv`` is a
cross-correlation, like ``torch.nn.functional.conv2d``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from formnet_cli.errors import FormnetError

__all__ = [
    "DNCNN_DENOISE_SIGMAS",
    "DnCNN",
    "PeerModelError",
    "default_peers_root",
    "dncnn_path",
    "load_dncnn",
    "read_matconvnet_layers",
]

DNCNN_DENOISE_SIGMAS = (15, 25, 50)
"""Noise levels with a published non-blind DnCNN-S model (gray and color)."""


class PeerModelError(FormnetError):
    """A peer model file that is missing or cannot be read."""


@dataclass(frozen=True)
class ConvLayer:
    """One MatConvNet convolution in PyTorch's layout."""

    weight: np.ndarray  # (out, in, kh, kw), float32
    bias: np.ndarray  # (out,), float32
    padding: tuple[int, int, int, int]  # top, bottom, left, right (MatConvNet order)
    stride: int = 1
    dilation: int = 1


class DnCNN(nn.Module):
    """A MatConvNet ``conv``/``relu`` stack whose output is subtracted from its input.

    ``forward(x)`` returns ``x - body(x)`` for ``x`` of shape ``(B, C, H, W)`` in [0, 1];
    the result is not clipped. Any image size works (every convolution keeps the size).

    >>> layer = ConvLayer(np.zeros((1, 1, 3, 3), np.float32), np.zeros(1, np.float32), (1, 1, 1, 1))
    >>> DnCNN([layer, "relu", layer])(torch.ones(1, 1, 4, 4)).mean().item()
    1.0
    """

    def __init__(self, layers: list[ConvLayer | str]) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for layer in layers:
            if layer == "relu":
                modules.append(nn.ReLU(inplace=True))
                continue
            assert isinstance(layer, ConvLayer)
            out_channels, in_channels, kernel_h, kernel_w = layer.weight.shape
            top, bottom, left, right = layer.padding
            symmetric = top == bottom and left == right
            if not symmetric:
                modules.append(nn.ZeroPad2d((left, right, top, bottom)))
            conv = nn.Conv2d(in_channels, out_channels, (kernel_h, kernel_w), stride=layer.stride,
                             padding=(top, left) if symmetric else 0, dilation=layer.dilation)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(layer.weight))
                conv.bias.copy_(torch.from_numpy(layer.bias))
            modules.append(conv)
        if not modules or not isinstance(modules[0], (nn.Conv2d, nn.ZeroPad2d)):
            raise PeerModelError("a DnCNN network must start with a convolution")
        self.body = nn.Sequential(*modules)
        first = next(m for m in modules if isinstance(m, nn.Conv2d))
        self.channels = first.in_channels
        self.depth = sum(isinstance(m, nn.Conv2d) for m in modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


def _matlab_string(dataset) -> str:
    return "".join(chr(int(c)) for c in np.asarray(dataset[()]).ravel())


def _matlab_array(dataset) -> np.ndarray:
    """A numeric MATLAB array in MATLAB's axis order (undo HDF5's axis reversal)."""
    return np.asarray(dataset[()]).transpose()


def _matlab_ints(group, name: str, default: int) -> list[int]:
    if name not in group:
        return [default]
    return [int(v) for v in np.asarray(group[name][()]).ravel()]


def read_matconvnet_layers(path: str | os.PathLike[str]) -> list[ConvLayer | str]:
    """Read the ``conv`` and ``relu`` layers of a MatConvNet v7.3 ``.mat`` file.

    Raises :class:`PeerModelError` for a missing or unreadable file or a layer type other
    than ``conv``/``relu`` (DnCNN's batch normalisation is folded into its convolutions).
    """
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise PeerModelError("reading DnCNN .mat files needs h5py: pip install 'formnet[bench]'") from error
    path = Path(path)
    if not path.is_file():
        raise PeerModelError(f"{path}: no such DnCNN model file")
    layers: list[ConvLayer | str] = []
    try:
        with h5py.File(path, "r") as handle:
            references = np.asarray(handle["net/layers"][()]).ravel()
            for index, reference in enumerate(references):
                group = handle[reference]
                kind = _matlab_string(group["type"])
                if kind == "relu":
                    leak = float(np.asarray(group["leak"][()]).ravel()[0]) if "leak" in group else 0.0
                    if leak != 0.0:
                        raise PeerModelError(f"{path}: layer {index} is a leaky ReLU ({leak}), not supported")
                    layers.append("relu")
                elif kind == "conv":
                    weight_ref, bias_ref = np.asarray(group["weights"][()]).ravel()[:2]
                    matlab_w = _matlab_array(handle[weight_ref]).astype(np.float32)
                    # Restore the trailing singleton axes MATLAB drops: (kh, kw, in, out).
                    matlab_w = matlab_w.reshape(matlab_w.shape + (1,) * (4 - matlab_w.ndim))
                    bias = np.asarray(handle[bias_ref][()], dtype=np.float32).ravel()
                    weight = np.ascontiguousarray(matlab_w.transpose(3, 2, 0, 1))
                    if bias.shape != (weight.shape[0],):
                        raise PeerModelError(f"{path}: layer {index} has {bias.size} biases for "
                                             f"{weight.shape[0]} filters")
                    pad = _matlab_ints(group, "pad", 0)
                    padding = tuple(pad * 4 if len(pad) == 1 else pad)
                    stride = _matlab_ints(group, "stride", 1)
                    dilate = _matlab_ints(group, "dilate", 1)
                    if len(set(stride)) != 1 or len(set(dilate)) != 1 or len(padding) != 4:
                        raise PeerModelError(f"{path}: layer {index} has anisotropic stride or dilation")
                    layers.append(ConvLayer(weight, bias, padding, stride[0], dilate[0]))  # type: ignore[arg-type]
                else:
                    raise PeerModelError(f"{path}: layer {index} has unsupported type {kind!r}")
    except (OSError, KeyError, ValueError) as error:
        raise PeerModelError(f"{path}: not a MatConvNet v7.3 DnCNN file ({error})") from error
    return layers


def load_dncnn(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> DnCNN:
    """Build the :class:`DnCNN` a MatConvNet file describes, in eval mode on ``device``."""
    return DnCNN(read_matconvnet_layers(path)).to(device).eval()


def default_peers_root() -> Path:
    """``$FORMNET_PEERS`` or, next to the data sets, ``<data root>/../peers``."""
    if os.environ.get("FORMNET_PEERS"):
        return Path(os.environ["FORMNET_PEERS"])
    data_root = Path(os.environ.get("FORMNET_DATA", "../shared/data"))
    return data_root.parent / "peers"


def dncnn_path(root: str | os.PathLike[str], task: str, channels: int,
               sigma: float | None = None) -> Path | None:
    """The DnCNN file for a task, or ``None`` when there is no published model for it.

    Denoising uses the non-blind DnCNN-S of the same sigma (15, 25, 50; gray or color);
    JPEG and super-resolution use the blind gray DnCNN-3. ``root`` is the folder with the
    ``.mat`` files (``.../peers/dncnn``) or its parent.
    """
    folder = Path(root)
    if (folder / "dncnn").is_dir():
        folder = folder / "dncnn"
    if task == "denoise":
        if sigma is None or float(sigma) not in DNCNN_DENOISE_SIGMAS:
            return None
        name = f"{'color_' if channels == 3 else ''}sigma={int(sigma)}.mat"
    elif task in ("jpeg", "sr"):
        if channels != 1:
            return None
        name = "DnCNN3.mat"
    else:
        raise ValueError(f"unknown task {task!r}")
    path = folder / name
    return path if path.is_file() else None
