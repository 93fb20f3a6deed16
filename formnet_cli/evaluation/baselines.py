"""The methods formnet is measured against: the degraded input itself (bicubic for SR),
BM3D / CBM3D (the ``bm3d`` package) and the published DnCNN models read by
:mod:`formnet_cli.evaluation.peers`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from formnet_cli.evaluation.methods import Method, PerChannelsMethod
from formnet_cli.evaluation.peers import DnCNN, dncnn_path, load_dncnn
from formnet_cli.evaluation.protocol import Sample, Setting
from formnet_cli.imaging import degradations

__all__ = ["BM3DMethod", "DegradedInput", "DnCNNMethod", "baseline_methods"]


class DegradedInput(Method):
    """The degraded input itself (bicubic upscaling for super-resolution): the floor to beat."""

    name = "input"

    def label(self, setting: Setting) -> str:
        return "bicubic" if setting.task == "sr" else "input"

    def restore(self, sample: Sample) -> np.ndarray:
        if sample.setting.task == "sr":
            return degradations.imresize(sample.degraded, scale=int(sample.setting.level))
        return sample.degraded

    def timed(self, setting: Setting) -> bool:
        return setting.task == "sr"  # bicubic runs; the input itself is given, not computed


class BM3DMethod(Method):
    """BM3D for gray and CBM3D (opponent colour space) for RGB, given the true sigma."""

    name = "BM3D"

    def label(self, setting: Setting) -> str:
        return self.name

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        return None if setting.task == "denoise" else "BM3D is a denoiser"

    def restore(self, sample: Sample) -> np.ndarray:
        from formnet_cli.models.formresnet import bm3d_denoise

        noisy = sample.degraded.astype(np.float64)
        return bm3d_denoise(noisy, sample.setting.level / 255.0).astype(np.float32)


class DnCNNMethod(Method):
    """The published DnCNN models: DnCNN-S per sigma (gray or color), or the blind gray DnCNN-3.

    ``networks`` maps a level (sigma) to its model, or ``None`` to one model for every level
    (DnCNN-3). DnCNN-3 runs on the decoded gray JPEG, and for super-resolution on the Y channel
    of the bicubic-upscaled image (Cb and Cr stay bicubic), as in its paper. One untiled pass.
    """

    def __init__(self, networks: dict[float | None, DnCNN], *, name: str = "DnCNN",
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.networks = {level: network.to(self.device).eval() for level, network in networks.items()}
        self.name = name

    @classmethod
    def from_folder(cls, root: str | os.PathLike[str], task: str, channels: int,
                    levels: Iterable[float], device: str | torch.device = "cpu") -> DnCNNMethod | None:
        """The DnCNN models in ``root`` for ``task``; ``None`` when there are none."""
        networks: dict[float | None, DnCNN] = {}
        if task == "denoise":
            for level in levels:
                path = dncnn_path(root, task, channels, level)
                if path is not None:
                    networks[float(level)] = load_dncnn(path)
            name = "DnCNN-S" if channels == 1 else "CDnCNN-S"
        else:
            path = dncnn_path(root, task, 1)
            if path is not None:
                networks[None] = load_dncnn(path)
            name = "DnCNN-3"
        return cls(networks, name=name, device=device) if networks else None

    def _network(self, setting: Setting) -> DnCNN | None:
        return self.networks.get(None, self.networks.get(float(setting.level)))

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        network = self._network(setting)
        if network is None:
            return "no published model"
        peer_channels = network.channels
        if setting.task == "denoise" and peer_channels != channels:
            return f"model is for {'gray' if peer_channels == 1 else 'color'} images"
        if setting.task == "jpeg" and channels != 1:
            return "DnCNN-3 is a gray model"
        return None

    def run_planes(self, image: np.ndarray, setting: Setting) -> np.ndarray:
        """The DnCNN's restoration of a float ``H x W x C`` image (the network subtracts the
        noise it predicts: :class:`~formnet_cli.evaluation.peers.DnCNN`)."""
        network = self._network(setting)
        assert network is not None
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        with torch.inference_mode():
            output = network(tensor[None].to(self.device))[0]
        return output.float().cpu().numpy().transpose(1, 2, 0)

    def restore(self, sample: Sample) -> np.ndarray:
        setting = sample.setting
        if setting.task != "sr":
            return self.run_planes(sample.degraded, setting)
        upscaled = degradations.imresize(sample.degraded, scale=int(setting.level))
        if upscaled.shape[2] == 1:
            return self.run_planes(upscaled, setting)
        ycbcr = degradations.rgb_to_ycbcr(upscaled)
        ycbcr[:, :, :1] = self.run_planes(ycbcr[:, :, :1].astype(np.float32), setting)
        return degradations.ycbcr_to_rgb(ycbcr).astype(np.float32)


def baseline_methods(task: str, channels: int | Sequence[int], levels: Sequence[float], *,
                     bm3d: bool, dncnn: bool, peers_root: str | os.PathLike[str]
                     ) -> tuple[list[Method], list[str]]:
    """The methods formnet is measured against: the degraded input (always), BM3D/CBM3D and the
    published DnCNN models from ``peers_root`` where asked; notes say what was asked but is not
    there. ``channels``: the images' channel count, or those of a folder mixing gray and
    colour (denoising: DnCNN-S on the gray images and CDnCNN-S on the colour ones, one row)."""
    methods: list[Method] = [DegradedInput()]
    if bm3d:
        methods.append(BM3DMethod())
    notes = []
    if dncnn:
        root = Path(peers_root)
        counts = [channels] if isinstance(channels, int) else sorted(set(channels))
        peers = {count: DnCNNMethod.from_folder(root, task, count, levels) if root.is_dir()
                 else None for count in (counts if task == "denoise" else counts[:1])}
        found = {count: peer for count, peer in peers.items() if peer is not None}
        peer: Method | None = next(iter(found.values()), None)
        if len(found) > 1:
            peer = PerChannelsMethod(found, " / ".join(method.name for method in found.values()))
        if peer is None:
            shown = ", ".join(f"{level:g}" for level in levels)
            notes.append(f"no DnCNN model for {task} at {shown} in {root}; skipped")
        else:
            methods.append(peer)
    return methods, notes
