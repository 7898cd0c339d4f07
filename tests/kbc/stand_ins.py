"""Stand-in matchers and inputs shared by the KBC tests (imported as ``stand_ins``)."""

from __future__ import annotations

import torch
from torch import nn

from sosc.matchers.base import MatchOutput

#: METHOD.md's fixed fill-ratio zoom, one image at a time, every pass-1 prediction in the box:
#: the behaviour the window-level tests pin down (the scale-aware defaults are tested apart).
METHOD = {"zoom_px": None, "match_scales": False, "pred_box": "all"}


class Recorder(nn.Module):
    """Identity matcher (returns the source keypoints in input pixels) that records its calls."""

    def __init__(self, confidence: float | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.confidence = confidence

    def forward(self, src, trg, kps, valid):
        self.calls.append((src.clone(), trg.clone(), kps.clone(), valid.clone()))
        if self.confidence is None:
            return kps.clone()
        return MatchOutput(kps=kps.clone(), confidence=torch.full(kps.shape[:2], self.confidence))


class Collapse(nn.Module):
    """Maps every keypoint to one target point (a pass 1 that missed the object)."""

    def forward(self, src, trg, kps, valid):
        return torch.full_like(kps, 0.5 * src.shape[-1])


class ConvMatcher(nn.Module):
    """A small real computation: features by a fixed random conv, soft-argmax over cells.

    The prediction is ``kps + blend * (soft_argmax - kps)``: ``blend < 1`` keeps the
    predictions near the source keypoints (so that their box has a known size).
    """

    def __init__(self, blend: float = 1.0) -> None:
        super().__init__()
        self.blend = blend
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()

    def forward(self, src, trg, kps, valid):
        from sosc.matchers.grid import sample_at, soft_argmax

        fs, ft = self.conv(src), self.conv(trg)
        size = src.shape[-2:]
        q = sample_at(fs, kps, size)  # (B, N, C)
        scores = torch.einsum("bnc,bchw->bnhw", q, ft) / 8.0
        pos, conf = soft_argmax(scores, size, temperature=1.0)
        return MatchOutput(kps=kps + self.blend * (pos - kps), confidence=conf)


def images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def small_kps(b: int, n: int, lo: float, hi: float, seed: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, n, 2, generator=torch.Generator().manual_seed(seed))


def large_kps(b: int, n: int, lo: float, hi: float, seed: int = 1) -> torch.Tensor:
    """Random keypoints whose box spans ``[lo, hi]`` on both axes (KBC does not trigger)."""
    kps = small_kps(b, n, lo, hi, seed)
    kps[:, 0] = lo
    kps[:, 1] = hi
    return kps
