"""Which pass each keypoint of a zoomed pair keeps: pure functions (training-free).

``choice="pass2"`` keeps the zoomed pass for every keypoint of a zoomed pair. ``choice="cycle"``
uses forward-backward (cycle) consistency: each candidate target keypoint is matched back to
the source (pass 1 through the full images, pass 2 through the windows), and a keypoint keeps
pass 1 where pass 1 comes back close to its source keypoint while pass 2 does not. Distances
are fractions of the source keypoint box's longer side, so that one tolerance fits every
object size and matcher.
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

    >>> cycle_errors(torch.zeros(1, 1, 2), torch.tensor([[[3.0, 4.0]]]), torch.tensor([[0.0, 0.0, 50.0, 20.0]])).tolist()
    [[0.1]]
    """
    side = (src_box[:, 2:] - src_box[:, :2]).amax(-1).nan_to_num(1.0).clamp_min(1.0)
    return torch.linalg.vector_norm(back - src_kps, dim=-1) / side[:, None]


def choose_pass2(
    config: KBCConfig,
    valid: torch.Tensor,
    cycle_first: torch.Tensor | None = None,
    cycle_second: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(K, N)`` bool: the keypoints of ``K`` zoomed pairs that keep pass 2 (valid ones only).

    Args:
        config: ``choice`` and its tolerances (:class:`~sosc.kbc.config.KBCConfig`).
        valid: ``(K, N)`` bool.
        cycle_first, cycle_second: ``(K, N)`` :func:`cycle_errors` of pass 1 and pass 2
            (needed by ``choice="cycle"``).

    >>> cfg = KBCConfig(choice="cycle", cycle_keep=0.2, cycle_reject=0.5)
    >>> choose_pass2(cfg, torch.ones(1, 3, dtype=torch.bool), torch.tensor([[0.1, 0.1, 0.4]]),
    ...              torch.tensor([[0.6, 0.3, 0.9]])).tolist()
    [[False, True, True]]
    """
    if config.choice == "pass2":
        return valid.clone()
    if cycle_first is None or cycle_second is None:
        raise ValueError("choice='cycle' needs the cycle errors of both passes")
    keep_first = (cycle_first < config.cycle_keep) & (cycle_second > config.cycle_reject)
    return valid & ~keep_first
