"""Training losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sosc.errors import check_shape
from sosc.geometry import as_size


def keypoint_epe(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, size: int | Sequence[int]
) -> torch.Tensor:
    """Mean end-point error of the valid keypoints, per pair, averaged over pairs.

    Coordinates are normalised by the input's longer side, so the loss does not depend on
    the input size. Pairs without any valid keypoint are left out of the average; a batch
    with none at all gives a zero loss that still has a gradient path (never NaN).

    Args:
        pred, target: ``(B, N, 2)`` input pixels.
        valid: ``(B, N)`` bool.
        size: input ``(S_h, S_w)``.

    Returns:
        Scalar loss.

    >>> p = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]]); t = torch.zeros(1, 2, 2)
    >>> float(keypoint_epe(p, t, torch.tensor([[True, False]]), 10))
    0.5
    """
    check_shape("pred", pred, ("B", "N", 2))
    check_shape("target", target, (pred.shape[0], pred.shape[1], 2))
    check_shape("valid", valid, (pred.shape[0], pred.shape[1]))
    norm = float(max(as_size(size)))
    diff = torch.where(valid[..., None], pred - target, torch.zeros_like(pred))
    # sqrt of a zero has an infinite gradient: keep padded entries strictly away from it.
    epe = torch.sqrt((diff / norm).pow(2).sum(-1) + 1e-12)
    epe = torch.where(valid, epe, torch.zeros_like(epe))
    count = valid.sum(-1)
    has = count > 0
    per_pair = epe.sum(-1) / count.clamp_min(1)
    if not bool(has.any()):
        return pred.sum() * 0.0
    return per_pair[has].mean()
