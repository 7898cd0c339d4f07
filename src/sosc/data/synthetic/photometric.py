"""The per-view photometric change: a tone curve per channel, sometimes blur and noise.

Drawn independently for each view (:func:`sample_photometric`) and applied to the finished
8-bit image (:meth:`Photometric.apply`), so the two views of a pair differ in colour and
quality as well as in geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage


@dataclass(frozen=True, eq=False)
class Photometric:
    """Per-view photometric change, applied to the 8-bit image.

    Attributes:
        gamma: exponent of the tone curve (on values in [0, 1]).
        gains: per-channel (R, G, B) gains, after the gamma.
        contrast: contrast factor about mid-grey 0.5.
        brightness: offset added last, in [0, 1] units.
        blur_sigma: Gaussian blur sigma in px (0: none).
        noise_sigma: standard deviation of the grey noise, in [0, 1] units (0: none).
        noise_seed: seed of the noise's own generator.
    """

    gamma: float
    gains: tuple[float, float, float]
    contrast: float
    brightness: float
    blur_sigma: float
    noise_sigma: float
    noise_seed: int

    def apply(self, image: Image.Image) -> Image.Image:
        """The changed RGB image: a per-channel tone curve, then blur, then grey noise."""
        x = np.arange(256) / 255.0
        gains = np.asarray(self.gains)[:, None]
        y = ((x[None] ** self.gamma) * gains - 0.5) * self.contrast + 0.5 + self.brightness  # (3, 256)
        image = image.point(np.clip(np.floor(y * 255 + 0.5), 0, 255).astype(int).ravel().tolist())
        if self.blur_sigma <= 0 and self.noise_sigma <= 0:
            return image
        arr = np.asarray(image, dtype=np.float32)
        if self.blur_sigma > 0:
            arr = ndimage.gaussian_filter(arr, (self.blur_sigma, self.blur_sigma, 0), truncate=2.5)
        if self.noise_sigma > 0:
            noise = np.random.default_rng(self.noise_seed).standard_normal(arr.shape[:2], dtype=np.float32)
            arr += (noise * np.float32(self.noise_sigma * 255))[..., None]
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def sample_photometric(rng: np.random.Generator) -> Photometric:
    """A random change: gamma ``exp(U(-0.25, 0.25))``, gains 0.85..1.15, contrast 0.7..1.3,
    brightness -0.1..0.1, blur (sigma 0.4..1.2 px) with probability 0.35 and noise (sigma
    0.005..0.03) with probability 0.5."""
    return Photometric(
        gamma=float(np.exp(rng.uniform(-0.25, 0.25))),
        gains=tuple(float(g) for g in rng.uniform(0.85, 1.15, 3)),
        contrast=float(rng.uniform(0.7, 1.3)),
        brightness=float(rng.uniform(-0.1, 0.1)),
        blur_sigma=float(rng.uniform(0.4, 1.2)) if rng.random() < 0.35 else 0.0,
        noise_sigma=float(rng.uniform(0.005, 0.03)) if rng.random() < 0.5 else 0.0,
        noise_seed=int(rng.integers(2**31)),
    )
