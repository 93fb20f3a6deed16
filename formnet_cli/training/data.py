"""Training data: clean images held in memory, random patches, degradations on the fly.

Batch ``k`` is a pure function of ``(seed, k)``, so a resumed run sees exactly the batches
an uninterrupted one would, whichever worker makes them.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from formnet_cli.config import BLIND, ModelConfig
from formnet_cli.imaging.degradations import add_gaussian_noise, imresize, jpeg_compress, rgb_to_y
from formnet_cli.errors import FormnetError, ImageReadError
from formnet_cli.io import is_image_path, read_image, to_uint
from formnet_cli.io.atomic import write_atomically
from formnet_cli.models.formresnet import bm3d_denoise
from formnet_cli.training.config import DataConfig


@dataclass
class Batch:
    """``degraded`` and ``clean`` are (B, C, P, P) float32 in [0, 1]; ``level`` is (B,).

    ``formatted`` holds precomputed formatter outputs (BM3D) when the model uses them.
    """

    degraded: torch.Tensor
    clean: torch.Tensor
    level: torch.Tensor
    formatted: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.degraded), move(self.clean), move(self.level), move(self.formatted))


def list_images(folders: list[str]) -> list[Path]:
    """The image files below ``folders``, as ``formnet restore --recursive`` finds them: hidden
    files and folders (``._photo.png`` of macOS, ``.ipynb_checkpoints``) and what is not a
    regular file (a FIFO, a link loop) are left out; a missing folder, or none holding images,
    is a one-line :class:`FormnetError`."""
    for folder in folders:
        if not Path(folder).is_dir():
            raise FormnetError(f"{folder}: no such image folder (data.train_dirs / data.val_dir)")
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*")
                   if is_image_path(p) and not _is_hidden(p.relative_to(folder)) and p.is_file())
    if not paths:
        raise FormnetError(f"no images in {', '.join(folders)}")
    return paths


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def holdout_split(paths: list[Path], holdout: int) -> tuple[list[Path], list[Path]]:
    """``(training, validation)``: ``holdout`` images evenly spaced in name order go to validation."""
    if holdout <= 0:
        return paths, []
    if holdout >= len(paths):
        raise FormnetError(f"data.val_holdout ({holdout}) leaves no training image of {len(paths)}")
    step = len(paths) / holdout
    chosen = {int(i * step + step / 2) for i in range(holdout)}
    return ([p for i, p in enumerate(paths) if i not in chosen],
            [p for i, p in enumerate(paths) if i in chosen])


def load_images(folders: list[str] | list[Path], channels: int, limit: int = 0, luma: bool = False,
                holdout: int = 0, part: str = "train") -> list[np.ndarray]:
    """Decode every image once, as uint8 ``H x W x C``: gray (Pillow's ``L`` of colour), ``RGB``
    (gray repeated), or with ``luma`` the Y channel of MATLAB's ``rgb2ycbcr`` of colour (what
    super-resolution is measured on).

    Images are read as restore reads them (:func:`formnet_cli.io.read_image`): turned upright by
    their EXIF orientation, 16-bit samples rounded to 8 bits, refused over the pixel limit. An
    unreadable image is a one-line :class:`FormnetError` naming it.

    With ``holdout``, ``part`` picks the ``"train"`` or ``"val"`` side of :func:`holdout_split`.
    """
    training, validation = holdout_split(list_images([str(f) for f in folders]), holdout)
    paths = validation if part == "val" else training
    if limit:
        paths = paths[:limit]

    def decode(path: Path) -> np.ndarray:
        try:
            pixels = to_uint(read_image(path).pixels, 8)
        except ImageReadError as error:
            reason = str(error).removeprefix(f"{path}: ")
            raise FormnetError(f"{path}: cannot read this training image ({reason}); "
                               "move it out of the data folder") from None
        if channels == 3:
            return pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)
        if pixels.shape[2] == 1:
            return pixels
        if luma:
            return np.round(rgb_to_y(pixels / 255.0) * 255).astype(np.uint8)[..., None]
        return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))[..., None]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(decode, paths))


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def hue_rotation(angle: float) -> np.ndarray:
    """The 3 x 3 rotation of RGB about the grey axis by ``angle`` radians (greys stay put)."""
    axis = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return (np.cos(angle) * np.eye(3) + np.sin(angle) * cross
            + (1 - np.cos(angle)) * np.outer(axis, axis)).astype(np.float32)


def color_jitter(patch: np.ndarray, rng: np.random.Generator, saturation_range: list[float]) -> np.ndarray:
    """A clean RGB patch in [0, 1] with new colours: channels permuted, rotated in RGB (half the
    time about the grey axis, a hue rotation; otherwise any rotation about mid-grey, which puts
    fine detail into the colour channels, as stained glass and woven fabric have it and muted
    photos do not), saturation scaled (log-uniform in ``saturation_range``), clipped to [0, 1].

    Applied before the noise, so the noise stays the protocol's white Gaussian noise.
    """
    patch = patch[..., rng.permutation(3)]
    if rng.random() < 0.5:
        patch = patch @ hue_rotation(float(rng.uniform(0, 2 * np.pi))).T
    else:  # any rotation about mid-grey: detail in brightness becomes detail in colour too
        rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        patch = 0.5 + (patch - 0.5) @ rotation.T
    grey = (patch @ _LUMA)[..., None]
    low, high = np.log(saturation_range[0]), np.log(saturation_range[1])
    patch = grey + float(np.exp(rng.uniform(low, high))) * (patch - grey)
    return np.clip(patch, 0.0, 1.0).astype(np.float32)


def augment(patch: np.ndarray, mode: int) -> np.ndarray:
    """One of the 8 flips and rotations of the square (mode 0..7)."""
    if mode & 4:
        patch = patch[:, ::-1]
    return np.rot90(patch, k=mode & 3, axes=(0, 1))


class PatchBatches(torch.utils.data.Dataset):
    """Map-style data set whose item ``k`` is the whole training batch of step ``k``."""

    def __init__(self, images: list[np.ndarray], model: ModelConfig, data: DataConfig, seed: int,
                 pairs: list[np.ndarray] | None = None, formatted: dict | None = None) -> None:
        self.images = images
        self.model = model
        self.data = data
        self.seed = seed
        self.pairs = pairs
        self.formatted = formatted

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, step])
        size = self.data.patch_size
        task = self.model.task
        clean, degraded, levels, formatted = [], [], [], []
        for _ in range(self.data.batch_size):
            index = int(rng.integers(len(self.images)))
            mode = int(rng.integers(8))
            if task == "sr":
                scale = int(rng.choice(self.data.scales))
                high, low = self._crop_pair(rng, self.images[index], self.pairs[index][scale], scale)
                clean.append(augment(high, mode))
                degraded.append(augment(low, mode))
                levels.append(scale / 4.0)
                continue
            if self.formatted is not None:
                sigma = float(rng.choice(self.data.bm3d_sigmas))
                noisy, bm3d = self.formatted[(index, sigma)]
                stack = np.concatenate([self.images[index] / 255.0, noisy, bm3d], axis=2)
                patch = augment(_crop(rng, stack, size), mode)
                channels = self.model.channels
                clean.append(patch[..., :channels])
                degraded.append(patch[..., channels:2 * channels])
                formatted.append(patch[..., 2 * channels:])
                levels.append(sigma / 255.0)
                continue
            patch = augment(_crop(rng, self.images[index], size), mode)
            if task == "denoise":
                pixels = patch / 255.0
                colour = patch.shape[2] == 3
                if colour and self.data.independent_channels > 0 and rng.random() < self.data.independent_channels:
                    pixels = self._independent_channels(rng, pixels)
                elif colour and self.data.color_augment > 0 and rng.random() < self.data.color_augment:
                    pixels = color_jitter(pixels, rng, self.data.saturation_range)
                clean.append(pixels)
                sigma = self._draw_sigma(rng)
                noise = rng.standard_normal(patch.shape, dtype=np.float32) * (sigma / 255.0)
                degraded.append(pixels + noise)
                levels.append(sigma / 255.0)
            else:  # jpeg
                clean.append(patch / 255.0)
                quality = int(rng.integers(self.data.quality_range[0], self.data.quality_range[1] + 1))
                pixels = patch[..., 0] if patch.shape[2] == 1 else patch
                compressed = jpeg_compress(np.ascontiguousarray(pixels), quality)
                degraded.append(compressed.reshape(patch.shape) / 255.0)
                blind = rng.random() < self.data.blind_probability
                levels.append(BLIND if blind else quality / 100.0)
        return Batch(_stack(degraded), _stack(clean), torch.tensor(levels, dtype=torch.float32),
                     _stack(formatted) if formatted else None)

    def _independent_channels(self, rng: np.random.Generator, first: np.ndarray) -> np.ndarray:
        """An RGB patch whose channels are the brightness of ``first`` and of two other random
        crops, in random order: detail that lies in colour only."""
        size = self.data.patch_size
        planes = [first @ _LUMA]  # a colour model's images are RGB (gray ones repeated)
        for _ in range(2):
            other = augment(_crop(rng, self.images[int(rng.integers(len(self.images)))], size),
                            int(rng.integers(8))) / 255.0
            planes.append(other @ _LUMA)
        return np.stack([planes[i] for i in rng.permutation(3)], axis=2).astype(np.float32)

    def _draw_sigma(self, rng: np.random.Generator) -> float:
        """A training sigma: from ``sigma_focus_range`` for that share of patches, else the range."""
        share = self.data.sigma_focus_share
        if share > 0 and rng.random() < share:
            return float(rng.uniform(*self.data.sigma_focus_range))
        return float(rng.uniform(*self.data.sigma_range))

    def _crop_pair(self, rng: np.random.Generator, high: np.ndarray, upscaled: np.ndarray,
                   scale: int) -> tuple[np.ndarray, np.ndarray]:
        """Aligned crops of the HR image and its bicubic down-up version (offsets on the LR grid)."""
        size = self.data.patch_size
        top = int(rng.integers((high.shape[0] - size) // scale + 1)) * scale
        left = int(rng.integers((high.shape[1] - size) // scale + 1)) * scale
        window = (slice(top, top + size), slice(left, left + size))
        return high[window] / 255.0, upscaled[window]


def _crop(rng: np.random.Generator, image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    if height < size or width < size:
        image = np.pad(image, ((0, max(0, size - height)), (0, max(0, size - width)), (0, 0)),
                       mode="reflect")
        height, width = image.shape[:2]
    top = int(rng.integers(height - size + 1))
    left = int(rng.integers(width - size + 1))
    return image[top:top + size, left:left + size]


def _stack(patches: list[np.ndarray]) -> torch.Tensor:
    array = np.stack([np.ascontiguousarray(p) for p in patches]).astype(np.float32)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


# -- precomputed inputs -------------------------------------------------------------------------
def bicubic_pairs(images: list[np.ndarray], scales: list[int], cache_dir: Path) -> list[dict[int, np.ndarray]]:
    """For each HR image (cropped to a multiple of 12) and scale: bicubic(down(HR)) in [0, 1].

    Computed once with MATLAB-compatible bicubic resizing and cached on disk.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)

    def one(image: np.ndarray) -> dict[int, np.ndarray]:
        key = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()[:16]
        result = {}
        for scale in scales:
            path = cache_dir / f"bicubic-{key}-x{scale}.npy"
            if path.exists():
                result[scale] = np.load(path)
                continue
            high = image / 255.0
            low = imresize(high, 1.0 / scale)
            up = np.clip(imresize(low, float(scale)), 0, 1).astype(np.float32)
            up = up.reshape(high.shape)
            write_atomically(path, lambda handle: np.save(handle, up))
            result[scale] = up
        return result

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, images))


def bm3d_outputs(images: list[np.ndarray], sigmas: list[float], seed: int, cache_dir: Path,
                 workers: int = 0) -> dict[tuple[int, float], tuple[np.ndarray, np.ndarray]]:
    """Noisy images and their BM3D outputs for every image and sigma, cached on disk.

    BM3D takes seconds per image, so it runs once per (image, sigma, seed), in ``workers``
    processes when more than one (the bm4d library under bm3d is not thread-safe: two threads
    deadlock in it, so never a thread pool).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}
    missing: list[tuple[tuple[int, float], np.ndarray, Path]] = []
    for index, image in enumerate(images):
        key = hashlib.sha1(image.tobytes()).hexdigest()[:16]
        for sigma in map(float, sigmas):
            path = cache_dir / f"bm3d-{key}-s{sigma:g}-seed{seed}.npz"
            noisy = add_gaussian_noise(image / 255.0, sigma, seed=seed + index).astype(np.float32)
            if path.exists():
                results[index, sigma] = noisy, np.load(path)["formatted"]
            else:
                missing.append(((index, sigma), noisy, path))
    if not missing:
        return results
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            outputs = list(pool.map(_bm3d_to_file, missing, chunksize=4))
    else:
        outputs = [_bm3d_to_file(item) for item in missing]
    for (item, noisy, _), output in zip(missing, outputs):
        results[item] = noisy, output
    return results


def _bm3d_to_file(task: tuple[tuple[int, float], np.ndarray, Path]) -> np.ndarray:
    """BM3D of one noisy image, written atomically to its cache file."""
    (_, sigma), noisy, path = task
    output = bm3d_denoise(noisy.astype(np.float64), sigma / 255.0).astype(np.float32)
    write_atomically(path, lambda handle: np.savez(handle, formatted=output))
    return output
