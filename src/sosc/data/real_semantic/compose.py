"""Pasting an annotated object into a background photograph with a feathered mask.

Geometry (continuous pixels, pixel ``i`` covers ``[i, i + 1)``): a :class:`Paste` maps a
photo point ``(x, y)`` to the output point ``(ox + s (x - rx), oy + s (y - ry))``, where
``s`` is the scale, ``(rx, ry)`` the origin of the photo region and ``(ox, oy)`` the
integer output pixel where that origin lands. Output pixel ``(col j, row i)`` shows the
photo at ``(rx + (j - ox + 0.5) / s, ry + (i - oy + 0.5) / s)`` (PIL's ``resize(box=...)``
convention), so keypoints move by exactly the map that moves the pixels.

Mask: a super-ellipse (exponent :data:`SUPERELLIPSE_P`) inscribed in the object box grown
by :data:`REGION_MARGIN` of its size on every side, opaque up to :data:`FEATHER_START` of
its radius and fading linearly to 0 at its rim; it also fades to 0 within
:data:`EDGE_FEATHER_PX` output pixels (at most :data:`EDGE_FEATHER_PHOTO_PX` photo pixels) of
any edge of the source photograph (objects cut by
their photo's frame), so no straight edge betrays the paste.

Same-photo instances (the geese, the ibises): the mask is multiplied by a :class:`KeepMap` that cuts the
photo's other annotated instances out. With ``D(P)`` an outline grown by
:data:`~sosc.data.real_semantic.annotations.OUTLINE_SLACK`, pasting ``A`` keeps (1) the
pixels of ``A``'s own region ``D(P_A)`` minus the grown outlines of its occluders, drops (0)
every other pixel of the other instances' grown outlines, and fades back in from 0 to 1
between :data:`EXCLUDE_MARGIN` and :data:`EXCLUDE_MARGIN` + :data:`EXCLUDE_FEATHER` photo px
beyond them (so no sliver of a neighbour's silhouette remains). Where two outlines overlap,
the one in front wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from sosc.data.real_semantic.annotations import OUTLINE_SLACK, Annotations

#: The pasted region is the object box grown by this fraction of its width/height per side.
REGION_MARGIN = 0.3
#: Super-ellipse exponent of the mask (2 = ellipse; larger = closer to a rounded rectangle).
SUPERELLIPSE_P = 3.0
#: The mask is 1 inside this fraction of the super-ellipse's radius, then fades linearly to
#: 0 at the radius (a smooth, wide fade: no straight or sharp edge); the object box
#: (at most 1 / (1 + 2 REGION_MARGIN) = 0.625 of the radius on the axes) stays opaque but
#: for its corners.
FEATHER_START = 0.68
#: Fade (output px) along the edges of the source photograph, at most EDGE_FEATHER_PHOTO_PX
#: photo px (a strongly shrunk object would otherwise fade far into itself).
EDGE_FEATHER_PX = 6.0
EDGE_FEATHER_PHOTO_PX = 12.0
#: Other instances of the same photo are cut out this far (photo px) beyond their grown
#: outlines, then fade back in over EXCLUDE_FEATHER photo px.
EXCLUDE_MARGIN = 1.0
EXCLUDE_FEATHER = 3.0
#: Keep maps are computed on a grid this many times finer than the photo.
KEEP_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Paste:
    """Where and how big an object lands in an output image.

    Attributes:
        scale: output px per photo px.
        origin: ``(rx, ry)`` photo px mapped to the output pixel corner ``offset``.
        offset: ``(ox, oy)`` int output px.
        region: ``(x0, y0, x1, y1)`` photo px: the grown object box clipped to the photo
            (what may be pasted).
        ellipse: ``(cx, cy, ax, ay)`` photo px: centre and half-axes of the mask.
    """

    scale: float
    origin: tuple[float, float]
    offset: tuple[int, int]
    region: tuple[float, float, float, float]
    ellipse: tuple[float, float, float, float]

    def map_points(self, pts: np.ndarray) -> np.ndarray:
        """Photo points ``(N, 2)`` -> output points ``(N, 2)`` (float64)."""
        pts = np.asarray(pts, dtype=np.float64)
        return np.asarray(self.offset, np.float64) + self.scale * (pts - np.asarray(self.origin, np.float64))

    def map_box(self, box: np.ndarray) -> np.ndarray:
        """A photo box ``[x0, y0, x1, y1]`` -> output box (float64, not clipped)."""
        return self.map_points(np.asarray(box, np.float64).reshape(2, 2)).reshape(4)

    def output_window(self, size_wh: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The output pixels ``(j0, i0, j1, i1)`` covered by the region, clipped to the image; None when empty."""
        x0, y0, x1, y1 = self.map_box(np.array(self.region))
        j0, i0 = max(0, math.ceil(x0 - 1e-9)), max(0, math.ceil(y0 - 1e-9))
        j1, i1 = min(size_wh[0], math.floor(x1 + 1e-9)), min(size_wh[1], math.floor(y1 + 1e-9))
        return None if j1 <= j0 or i1 <= i0 else (j0, i0, j1, i1)


@dataclass(frozen=True, eq=False)
class KeepMap:
    """What may be pasted of one instance's photo: ``grid`` ``(H s, W s)`` float32 in
    [0, 1] (``s`` = :data:`KEEP_SUPERSAMPLE`), node ``(i, j)`` at photo point
    ``((j + 0.5) / s, (i + 0.5) / s)``; ``removed`` names the instances cut out."""

    grid: np.ndarray
    removed: tuple[str, ...]

    def sample(self, xy: np.ndarray) -> np.ndarray:
        """Bilinear value at photo points ``xy`` ``(..., 2)``."""
        xy = np.asarray(xy, np.float64)
        s = KEEP_SUPERSAMPLE
        coords = [xy[..., 1].ravel() * s - 0.5, xy[..., 0].ravel() * s - 0.5]
        return ndimage.map_coordinates(self.grid, coords, order=1, mode="nearest").reshape(xy.shape[:-1])


def _outline_distance_grid(poly: np.ndarray, photo_wh: tuple[int, int]) -> np.ndarray:
    """Distance (photo px) from each keep-grid node to the filled polygon (0 inside)."""
    s = KEEP_SUPERSAMPLE
    im = Image.new("L", (photo_wh[0] * s, photo_wh[1] * s), 0)
    ImageDraw.Draw(im).polygon([(float(x) * s - 0.5, float(y) * s - 0.5) for x, y in poly], fill=1)
    inside = np.asarray(im, dtype=bool)
    return (ndimage.distance_transform_edt(~inside) / s).astype(np.float32)


def instance_keep(ann: Annotations, name: str, photo_wh: tuple[int, int]) -> KeepMap | None:
    """The :class:`KeepMap` of instance ``name``, or None when its photo holds no other
    instance (nothing to cut out). See the module docstring."""
    inst = ann.instances[name]
    others = [i for i in ann.instances.values() if i.photo == inst.photo and i.name != name]
    if not others:
        return None
    dist = {i.name: _outline_distance_grid(i.outline, photo_wh) for i in (inst, *others)}
    own = dist[name] <= OUTLINE_SLACK
    for occ in inst.occluders:
        own &= dist[occ] > OUTLINE_SLACK
    away = np.minimum.reduce([dist[i.name] for i in others]) - OUTLINE_SLACK
    keep = np.clip((away - EXCLUDE_MARGIN) / EXCLUDE_FEATHER, 0.0, 1.0)
    keep[own] = 1.0
    return KeepMap(grid=keep.astype(np.float32), removed=tuple(i.name for i in others))


def paste_region(box: np.ndarray, photo_wh: tuple[int, int]) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """``(region, ellipse)`` of an object box: the grown box clipped to the photo, and the
    mask's super-ellipse ``(cx, cy, ax, ay)`` (photo px)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = REGION_MARGIN * (x1 - x0), REGION_MARGIN * (y1 - y0)
    region = (max(0.0, x0 - mx), max(0.0, y0 - my), min(float(photo_wh[0]), x1 + mx), min(float(photo_wh[1]), y1 + my))
    ellipse = ((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 + mx, (y1 - y0) / 2 + my)
    return region, ellipse


def mask_alpha(paste: Paste, photo_wh: tuple[int, int], xy: np.ndarray, keep: KeepMap | None = None) -> np.ndarray:
    """Mask opacity in [0, 1] at photo points ``xy`` (``(..., 2)``, photo px): the
    feathered super-ellipse times the fade along the photo's edges, times ``keep`` (the
    other instances of the photo cut out) when given."""
    cx, cy, ax, ay = paste.ellipse
    d = (np.abs((xy[..., 0] - cx) / ax) ** SUPERELLIPSE_P + np.abs((xy[..., 1] - cy) / ay) ** SUPERELLIPSE_P) ** (1 / SUPERELLIPSE_P)
    alpha = np.clip((1.0 - d) / (1.0 - FEATHER_START), 0.0, 1.0)
    rx0, ry0, rx1, ry1 = paste.region
    edge = np.minimum.reduce([xy[..., 0] - rx0, rx1 - xy[..., 0], xy[..., 1] - ry0, ry1 - xy[..., 1]]) * paste.scale
    alpha = alpha * np.clip(edge / min(EDGE_FEATHER_PX, EDGE_FEATHER_PHOTO_PX * paste.scale), 0.0, 1.0)
    if keep is not None:
        alpha = alpha * keep.sample(xy)
    return alpha.astype(np.float32)


def composite(background: np.ndarray, photo: np.ndarray, paste: Paste, keep: KeepMap | None = None) -> np.ndarray:
    """The background ``(H, W, 3)`` uint8 with the object pasted; a new uint8 array.

    The photo ``(h, w, 3)`` uint8 is resampled over the output window only (Lanczos when
    shrinking, bicubic when enlarging) and blended with :func:`mask_alpha` (with ``keep``).
    """
    out = background.copy()
    size_wh = (background.shape[1], background.shape[0])
    window = paste.output_window(size_wh)
    if window is None:
        return out
    j0, i0, j1, i1 = window
    s, (rx, ry), (ox, oy) = paste.scale, paste.origin, paste.offset
    box = (rx + (j0 - ox) / s, ry + (i0 - oy) / s, rx + (j1 - ox) / s, ry + (i1 - oy) / s)
    box = (max(0.0, box[0]), max(0.0, box[1]), min(float(photo.shape[1]), box[2]), min(float(photo.shape[0]), box[3]))
    method = Image.Resampling.LANCZOS if s < 1 else Image.Resampling.BICUBIC
    patch = np.asarray(Image.fromarray(photo).resize((j1 - j0, i1 - i0), method, box=box), dtype=np.float32)
    gx, gy = np.meshgrid(np.arange(j0, j1) + 0.5, np.arange(i0, i1) + 0.5)
    src = np.stack([rx + (gx - ox) / s, ry + (gy - oy) / s], axis=-1)
    alpha = mask_alpha(paste, (photo.shape[1], photo.shape[0]), src, keep)[..., None]
    under = out[i0:i1, j0:j1].astype(np.float32)
    out[i0:i1, j0:j1] = np.clip(alpha * patch + (1 - alpha) * under + 0.5, 0, 255).astype(np.uint8)
    return out


def background_view(photo: np.ndarray, size_wh: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random region of a background photo with the aspect of ``size_wh``, 60-100 % of
    the largest such region, resized to ``size_wh``: uint8 ``(H, W, 3)``."""
    ph, pw = photo.shape[:2]
    w, h = size_wh
    fit = min(pw / w, ph / h) * rng.uniform(0.6, 1.0)
    bw, bh = w * fit, h * fit
    x0, y0 = rng.uniform(0, pw - bw), rng.uniform(0, ph - bh)
    image = Image.fromarray(photo).resize((w, h), Image.Resampling.LANCZOS, box=(x0, y0, x0 + bw, y0 + bh))
    return np.asarray(image, dtype=np.uint8)
