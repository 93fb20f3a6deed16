"""``--sigma auto`` on noise that grows with brightness, as a camera sensor's does.

    python benchmarks/camera_noise.py --data ../shared/data/CBSD68 [--color] [--limit N]

Sensor noise is Poisson-Gaussian: its variance is ``a * x + b**2`` for a pixel of linear
brightness ``x`` (photon shot noise plus read noise), so one sigma cannot fit a whole photo.
Two kinds of image, each at the ``(a, b)`` pairs of ``--levels`` (``b`` on the 0-255 scale):

- ``linear``: the noise added to the image's values, ``noisy = x + sqrt(a x + b^2) n``, not
  clipped (as ``../shared/BENCHMARK.md`` adds white noise);
- ``srgb``: the image decoded to linear light, the noise added there, then encoded back to
  sRGB, clipped to [0, 1] and rounded to 8 bits, as a camera writes a photo (noisier shadows).

``n`` is ``numpy.random.RandomState(0).normal(size=shape)``, fresh per image (the protocol's
seeding), by :func:`formnet_cli.imaging.degradations.add_camera_noise`. Methods, all the default
denoiser with its card's ensemble: one sigma from the white-noise estimator (what
``--sigma auto`` did before it measured the noise level function), ``--sigma auto`` (a sigma
map where the noise varies with brightness), and the true per-pixel sigma (the best a sigma
map can do; for ``srgb``: the noise's linear-light sigma times the slope of the sRGB curve at
the clean pixel, averaged over the channels). For gray images the blind DnCNN-3 from
``../shared/peers`` runs on the same inputs as a yardstick (trained blind on white noise of
sigma 0-55). PSNR against the clean 8-bit image, as in the protocol.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from formnet_cli import api
from formnet_cli.inference import engine as engine
from formnet_cli.imaging import estimation as estimation
from formnet_cli.imaging.degradations import add_camera_noise
from formnet_cli.evaluation.datasets import read_dataset
from formnet_cli.evaluation.protocol import to_uint8
from formnet_cli.imaging.metrics import psnr
from formnet_cli.evaluation.peers import default_peers_root, dncnn_path, load_dncnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/CBSD68"))
    parser.add_argument("--color", action="store_true", help="read the images as RGB (default gray)")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--levels", default="linear:0.004:2,linear:0.01:2,srgb:0.002:1,srgb:0.006:2",
                        help="kind:a:b triples, b on the 0-255 scale")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peers", type=Path, default=None,
                        help="folder with DnCNN3.mat (default: ../shared/peers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = read_dataset(args.data, channels="color" if args.color else "gray",
                          limit=args.limit or None)
    loaded = api.load_model(task="denoise", channels=3 if args.color else 1, device="cpu")
    passes = api.ensemble_passes("auto", loaded)
    dncnn_file = None if args.color else dncnn_path(args.peers or default_peers_root(), "jpeg", 1)
    dncnn = load_dncnn(dncnn_file) if dncnn_file else None
    print(f"{args.data.name} ({'color' if args.color else 'gray'}), {len(images)} images, "
          f"model {loaded.name}, {passes} passes")
    print("| noise | a | b | mean sigma | images with a sigma map | one estimated sigma "
          "| `--sigma auto` | true per-pixel sigma | gain of auto (dB) | DnCNN-3 (blind) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for triple in args.levels.split(","):
        kind, a_text, b_text = triple.split(":")
        a, b = float(a_text), float(b_text) / 255.0
        mapped, sigmas, white, auto, oracle, peer = 0, [], [], [], [], []
        for _name, clean in images:
            noisy, true_map = add_camera_noise(clean, a, b, kind)
            score = lambda restored: psnr(clean, to_uint8(restored))  # noqa: E731
            one_sigma = estimation.estimate_noise_sigma(noisy)
            white.append(score(api.restore(noisy, "denoise", sigma=min(one_sigma, 75.0),
                                           model=loaded, device="cpu")))
            result = api.restore_with_info(noisy, "denoise", sigma="auto", model=loaded, device="cpu")
            auto.append(score(result.image))
            mapped += result.sigma_map_range is not None
            sigmas.append(float(true_map.mean()) * 255.0)
            level = torch.from_numpy(np.clip(true_map, 0.0, 75.0 / 255.0)[None].astype(np.float32))
            tensor = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))
            best = engine.restore_tensor(loaded.model, tensor, level, ensemble=passes)
            oracle.append(score(best.numpy().transpose(1, 2, 0)))
            if dncnn is not None:
                with torch.inference_mode():
                    peer.append(score(dncnn(tensor[None])[0].numpy().transpose(1, 2, 0)))
        gain = np.mean(auto) - np.mean(white)
        print(f"| {kind} | {a:g} | {b * 255:g} | {np.mean(sigmas):.1f} | {mapped} / {len(images)} "
              f"| {np.mean(white):.2f} | {np.mean(auto):.2f} | {np.mean(oracle):.2f} | {gain:+.2f} "
              f"| {f'{np.mean(peer):.2f}' if peer else '-'} |", flush=True)


if __name__ == "__main__":
    main()
