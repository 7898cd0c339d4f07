"""Matching through windows: resample both windows to the input, run the matcher, map back.

The plain path (:func:`match_plain`) is the full-image window; KBC's pass 2 runs the same
function on the windows it chose (:func:`match_in_windows`). Images are the **original**
images (a ``(B, 3, H, W)`` tensor or a list of ``(3, H_i, W_i)``, float RGB in ``[0, 1]``);
keypoints go in and come out in **original** pixels, float32 (windows and mapped points
too, whatever the matcher computes in). :func:`match_in_windows` first checks what it is
given (:func:`sosc.kbc.inputs.check_original_inputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sosc.errors import ShapeError, check_shape
from sosc.geometry import (
    full_windows,
    image_sizes,
    points_from_window,
    points_to_window,
    resample_windows,
)
from sosc.kbc.inputs import check_original_inputs
from sosc.matchers.base import MatchOutput, keypoints_of

Images = torch.Tensor | Sequence[torch.Tensor]


def index_images(images: Images, index: torch.Tensor) -> Images:
    """The images at ``index`` ``(K,)`` of a batch tensor or a list (same kind as given)."""
    if isinstance(images, torch.Tensor):
        return images[index.to(images.device)]
    return [images[i] for i in index.tolist()]


def batch_size(images: Images) -> int:
    """How many images a batch tensor ``(B, 3, H, W)`` or a list holds.

    Raises:
        ShapeError: for a tensor that is not 4D (one image, or channels last), saying what
            was given and the layouts expected.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            hint = " (one image? pass a list [img])" if images.dim() == 3 else ""
            raise ShapeError(
                "images: expected a (B, 3, H, W) tensor or a list of (3, H, W) tensors, got a tensor of shape "
                f"({', '.join(str(s) for s in images.shape)}){hint}"
            )
        return images.shape[0]
    return len(images)


def match_in_windows(
    matcher: Any,
    src_img: Images,
    trg_img: Images,
    src_kps: torch.Tensor,
    valid: torch.Tensor | None,
    src_windows: torch.Tensor,
    trg_windows: torch.Tensor,
    input_size: int | Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor | MatchOutput]:
    """Resample both windows to the input, run the matcher, map its keypoints back.

    Args:
        matcher: follows the matcher contract (:mod:`sosc.matchers.base`).
        src_img, trg_img: original images, ``(B, 3, H, W)`` or lists of ``(3, H_i, W_i)``,
            float RGB in ``[0, 1]``.
        src_kps: ``(B, N, 2)`` source keypoints, **original** pixels.
        valid: ``(B, N)`` bool or ``None`` (all valid).
        src_windows, trg_windows: ``(B, 4)`` original pixels.
        input_size: network input ``(S_h, S_w)`` or an int.

    Returns:
        ``trg_kps`` ``(B, N, 2)`` float32 in **original** target pixels, and the matcher's raw
        output (input pixels: a tensor or a :class:`MatchOutput`).

    Raises:
        ShapeError: for images, keypoints or ``valid`` that break the conventions above
            (:func:`sosc.kbc.inputs.check_original_inputs`), naming the argument.
    """
    check_original_inputs(src_img, trg_img, src_kps, valid)
    return run_in_windows(matcher, src_img, trg_img, src_kps, valid, src_windows, trg_windows, input_size)


def run_in_windows(
    matcher: Any,
    src_img: Images,
    trg_img: Images,
    src_kps: torch.Tensor,
    valid: torch.Tensor | None,
    src_windows: torch.Tensor,
    trg_windows: torch.Tensor,
    input_size: int | Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor | MatchOutput]:
    """:func:`match_in_windows` on inputs already checked by
    :func:`~sosc.kbc.inputs.check_original_inputs` (or on a subset of checked pairs, with the same
    source keypoints): :class:`~sosc.kbc.KBCWrapper` checks a batch once, not once per pass."""
    check_shape("src_windows", src_windows, (src_kps.shape[0], 4))
    check_shape("trg_windows", trg_windows, (src_kps.shape[0], 4))
    b, n = src_kps.shape[:2]
    valid = valid_or_all(valid, b, n, src_kps.device)
    src_kps = src_kps.float()
    src_windows = src_windows.float()
    trg_windows = trg_windows.float()
    src_in = resample_windows(src_img, src_windows, input_size)
    trg_in = resample_windows(trg_img, trg_windows, input_size)
    kps_in = points_to_window(src_kps, src_windows, input_size)
    output = matcher(src_in, trg_in, kps_in, valid)
    pred_in = keypoints_of(output)
    check_shape("matcher output keypoints", pred_in, (b, n, 2))
    return points_from_window(pred_in.float(), trg_windows, input_size), output


def match_plain(
    matcher: Any,
    src_img: Images,
    trg_img: Images,
    src_kps: torch.Tensor,
    valid: torch.Tensor | None,
    input_size: int | Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor | MatchOutput]:
    """The plain path: :func:`match_in_windows` with the full-image windows.

    Same arguments and returns as :func:`match_in_windows` without the windows.
    """
    check_original_inputs(src_img, trg_img, src_kps, valid)
    src_full = full_windows(image_sizes(src_img).to(src_kps.device))
    trg_full = full_windows(image_sizes(trg_img).to(src_kps.device))
    return run_in_windows(matcher, src_img, trg_img, src_kps, valid, src_full, trg_full, input_size)


def valid_or_all(valid: torch.Tensor | None, b: int, n: int, device: torch.device) -> torch.Tensor:
    """``valid`` checked as ``(B, N)`` bool, or all True when ``None``."""
    if valid is None:
        return torch.ones(b, n, dtype=torch.bool, device=device)
    check_shape("valid", valid, (b, n))
    if valid.dtype != torch.bool:
        raise ShapeError(f"valid: expected a bool tensor, got {valid.dtype}; pass `valid.bool()`")
    return valid


def confidence_of(output: torch.Tensor | MatchOutput) -> torch.Tensor | None:
    """The ``(B, N)`` confidence of a matcher's output, or ``None`` when it has none."""
    return output.confidence if isinstance(output, MatchOutput) else None
