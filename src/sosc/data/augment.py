"""Photometric augmentation of training images (geometry untouched, keypoints unchanged).

:class:`Photometric` draws an image's factors (:meth:`Photometric.draw`) and applies them
(:func:`apply_photometric`). A worker can draw them and leave the work to the device:
:meth:`Photometric.deferred` returns the factors and a noise seed, and
:func:`apply_photometric_batch` applies a batch of them where the batch lives (the data
path with ``resample="device"``, :func:`sosc.data.dataset.finish_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Entries of a factor vector: brightness, contrast, saturation, the three colour gains, noise std.
FACTORS = ("brightness", "contrast", "saturation", "red", "green", "blue", "noise")


def apply_photometric(image: torch.Tensor, factors: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """``image`` ``(3, H, W)`` in ``[0, 1]`` with the :data:`FACTORS` ``(7,)`` applied: brightness,
    contrast around the image mean, saturation around each pixel's grey, colour gains, then
    ``factors[6] * noise`` (``noise`` standard normal, the image's shape, or None), clamped."""
    f = factors.to(image.dtype)
    out = image * f[0]
    mean = out.mean()
    out = (out - mean) * f[1] + mean
    gray = out.mean(dim=0, keepdim=True)
    out = (out - gray) * f[2] + gray
    out = out * f[3:6].view(3, 1, 1)
    if noise is not None:
        out = out + f[6] * noise
    return out.clamp_(0.0, 1.0)


def apply_photometric_batch(images: torch.Tensor, factors: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """:func:`apply_photometric` on each image of ``images`` ``(B, 3, H, W)``, with ``factors``
    ``(B, 7)`` and the noise drawn on the images' device from a generator seeded by ``seeds``
    ``(B,)`` (so an item's noise depends on its seed alone, on any device)."""
    out = []
    for image, f, seed in zip(images, factors, seeds.tolist()):
        noise = None
        if float(f[6]) > 0:
            g = torch.Generator(device=image.device).manual_seed(int(seed))
            noise = torch.randn(image.shape, generator=g, device=image.device, dtype=image.dtype)
        out.append(apply_photometric(image, f, noise))
    return torch.stack(out) if out else images


@dataclass(frozen=True)
class Photometric:
    """Random brightness, contrast, saturation and hue-free colour gains, then noise.

    Each factor is drawn uniformly in ``[1 - s, 1 + s]``; ``noise`` is the std of added
    Gaussian noise. Input and output ``(3, H, W)`` in ``[0, 1]``.
    """

    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    color: float = 0.1
    noise: float = 0.02

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """The :data:`FACTORS` of one image ``(7,)``, drawn from ``generator``."""

        def draw(s: float, n: int = 1) -> torch.Tensor:
            return 1.0 + s * (2.0 * torch.rand(n, generator=generator) - 1.0)

        return torch.cat([draw(self.brightness), draw(self.contrast), draw(self.saturation),
                          draw(self.color, 3), torch.tensor([float(self.noise)])])

    def deferred(self, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """The factors ``(7,)`` and a noise seed, for :func:`apply_photometric_batch` later."""
        factors = self.draw(generator)
        return factors, int(torch.randint(0, 2**62, (1,), generator=generator))

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        factors = self.draw(generator)
        noise = torch.randn(image.shape, generator=generator) if self.noise > 0 else None
        return apply_photometric(image, factors, noise)
