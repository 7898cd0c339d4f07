"""What KBC is given, checked: original images, source keypoints, the input size.

:func:`check_original_inputs` runs first in :func:`~sosc.kbc.passes.match_in_windows`, so
:class:`~sosc.kbc.KBCWrapper` (both passes), :func:`~sosc.kbc.passes.match_plain` and
direct calls all refuse, with an error that names the argument, what was given and what is
expected:

- images that are not a float ``(B, 3, H, W)`` tensor or a list of ``(3, H, W)`` float
  tensors (channels last, integer pixels, an empty batch, a count that differs from the
  keypoints');
- images with NaN/Inf or values outside ``[0, 1]`` (by more than
  :data:`~sosc.matchers.base.IMAGE_RANGE_TOLERANCE`: 0-255 pixel values);
- integer or half-precision keypoints, and *valid* keypoints that are not finite or lie
  outside their source image by more than :data:`KEYPOINT_TOLERANCE` pixels (padded
  keypoints may hold anything).

Every value check is one host sync (one ``.tolist()`` of stacked flags).
:func:`check_wrapper_input_size` checks the input size against the matcher's
:attr:`~sosc.matchers.base.Matcher.input_multiple` when a wrapper is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sosc.errors import ShapeError, check_shape
from sosc.geometry import as_size, inside_image
from sosc.matchers.base import (
    check_image_layout,
    check_input_size,
    matcher_input_multiple,
    raise_value_error,
    value_flags,
)

#: Pixels a valid source keypoint may lie outside its image (the benchmark readers' tolerance).
KEYPOINT_TOLERANCE = 2.0


def check_wrapper_input_size(matcher: Any, input_size: int | Sequence[int]) -> None:
    """Raise :class:`~sosc.errors.ConfigError` unless both sides of ``input_size`` are multiples
    of the matcher's :attr:`~sosc.matchers.base.Matcher.input_multiple`, naming ``input_size``
    and the nearest valid sizes (as the LightningModule does for ``data.init_args.input_size``).

    >>> from sosc.matchers.base import Matcher
    >>> class Strided(Matcher):
    ...     input_multiple = 32
    >>> check_wrapper_input_size(Strided(), 250)
    Traceback (most recent call last):
    ...
    sosc.errors.ConfigError: input_size (250, 250) must be a multiple of 32 on both sides (the matcher's coarsest stride); the nearest valid sizes are 224 and 256
    """
    check_input_size(as_size(input_size), matcher_input_multiple(matcher), "input_size")


def _images(name: str, images: Any, b: int) -> list[torch.Tensor]:
    """The images of a batch as a list of ``(3, H, W)``, each checked, named ``name`` or ``name[i]``."""
    if isinstance(images, torch.Tensor):
        check_image_layout(name, images)
        found = images.shape[0]
        items = list(images)
    elif isinstance(images, (list, tuple)):
        found = len(images)
        if found == 0:
            raise ShapeError(f"{name}: the batch is empty (an empty list); expected a list of B >= 1 (3, H, W) images")
        for i, img in enumerate(images):
            check_image_layout(f"{name}[{i}]", img, batched=False)
        items = list(images)
    else:
        raise ShapeError(
            f"{name}: expected a (B, 3, H, W) float tensor or a list of (3, H, W) float tensors, "
            f"got {type(images).__name__}"
        )
    if found != b:
        raise ShapeError(f"{name}: holds {found} images but src_kps has {b} pairs (shape (B, N, 2) = {b})")
    return items


def check_original_inputs(
    src_img: Any,
    trg_img: Any,
    src_kps: torch.Tensor,
    valid: torch.Tensor | None = None,
    tolerance: float = KEYPOINT_TOLERANCE,
) -> None:
    """Check what KBC is given (see the module docstring).

    Args:
        src_img, trg_img: original images, ``(B, 3, H, W)`` or lists of ``(3, H_i, W_i)``,
            float RGB in ``[0, 1]``.
        src_kps: ``(B, N, 2)`` float ``(x, y)`` original source pixels.
        valid: ``(B, N)`` bool, or ``None`` (all valid).
        tolerance: pixels a valid keypoint may lie outside ``[0, W] x [0, H]``.

    Raises:
        ShapeError: naming the argument, what was given and what is expected.

    >>> check_original_inputs([torch.zeros(3, 40, 80)], [torch.zeros(3, 40, 80)], torch.tensor([[[30.0, 70.0]]]))
    Traceback (most recent call last):
    ...
    sosc.errors.ShapeError: src_kps: valid keypoints lie outside their source image ([0, W] x [0, H], 2 px tolerance): pair 0, keypoint 0 at (30, 70) in an image of 80x40 (W x H); give keypoints in original source pixels, or mark them invalid
    """
    check_shape("src_kps", src_kps, ("B", "N", 2))
    b, n = src_kps.shape[:2]
    if b == 0:
        raise ShapeError(f"src_kps: the batch is empty, got shape {tuple(src_kps.shape)}; expected (B, N, 2) with B >= 1")
    if not src_kps.is_floating_point() or src_kps.dtype in (torch.float16, torch.bfloat16):
        raise ShapeError(
            f"src_kps: expected float32 (x, y) pixels, got dtype {src_kps.dtype}; pass src_kps.float()"
        )
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=src_kps.device)
    check_shape("valid", valid, (b, n))
    if valid.dtype != torch.bool:
        raise ShapeError(f"valid: expected a bool tensor, got {valid.dtype}; pass `valid.bool()`")
    named: list[tuple[str, torch.Tensor]] = []
    for name, images in (("src_img", src_img), ("trg_img", trg_img)):
        items = _images(name, images, b)
        many = not isinstance(images, torch.Tensor)
        named += [(f"{name}[{i}]" if many else name, img) for i, img in enumerate(items)]
    for label, img in named:
        if img.device != src_kps.device:
            raise ShapeError(f"{label} is on {img.device} but src_kps on {src_kps.device}: put them on one device")
    sizes = torch.tensor([list(img.shape[-2:]) for _, img in named[:b]], dtype=torch.float32, device=src_kps.device)
    kps = src_kps.detach().float()
    finite = torch.isfinite(kps).all(-1)
    outside = valid & finite & ~inside_image(kps, sizes, tolerance)
    flags = value_flags([img for _, img in named])
    flags += [(valid & ~finite).any(), outside.any()]
    bad = torch.stack(flags).tolist()
    for i, (label, img) in enumerate(named):
        raise_value_error(label, img, bad[2 * i], bad[2 * i + 1])
    if bad[-2]:
        raise ShapeError("src_kps: contains NaN or Inf at a valid keypoint; clean the input or mark the keypoint invalid")
    if bad[-1]:
        i, j = (int(v) for v in outside.nonzero()[0].tolist())
        h, w = (int(v) for v in sizes[i].tolist())
        x, y = (float(v) for v in kps[i, j].tolist())
        raise ShapeError(
            f"src_kps: valid keypoints lie outside their source image ([0, W] x [0, H], {tolerance:g} px tolerance): "
            f"pair {i}, keypoint {j} at ({x:g}, {y:g}) in an image of {w}x{h} (W x H); give keypoints in original "
            "source pixels, or mark them invalid"
        )
