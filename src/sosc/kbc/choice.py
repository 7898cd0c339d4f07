"""Which pass each keypoint of a zoomed pair keeps: pure functions (training-free).

- ``choice="pass2"`` keeps the zoomed pass for every keypoint of a zoomed pair.
- ``choice="shape"`` uses the source keypoints' layout as a prior: a similarity transform
  (scale, rotation, translation) from the source keypoints to the zoomed pass's predictions is
  fitted robustly (:func:`fit_similarity`), and each keypoint keeps pass 2 unless pass 1 lies
  more than ``shape_margin`` (1.5) times nearer to where the fitted transform puts it. No extra
  matcher pass.
- ``choice="cycle"`` uses forward-backward (cycle) consistency: each candidate target keypoint
  is matched back to the source (pass 1 through the full images, pass 2 through the windows),
  and a keypoint keeps pass 1 where pass 1 comes back close to its source keypoint while
  pass 2 does not; two extra matcher passes. Distances are fractions of the source keypoint
  box's longer side, so that one tolerance fits every object size and matcher.
"""

from __future__ import annotations

import torch

from sosc.kbc.config import KBCConfig


def cycle_errors(src_kps: torch.Tensor, back: torch.Tensor, src_box: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` distance from each source keypoint to its forward-backward image, over the
    longer side of the source box (floored at 1 pixel).

    Args:
        src_kps: ``(B, N, 2)`` source keypoints, original pixels.
        back: ``(B, N, 2)`` the predicted target keypoints matched back to the source, original pixels.
        src_box: ``(B, 4)`` the source keypoint box (grown or not), original pixels.

    >>> cycle_errors(torch.zeros(1, 1, 2), torch.tensor([[[3.0, 4.0]]]), torch.tensor([[0.0, 0.0, 40.0, 20.0]])).tolist()
    [[0.125]]
    """
    side = (src_box[:, 2:] - src_box[:, :2]).amax(-1).nan_to_num(1.0).clamp_min(1.0)
    return torch.linalg.vector_norm(back - src_kps, dim=-1) / side[:, None]


def fit_similarity(src_kps: torch.Tensor, pred_kps: torch.Tensor, valid: torch.Tensor, iters: int = 5,
                   k: float = 2.0) -> torch.Tensor:
    """Where a robustly fitted similarity transform puts each source keypoint, ``(B, N, 2)``.

    The transform ``p = a q + t`` (``a`` complex: scale and rotation; ``t`` a translation) from
    the valid source keypoints ``src_kps`` to their predictions ``pred_kps`` (both ``(B, N, 2)``)
    is fitted by iteratively reweighted least squares (Cauchy weights with scale ``k`` times the
    median residual), so that a minority of stray predictions does not bend it. Pairs with
    fewer than 3 valid keypoints give the predictions themselves.

    >>> q = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 5.0]]])
    >>> p = 2 * q + 1.0
    >>> p[0, 4] = torch.tensor([90.0, 90.0])  # a stray prediction
    >>> fit_similarity(q, p, torch.ones(1, 5, dtype=torch.bool))[0, 4].round().tolist()
    [11.0, 11.0]
    """
    q = torch.complex(src_kps[..., 0].double(), src_kps[..., 1].double())
    p = torch.complex(pred_kps[..., 0].double(), pred_kps[..., 1].double())
    w = valid.double()
    fitted = p
    for _ in range(iters):
        total = w.sum(-1, keepdim=True).clamp_min(1e-12)
        qm, pm = (w * q).sum(-1, keepdim=True) / total, (w * p).sum(-1, keepdim=True) / total
        qc, pc = q - qm, p - pm
        a = (w * pc * qc.conj()).sum(-1, keepdim=True) / (w * qc.abs() ** 2).sum(-1, keepdim=True).clamp_min(1e-12)
        fitted = a * qc + pm
        res = (p - fitted).abs()
        med = torch.where(valid, res, torch.full_like(res, float("nan"))).nanmedian(-1, keepdim=True).values
        w = valid.double() / (1.0 + (res / (k * med.clamp_min(1e-3))) ** 2)
    out = torch.stack([fitted.real, fitted.imag], dim=-1).to(pred_kps.dtype)
    few = valid.sum(-1) < 3
    return torch.where(few[..., None, None], pred_kps, out)


def choose_pass2(
    config: KBCConfig,
    valid: torch.Tensor,
    cycle_first: torch.Tensor | None = None,
    cycle_second: torch.Tensor | None = None,
    first: torch.Tensor | None = None,
    second: torch.Tensor | None = None,
    src_kps: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(K, N)`` bool: the keypoints of ``K`` zoomed pairs that keep pass 2 (valid ones only).

    Args:
        config: ``choice`` and its tolerances (:class:`~sosc.kbc.config.KBCConfig`).
        valid: ``(K, N)`` bool.
        cycle_first, cycle_second: ``(K, N)`` :func:`cycle_errors` of pass 1 and pass 2
            (needed by ``choice="cycle"``).
        first, second, src_kps: ``(K, N, 2)`` pass-1 and pass-2 predictions (original target
            pixels) and the source keypoints (needed by ``choice="shape"``).

    >>> cfg = KBCConfig(choice="cycle", cycle_keep=0.2, cycle_reject=0.5)
    >>> choose_pass2(cfg, torch.ones(1, 3, dtype=torch.bool), torch.tensor([[0.1, 0.1, 0.4]]),
    ...              torch.tensor([[0.6, 0.3, 0.9]])).tolist()
    [[False, True, True]]
    """
    if config.choice == "pass2":
        return valid.clone()
    if config.choice == "shape":
        if first is None or second is None or src_kps is None:
            raise ValueError("choice='shape' needs both passes' predictions and the source keypoints")
        fitted = fit_similarity(src_kps, second, valid)
        dist2 = torch.linalg.vector_norm(second - fitted, dim=-1)
        dist1 = torch.linalg.vector_norm(first - fitted, dim=-1)
        return valid & (dist2 <= config.shape_margin * dist1)
    if cycle_first is None or cycle_second is None:
        raise ValueError("choice='cycle' needs the cycle errors of both passes")
    keep_first = (cycle_first < config.cycle_keep) & (cycle_second > config.cycle_reject)
    return valid & ~keep_first
