"""Keypoint refinement: re-locate each transferred keypoint on the finer stride-8 target grid.

KBCNet's 4D decoder works at stride 16, where one target cell of a 256-pixel input is 16
pixels wide: too coarse for a small object without a zoom. Refining the whole dense flow at
stride 8 would cost ``(H / 8)^2 (W / 8)^2`` scores per pair; refining only the ``N`` keypoints
costs ``N (H / 8) (W / 8)``. For each source keypoint:

1. its row of the decoder's score volume (bilinear over the source dims, read by gathering
   the four neighbouring source cells, no copy of the volume): ``(h_t, w_t)`` scores;
2. that row upsampled bilinearly to the stride-8 target grid;
3. plus ``weight`` x the cosine similarity of the keypoint's stride-8 source feature with
   every stride-8 target feature;
4. (kernel) soft-argmax over the stride-8 grid.

With ``weight = 0`` the result is the soft-argmax of the upsampled score row, a close cousin
of sampling the coarse flow. This is our addition to METHOD.md's KBCNet (see
``docs/METHOD.md``); ``KBCNet(refine=False)`` turns it off.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sosc.errors import ShapeError
from sosc.matchers.grid import sample_at, soft_argmax, to_cells


def score_rows(scores: torch.Tensor, points: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Rows of a score volume at source ``points``, bilinear over the source dims.

    Args:
        scores: ``(B, h_s, w_s, h_t, w_t)``.
        points: ``(B, N, 2)`` source ``(x, y)`` in input pixels (NaN is read as 0).
        size: source input size ``(S_h, S_w)`` the source grid covers.

    Returns:
        ``(B, N, h_t, w_t)``: for each point, the bilinear mix of the rows of its four
        neighbouring source cells (cell centres at ``(j + 0.5) * S_w / w_s``; points beyond
        the outer centres take the border row), the convention of
        :func:`~sosc.matchers.grid.sample_at`. Scores are not extrapolated (they are
        similarities, not affine in position: see
        :func:`~sosc.matchers.adapters.transfer_by_scores`); near the border the coarse row
        is a prior up to half a coarse cell off, combined in :func:`refine_keypoints` with
        the stride-8 similarity of the feature read at the keypoint's own position.

    >>> vol = torch.arange(4.0).view(1, 1, 4, 1, 1)  # four 1-pixel source cells in a row
    >>> score_rows(vol, torch.tensor([[[2.0, 0.0], [9.0, 0.0]]]), (1, 4)).flatten().tolist()
    [1.5, 3.0]
    """
    if scores.dim() != 5 or points.dim() != 3 or points.shape[0] != scores.shape[0]:
        raise ShapeError(
            f"scores must be (B, h_s, w_s, h_t, w_t) and points (B, N, 2) with the same B; "
            f"got {tuple(scores.shape)} and {tuple(points.shape)}"
        )
    b, hs, ws, ht, wt = scores.shape
    n = points.shape[1]
    points = torch.nan_to_num(points.float(), nan=0.0)  # NaN would become an out-of-range index
    cells = to_cells(points, (hs, ws), size)
    u = cells[..., 0].clamp(0, ws - 1)
    v = cells[..., 1].clamp(0, hs - 1)
    x0, y0 = u.floor().long(), v.floor().long()
    x1, y1 = (x0 + 1).clamp(max=ws - 1), (y0 + 1).clamp(max=hs - 1)
    fx, fy = u - x0, v - y0
    index = torch.stack([y0 * ws + x0, y0 * ws + x1, y1 * ws + x0, y1 * ws + x1], dim=-1)
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    flat = scores.reshape(b, hs * ws, ht * wt)
    rows = torch.gather(flat, 1, index.view(b, n * 4, 1).expand(b, n * 4, ht * wt))
    rows = (rows.view(b, n, 4, ht * wt) * weight.to(rows.dtype)[..., None]).sum(2)
    return rows.view(b, n, ht, wt)


def refine_keypoints(
    rows: torch.Tensor,
    src_fine: torch.Tensor,
    trg_fine: torch.Tensor,
    points: torch.Tensor,
    src_size: Sequence[int],
    trg_size: Sequence[int],
    weight: torch.Tensor | float,
    temperature: float,
    kernel_sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints on the fine target grid from coarse score rows and fine features.

    Args:
        rows: ``(B, N, h_t, w_t)`` coarse scores of each keypoint (:func:`score_rows`).
        src_fine: ``(B, C, H_s, W_s)`` fine source features.
        trg_fine: ``(B, C, H_t, W_t)`` fine target features (``H_t >= h_t``).
        points: ``(B, N, 2)`` source keypoints, input pixels.
        src_size, trg_size: input sizes ``(S_h, S_w)`` of source and target.
        weight: scale of the fine cosine similarity added to the upsampled coarse scores.
        temperature, kernel_sigma: of the (kernel) soft-argmax over the fine grid.

    Returns:
        ``(B, N, 2)`` target ``(x, y)`` in input pixels (float32), and ``(B, N)`` the peak
        probability of the fine softmax.
    """
    query = F.normalize(sample_at(src_fine, points, src_size), dim=-1)
    fine = torch.einsum("bnc,bchw->bnhw", query, F.normalize(trg_fine, dim=1))
    with torch.autocast(device_type=rows.device.type, enabled=False):
        up = F.interpolate(rows.float(), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        logits = up + weight * fine.float()
        return soft_argmax(logits, trg_size, temperature, kernel_sigma)


class KeypointRefiner(nn.Module):
    """:func:`refine_keypoints` with a learnable ``weight`` (initial value ``weight``, default 1.0:
    the fine correlation counts as much as the decoder's initial mean correlation)."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(float(weight)))

    def forward(
        self,
        scores: torch.Tensor,
        src_fine: torch.Tensor,
        trg_fine: torch.Tensor,
        points: torch.Tensor,
        src_size: Sequence[int],
        trg_size: Sequence[int],
        temperature: float,
        kernel_sigma: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``scores`` ``(B, h_s, w_s, h_t, w_t)``; the rest as :func:`refine_keypoints`."""
        rows = score_rows(scores, points, src_size)
        return refine_keypoints(
            rows, src_fine, trg_fine, points, src_size, trg_size, self.weight, temperature, kernel_sigma
        )
