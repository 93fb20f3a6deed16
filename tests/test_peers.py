"""The DnCNN yardstick: the MatConvNet reader (formnet_cli.evaluation.peers) and the DnCNN
baseline (formnet_cli.evaluation.baselines), on hand-made ``.mat`` files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from formnet_cli.evaluation.baselines import DegradedInput, DnCNNMethod
from formnet_cli.evaluation.peers import load_dncnn
from formnet_cli.evaluation.protocol import Setting, degrade, score


def _write_matconvnet(path: Path, layers: list) -> None:
    """A MATLAB v7.3-like file: net/layers (N x 1 object refs) -> struct groups.

    Each conv layer is ``("conv", W, b)`` with ``W`` in MATLAB's ``(kh, kw, in, out)``;
    it is stored as MATLAB does: trailing singleton axes dropped, axes reversed by HDF5.
    """
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as handle:
        refs = handle.create_group("#refs#")
        layer_refs = []
        for index, layer in enumerate(layers):
            group = refs.create_group(f"layer{index}")
            kind = layer[0]
            group["type"] = np.array([[ord(c)] for c in kind], dtype=np.uint16)
            if kind == "conv":
                weight, bias = layer[1], layer[2]
                shape = list(weight.shape)
                while len(shape) > 2 and shape[-1] == 1:
                    shape.pop()
                stored_w = refs.create_dataset(f"w{index}", data=np.transpose(weight.reshape(shape)))
                stored_b = refs.create_dataset(f"b{index}", data=np.asarray(bias, np.float32).reshape(1, -1))
                group.create_dataset("weights", data=np.array([[stored_w.ref], [stored_b.ref]],
                                                              dtype=h5py.ref_dtype))
                group["pad"] = np.array([[1.0]])
                group["stride"] = np.array([[1.0]])
            else:
                group["leak"] = np.array([[0.0]])
            layer_refs.append(group.ref)
        net = handle.create_group("net")
        net.create_dataset("layers", data=np.array([[r] for r in layer_refs], dtype=h5py.ref_dtype))


def test_dncnn_reader_single_conv_matches_hand_computation(tmp_path: Path) -> None:
    kernel = np.arange(1, 10, dtype=np.float32).reshape(3, 3)  # rows: 1 2 3 / 4 5 6 / 7 8 9
    path = tmp_path / "one.mat"
    _write_matconvnet(path, [("conv", kernel.reshape(3, 3, 1, 1), [0.5])])
    net = load_dncnn(path)
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 1.0
    restored = net(impulse)[0, 0]
    # Cross-correlation with zero padding: y[i, j] = sum K[a, b] x[i + a - 1, j + b - 1] + b,
    # so an impulse at (2, 2) shows the kernel flipped: y[1, 1] = K[2, 2] = 9, y[1, 3] = K[2, 0] = 7.
    assert restored[2, 2].item() == pytest.approx(1 - (5 + 0.5))
    assert restored[1, 1].item() == pytest.approx(-(9 + 0.5))
    assert restored[1, 3].item() == pytest.approx(-(7 + 0.5))
    assert restored[3, 1].item() == pytest.approx(-(3 + 0.5))
    assert restored[2, 1].item() == pytest.approx(-(6 + 0.5))  # K[1, 2]
    assert restored[0, 0].item() == pytest.approx(-0.5)


def test_dncnn_reader_relu_stack_and_dropped_singleton(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3)).astype(np.float32)
    first = np.stack([kernel, -kernel], axis=-1)[:, :, None, :]  # (3, 3, in 1, out 2)
    last = np.zeros((3, 3, 2, 1), np.float32)  # MATLAB stores it as (3, 3, 2)
    last[1, 1, 0, 0], last[1, 1, 1, 0] = 1.0, -1.0  # relu(Kx) - relu(-Kx) = Kx
    path = tmp_path / "stack.mat"
    _write_matconvnet(path, [("conv", first, [0.0, 0.0]), ("relu",), ("conv", last, [0.0])])
    net = load_dncnn(path)
    assert net.depth == 2 and net.channels == 1
    x = torch.from_numpy(rng.random((1, 1, 6, 7)).astype(np.float32))
    expected = x - torch.nn.functional.conv2d(x, torch.from_numpy(kernel)[None, None], padding=1)
    assert torch.allclose(net(x), expected, atol=1e-5)


def test_dncnn_method_on_sr_uses_luma(tmp_path: Path, textured_image) -> None:
    path = tmp_path / "zero.mat"
    _write_matconvnet(path, [("conv", np.zeros((3, 3, 1, 1), np.float32), [0.0])])
    method = DnCNNMethod({None: load_dncnn(path)}, name="DnCNN-3")
    sample = degrade("x", textured_image(2, (36, 42), color=True), Setting("sr", 3))
    restored = method.restore(sample)  # a zero residual: exactly bicubic
    bicubic = DegradedInput().restore(sample)
    assert np.allclose(restored, bicubic, atol=1e-5)
    assert math.isclose(score(sample, restored)[0], score(sample, bicubic)[0], abs_tol=0.05)
