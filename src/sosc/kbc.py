"""KBC, Keypoint Bounding box-centred Cropping: which window of each image a matcher sees.

KBC is a training-free transform that gives small objects more input pixels. It only
picks a different **window** (see :mod:`sosc.geometry`): an ``(x0, y0, x1, y1)`` box in
original pixels that is resampled to the network input ``(S_h, S_w)``. The plain path
uses the full image ``(0, 0, W, H)``.

Per image, given the box that defines it (METHOD.md, steps 1-4):

1. :func:`kbc_box` / :func:`grow_box`: the box of the valid keypoints (or an object box),
   grown on each side by ``max(margin * side, min_margin)`` pixels (per axis).
2. :func:`kbc_trigger`: zoom only where ``max(box_w, box_h) / max(W, H) < tau``.
3. :func:`kbc_window`: a window centred on the box, of the input's aspect, big enough to
   hold the box at fill ratio ``rho``, clamped between ``1 / s_max`` of the image and the
   whole image, shifted inside the image where it fits, zero-padded where it cannot.
4. :func:`sosc.geometry.resample_windows` resamples it (bilinear).

Conventions of this module:

- Boxes and windows are ``(..., 4)`` ``(x0, y0, x1, y1)`` in **original** pixels; image
  sizes are ``(..., 2)`` as ``(H, W)``; the image spans ``[0, W] x [0, H]``.
- Before steps 2-3 a box is clipped to the image. A box that does not touch the image,
  has a NaN/inf coordinate, or is inverted (``x1 < x0``) never triggers: its window is the
  full image. The same box always gives the same window, whatever defined it.
- Invalid (padded) keypoints never enter a box.

:class:`KBCWrapper` puts these functions around any matcher (see :mod:`sosc.matchers.base`)
at test/predict time; :func:`kbc_train_windows` is the training-time augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from sosc.errors import ConfigError, ShapeError, check_shape
from sosc.geometry import (
    as_size,
    full_windows,
    image_sizes,
    points_box,
    points_from_window,
    points_to_window,
    resample_windows,
)
from sosc.matchers.base import MatchOutput, keypoints_of

Images = torch.Tensor | Sequence[torch.Tensor]
SizeLike = torch.Tensor | Sequence[float]
Target = Literal["pred-box", "object-bbox", "oracle"]
TARGETS: tuple[str, ...] = ("pred-box", "object-bbox", "oracle")


# --------------------------------------------------------------------------- options


@dataclass
class KBCConfig:
    """The options of KBC, with METHOD.md's defaults (all "our choice" unless noted).

    Attributes:
        enabled: ``False`` turns KBC off: every window is the full image.
        tau: trigger threshold on ``max(box_w, box_h) / max(W, H)``; ``0`` never triggers.
        rho: fill ratio, the box's longer side over the window side (``0 < rho <= 1``).
        margin: grow the box by this fraction of its side, per side and per axis.
        min_margin: ...but by at least this many original pixels per side.
        s_max: the window side is never below ``max(W, H) / s_max`` (the zoom cap).
        target: what defines the target window at test/predict time: ``"pred-box"`` (the
            pass-1 predictions, leak-free, the default), ``"object-bbox"`` (the annotated
            target object box) or ``"oracle"`` (ground-truth target keypoints: leaks the
            answer, for analysis only).
        train_p: training-time probability that a pair is cropped around its
            ground-truth keypoint boxes (:func:`kbc_train_windows`).
        guard: ``pred-box`` only: use the more generous target window (``guard_rho``) and
            fall back to pass 1 where pass 1 looks unreliable (below).
        guard_rho: fill ratio of the target window under the guard (smaller = more context
            around the predicted box; ``0.5`` gives a 1.4x larger window than ``rho=0.7``).
        guard_min_confidence: fall back where the pass-1 mean confidence of the valid
            keypoints is below this (only for matchers that return
            ``MatchOutput.confidence``, a peak probability; its scale depends on the
            matcher's temperature and grid, so tune it per matcher; ``0`` disables it).
        guard_max_scale_ratio: fall back where the predicted target box's relative size
            ``max(box side) / max(W, H)`` and the source box's differ by more than this
            factor, either way (``inf`` disables it).
    """

    enabled: bool = True
    tau: float = 0.5
    rho: float = 0.7
    margin: float = 0.15
    min_margin: float = 8.0
    s_max: float = 4.0
    target: Target = "pred-box"
    train_p: float = 0.5
    guard: bool = True
    guard_rho: float = 0.5
    guard_min_confidence: float = 0.05
    guard_max_scale_ratio: float = 3.0

    def __post_init__(self) -> None:
        _check_params(tau=self.tau, rho=self.rho, margin=self.margin, min_margin=self.min_margin,
                      s_max=self.s_max)
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {TARGETS}, got {self.target!r}")
        if not 0.0 <= self.train_p <= 1.0:
            raise ConfigError(f"train_p is a probability in [0, 1], got {self.train_p}")
        _check_params(guard_rho=self.guard_rho)
        if not 0.0 <= self.guard_min_confidence <= 1.0:
            raise ConfigError(
                f"guard_min_confidence is a probability in [0, 1] (0 disables it), got {self.guard_min_confidence}"
            )
        if not self.guard_max_scale_ratio >= 1.0:
            raise ConfigError(
                f"guard_max_scale_ratio is a factor >= 1 (inf disables it), got {self.guard_max_scale_ratio}"
            )


def _check_params(**params: float) -> None:
    """Raise :class:`ConfigError` for an out-of-range KBC parameter, naming it and the range."""
    ranges = {
        "tau": (lambda v: v >= 0.0, ">= 0 (0 never triggers)"),
        "rho": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        "guard_rho": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        "margin": (lambda v: v >= 0.0, ">= 0"),
        "min_margin": (lambda v: v >= 0.0, ">= 0 pixels"),
        "s_max": (lambda v: v >= 1.0, ">= 1 (the largest zoom factor)"),
    }
    for name, value in params.items():
        ok, text = ranges[name]
        if not ok(float(value)):
            raise ConfigError(f"KBC option {name} must be {text}, got {value}")


# --------------------------------------------------------------------------- functional core


def _sizes_like(image_size_hw: SizeLike, like: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` ``(H, W)`` as a tensor of ``like``'s dtype and device."""
    sizes = torch.as_tensor(image_size_hw, dtype=like.dtype, device=like.device)
    if sizes.shape[-1:] != (2,):
        raise ShapeError(f"image_size_hw: expected (..., 2) as (H, W), got shape {tuple(sizes.shape)}")
    return sizes


def _as_box(box: torch.Tensor | Sequence[float], name: str = "box") -> torch.Tensor:
    box = torch.as_tensor(box)
    if not box.is_floating_point():
        box = box.float()
    if box.shape[-1:] != (4,):
        raise ShapeError(f"{name}: expected (..., 4) as (x0, y0, x1, y1), got shape {tuple(box.shape)}")
    return box


def grow_box(box: torch.Tensor, margin: float = 0.15, min_margin: float = 8.0) -> torch.Tensor:
    """Step 1 for a given box: grow each side by ``max(margin * side, min_margin)`` pixels.

    ``side`` is the box width for the x sides and its height for the y sides. NaN boxes
    stay NaN. Use it on an object box so that it defines the window exactly as a keypoint
    box would (:func:`kbc_box` is ``grow_box(points_box(...))``).

    Args:
        box: ``(..., 4)`` ``(x0, y0, x1, y1)`` original pixels.
        margin: fraction of the side added on each side.
        min_margin: lower bound of the growth per side, pixels.

    Returns:
        ``(..., 4)``, same dtype.

    >>> grow_box(torch.tensor([10.0, 10.0, 110.0, 20.0]), margin=0.25).tolist()
    [-15.0, 2.0, 135.0, 28.0]
    """
    _check_params(margin=margin, min_margin=min_margin)
    box = _as_box(box)
    side = (box[..., 2:] - box[..., :2]).clamp_min(0.0)
    grow = (margin * side).clamp_min(min_margin)
    return torch.cat([box[..., :2] - grow, box[..., 2:] + grow], dim=-1)


def kbc_box(
    points: torch.Tensor, valid: torch.Tensor | None = None, margin: float = 0.15, min_margin: float = 8.0
) -> torch.Tensor:
    """Step 1: the box of the valid keypoints, grown by a margin.

    Args:
        points: ``(N, 2)`` or ``(B, N, 2)`` ``(x, y)`` original pixels.
        valid: ``(N,)`` or ``(B, N)`` bool; ``None`` means all valid. Padded entries
            never enter the box.
        margin, min_margin: see :func:`grow_box`; one keypoint (or all equal) gives a
            ``2 * min_margin`` square.

    Returns:
        ``(4,)`` or ``(B, 4)`` ``(x0, y0, x1, y1)``; NaN where no keypoint is valid.

    >>> kbc_box(torch.tensor([[50.0, 60.0], [0.0, 0.0]]), torch.tensor([True, False])).tolist()
    [42.0, 52.0, 58.0, 68.0]
    """
    return grow_box(points_box(points, valid), margin, min_margin)


def clip_box(box: torch.Tensor, image_size_hw: SizeLike) -> torch.Tensor:
    """Intersect ``(..., 4)`` boxes with the image ``[0, W] x [0, H]`` (NaN stays NaN).

    >>> clip_box(torch.tensor([-10.0, 5.0, 30.0, 90.0]), (50, 40)).tolist()
    [0.0, 5.0, 30.0, 50.0]
    """
    box = _as_box(box)
    hw = _sizes_like(image_size_hw, box)
    wh = hw.flip(-1)
    zero = torch.zeros_like(wh)
    lo = torch.minimum(torch.maximum(box[..., :2], zero), wh)
    hi = torch.minimum(torch.maximum(box[..., 2:], zero), wh)
    return torch.cat([lo, hi], dim=-1)


def box_usable(box: torch.Tensor, image_size_hw: SizeLike) -> torch.Tensor:
    """``(...)`` bool: the box is finite, not inverted and touches the image.

    >>> box_usable(torch.tensor([[1.0, 1.0, 5.0, 5.0], [60.0, 1.0, 70.0, 5.0]]), (50, 50)).tolist()
    [True, False]
    """
    box = _as_box(box)
    wh = _sizes_like(image_size_hw, box).flip(-1)
    finite = torch.isfinite(box).all(dim=-1)
    ordered = (box[..., 2:] >= box[..., :2]).all(dim=-1)
    touches = ((box[..., 2:] >= 0) & (box[..., :2] <= wh)).all(dim=-1)
    return finite & ordered & touches


def relative_size(box: torch.Tensor, image_size_hw: SizeLike) -> torch.Tensor:
    """``max(box_w, box_h) / max(W, H)`` of the box clipped to the image, ``(...)``; NaN for NaN boxes.

    >>> float(relative_size(torch.tensor([10.0, 10.0, 60.0, 20.0]), (100, 200)))
    0.25
    """
    box = _as_box(box)
    hw = _sizes_like(image_size_hw, box)
    clipped = clip_box(box, hw)
    side = (clipped[..., 2:] - clipped[..., :2]).amax(dim=-1)
    return side / hw.amax(dim=-1)


def kbc_trigger(box: torch.Tensor, image_size_hw: SizeLike, tau: float = 0.5) -> torch.Tensor:
    """Step 2: whether an image is zoomed, ``max(box_w, box_h) / max(W, H) < tau``.

    Args:
        box: ``(..., 4)`` the grown box (:func:`kbc_box`, :func:`grow_box`), original pixels.
        image_size_hw: ``(2,)`` or ``(..., 2)`` original ``(H, W)``.
        tau: threshold; ``0`` never triggers.

    Returns:
        ``(...)`` bool; ``False`` where :func:`box_usable` is ``False`` (NaN, inverted, or
        outside the image). The size is measured on the box clipped to the image.

    >>> kbc_trigger(torch.tensor([[0.0, 0.0, 40.0, 10.0], [0.0, 0.0, 60.0, 10.0]]), (100, 100)).tolist()
    [True, False]
    """
    _check_params(tau=tau)
    box = _as_box(box)
    return box_usable(box, image_size_hw) & (relative_size(box, image_size_hw) < tau)


def _place(start: torch.Tensor, side: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """Shift a segment ``[start, start + side]`` inside ``[0, extent]``, or, when it is
    longer, so that it covers ``[0, extent]`` (padding on both sides, the box centre kept
    as close to the window centre as the image allows)."""
    room = extent - side
    return torch.minimum(torch.maximum(start, torch.minimum(room, torch.zeros_like(room))),
                         torch.maximum(room, torch.zeros_like(room)))


def kbc_window(
    box: torch.Tensor, image_size_hw: SizeLike, input_size: int | Sequence[int], rho: float = 0.7, s_max: float = 4.0
) -> torch.Tensor:
    """Step 3: the KBC window around a (grown) box, whether or not it triggers.

    With ``a = S_w / S_h`` the input's aspect, the window is ``w x h`` with ``w / h = a``:

        w = clamp(max(box_w, a * box_h) / rho, w_full / s_max, w_full),  w_full = max(W, a * H)

    i.e. the smallest window of the input's aspect that holds the box at fill ratio ``rho``
    on both axes, at most ``s_max`` times smaller than, and never larger than, the smallest
    such window that holds the whole image. For a square input this is METHOD.md's square
    of side ``L = clamp(max(box_w, box_h) / rho, max(W, H) / s_max, max(W, H))``. The window
    is centred on the box, then shifted inside the image on each axis where it fits; on an
    axis where it is longer than the image it covers the whole axis and the rest is zero
    padding at resampling. The box is clipped to the image first, so the window always
    holds the clipped box.

    Args:
        box: ``(..., 4)`` the grown box, original pixels.
        image_size_hw: ``(2,)`` or ``(..., 2)`` original ``(H, W)``.
        input_size: network input ``(S_h, S_w)`` or an int for a square.
        rho: fill ratio in ``(0, 1]``.
        s_max: largest zoom factor, ``>= 1``.

    Returns:
        ``(..., 4)`` windows ``(x0, y0, x1, y1)``, original pixels; NaN for NaN boxes.

    >>> kbc_window(torch.tensor([10.0, 10.0, 38.0, 24.0]), (200, 200), 64).tolist()
    [0.0, 0.0, 50.0, 50.0]
    >>> kbc_window(torch.tensor([60.0, 60.0, 116.0, 116.0]), (200, 200), 64).tolist()
    [48.0, 48.0, 128.0, 128.0]
    """
    _check_params(rho=rho, s_max=s_max)
    s_h, s_w = as_size(input_size)
    aspect = s_w / s_h
    box = _as_box(box)
    hw = _sizes_like(image_size_hw, box)
    box = clip_box(box, hw)
    height, width = hw[..., 0], hw[..., 1]
    box_w = box[..., 2] - box[..., 0]
    box_h = box[..., 3] - box[..., 1]
    w_full = torch.maximum(width, aspect * height)
    w = torch.minimum(torch.maximum(torch.maximum(box_w, aspect * box_h) / rho, w_full / s_max), w_full)
    h = w / aspect
    cx = 0.5 * (box[..., 0] + box[..., 2])
    cy = 0.5 * (box[..., 1] + box[..., 3])
    x0 = _place(cx - 0.5 * w, w, width)
    y0 = _place(cy - 0.5 * h, h, height)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=-1)


def kbc_windows(
    box: torch.Tensor,
    image_size_hw: SizeLike,
    input_size: int | Sequence[int],
    tau: float = 0.5,
    rho: float = 0.7,
    s_max: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 2-3 together: the window each image is resampled from, and whether KBC triggered.

    Args:
        box: ``(4,)`` or ``(B, 4)`` the grown box (:func:`kbc_box`, :func:`grow_box`),
            original pixels; NaN rows mean "no box".
        image_size_hw: ``(2,)`` or ``(B, 2)`` original ``(H, W)``.
        input_size, tau, rho, s_max: see :func:`kbc_trigger`, :func:`kbc_window`.

    Returns:
        ``windows`` ``(4,)`` / ``(B, 4)`` (the full image ``(0, 0, W, H)`` where KBC does
        not trigger), and ``triggered`` ``()`` / ``(B,)`` bool.

    >>> w, t = kbc_windows(torch.tensor([[10.0, 10.0, 38.0, 24.0], [0.0, 0.0, 150.0, 90.0]]),
    ...                    torch.tensor([200.0, 200.0]), 64)
    >>> w.tolist(), t.tolist()
    ([[0.0, 0.0, 50.0, 50.0], [0.0, 0.0, 200.0, 200.0]], [True, False])
    """
    box = _as_box(box)
    hw = _sizes_like(image_size_hw, box).expand(*box.shape[:-1], 2)
    triggered = kbc_trigger(box, hw, tau)
    zoomed = kbc_window(box, hw, input_size, rho, s_max)
    full = full_windows(hw)
    return torch.where(triggered[..., None], zoomed, full), triggered


def kbc_windows_for_points(
    points: torch.Tensor,
    valid: torch.Tensor | None,
    image_size_hw: SizeLike,
    input_size: int | Sequence[int],
    config: KBCConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-3 from keypoints: :func:`kbc_box` then :func:`kbc_windows` with ``config``'s options.

    Shapes as in :func:`kbc_box` and :func:`kbc_windows`; ``config.enabled=False`` gives
    full windows and no trigger.
    """
    config = config or KBCConfig()
    box = kbc_box(points, valid, config.margin, config.min_margin)
    if not config.enabled:
        hw = _sizes_like(image_size_hw, box).expand(*box.shape[:-1], 2)
        return full_windows(hw), torch.zeros(box.shape[:-1], dtype=torch.bool, device=box.device)
    return kbc_windows(box, image_size_hw, input_size, config.tau, config.rho, config.s_max)


def kbc_train_windows(
    src_kps: torch.Tensor,
    trg_kps: torch.Tensor,
    valid: torch.Tensor | None,
    src_size: SizeLike,
    trg_size: SizeLike,
    input_size: int | Sequence[int],
    config: KBCConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time KBC: per pair, with probability ``config.train_p``, both images get the
    KBC windows of their **ground-truth** keypoint boxes (steps 1-3, each image with its own
    trigger), else both keep the full image.

    Works on one item (``src_kps`` ``(N, 2)``, ``valid`` ``(N,)``, sizes ``(2,)`` ->
    windows ``(4,)``) as a dataset's ``__getitem__`` needs, and on a batch (``(B, N, 2)``,
    ``(B, N)``, ``(B, 2)`` -> ``(B, 4)``).

    Args:
        src_kps, trg_kps: keypoints in **original** pixels.
        valid: keypoints present in both images (``None``: all).
        src_size, trg_size: original ``(H, W)``.
        input_size: network input ``(S_h, S_w)`` or an int.
        config: KBC options (``train_p``, ``tau``, ``rho``, ...); ``enabled=False`` or
            ``train_p=0`` always gives the full images.
        generator: CPU ``torch.Generator`` for the draw (``None``: torch's global RNG,
            which DataLoader workers seed per worker).

    Returns:
        ``(src_window, trg_window)``, original pixels.
    """
    config = config or KBCConfig()
    check_shape("trg_kps", trg_kps, tuple(src_kps.shape))
    lead = tuple(src_kps.shape[:-2])
    draw = torch.rand(lead, generator=generator).to(src_kps.device) < config.train_p
    src_win, _ = kbc_windows_for_points(src_kps, valid, src_size, input_size, config)
    trg_win, _ = kbc_windows_for_points(trg_kps, valid, trg_size, input_size, config)
    src_full = full_windows(_sizes_like(src_size, src_win).expand(*lead, 2))
    trg_full = full_windows(_sizes_like(trg_size, trg_win).expand(*lead, 2))
    return torch.where(draw[..., None], src_win, src_full), torch.where(draw[..., None], trg_win, trg_full)


# --------------------------------------------------------------------------- matching through windows


def _index_images(images: Images, index: torch.Tensor) -> Images:
    if isinstance(images, torch.Tensor):
        return images[index.to(images.device)]
    return [images[i] for i in index.tolist()]


def _batch_size(images: Images) -> int:
    return images.shape[0] if isinstance(images, torch.Tensor) else len(images)


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
        ``trg_kps`` ``(B, N, 2)`` in **original** target pixels, and the matcher's raw output
        (input pixels: a tensor or a :class:`MatchOutput`).
    """
    check_shape("src_kps", src_kps, ("B", "N", 2))
    b, n = src_kps.shape[:2]
    valid = _valid_or_all(valid, b, n, src_kps.device)
    src_windows = src_windows.to(src_kps.dtype)
    trg_windows = trg_windows.to(src_kps.dtype)
    src_in = resample_windows(src_img, src_windows, input_size)
    trg_in = resample_windows(trg_img, trg_windows, input_size)
    kps_in = points_to_window(src_kps, src_windows, input_size)
    output = matcher(src_in, trg_in, kps_in, valid)
    pred_in = keypoints_of(output)
    check_shape("matcher output keypoints", pred_in, (b, n, 2))
    return points_from_window(pred_in.to(src_kps.dtype), trg_windows, input_size), output


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
    src_full = full_windows(image_sizes(src_img).to(src_kps.device, src_kps.dtype))
    trg_full = full_windows(image_sizes(trg_img).to(src_kps.device, src_kps.dtype))
    return match_in_windows(matcher, src_img, trg_img, src_kps, valid, src_full, trg_full, input_size)


def _valid_or_all(valid: torch.Tensor | None, b: int, n: int, device: torch.device) -> torch.Tensor:
    if valid is None:
        return torch.ones(b, n, dtype=torch.bool, device=device)
    check_shape("valid", valid, (b, n))
    if valid.dtype != torch.bool:
        raise ShapeError(f"valid: expected a bool tensor, got {valid.dtype}; pass `valid.bool()`")
    return valid


def _confidence_of(output: torch.Tensor | MatchOutput) -> torch.Tensor | None:
    return output.confidence if isinstance(output, MatchOutput) else None


def pred_box_fallback(
    src_box: torch.Tensor,
    src_size: torch.Tensor,
    pred_box: torch.Tensor,
    trg_size: torch.Tensor,
    confidence: torch.Tensor | None,
    valid: torch.Tensor,
    min_confidence: float,
    max_scale_ratio: float,
) -> torch.Tensor:
    """The ``pred-box`` guard's verdict: ``(B,)`` bool, pass 1 is unreliable for this pair.

    A pair falls back where (a) the mean confidence ``(B, N)`` of its valid keypoints is
    below ``min_confidence`` (skipped when ``confidence`` is ``None``), or (b) the relative
    sizes (:func:`relative_size`) of the source box and of the predicted target box differ
    by more than ``max_scale_ratio`` either way. Boxes ``(B, 4)`` are the grown boxes,
    sizes ``(B, 2)`` ``(H, W)``. NaN boxes never fall back (they do not trigger anyway).
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


@dataclass
class KBCOutput:
    """What :meth:`KBCWrapper.forward_with_info` returns. ``B`` pairs, ``N`` keypoints.

    Attributes:
        kps: ``(B, N, 2)`` predicted target keypoints, original target pixels (KBC result).
        plain_kps: ``(B, N, 2)`` the pass-1 (plain, full-image) prediction, original pixels:
            the "without KBC" result at no extra cost.
        src_window, trg_window: ``(B, 4)`` the windows that produced ``kps`` (full images
            where the pair kept pass 1).
        src_box, trg_box: ``(B, 4)`` the grown boxes that defined the windows (NaN: none).
        src_triggered, trg_triggered: ``(B,)`` bool, KBC triggered on that image (before
            the guard).
        refined: ``(B,)`` bool, pass 2 ran on the pair and gave ``kps``.
        fallback: ``(B,)`` bool, the ``pred-box`` guard kept pass 1 for the pair.
        confidence: ``(B, N)`` the matcher's confidence of the kept pass, or ``None``.
        target: the target mode; ``"oracle"`` results leak the answer.
    """

    kps: torch.Tensor
    plain_kps: torch.Tensor
    src_window: torch.Tensor
    trg_window: torch.Tensor
    src_box: torch.Tensor
    trg_box: torch.Tensor
    src_triggered: torch.Tensor
    trg_triggered: torch.Tensor
    refined: torch.Tensor
    fallback: torch.Tensor
    confidence: torch.Tensor | None
    target: str

    @property
    def leaks_answer(self) -> bool:
        """True under ``oracle``: metrics from these results must say so."""
        return self.target == "oracle"


class KBCWrapper(nn.Module):
    """KBC around any matcher: picks a window per image, runs the matcher, maps back.

    Called as ``trg_kps = wrapped(src_img, trg_img, src_kps, valid, trg_bbox=None, trg_kps=None)``
    with **original** images (a ``(B, 3, H, W)`` tensor or a list of ``(3, H_i, W_i)``, float
    RGB in ``[0, 1]``), ``src_kps`` ``(B, N, 2)`` original source pixels, ``valid`` ``(B, N)``
    bool or ``None``; returns ``(B, N, 2)`` original target pixels.
    :meth:`forward_with_info` returns a :class:`KBCOutput` with the windows and flags.

    Pass 1 runs the plain path (full images) on the whole batch. The source window comes
    from the source keypoints; the target window from ``target``: ``"pred-box"`` the pass-1
    predictions (valid only), ``"object-bbox"`` ``trg_bbox`` ``(B, 4)`` original target
    pixels (NaN rows: no trigger), ``"oracle"`` ``trg_kps`` ``(B, N, 2)`` (leaks the answer).
    Every box goes through the same steps (:func:`grow_box`, :func:`kbc_windows`). Pass 2
    runs only on the pairs where a window changed (the batch is indexed); the others keep
    pass 1 bit for bit. Under ``pred-box`` with ``guard=True`` the target window uses
    ``guard_rho`` and unreliable pairs (:func:`pred_box_fallback`) keep pass 1.
    ``enabled=False`` or ``tau=0`` is the plain path.

    Args:
        matcher: anything following the matcher contract (an ``nn.Module`` is registered
            as a submodule).
        input_size: network input ``(S_h, S_w)`` or an int.
        Other arguments: see :class:`KBCConfig` (``train_p`` is unused here).
    """

    def __init__(
        self,
        matcher: Any,
        input_size: int | Sequence[int] = 256,
        target: Target = "pred-box",
        tau: float = 0.5,
        rho: float = 0.7,
        margin: float = 0.15,
        min_margin: float = 8.0,
        s_max: float = 4.0,
        enabled: bool = True,
        guard: bool = True,
        guard_rho: float = 0.5,
        guard_min_confidence: float = 0.05,
        guard_max_scale_ratio: float = 3.0,
    ) -> None:
        super().__init__()
        if not callable(matcher):
            raise ConfigError(f"matcher must be callable (an nn.Module or function), got {type(matcher).__name__}")
        self.matcher = matcher
        self.input_size = as_size(input_size)
        self.config = KBCConfig(
            enabled=enabled, tau=tau, rho=rho, margin=margin, min_margin=min_margin, s_max=s_max, target=target,
            guard=guard, guard_rho=guard_rho, guard_min_confidence=guard_min_confidence,
            guard_max_scale_ratio=guard_max_scale_ratio,
        )

    @classmethod
    def from_config(cls, matcher: Any, config: KBCConfig, input_size: int | Sequence[int] = 256) -> KBCWrapper:
        """Build from a :class:`KBCConfig` (its ``train_p`` is ignored)."""
        options = asdict(config)
        options.pop("train_p")
        return cls(matcher, input_size=input_size, **options)

    @property
    def leaks_answer(self) -> bool:
        """True under ``target="oracle"``."""
        return self.config.target == "oracle"

    def extra_repr(self) -> str:
        c = self.config
        return (f"input_size={self.input_size}, target={c.target!r}, enabled={c.enabled}, tau={c.tau}, "
                f"rho={c.rho}, margin={c.margin}, s_max={c.s_max}, guard={c.guard}")

    def forward(
        self,
        src_img: Images,
        trg_img: Images,
        src_kps: torch.Tensor,
        valid: torch.Tensor | None = None,
        trg_bbox: torch.Tensor | None = None,
        trg_kps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, N, 2)`` predicted target keypoints, original target pixels (see the class)."""
        return self.forward_with_info(src_img, trg_img, src_kps, valid, trg_bbox, trg_kps).kps

    def forward_with_info(
        self,
        src_img: Images,
        trg_img: Images,
        src_kps: torch.Tensor,
        valid: torch.Tensor | None = None,
        trg_bbox: torch.Tensor | None = None,
        trg_kps: torch.Tensor | None = None,
    ) -> KBCOutput:
        """Like ``forward``, returning a :class:`KBCOutput` (windows, triggers, pass-1 result)."""
        cfg = self.config
        check_shape("src_kps", src_kps, ("B", "N", 2))
        b, n = src_kps.shape[:2]
        for name, images in (("src_img", src_img), ("trg_img", trg_img)):
            if _batch_size(images) != b:
                raise ShapeError(f"{name} holds {_batch_size(images)} images but src_kps has {b} pairs")
        valid = _valid_or_all(valid, b, n, src_kps.device)
        device, dtype = src_kps.device, src_kps.dtype
        src_size = image_sizes(src_img).to(device, dtype)
        trg_size = image_sizes(trg_img).to(device, dtype)
        trg_box = self._target_box(trg_bbox, trg_kps, valid, b, n, device, dtype)  # checks inputs early

        plain, out1 = match_plain(self.matcher, src_img, trg_img, src_kps, valid, self.input_size)
        conf1 = _confidence_of(out1)
        no = torch.zeros(b, dtype=torch.bool, device=device)
        src_full, trg_full = full_windows(src_size), full_windows(trg_size)
        src_box = kbc_box(src_kps.detach(), valid, cfg.margin, cfg.min_margin)
        if not cfg.enabled:
            return KBCOutput(plain, plain, src_full, trg_full, src_box, torch.full_like(src_box, float("nan")),
                             no, no, no, no, conf1, cfg.target)

        src_win, src_trig = kbc_windows(src_box, src_size, self.input_size, cfg.tau, cfg.rho, cfg.s_max)
        rho_t = cfg.rho
        fallback = no
        if cfg.target == "pred-box":
            trg_box = kbc_box(plain.detach(), valid, cfg.margin, cfg.min_margin)
            rho_t = cfg.guard_rho if cfg.guard else cfg.rho
        trg_win, trg_trig = kbc_windows(trg_box, trg_size, self.input_size, cfg.tau, rho_t, cfg.s_max)
        if cfg.target == "pred-box" and cfg.guard:
            fallback = trg_trig & pred_box_fallback(src_box, src_size, trg_box, trg_size, conf1, valid,
                                                    cfg.guard_min_confidence, cfg.guard_max_scale_ratio)
        # pass 2 only where a window differs from the full image (untriggered images have the
        # full window, and a triggered one can grow back to it when tau is close to rho)
        changed = (src_win != src_full).any(-1) | (trg_win != trg_full).any(-1)
        refined = changed & ~fallback
        src_win = torch.where(refined[:, None], src_win, src_full)
        trg_win = torch.where(refined[:, None], trg_win, trg_full)

        kps, conf = plain, conf1
        index = refined.nonzero().flatten()
        if index.numel() > 0:
            kps2, out2 = match_in_windows(
                self.matcher, _index_images(src_img, index), _index_images(trg_img, index), src_kps[index],
                valid[index], src_win[index], trg_win[index], self.input_size,
            )
            kps = plain.clone()
            kps[index] = kps2
            conf2 = _confidence_of(out2)
            if conf1 is not None and conf2 is not None:
                conf = conf1.clone()
                conf[index] = conf2.to(conf.dtype)
        return KBCOutput(kps, plain, src_win, trg_win, src_box, trg_box, src_trig, trg_trig, refined, fallback,
                         conf, cfg.target)

    def _target_box(
        self,
        trg_bbox: torch.Tensor | None,
        trg_kps: torch.Tensor | None,
        valid: torch.Tensor,
        b: int,
        n: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """The grown target box for ``object-bbox`` / ``oracle`` (NaN placeholder for ``pred-box``)."""
        cfg = self.config
        if cfg.target == "object-bbox" and cfg.enabled:
            if trg_bbox is None:
                raise ConfigError(
                    "KBCWrapper(target='object-bbox') needs trg_bbox, (B, 4) target object boxes in original "
                    "pixels: pass trg_bbox=..., or use target='pred-box' where the dataset has no boxes"
                )
            check_shape("trg_bbox", trg_bbox, (b, 4))
            return grow_box(trg_bbox.to(device, dtype), cfg.margin, cfg.min_margin)
        if cfg.target == "oracle" and cfg.enabled:
            if trg_kps is None:
                raise ConfigError(
                    "KBCWrapper(target='oracle') needs trg_kps, (B, N, 2) ground-truth target keypoints in "
                    "original pixels: pass trg_kps=..., or use target='pred-box' (leak-free)"
                )
            check_shape("trg_kps", trg_kps, (b, n, 2))
            return kbc_box(trg_kps.to(device, dtype), valid, cfg.margin, cfg.min_margin)
        return torch.full((b, 4), float("nan"), device=device, dtype=dtype)
