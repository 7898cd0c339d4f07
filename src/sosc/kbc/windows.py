"""KBC steps 1-3 as functions: the grown box, the trigger and the window of each image.

Per image, given the box that defines it (``docs/METHOD.md``, steps 1-4):

1. :func:`kbc_box` / :func:`grow_box`: the box of the valid keypoints (or an object box),
   grown on each side by ``max(margin * side, min_margin)`` pixels (per axis).
2. :func:`kbc_trigger`: zoom only where ``max(box_w, box_h) / max(W, H) < tau``.
3. :func:`kbc_window`: a window centred on the box, of the input's aspect, big enough to
   hold the box at fill ratio ``rho``, clamped between ``1 / s_max`` of the image and the
   whole image, shifted inside the image where it fits, zero-padded where it cannot.
4. :func:`sosc.geometry.resample_windows` resamples it (bilinear).

Conventions: boxes and windows are ``(..., 4)`` ``(x0, y0, x1, y1)`` in **original**
pixels; image sizes ``(..., 2)`` as ``(H, W)``; the image spans ``[0, W] x [0, H]``. Before
steps 2-3 a box is clipped to the image. A box that does not touch the image, has a NaN/inf
coordinate, or is inverted never triggers: its window is the full image. The same box always
gives the same window, whatever defined it. Invalid (padded) keypoints never enter a box.
Defaults are :class:`~sosc.kbc.config.KBCConfig`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sosc.errors import check_shape
from sosc.geometry import (
    as_box,
    as_size,
    box_usable,
    clip_box,
    full_windows,
    points_box,
    relative_size,
    sizes_like,
)
from sosc.kbc.config import KBCConfig, check_kbc_options

SizeLike = torch.Tensor | Sequence[float]


def grow_box(box: torch.Tensor, margin: float = KBCConfig.margin, min_margin: float = KBCConfig.min_margin) -> torch.Tensor:
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
    check_kbc_options(margin=margin, min_margin=min_margin)
    box = as_box(box)
    side = (box[..., 2:] - box[..., :2]).clamp_min(0.0)
    grow = (margin * side).clamp_min(min_margin)
    return torch.cat([box[..., :2] - grow, box[..., 2:] + grow], dim=-1)


def kbc_box(
    points: torch.Tensor, valid: torch.Tensor | None = None, margin: float = KBCConfig.margin, min_margin: float = KBCConfig.min_margin
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


def kbc_trigger(box: torch.Tensor, image_size_hw: SizeLike, tau: float = KBCConfig.tau) -> torch.Tensor:
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
    check_kbc_options(tau=tau)
    box = as_box(box)
    return box_usable(box, image_size_hw) & (relative_size(box, image_size_hw) < tau)


def _place(start: torch.Tensor, side: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """Shift a segment ``[start, start + side]`` inside ``[0, extent]``, or, when it is
    longer, so that it covers ``[0, extent]`` (padding on both sides, the box centre kept
    as close to the window centre as the image allows)."""
    room = extent - side
    return torch.minimum(torch.maximum(start, torch.minimum(room, torch.zeros_like(room))),
                         torch.maximum(room, torch.zeros_like(room)))


def kbc_window(
    box: torch.Tensor, image_size_hw: SizeLike, input_size: int | Sequence[int], rho: float = KBCConfig.rho, s_max: float = KBCConfig.s_max
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
    check_kbc_options(rho=rho, s_max=s_max)
    return _window(as_box(box), image_size_hw, input_size, rho, s_max)


def _window(
    box: torch.Tensor, image_size_hw: SizeLike, input_size: int | Sequence[int], rho: float | torch.Tensor,
    s_max: float,
) -> torch.Tensor:
    """:func:`kbc_window` without the option checks; ``rho`` may be a ``(...)`` tensor."""
    s_h, s_w = as_size(input_size)
    aspect = s_w / s_h
    hw = sizes_like(image_size_hw, box)
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
    tau: float = KBCConfig.tau,
    rho: float = KBCConfig.rho,
    s_max: float = KBCConfig.s_max,
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
    box = as_box(box)
    hw = sizes_like(image_size_hw, box).expand(*box.shape[:-1], 2)
    triggered = kbc_trigger(box, hw, tau)
    zoomed = kbc_window(box, hw, input_size, rho, s_max)
    full = full_windows(hw)
    return torch.where(triggered[..., None], zoomed, full), triggered


def zoom_params(config: KBCConfig, input_size: int | Sequence[int]) -> tuple[float, float]:
    """The ``(tau, rho)`` of steps 2-3 that ``config`` amounts to at ``input_size``.

    With the scale-aware zoom (``config.zoom_px``) the window is the one of fill ratio
    ``rho = min(zoom_px / max(S_h, S_w), config.rho)`` (the grown box's longer side then spans
    ``zoom_px`` input pixels (``"auto"``, where no matcher resolved it:
    :data:`~sosc.kbc.config.DEFAULT_ZOOM_PX`); at small inputs, where that would fill more than ``config.rho``
    of the window, the box keeps ``config.rho``'s context around it) and an image zooms where its window is at least ``min_zoom`` times smaller than the
    whole image, i.e. ``tau = rho / min_zoom``. Otherwise METHOD.md's ``(tau, rho)``.

    >>> zoom_params(KBCConfig(zoom_px=96.0, min_zoom=1.25), 256)
    (0.3, 0.375)
    >>> zoom_params(KBCConfig(zoom_px=96.0, min_zoom=1.25), 64)  # 96 px would overfill 64
    (0.5599999999999999, 0.7)
    >>> zoom_params(KBCConfig(zoom_px=None, tau=0.5, rho=0.7), 256)
    (0.5, 0.7)
    """
    if config.zoom_px is None:
        return config.tau, config.rho
    zoom_px = config.for_matcher().zoom_px  # "auto" without a matcher at hand: DEFAULT_ZOOM_PX
    rho = min(config.rho, zoom_px / max(as_size(input_size)))
    return rho / config.min_zoom, rho


def fill_ratio(box: torch.Tensor, window: torch.Tensor, image_size_hw: SizeLike,
               input_size: int | Sequence[int]) -> torch.Tensor:
    """``(...)`` the fill ratio a window gives a (grown) box: ``max(box_w, a * box_h) / w`` of the
    box clipped to the image, ``a = S_w / S_h`` (the ``rho`` that :func:`kbc_window` would need to
    choose this window); NaN for a NaN box.

    >>> round(float(fill_ratio(torch.tensor([0.0, 0.0, 40.0, 20.0]), torch.tensor([0.0, 0.0, 100.0, 100.0]), (200, 200), 64)), 6)
    0.4
    """
    s_h, s_w = as_size(input_size)
    box = clip_box(as_box(box), sizes_like(image_size_hw, as_box(box)))
    side = torch.maximum(box[..., 2] - box[..., 0], (s_w / s_h) * (box[..., 3] - box[..., 1]))
    return side / (window[..., 2] - window[..., 0])


def match_window_scales(
    src_box: torch.Tensor,
    trg_box: torch.Tensor,
    src_window: torch.Tensor,
    trg_window: torch.Tensor,
    src_size: SizeLike,
    trg_size: SizeLike,
    input_size: int | Sequence[int],
    min_zoom: float = KBCConfig.min_zoom,
    s_max: float = KBCConfig.s_max,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring both windows of each pair to one scale: the image whose box fills more of its window
    gets a larger window (a smaller zoom), so that both boxes fill the smaller of the two ratios.

    Only ever zooms less: a window grows, up to the full image; a grown window that would zoom
    less than ``min_zoom`` becomes the full image. Boxes and windows ``(B, 4)`` original pixels,
    sizes ``(B, 2)`` ``(H, W)``. Pairs with a NaN box keep their windows. Returns the windows.
    """
    src_fill = fill_ratio(src_box, src_window, src_size, input_size)
    trg_fill = fill_ratio(trg_box, trg_window, trg_size, input_size)
    target = torch.minimum(src_fill, trg_fill)
    out = []
    for box, window, hw, fill in ((src_box, src_window, src_size, src_fill), (trg_box, trg_window, trg_size, trg_fill)):
        hw = sizes_like(hw, window).expand(*window.shape[:-1], 2)
        grow = torch.isfinite(target) & (fill > target * 1.0001)
        rho = torch.where(grow, target, torch.ones_like(target)).clamp(1e-6, 1.0)
        wider = _window(box, hw, input_size, rho, s_max)
        full = full_windows(hw)
        zoom = (full[..., 2] - full[..., 0]) / (wider[..., 2] - wider[..., 0])
        wider = torch.where((zoom >= min_zoom)[..., None], wider, full)
        out.append(torch.where(grow[..., None], wider, window))
    return out[0], out[1]


def robust_inliers(points: torch.Tensor, valid: torch.Tensor, k: float = KBCConfig.robust_k) -> torch.Tensor:
    """``(B, N)`` bool: the valid points within ``k`` median distances of the points' median.

    The median distance is floored at 1 pixel. Used for the ``robust`` pred-box: a stray
    prediction does not blow the target window up. Pairs with fewer than 3 valid points keep
    them all.

    >>> pts = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [90.0, 90.0]]])
    >>> robust_inliers(pts, torch.ones(1, 5, dtype=torch.bool)).tolist()
    [[True, True, True, True, False]]
    """
    nan = torch.full_like(points, float("nan"))
    centre = torch.where(valid[..., None], points, nan).nanmedian(dim=-2).values
    dist = torch.linalg.vector_norm(points - centre[..., None, :], dim=-1)
    med = torch.where(valid, dist, torch.full_like(dist, float("nan"))).nanmedian(dim=-1).values
    keep = valid & (dist <= k * med.clamp_min(1.0)[..., None])
    few = valid.sum(-1) < 3
    return torch.where(few[..., None], valid, keep)


def similarity_box(src_kps: torch.Tensor, pred_kps: torch.Tensor, valid: torch.Tensor,
                   src_box: torch.Tensor) -> torch.Tensor:
    """A target box from the pass-1 predictions that a minority of stray predictions cannot move
    or blow up: the source box scaled by the median ratio of pairwise distances (predicted over
    source keypoints) and placed so that the source keypoints' median lands on the predictions'.

    Args:
        src_kps, pred_kps: ``(B, N, 2)`` source keypoints and their pass-1 predictions,
            original pixels of each image.
        valid: ``(B, N)`` bool.
        src_box: ``(B, 4)`` the (grown) source box.

    Returns:
        ``(B, 4)`` original target pixels. With one valid keypoint there is no distance to
        compare: the scale is 1 (the source box moved onto the prediction, as the box of the
        prediction would be); NaN for a pair without a valid keypoint.

    >>> src = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]])
    >>> pred = 2 * src + 100.0
    >>> pred[0, 3] = torch.tensor([900.0, 900.0])  # a stray prediction
    >>> similarity_box(src, pred, torch.ones(1, 4, dtype=torch.bool), torch.tensor([[-5.0, -5.0, 15.0, 15.0]])).tolist()
    [[90.0, 90.0, 130.0, 130.0]]
    """
    nan = float("nan")
    dq = torch.cdist(src_kps.float(), src_kps.float())
    dp = torch.cdist(pred_kps.float(), pred_kps.float())
    n = src_kps.shape[-2]
    upper = torch.ones(n, n, dtype=torch.bool, device=valid.device).triu(1)
    both = valid[..., :, None] & valid[..., None, :] & upper
    ratio = torch.where(both, dp / dq.clamp_min(1.0), torch.full_like(dp, nan))
    few = valid.sum(-1) < 2
    scale = torch.where(few, 1.0, ratio.flatten(-2).nanmedian(dim=-1).values)
    q_med = torch.where(valid[..., None], src_kps, torch.full_like(src_kps, nan)).nanmedian(dim=-2).values
    p_med = torch.where(valid[..., None], pred_kps, torch.full_like(pred_kps, nan)).nanmedian(dim=-2).values
    lo = (src_box[..., :2] - q_med) * scale[..., None] + p_med
    hi = (src_box[..., 2:] - q_med) * scale[..., None] + p_med
    box = torch.cat([lo, hi], dim=-1)
    none = ~valid.any(-1)
    return torch.where(none[..., None], torch.full_like(box, nan), box).to(src_box.dtype)


def pair_windows(
    src_box: torch.Tensor,
    trg_box: torch.Tensor,
    src_size: SizeLike,
    trg_size: SizeLike,
    input_size: int | Sequence[int],
    config: KBCConfig | None = None,
    trg_context: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 2-3 for both images of each pair with ``config``'s zoom (:func:`zoom_params`), the
    target window ``trg_context`` times larger, and both brought to one scale where
    ``config.match_scales`` (:func:`match_window_scales`).

    Args:
        src_box, trg_box: ``(B, 4)`` grown boxes, original pixels (NaN: no box).
        src_size, trg_size: ``(B, 2)`` or ``(2,)`` original ``(H, W)``.
        input_size: network input ``(S_h, S_w)`` or an int.
        config: the options (default :class:`KBCConfig`).
        trg_context: ``>= 1``, the target window's side factor (``pred-box``'s context).

    Returns:
        ``src_window``, ``trg_window`` ``(B, 4)``, and whether each image triggered ``(B,)``.
    """
    config = config or KBCConfig()
    tau, rho = zoom_params(config, input_size)
    src_win, src_trig = kbc_windows(src_box, src_size, input_size, tau, rho, config.s_max)
    trg_win, trg_trig = kbc_windows(trg_box, trg_size, input_size, tau / trg_context, rho / trg_context,
                                    config.s_max)
    if config.match_scales:
        min_zoom = config.min_zoom if config.zoom_px is not None else 1.0
        src_win, trg_win = match_window_scales(src_box, trg_box, src_win, trg_win, src_size, trg_size, input_size,
                                               min_zoom, config.s_max)
    return src_win, trg_win, src_trig, trg_trig


def pass1_source_windows(
    box: torch.Tensor,
    image_size_hw: SizeLike,
    input_size: int | Sequence[int],
    span_px: float | None = KBCConfig.pass1_src_px,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 1's source window: the source **shrunk** so that its grown keypoint box spans at
    most ``span_px`` input pixels along its longer side (``docs/METHOD.md``, pass 1).

    A target object several times smaller than the source object is not found by a matcher
    that sees the source at full size (the features of the two differ by that scale); seen
    smaller, the source meets a small target nearer its scale, and a large target is still
    found well enough for pass 2 to zoom on it. Where the whole image already puts the box
    under ``span_px`` input pixels, the window is the full image. Otherwise it is the window
    of the input's aspect ``a = S_w / S_h``, ``w = max(box_w, a * box_h) * S_w / span_px``
    wide, centred on the box: larger than the image, the rest zero padding at resampling.

    Args:
        box: ``(B, 4)`` the grown source box (:func:`kbc_box`), original pixels; NaN rows: no box.
        image_size_hw: ``(2,)`` or ``(B, 2)`` original ``(H, W)``.
        input_size: network input ``(S_h, S_w)`` or an int.
        span_px: input pixels, ``> 0``; ``None``: never shrink.

    Returns:
        ``windows`` ``(B, 4)`` (the full image where not shrunk), ``shrunk`` ``(B,)`` bool.

    >>> w, shrunk = pass1_source_windows(torch.tensor([[100.0, 100.0, 300.0, 200.0], [0.0, 0.0, 40.0, 40.0]]),
    ...                                  torch.tensor([400.0, 400.0]), 256, 64.0)
    >>> w.tolist(), shrunk.tolist()
    ([[-200.0, -250.0, 600.0, 550.0], [0.0, 0.0, 400.0, 400.0]], [True, False])
    """
    box = as_box(box)
    hw = sizes_like(image_size_hw, box).expand(*box.shape[:-1], 2)
    full = full_windows(hw)
    if span_px is None:
        return full, torch.zeros(box.shape[:-1], dtype=torch.bool, device=box.device)
    check_kbc_options(pass1_src_px=span_px)
    s_h, s_w = as_size(input_size)
    aspect = s_w / s_h
    box_w, box_h = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
    w = torch.maximum(box_w, aspect * box_h) * s_w / span_px
    h = w / aspect
    w_full = torch.maximum(hw[..., 1], aspect * hw[..., 0])
    shrunk = torch.isfinite(box).all(-1) & (w > w_full)
    cx, cy = 0.5 * (box[..., 0] + box[..., 2]), 0.5 * (box[..., 1] + box[..., 3])
    window = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    return torch.where(shrunk[..., None], window, full), shrunk


def kbc_windows_for_points(
    points: torch.Tensor,
    valid: torch.Tensor | None,
    image_size_hw: SizeLike,
    input_size: int | Sequence[int],
    config: KBCConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-3 for one image from its keypoints: :func:`kbc_box`, then :func:`kbc_windows` with
    ``config``'s zoom (:func:`zoom_params`).

    Shapes as in :func:`kbc_box` and :func:`kbc_windows` (``config.enabled`` is the
    caller's business: this always applies steps 1-3).
    """
    config = config or KBCConfig()
    box = kbc_box(points, valid, config.margin, config.min_margin)
    tau, rho = zoom_params(config, input_size)
    return kbc_windows(box, image_size_hw, input_size, tau, rho, config.s_max)


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
    KBC windows of their **ground-truth** keypoint boxes (:func:`pair_windows`: the zoom and
    scale matching of test time), else both keep the full image.

    Works on one item (``src_kps`` ``(N, 2)``, ``valid`` ``(N,)``, sizes ``(2,)`` ->
    windows ``(4,)``) as a dataset's ``__getitem__`` needs, and on a batch (``(B, N, 2)``,
    ``(B, N)``, ``(B, 2)`` -> ``(B, 4)``).

    Args:
        src_kps, trg_kps: keypoints in **original** pixels.
        valid: keypoints present in both images (``None``: all).
        src_size, trg_size: original ``(H, W)``.
        input_size: network input ``(S_h, S_w)`` or an int.
        config: KBC options (``train_p``, the zoom, ...); ``train_p=0`` always gives the full
            images (``enabled`` is about evaluation and plays no part here).
        generator: CPU ``torch.Generator`` for the draw (``None``: torch's global RNG,
            which DataLoader workers seed per worker).

    Returns:
        ``(src_window, trg_window)``, original pixels.
    """
    config = config or KBCConfig()
    check_shape("trg_kps", trg_kps, tuple(src_kps.shape))
    one = src_kps.dim() == 2
    if one:
        src_kps, trg_kps = src_kps[None], trg_kps[None]
        valid = None if valid is None else valid[None]
    lead = tuple(src_kps.shape[:-2])
    draw = torch.rand(lead, generator=generator).to(src_kps.device) < config.train_p
    src_box = kbc_box(src_kps, valid, config.margin, config.min_margin)
    trg_box = kbc_box(trg_kps, valid, config.margin, config.min_margin)
    src_hw = sizes_like(src_size, src_box).expand(*lead, 2)
    trg_hw = sizes_like(trg_size, trg_box).expand(*lead, 2)
    src_win, trg_win, _, _ = pair_windows(src_box, trg_box, src_hw, trg_hw, input_size, config)
    src_out = torch.where(draw[..., None], src_win, full_windows(src_hw))
    trg_out = torch.where(draw[..., None], trg_win, full_windows(trg_hw))
    return (src_out[0], trg_out[0]) if one else (src_out, trg_out)
