"""Make the README's example: scikit-image's public-domain astronaut photo (NASA), cropped,
with Gaussian noise of sigma 25 added by the benchmark protocol (seed 0).

    python examples/make_example.py   # needs scikit-image (the test extra)
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from formnet_cli.degradations import add_gaussian_noise

HERE = Path(__file__).resolve().parent

clean = data.astronaut()[0:320, 96:416]
noisy = add_gaussian_noise(clean / 255.0, 25.0, seed=0)
Image.fromarray(clean).save(HERE / "astronaut.png")
Image.fromarray(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)).save(HERE / "astronaut_noisy25.png")
