"""Which pairs run KBC's pass 2, with which windows: pure functions of boxes and sizes.

After pass 1 (the plain path on the full images) :class:`~sosc.kbc.KBCWrapper` asks:

1. :func:`target_box`: the grown box that defines each target window in the chosen mode
   (``pred-box``: the pass-1 predictions; ``object-bbox``: the annotated box; ``oracle``:
   the ground-truth keypoints).
2. :func:`plan_windows`: both windows (steps 2-3 of KBC), whether each image triggered, the
   ``pred-box`` guard's fall-backs (:func:`pred_box_fallback`), and the pairs that run pass 2
   (a window differs from the full image and the guard did not fall back).
3. :func:`merge_pass2`: pass-2 results replace pass 1's on those pairs only.

Conventions: boxes and windows ``(B, 4)`` ``(x0, y0, x1, y1)`` original pixels; sizes
``(B, 2)`` ``(H, W)``; keypoints ``(B, N, 2)`` original pixels; ``valid`` ``(B, N)`` bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sosc.errors import ConfigError, check_shape
from sosc.geometry import full_windows, relative_size
from sosc.kbc.config import KBCConfig
from sosc.kbc.windows import grow_box, kbc_box, kbc_windows


@dataclass
class WindowPlan:
    """What :func:`plan_windows` decided for a batch of ``B`` pairs.

    Attributes:
        src_window, trg_window: ``(B, 4)`` the windows of pass 2 (the full images where the
            pair keeps pass 1).
        src_triggered, trg_triggered: ``(B,)`` bool, KBC triggered on that image (before the guard).
        refined: ``(B,)`` bool, pass 2 runs on the pair.
        fallback: ``(B,)`` bool, the ``pred-box`` guard kept pass 1 for the pair.
    """

    src_window: torch.Tensor
    trg_window: torch.Tensor
    src_triggered: torch.Tensor
    trg_triggered: torch.Tensor
    refined: torch.Tensor
    fallback: torch.Tensor


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
) -> torch.Tensor:
    """The grown target box ``(B, 4)`` that defines the target window in ``config.target``'s mode.

    ``pred-box``: :func:`~sosc.kbc.windows.kbc_box` of the pass-1 predictions ``plain_kps``
    (valid ones only); ``object-bbox``: :func:`~sosc.kbc.windows.grow_box` of ``trg_bbox``;
    ``oracle``: :func:`~sosc.kbc.windows.kbc_box` of ``trg_kps``. Every box goes through the
    same growth, so the same box always gives the same window.
    """
    margin, min_margin = config.margin, config.min_margin
    if config.target == "object-bbox":
        return grow_box(trg_bbox.to(plain_kps.device, plain_kps.dtype), margin, min_margin)
    if config.target == "oracle":
        return kbc_box(trg_kps.to(plain_kps.device, plain_kps.dtype), valid, margin, min_margin)
    return kbc_box(plain_kps.detach(), valid, margin, min_margin)


def pred_box_fallback(
    src_box: torch.Tensor,
    src_size: torch.Tensor,
    pred_box: torch.Tensor,
    trg_size: torch.Tensor,
    confidence: torch.Tensor | None,
    valid: torch.Tensor,
    min_confidence: float = KBCConfig.guard_min_confidence,
    max_scale_ratio: float = KBCConfig.guard_max_scale_ratio,
) -> torch.Tensor:
    """The ``pred-box`` guard's verdict: ``(B,)`` bool, pass 1 is unreliable for this pair.

    A pair falls back where (a) the mean confidence ``(B, N)`` of its valid keypoints is
    below ``min_confidence`` (skipped when ``confidence`` is ``None``), or (b) the relative
    sizes (:func:`~sosc.geometry.relative_size`) of the source box and of the predicted target
    box differ by more than ``max_scale_ratio`` either way. Boxes ``(B, 4)`` are the grown
    boxes, sizes ``(B, 2)`` ``(H, W)``. NaN boxes never fall back (they do not trigger anyway).
    """
    r_src = relative_size(src_box, src_size)
    r_trg = relative_size(pred_box, trg_size)
    tiny = torch.finfo(r_src.dtype).tiny
    ratio = torch.maximum(r_src, r_trg) / torch.minimum(r_src, r_trg).clamp_min(tiny)
    bad = ratio > max_scale_ratio  # NaN compares False
    if confidence is not None and min_confidence > 0:
        conf = torch.where(valid, confidence.to(r_src.dtype), torch.zeros_like(r_src[:, None]))
        mean = conf.sum(-1) / valid.sum(-1).clamp_min(1)
        bad = bad | (valid.any(-1) & (mean < min_confidence))
    return bad


def plan_windows(
    config: KBCConfig,
    src_box: torch.Tensor,
    trg_box: torch.Tensor,
    src_size: torch.Tensor,
    trg_size: torch.Tensor,
    input_size: int | Sequence[int],
    confidence: torch.Tensor | None,
    valid: torch.Tensor,
) -> WindowPlan:
    """Steps 2-3 for both images of every pair, the guard, and which pairs run pass 2.

    Args:
        config: the KBC options (``enabled=False``: nothing triggers, every pair keeps pass 1).
        src_box, trg_box: ``(B, 4)`` grown boxes (:func:`target_box` for the target).
        src_size, trg_size: ``(B, 2)`` original ``(H, W)``.
        input_size: network input ``(S_h, S_w)`` or an int.
        confidence: ``(B, N)`` pass-1 confidence, or ``None``.
        valid: ``(B, N)`` bool.

    Returns:
        A :class:`WindowPlan`. Under ``pred-box`` with ``guard`` the target window uses
        ``guard_rho``; pairs where only an image's window equal to the full image would change
        (e.g. ``tau`` close to ``rho``) do not run pass 2.
    """
    src_full, trg_full = full_windows(src_size), full_windows(trg_size)
    no = torch.zeros(src_box.shape[0], dtype=torch.bool, device=src_box.device)
    if not config.enabled:
        return WindowPlan(src_full, trg_full, no, no, no, no)
    src_win, src_trig = kbc_windows(src_box, src_size, input_size, config.tau, config.rho, config.s_max)
    guarded = config.target == "pred-box" and config.guard
    rho_t = config.guard_rho if guarded else config.rho
    trg_win, trg_trig = kbc_windows(trg_box, trg_size, input_size, config.tau, rho_t, config.s_max)
    fallback = no
    if guarded:
        fallback = trg_trig & pred_box_fallback(
            src_box, src_size, trg_box, trg_size, confidence, valid,
            config.guard_min_confidence, config.guard_max_scale_ratio,
        )
    # pass 2 only where a window differs from the full image (untriggered images have the
    # full window, and a triggered one can grow back to it when tau is close to rho)
    changed = (src_win != src_full).any(-1) | (trg_win != trg_full).any(-1)
    refined = changed & ~fallback
    src_win = torch.where(refined[:, None], src_win, src_full)
    trg_win = torch.where(refined[:, None], trg_win, trg_full)
    return WindowPlan(src_win, trg_win, src_trig, trg_trig, refined, fallback)


def merge_pass2(first: torch.Tensor, second: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``first`` ``(B, ...)`` with the rows ``index`` ``(K,)`` replaced by ``second`` ``(K, ...)``.

    >>> merge_pass2(torch.zeros(3, 1), torch.ones(1, 1), torch.tensor([1])).flatten().tolist()
    [0.0, 1.0, 0.0]
    """
    out = first.clone()
    out[index] = second.to(out.dtype)
    return out
