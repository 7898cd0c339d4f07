"""Photometric augmentation of training images (geometry untouched, keypoints unchanged)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        def draw(s: float, n: int = 1) -> torch.Tensor:
            return 1.0 + s * (2.0 * torch.rand(n, generator=generator) - 1.0)

        out = image * draw(self.brightness)
        mean = out.mean()
        out = (out - mean) * draw(self.contrast) + mean
        gray = out.mean(dim=0, keepdim=True)
        out = (out - gray) * draw(self.saturation) + gray
        out = out * draw(self.color, 3).view(3, 1, 1)
        if self.noise > 0:
            out = out + self.noise * torch.randn(out.shape, generator=generator)
        return out.clamp_(0.0, 1.0)
