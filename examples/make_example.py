"""Make the README's examples: scikit-image's public-domain astronaut photo (NASA), cropped,
with Gaussian noise of sigma 25 added by the benchmark protocol (seed 0), and with simulated
camera noise (shot 0.006, read 2/255, in linear light, saved as an 8-bit sRGB photo; seed 0).

    python examples/make_example.py   # needs scikit-image (the test extra)
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from formnet_cli.imaging.degradations import add_camera_noise, add_gaussian_noise

HERE = Path(__file__).resolve().parent

clean = data.astronaut()[0:320, 96:416]
noisy = add_gaussian_noise(clean / 255.0, 25.0, seed=0)
Image.fromarray(clean).save(HERE / "astronaut.png")
Image.fromarray(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)).save(HERE / "astronaut_noisy25.png")
camera, _sigma = add_camera_noise(clean, 0.006, 2 / 255, "srgb", seed=0)
Image.fromarray(np.round(camera * 255).astype(np.uint8)).save(HERE / "astronaut_camera_noise.png")
