"""Which pairs run KBC's pass 2, with which windows, and why: pure functions of boxes and sizes.

After pass 1 (the plain path on the full images) :class:`~sosc.kbc.KBCWrapper` asks:

1. :func:`target_box`: the grown box that defines each target window in the chosen mode
   (``pred-box``: the pass-1 predictions, all or the robust ones; ``object-bbox``: the
   annotated box; ``oracle``: the ground-truth keypoints).
2. :func:`plan_windows`: both windows (:func:`~sosc.kbc.windows.pair_windows`: the scale-aware
   zoom and one scale for the pair), whether each image triggered, the pairs that run pass 2
   (a window differs from the full image) and, per pair, the reason (:data:`REASONS`).
3. :func:`merge_pass2`: pass-2 results replace pass 1's where the choice
   (:mod:`sosc.kbc.choice`) says so.

Conventions: boxes and windows ``(B, 4)`` ``(x0, y0, x1, y1)`` original pixels; sizes
``(B, 2)`` ``(H, W)``; keypoints ``(B, N, 2)`` original pixels; ``valid`` ``(B, N)`` bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sosc.errors import ConfigError, check_shape
from sosc.geometry import full_windows
from sosc.kbc.config import KBCConfig
from sosc.kbc.windows import grow_box, kbc_box, pair_windows, robust_inliers, similarity_box

#: Why a pair did or did not run pass 2, by code (:attr:`WindowPlan.reason`).
REASONS: tuple[str, ...] = (
    "kbc off",              # 0: config.enabled is False
    "no box",               # 1: no valid keypoint (or no target box) to define a window
    "large enough",         # 2: neither image needs a zoom (min_zoom / tau)
    "zoomed",               # 3: pass 2 ran on the windows
)
OFF, NO_BOX, LARGE, ZOOMED = range(len(REASONS))


@dataclass
class WindowPlan:
    """What :func:`plan_windows` decided for a batch of ``B`` pairs.

    Attributes:
        src_window, trg_window: ``(B, 4)`` the windows of pass 2 (the full images where the
            pair keeps pass 1).
        src_triggered, trg_triggered: ``(B,)`` bool, KBC triggered on that image.
        refined: ``(B,)`` bool, pass 2 runs on the pair.
        reason: ``(B,)`` int, index into :data:`REASONS`.
    """

    src_window: torch.Tensor
    trg_window: torch.Tensor
    src_triggered: torch.Tensor
    trg_triggered: torch.Tensor
    refined: torch.Tensor
    reason: torch.Tensor


def check_target_inputs(
    config: KBCConfig, trg_bbox: torch.Tensor | None, trg_kps: torch.Tensor | None, b: int, n: int
) -> None:
    """Raise :class:`ConfigError` / :class:`~sosc.errors.ShapeError` when the target mode
    lacks its input (``object-bbox``: ``trg_bbox`` ``(B, 4)``; ``oracle``: ``trg_kps``
    ``(B, N, 2)``), before any matcher pass runs."""
    if not config.enabled:
        return
    if config.target == "object-bbox":
        if trg_bbox is None:
            raise ConfigError(
                "KBC target 'object-bbox' needs trg_bbox, (B, 4) target object boxes in original "
                "pixels: pass trg_bbox=..., or use target='pred-box' where the dataset has no boxes"
            )
        check_shape("trg_bbox", trg_bbox, (b, 4))
    elif config.target == "oracle":
        if trg_kps is None:
            raise ConfigError(
                "KBC target 'oracle' needs trg_kps, (B, N, 2) ground-truth target keypoints in "
                "original pixels: pass trg_kps=..., or use target='pred-box' (leak-free)"
            )
        check_shape("trg_kps", trg_kps, (b, n, 2))


def target_box(
    config: KBCConfig,
    plain_kps: torch.Tensor,
    valid: torch.Tensor,
    trg_bbox: torch.Tensor | None = None,
    trg_kps: torch.Tensor | None = None,
    src_kps: torch.Tensor | None = None,
    src_box: torch.Tensor | None = None,
) -> torch.Tensor:
    """The grown target box ``(B, 4)`` that defines the target window in ``config.target``'s mode.

    ``pred-box``: :func:`~sosc.kbc.windows.kbc_box` of the pass-1 predictions ``plain_kps`` (the
    valid ones, or with ``config.pred_box="robust"`` the valid ones that are not strays:
    :func:`~sosc.kbc.windows.robust_inliers`; ``"similarity"``: the source box ``src_box`` carried
    over by :func:`~sosc.kbc.windows.similarity_box`, which needs ``src_kps``); ``object-bbox``: :func:`~sosc.kbc.windows.grow_box`
    of ``trg_bbox``; ``oracle``: :func:`~sosc.kbc.windows.kbc_box` of ``trg_kps``. Every box
    goes through the same growth, so the same box always gives the same window.
    """
    margin, min_margin = config.margin, config.min_margin
    if config.target == "object-bbox":
        return grow_box(trg_bbox.to(plain_kps.device, plain_kps.dtype), margin, min_margin)
    if config.target == "oracle":
        return kbc_box(trg_kps.to(plain_kps.device, plain_kps.dtype), valid, margin, min_margin)
    plain_kps = plain_kps.detach()
    if config.pred_box == "similarity":
        return similarity_box(src_kps, plain_kps, valid, src_box)
    keep = robust_inliers(plain_kps, valid, config.robust_k) if config.pred_box == "robust" else valid
    return kbc_box(plain_kps, keep, margin, min_margin)


def plan_windows(
    config: KBCConfig,
    src_box: torch.Tensor,
    trg_box: torch.Tensor,
    src_size: torch.Tensor,
    trg_size: torch.Tensor,
    input_size: int | Sequence[int],
) -> WindowPlan:
    """Steps 2-3 for both images of every pair, and which pairs run pass 2 (and why).

    Args:
        config: the KBC options (``enabled=False``: nothing triggers, every pair keeps pass 1).
        src_box, trg_box: ``(B, 4)`` grown boxes (:func:`target_box` for the target).
        src_size, trg_size: ``(B, 2)`` original ``(H, W)``.
        input_size: network input ``(S_h, S_w)`` or an int.

    Returns:
        A :class:`WindowPlan`. Under ``pred-box`` the target window's side is
        ``config.pred_box_context`` times larger. A pair runs pass 2 where both boxes are
        finite and a window differs from the full image; a pair with a NaN box (no valid
        keypoint, no target box) keeps pass 1 with reason ``"no box"``, whichever image could
        have zoomed.
    """
    src_full, trg_full = full_windows(src_size), full_windows(trg_size)
    b = src_box.shape[0]
    no = torch.zeros(b, dtype=torch.bool, device=src_box.device)
    if not config.enabled:
        return WindowPlan(src_full, trg_full, no, no, no, torch.full((b,), OFF, device=src_box.device))
    context = config.pred_box_context if config.target == "pred-box" else 1.0
    src_win, trg_win, src_trig, trg_trig = pair_windows(src_box, trg_box, src_size, trg_size, input_size, config,
                                                       context)
    no_box = ~(torch.isfinite(src_box).all(-1) & torch.isfinite(trg_box).all(-1))
    # a pair zooms only with both boxes: one image zoomed against a target of unknown scale
    # would be matched across a scale gap that nothing chose
    changed = ((src_win != src_full).any(-1) | (trg_win != trg_full).any(-1)) & ~no_box
    src_win = torch.where(changed[:, None], src_win, src_full)
    trg_win = torch.where(changed[:, None], trg_win, trg_full)
    reason = torch.where(changed, ZOOMED, torch.where(no_box, NO_BOX, LARGE))
    return WindowPlan(src_win, trg_win, src_trig, trg_trig, changed, reason)


def merge_pass2(first: torch.Tensor, second: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``first`` ``(B, ...)`` with the rows ``index`` ``(K,)`` replaced by ``second`` ``(K, ...)``.

    >>> merge_pass2(torch.zeros(3, 1), torch.ones(1, 1), torch.tensor([1])).flatten().tolist()
    [0.0, 1.0, 0.0]
    """
    out = first.clone()
    out[index] = second.to(out.dtype)
    return out
