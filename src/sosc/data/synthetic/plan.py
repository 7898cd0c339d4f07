"""Pair planning: every random choice of a pair, drawn before any pixel is rendered.

:func:`plan_pair` turns ``(seed, split, index)`` into a :class:`PairPlan`: the instance (shape,
texture, aspect, smooth warp, rim) and, for each of the two views, the image size, the 3D
rotation and scale, the placement (possibly truncated), the occluder, the background and the
photometric change, plus where the keypoints land and which are visible. A draw that breaks
a constraint (too few keypoints visible in both views, an empty box, no texture found, no
rotation within the tilt limit) is redrawn with the next attempt's generator, so a plan is a
function of ``(seed, split, index)`` alone. Rendering only reads the plan.

The sampling ranges (image sides, relative object sizes, viewpoint and scale classes and
their probabilities, truncation and occlusion rates) are documented in
:mod:`sosc.data.synthetic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sosc.data.synthetic.occluders import Occluder, sample_occluder
from sosc.data.synthetic.photometric import Photometric, sample_photometric
from sosc.data.synthetic.photos import photo_pools, photo_pyramid, sample_bilinear
from sosc.data.synthetic.shapes import CATEGORIES, template
from sosc.data.synthetic.spec import SPLIT_CODES
from sosc.data.synthetic.warps import (
    SmoothField,
    ViewWarp,
    plane_homography,
    rotation_angle,
    sample_field,
    sample_rotations,
)

_IMAGE_SIDES = (192, 384)  # inclusive range of each image side, px
_REL_SIZE = (0.05, 0.85)  # relative object size range (of the image's longer side)
_VIEWPOINT_CLASSES = ((0.0, 15.0), (20.0, 35.0), (40.0, 60.0))  # degrees
_VIEWPOINT_PROBS = (0.4, 0.35, 0.25)
_VIEWPOINT_THRESHOLDS = (17.5, 37.5)
_SCALE_CLASSES = ((1.0, 1.4), (1.6, 2.1), (2.4, 4.0))  # size ratio rho
_SCALE_PROBS = (0.5, 0.3, 0.2)
_SCALE_THRESHOLDS = (1.5, 2.25)
_P_TRUNCATE = 0.2
_P_OCCLUDE = 0.2
_MIN_COMMON_KPS = 3
_MAX_ATTEMPTS = 50


@dataclass(frozen=True, eq=False)
class Instance:
    """One object instance, shared by the two views of a pair.

    Attributes:
        category: one of :data:`~.shapes.CATEGORIES`.
        texture_photo: the photograph the texture is cut from.
        tex_affine: ``(2, 3)`` canonical -> level-0 photo pixels.
        tex_scale: photo pixels per canonical unit.
        aspect: the aspect change ``a`` (x scaled by ``a``, y by ``1 / a``; see
            :class:`~.warps.ViewWarp`).
        inst_field: the instance's smooth warp, canonical units.
        rim: ``(grey level in [0, 1], width in canonical units)`` or None.
    """

    category: str
    texture_photo: str
    tex_affine: np.ndarray
    tex_scale: float
    aspect: float
    inst_field: SmoothField
    rim: tuple[float, float] | None


def _keypoints_in_frame(kps_px: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """``(K,)`` bool: which keypoints ``(K, 2)`` (px) lie in an image of ``size_wh`` ``(W, H)``,
    i.e. in ``[0, W - 0.01) x [0, H - 0.01)`` (so that rounding to 2 decimals keeps them inside)."""
    w, h = size_wh
    k = kps_px
    return (k[:, 0] >= 0) & (k[:, 1] >= 0) & (k[:, 0] < w - 0.01) & (k[:, 1] < h - 0.01)


@dataclass(frozen=True, eq=False)
class View:
    """One image of a pair, fully determined (rendering only reads it).

    Attributes:
        size_wh: ``(W, H)`` px.
        warp: image px <-> canonical.
        px_per_unit: local scale at the object centre, image px per canonical unit.
        kps_px: ``(K, 2)`` all template keypoints in image px (also those outside the frame).
        visible: ``(K,)`` bool, in the frame and not under the occluder.
        bbox: ``(x1, y1, x2, y2)`` ints, floor/ceil of the outline clipped to the image.
        window: ``(x1, y1, x2, y2)`` ints, the pixels the object may touch.
        rel_size: ``max(outline w, h) / max(W, H)``.
        truncated: the outline leaves the frame.
        background_photo: the photograph of the background.
        bg_box: the region ``(x1, y1, x2, y2)`` (level-0 px) of it resized to the image.
        occluder: the occluder, or None.
        photometric: the view's photometric change.
    """

    size_wh: tuple[int, int]
    warp: ViewWarp
    px_per_unit: float
    kps_px: np.ndarray
    visible: np.ndarray
    bbox: tuple[int, int, int, int]
    window: tuple[int, int, int, int]
    rel_size: float
    truncated: bool
    background_photo: str
    bg_box: tuple[float, float, float, float]
    occluder: Occluder | None
    photometric: Photometric

    def in_frame(self) -> np.ndarray:
        """``(K,)`` bool: the keypoints inside the image, ``[0, W - 0.01) x [0, H - 0.01)``."""
        return _keypoints_in_frame(self.kps_px, self.size_wh)


@dataclass(frozen=True, eq=False)
class PairPlan:
    """Everything about a pair but its pixels.

    Attributes:
        category: the instance's category.
        instance: the object shown in both views.
        views: ``(source, target)``.
        viewpoint_angle: angle of the relative 3D rotation between the views, degrees.
        scale_ratio: ``rho >= 1``, the ratio of the two views' ``rel_size``.
    """

    category: str
    instance: Instance
    views: tuple[View, View]
    viewpoint_angle: float
    scale_ratio: float

    def viewpoint_variation(self) -> int:
        """SPair-71k's flag: 0 below 17.5 deg, 1 below 37.5 deg, 2 above."""
        return int(np.searchsorted(_VIEWPOINT_THRESHOLDS, self.viewpoint_angle, side="right"))

    def scale_variation(self) -> int:
        """SPair-71k's flag: 0 for ``rho`` below 1.5, 1 below 2.25, 2 above."""
        return int(np.searchsorted(_SCALE_THRESHOLDS, self.scale_ratio, side="right"))


def _sample_texture(rng: np.random.Generator, photos: tuple[str, ...]) -> tuple[str, np.ndarray, float] | None:
    """A photo of ``photos`` and a rotated square region of it that covers the canonical
    square ``[-1.3, 1.3]^2``, not too dark nor flat: ``(name, affine (2, 3) canonical ->
    level-0 photo px, photo px per canonical unit)``; None after 30 failed draws."""
    for _ in range(30):
        name = str(rng.choice(photos))
        h, w = photo_pyramid(name)[0].shape[:2]
        scale = rng.uniform(0.125, 0.3) * min(h, w)  # photo px per canonical unit
        angle = rng.uniform(-np.pi, np.pi)
        reach = scale * math.sqrt(2) * 1.3  # covers the canonical square [-1.3, 1.3]^2
        if 2 * reach >= min(h, w):
            continue
        centre = np.array([rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)])
        c, s = math.cos(angle), math.sin(angle)
        affine = np.array([[c * scale, -s * scale, centre[0]], [s * scale, c * scale, centre[1]]])
        grid = np.stack(np.meshgrid(np.linspace(-1, 1, 12), np.linspace(-1, 1, 12)), -1).reshape(-1, 2)
        values = sample_bilinear(photo_pyramid(name)[0], grid @ affine[:, :2].T + affine[:, 2]).mean(-1) / 255
        if values.mean() > 0.12 and values.std() > 0.04:
            return name, affine, float(scale)
    return None


def _sample_instance(rng: np.random.Generator, category: str, textures: tuple[str, ...]) -> Instance | None:
    """An instance of ``category`` textured from one of ``textures``: a rim (dark or light,
    0.015-0.035 units wide) with probability 0.75, an aspect change ``exp(U(-0.25, 0.25))``
    and a smooth warp; None when no texture region was found."""
    texture = _sample_texture(rng, textures)
    if texture is None:
        return None
    photo, affine, tex_scale = texture
    rim = None
    if rng.random() < 0.75:
        grey = rng.uniform(0.0, 0.15) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)
        rim = (float(grey), float(rng.uniform(0.015, 0.035)))
    return Instance(
        category=category,
        texture_photo=photo,
        tex_affine=affine,
        tex_scale=tex_scale,
        aspect=float(np.exp(rng.uniform(-0.25, 0.25))),
        inst_field=sample_field(rng, lipschitz=0.25, max_amp=0.06),
        rim=rim,
    )


def _sample_sizes(rng: np.random.Generator) -> list[float]:
    """The two views' wanted relative sizes ``[source, target]``: a scale class, a ratio
    ``rho`` in it, the smaller size log-uniform in ``[0.05, 0.85 / rho]``, the larger ``rho``
    times it, in random order."""
    lo, hi = _SCALE_CLASSES[int(rng.choice(3, p=_SCALE_PROBS))]
    ratio = rng.uniform(lo, hi)
    small = math.exp(rng.uniform(math.log(_REL_SIZE[0]), math.log(_REL_SIZE[1] / ratio)))
    sizes = [small, small * ratio]
    if rng.random() < 0.5:
        sizes.reverse()
    return sizes


def _place(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, size_wh: tuple[int, int], truncate: bool) -> np.ndarray:
    """Translation ``(2,)`` for an object whose extent at the origin is ``[lo, hi]`` px:
    inside the frame with a 1 px margin, or (``truncate``) 15-45 % out on one side."""
    centre = np.zeros(2)
    axis = int(rng.integers(2)) if truncate else -1
    for ax in (0, 1):
        n = size_wh[ax]
        if ax == axis:
            out = rng.uniform(0.15, 0.45) * (hi[ax] - lo[ax])
            centre[ax] = -lo[ax] - out if rng.random() < 0.5 else n - hi[ax] + out
        else:
            a, b = 1 - lo[ax], n - 1 - hi[ax]
            centre[ax] = rng.uniform(a, b) if b > a else (a + b) / 2
    return centre


def _frame_object(
    rng: np.random.Generator, instance: Instance, rotation: np.ndarray, rel_size: float, size_wh: tuple[int, int]
) -> tuple[ViewWarp, np.ndarray, np.ndarray, float]:
    """Draw the view's smooth warp, scale the object to ``rel_size`` (less if its outline
    would not fit the frame) and place it (truncated with probability 0.2).

    Returns:
        ``(warp, outline (M, 2) px, keypoints (K, 2) px, actual relative size)``.
    """
    tmpl = template(instance.category)
    w, h = size_wh
    warp = ViewWarp(plane_homography(rotation), instance.aspect, instance.inst_field,
                    sample_field(rng, lipschitz=0.12, max_amp=0.03))
    m = len(tmpl.outline)
    pts = warp.forward(np.concatenate([tmpl.outline, tmpl.kps]))  # at scale 1, centre 0
    lo1, hi1 = pts[:m].min(0), pts[:m].max(0)
    ext1 = hi1 - lo1
    scale = rel_size * max(w, h) / float(ext1.max())
    scale = min(scale, (w - 2) / float(ext1[0]), (h - 2) / float(ext1[1]))
    truncate = bool(rng.random() < _P_TRUNCATE)
    centre = _place(rng, scale * lo1, scale * hi1, (w, h), truncate)
    outline = scale * pts[:m] + centre
    kps = scale * pts[m:] + centre
    return warp.moved(scale, centre), outline, kps, float(scale * ext1.max() / max(w, h))


def _sample_background_box(rng: np.random.Generator, photo: str, size_wh: tuple[int, int]) -> tuple[float, float, float, float]:
    """A region ``(x1, y1, x2, y2)`` (level-0 px) of ``photo`` with the image's aspect ratio,
    35-100 % of the largest such region, at a uniform position."""
    w, h = size_wh
    ph, pw = photo_pyramid(photo)[0].shape[:2]
    bw = w * min(pw / w, ph / h) * rng.uniform(0.35, 1.0)
    bh = bw * h / w
    x0, y0 = rng.uniform(0, pw - bw), rng.uniform(0, ph - bh)
    return (float(x0), float(y0), float(x0 + bw), float(y0 + bh))


def _plan_view(
    rng: np.random.Generator,
    instance: Instance,
    rotation: np.ndarray,
    rel_size: float,
    background: str,
    occluders: list[str],
) -> View | None:
    """One view of ``instance``: image size, warp, placement, truncation, occluder,
    background region and photometric change; None when the draw must be redone (the
    object's box is empty).

    ``rotation`` is the view's ``(3, 3)`` 3D rotation; ``rel_size`` the wanted
    ``max(outline w, h) / max(W, H)`` (reduced if the outline would not fit the frame);
    ``occluders`` the photographs an occluder may be cut from."""
    w, h = (int(v) for v in rng.integers(_IMAGE_SIDES[0], _IMAGE_SIDES[1] + 1, 2))
    warp, outline, kps, actual_size = _frame_object(rng, instance, rotation, rel_size, (w, h))
    olo, ohi = outline.min(0), outline.max(0)
    truncated = bool(olo[0] < 0 or olo[1] < 0 or ohi[0] > w or ohi[1] > h)
    bbox = (max(0, math.floor(olo[0])), max(0, math.floor(olo[1])), min(w, math.ceil(ohi[0])), min(h, math.ceil(ohi[1])))
    if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
        return None
    window = (max(0, math.floor(olo[0]) - 2), max(0, math.floor(olo[1]) - 2),
              min(w, math.ceil(ohi[0]) + 2), min(h, math.ceil(ohi[1]) + 2))
    in_frame = _keypoints_in_frame(kps, (w, h))
    occluder = None
    if rng.random() < _P_OCCLUDE and in_frame.any():
        occluder = sample_occluder(rng, occluders, kps[in_frame], float((ohi - olo).max()))
    visible = in_frame & ~occluder.covers(kps) if occluder is not None else in_frame
    centre_px = kps.mean(0) if in_frame.all() else (olo + ohi) / 2
    det = abs(float(np.linalg.det(warp.value_and_jacobian(centre_px[None], 1e-3)[1][0])))
    return View(
        size_wh=(w, h),
        warp=warp,
        px_per_unit=1.0 / math.sqrt(det),
        kps_px=kps,
        visible=visible,
        bbox=bbox,
        window=window,
        rel_size=actual_size,
        truncated=truncated,
        background_photo=background,
        bg_box=_sample_background_box(rng, background, (w, h)),
        occluder=occluder,
        photometric=sample_photometric(rng),
    )


def _try_pair(rng: np.random.Generator, split: str, category: str) -> PairPlan | None:
    """One draw of a pair of ``category``; None when it fails a constraint (redrawn)."""
    pools = photo_pools(split)
    instance = _sample_instance(rng, category, pools.textures)
    if instance is None:
        return None
    rotations = sample_rotations(rng, _VIEWPOINT_CLASSES[int(rng.choice(3, p=_VIEWPOINT_PROBS))])
    if rotations is None:
        return None
    sizes = _sample_sizes(rng)
    photo = instance.texture_photo
    backgrounds = [b for b in pools.backgrounds if b != photo]
    bgs = [str(b) for b in rng.choice(backgrounds, size=2, replace=False)]
    views = []
    for rotation, size, bg in zip(rotations, sizes, bgs, strict=True):
        occluders = [p for p in pools.occluders if p not in (photo, bg)]
        view = _plan_view(rng, instance, rotation, size, bg, occluders)
        if view is None:
            return None
        views.append(view)
    if int((views[0].visible & views[1].visible).sum()) < _MIN_COMMON_KPS:
        return None
    rel = sorted(v.rel_size for v in views)
    return PairPlan(
        category=category,
        instance=instance,
        views=(views[0], views[1]),
        viewpoint_angle=rotation_angle(rotations[1] @ rotations[0].T),
        scale_ratio=rel[1] / rel[0],
    )


def plan_pair(seed: int, split: str, index: int) -> PairPlan:
    """The pair ``index`` of ``split`` (``trn``, ``val`` or ``test``): a function of
    ``(seed, split, index)`` only. Its category is ``CATEGORIES[index % len(CATEGORIES)]``;
    attempt ``a`` draws from ``np.random.default_rng([seed, SPLIT_CODES[split], index, a])``.

    Raises:
        RuntimeError: no attempt out of 50 gave a valid pair (never seen in practice).
    """
    category = CATEGORIES[index % len(CATEGORIES)]
    for attempt in range(_MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, SPLIT_CODES[split], index, attempt])
        plan = _try_pair(rng, split, category)
        if plan is not None:
            return plan
    raise RuntimeError(f"synthetic benchmark: no valid pair for {split} index {index} in {_MAX_ATTEMPTS} attempts")
