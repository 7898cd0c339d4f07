"""Windows: how an original image becomes a network input, and how points map back.

A **window** is an axis-aligned box ``(x0, y0, x1, y1)`` in original image pixels that is
resampled to the network input of size ``(S_h, S_w)``. The plain path uses the full
image ``(0, 0, W, H)``; KBC only picks a different window. All resizing, cropping and
inverse point maps of ``sosc`` live in this module.

Coordinates are continuous: an image of width ``W`` spans ``[0, W]``, and pixel ``i``
covers ``[i, i + 1)`` (its centre is ``i + 0.5``). Resampling follows the same
convention (``align_corners=False``), so a point maps into a window by

    p' = (p - (x0, y0)) * (S_w / (x1 - x0), S_h / (y1 - y0))

and back by the inverse, exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sosc.errors import ShapeError, check_shape

Size = tuple[int, int]


def as_size(size: int | Sequence[int]) -> Size:
    """Normalise an input size to ``(S_h, S_w)``; an int means a square.

    >>> as_size(256)
    (256, 256)
    >>> as_size((240, 320))
    (240, 320)
    """
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) <= 0:
        raise ShapeError(f"input size must be an int or (S_h, S_w) of positive ints, got {size}")
    return size  # type: ignore[return-value]


def full_window(height: float, width: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The window ``(0, 0, W, H)`` that covers a whole ``H x W`` image, shape ``(4,)``.

    >>> full_window(480, 640).tolist()
    [0.0, 0.0, 640.0, 480.0]
    """
    return torch.tensor([0.0, 0.0, float(width), float(height)], device=device, dtype=dtype)


def _scale(window: torch.Tensor, size: Size) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window offset ``(x0, y0)`` and scale ``(S_w / w, S_h / h)``, each ``(..., 2)``."""
    wh = window[..., 2:] - window[..., :2]
    if bool((wh <= 0).any()):
        raise ShapeError(f"window must have x1 > x0 and y1 > y0, got {window.tolist()}")
    target = torch.tensor([size[1], size[0]], dtype=window.dtype, device=window.device)
    return window[..., :2], target / wh


def points_to_window(points: torch.Tensor, window: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Map original-pixel points into the network input that ``window`` is resampled to.

    Args:
        points: ``(N, 2)`` or ``(B, N, 2)`` ``(x, y)`` original pixels.
        window: ``(4,)`` or ``(B, 4)`` ``(x0, y0, x1, y1)`` original pixels.
        size: network input ``(S_h, S_w)`` (or an int for a square).

    Returns:
        Points in input pixels, same shape as ``points``. Padding entries are mapped
        like any other value; the ``valid`` mask stays the caller's.

    >>> w = torch.tensor([10.0, 20.0, 110.0, 70.0])
    >>> points_to_window(torch.tensor([[60.0, 45.0]]), w, (100, 200)).tolist()
    [[100.0, 50.0]]
    """
    size = as_size(size)
    offset, scale = _scale(window, size)
    if points.dim() == 3 and window.dim() == 2:
        offset, scale = offset[:, None], scale[:, None]
    return (points - offset) * scale


def points_from_window(points: torch.Tensor, window: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`points_to_window`: input pixels back to original pixels.

    >>> w = torch.tensor([10.0, 20.0, 110.0, 70.0])
    >>> points_from_window(torch.tensor([[100.0, 50.0]]), w, (100, 200)).tolist()
    [[60.0, 45.0]]
    """
    size = as_size(size)
    offset, scale = _scale(window, size)
    if points.dim() == 3 and window.dim() == 2:
        offset, scale = offset[:, None], scale[:, None]
    return points / scale + offset


def resample_window(image: torch.Tensor, window: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resample the ``window`` of one image to ``size`` (bilinear, zeros outside the image).

    Where the window shrinks an axis, the image is first downscaled along it with an
    antialiasing filter, so a full-image window gives exactly the antialiased resize.

    Args:
        image: ``(C, H, W)`` float.
        window: ``(4,)`` ``(x0, y0, x1, y1)`` original pixels; may extend past the image.
        size: output ``(S_h, S_w)``.

    Returns:
        ``(C, S_h, S_w)``.

    >>> img = torch.arange(16.0).reshape(1, 4, 4)
    >>> resample_window(img, torch.tensor([2.0, 2.0, 4.0, 4.0]), (2, 2))[0].tolist()
    [[10.0, 11.0], [14.0, 15.0]]
    """
    check_shape("image", image, ("C", "H", "W"))
    check_shape("window", window, (4,))
    s_h, s_w = as_size(size)
    _, height, width = image.shape
    window = window.to(device=image.device, dtype=torch.float32)
    x0, y0, x1, y1 = window.tolist()
    if not (x1 > x0 and y1 > y0):
        raise ShapeError(f"window must have x1 > x0 and y1 > y0, got {[x0, y0, x1, y1]}")
    # Antialiased pre-shrink along the axes the window shrinks.
    fx = min(1.0, s_w / (x1 - x0))
    fy = min(1.0, s_h / (y1 - y0))
    src = image
    if fx < 1.0 or fy < 1.0:
        new_h = max(1, round(height * fy))
        new_w = max(1, round(width * fx))
        src = F.interpolate(
            image[None].float(), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )[0]
    xs = x0 + (torch.arange(s_w, device=image.device, dtype=torch.float32) + 0.5) * ((x1 - x0) / s_w)
    ys = y0 + (torch.arange(s_h, device=image.device, dtype=torch.float32) + 0.5) * ((y1 - y0) / s_h)
    # Normalised coordinates are invariant to the pre-shrink: 2 x / W - 1.
    gx = 2.0 * xs / width - 1.0
    gy = 2.0 * ys / height - 1.0
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    # Border padding, then zeros where a sample centre lies outside the image: with "zeros"
    # padding, samples within half a source pixel of the edge would be blended with black
    # (a dark frame on every upsampled input and every zoomed window that touches an edge).
    out = F.grid_sample(src[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    inside_x = (xs >= 0) & (xs <= width)
    inside_y = (ys >= 0) & (ys <= height)
    out = out * (inside_y[:, None] & inside_x[None, :]).to(out.dtype)
    return out.to(image.dtype)


def resample_window_8bit(image, window: torch.Tensor | Sequence[float], size: int | Sequence[int]) -> torch.Tensor:
    """:func:`resample_window` of an 8-bit ``RGB`` PIL image, done by PIL, as ``uint8``.

    The same convention: output pixel ``j`` samples the window at ``x0 + (j + 0.5) (x1 - x0) / S_w``
    (likewise ``y``), bilinear, antialiased where the window shrinks the image (PIL's
    ``Image.resize(size, BILINEAR, box=window)``: one triangle filter as wide as the shrink,
    where :func:`resample_window` pre-shrinks the whole image first), the image's edge pixels
    held beyond it (border padding), and zero where a sample centre lies outside the image. A
    window that reaches past the image is resampled from the image padded with its edge pixels.
    Results are rounded to 8 bits; ``tests/test_geometry.py`` states the tolerance against
    :func:`resample_window` (within 2/255 wherever no shrink is involved).

    Args:
        image: a decoded ``PIL.Image.Image`` in mode ``RGB``.
        window: ``(4,)`` ``(x0, y0, x1, y1)`` original pixels; may extend past the image.
        size: output ``(S_h, S_w)`` (or an int for a square).

    Returns:
        ``(3, S_h, S_w)`` ``uint8`` (divide by 255 for :func:`resample_window`'s values).
    """
    import math

    import numpy as np
    from PIL import Image

    s_h, s_w = as_size(size)
    x0, y0, x1, y1 = (float(v) for v in (window.tolist() if isinstance(window, torch.Tensor) else window))
    if not (x1 > x0 and y1 > y0):
        raise ShapeError(f"window must have x1 > x0 and y1 > y0, got {[x0, y0, x1, y1]}")
    if image.mode != "RGB":
        raise ShapeError(f"image must be an RGB PIL image, got mode {image.mode!r}")
    width, height = image.size
    box = (x0, y0, x1, y1)
    src = image
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        # Pad with the edge pixels, far enough that the filter (as wide as the shrink) never
        # reaches past the padding; the samples outside the image are zeroed below.
        reach = math.ceil(max(1.0, (x1 - x0) / s_w, (y1 - y0) / s_h)) + 1
        left = max(0, math.ceil(-x0)) + reach
        top = max(0, math.ceil(-y0)) + reach
        right = max(0, math.ceil(x1 - width)) + reach
        bottom = max(0, math.ceil(y1 - height)) + reach
        padded = np.pad(np.asarray(image), ((top, bottom), (left, right), (0, 0)), mode="edge")
        src = Image.fromarray(padded)
        box = (x0 + left, y0 + top, x1 + left, y1 + top)
    out = np.asarray(src.resize((s_w, s_h), Image.BILINEAR, box=box, reducing_gap=None))
    result = torch.from_numpy(out.copy()).permute(2, 0, 1)
    if src is not image:
        xs = x0 + (torch.arange(s_w, dtype=torch.float64) + 0.5) * ((x1 - x0) / s_w)
        ys = y0 + (torch.arange(s_h, dtype=torch.float64) + 0.5) * ((y1 - y0) / s_h)
        inside = ((ys >= 0) & (ys <= height))[:, None] & ((xs >= 0) & (xs <= width))[None, :]
        result = result * inside.to(torch.uint8)
    return result.contiguous()


def resample_windows(
    images: torch.Tensor | Sequence[torch.Tensor], windows: torch.Tensor, size: int | Sequence[int]
) -> torch.Tensor:
    """Batch form of :func:`resample_window` with one window per image.

    Args:
        images: ``(B, C, H, W)`` or a list of ``B`` tensors ``(C, H_i, W_i)``.
        windows: ``(B, 4)`` original pixels.
        size: output ``(S_h, S_w)``.

    Returns:
        ``(B, C, S_h, S_w)``.
    """
    check_shape("windows", windows, ("B", 4))
    if len(images) != windows.shape[0]:
        raise ShapeError(f"got {len(images)} images but {windows.shape[0]} windows")
    return torch.stack([resample_window(img, win, size) for img, win in zip(images, windows)])


def image_sizes(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Original sizes ``(B, 2)`` as ``(H, W)`` of a batch tensor or a list of images."""
    if isinstance(images, torch.Tensor):
        check_shape("images", images, ("B", "C", "H", "W"))
        b, _, h, w = images.shape
        return torch.tensor([[h, w]] * b, dtype=torch.float32, device=images.device)
    return torch.tensor([[img.shape[-2], img.shape[-1]] for img in images], dtype=torch.float32,
                        device=images[0].device if len(images) else None)


def full_windows(sizes: torch.Tensor) -> torch.Tensor:
    """Full-image windows ``(B, 4)`` for sizes ``(B, 2)`` given as ``(H, W)``."""
    zeros = torch.zeros_like(sizes)
    return torch.cat([zeros, sizes.flip(-1)], dim=-1)


def points_box(points: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Tight box ``(x0, y0, x1, y1)`` of the valid points; NaN where none is valid.

    Args:
        points: ``(N, 2)`` or ``(B, N, 2)``.
        valid: ``(N,)`` or ``(B, N)`` bool, or None for all valid.

    Returns:
        ``(4,)`` or ``(B, 4)``. Padding entries never enter the box.

    >>> points_box(torch.tensor([[1.0, 5.0], [3.0, 2.0], [9.0, 9.0]]), torch.tensor([True, True, False])).tolist()
    [1.0, 2.0, 3.0, 5.0]
    """
    if valid is None:
        valid = torch.ones(points.shape[:-1], dtype=torch.bool, device=points.device)
    if points.shape[-2] == 0:  # no points at all: the same NaN box as no valid point
        return torch.full((*points.shape[:-2], 4), float("nan"), dtype=points.dtype, device=points.device)
    inf = torch.tensor(float("inf"), dtype=points.dtype, device=points.device)
    m = valid[..., None]
    lo = torch.where(m, points, inf).amin(dim=-2)
    hi = torch.where(m, points, -inf).amax(dim=-2)
    box = torch.cat([lo, hi], dim=-1)
    none = ~valid.any(dim=-1)
    return torch.where(none[..., None], torch.full_like(box, float("nan")), box)


def inside_image(points: torch.Tensor, size_hw: torch.Tensor | Sequence[float], tolerance: float = 0.0) -> torch.Tensor:
    """Whether points lie in the image ``[0, W] x [0, H]``, within ``tolerance`` pixels.

    Args:
        points: ``(..., N, 2)`` ``(x, y)`` original pixels.
        size_hw: ``(2,)`` or ``(..., 2)`` the image ``(H, W)``.
        tolerance: pixels a point may lie outside and still count as inside.

    Returns:
        ``(..., N)`` bool; False for a NaN or infinite coordinate.

    >>> inside_image(torch.tensor([[0.0, 0.0], [10.0, 5.0], [10.5, 5.0]]), (5, 10)).tolist()
    [True, True, False]
    """
    wh = sizes_like(size_hw, points).flip(-1)
    if wh.dim() > 1 and points.dim() == wh.dim() + 1:
        wh = wh[..., None, :]
    return ((points >= -tolerance) & (points <= wh + tolerance)).all(dim=-1)


def mirror_points(points: torch.Tensor, width: float) -> torch.Tensor:
    """Points ``(..., 2)`` of an image of ``width`` pixels, after a horizontal flip: ``x -> W - x``.

    >>> mirror_points(torch.tensor([[1.0, 2.0]]), 10).tolist()
    [[9.0, 2.0]]
    """
    return torch.stack([width - points[..., 0], points[..., 1]], dim=-1)


def mirror_box(box: torch.Tensor, width: float) -> torch.Tensor:
    """A box ``(..., 4)`` ``(x0, y0, x1, y1)`` after a horizontal flip of a ``width``-pixel image.

    >>> mirror_box(torch.tensor([1.0, 2.0, 4.0, 5.0]), 10).tolist()
    [6.0, 2.0, 9.0, 5.0]
    """
    return torch.stack([width - box[..., 2], box[..., 1], width - box[..., 0], box[..., 3]], dim=-1)


# --------------------------------------------------------------------------- boxes


def sizes_like(image_size_hw: torch.Tensor | Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Image sizes ``(..., 2)`` ``(H, W)`` as a tensor of ``like``'s dtype and device.

    Raises:
        ShapeError: when the last dimension is not 2.
    """
    sizes = torch.as_tensor(image_size_hw, dtype=like.dtype, device=like.device)
    if sizes.shape[-1:] != (2,):
        raise ShapeError(f"image_size_hw: expected (..., 2) as (H, W), got shape {tuple(sizes.shape)}")
    return sizes


def as_box(box: torch.Tensor | Sequence[float], name: str = "box") -> torch.Tensor:
    """A float tensor ``(..., 4)`` ``(x0, y0, x1, y1)``; raises :class:`ShapeError` naming ``name``."""
    box = torch.as_tensor(box)
    if not box.is_floating_point():
        box = box.float()
    if box.shape[-1:] != (4,):
        raise ShapeError(f"{name}: expected (..., 4) as (x0, y0, x1, y1), got shape {tuple(box.shape)}")
    return box


def clip_box(box: torch.Tensor, image_size_hw: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Intersect ``(..., 4)`` boxes with the image ``[0, W] x [0, H]`` (NaN stays NaN).

    >>> clip_box(torch.tensor([-10.0, 5.0, 30.0, 90.0]), (50, 40)).tolist()
    [0.0, 5.0, 30.0, 50.0]
    """
    box = as_box(box)
    wh = sizes_like(image_size_hw, box).flip(-1)
    zero = torch.zeros_like(wh)
    lo = torch.minimum(torch.maximum(box[..., :2], zero), wh)
    hi = torch.minimum(torch.maximum(box[..., 2:], zero), wh)
    return torch.cat([lo, hi], dim=-1)


def box_usable(box: torch.Tensor, image_size_hw: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``(...)`` bool: the box is finite, not inverted and touches the image.

    >>> box_usable(torch.tensor([[1.0, 1.0, 5.0, 5.0], [60.0, 1.0, 70.0, 5.0]]), (50, 50)).tolist()
    [True, False]
    """
    box = as_box(box)
    wh = sizes_like(image_size_hw, box).flip(-1)
    finite = torch.isfinite(box).all(dim=-1)
    ordered = (box[..., 2:] >= box[..., :2]).all(dim=-1)
    touches = ((box[..., 2:] >= 0) & (box[..., :2] <= wh)).all(dim=-1)
    return finite & ordered & touches


def relative_size(box: torch.Tensor, image_size_hw: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``max(box_w, box_h) / max(W, H)`` of the box clipped to the image, ``(...)``; NaN for NaN boxes.

    >>> float(relative_size(torch.tensor([10.0, 10.0, 60.0, 20.0]), (100, 200)))
    0.25
    """
    box = as_box(box)
    hw = sizes_like(image_size_hw, box)
    clipped = clip_box(box, hw)
    side = (clipped[..., 2:] - clipped[..., :2]).amax(dim=-1)
    return side / hw.amax(dim=-1)
