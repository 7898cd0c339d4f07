"""The shape templates: each category's outline, named keypoints and signed-distance raster.

A category (:data:`CATEGORIES`) is a planar shape in canonical coordinates (x right, y down,
within about ``[-1, 1]^2``) with a distinctive outline and named keypoints at fixed template
positions: tips, corners and notches on the outline and a few interior points
(:func:`template`, :func:`keypoint_names`). The object's alpha is rendered from the
template's signed distance, precomputed once per category on a raster
(:func:`template_sdf`) and read bilinearly (:func:`sample_sdf`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

import numpy as np
from scipy import ndimage

from sosc.errors import ConfigError

#: The object categories, each named after its shape.
CATEGORIES = ("arrow", "bolt", "crescent", "cross", "fish", "heart", "house", "star")

#: The signed-distance raster spans ``[-SDF_HALF, SDF_HALF]^2`` canonical units ...
SDF_HALF = 1.25
#: ... in ``SDF_RES x SDF_RES`` pixels.
SDF_RES = 512


@dataclass(frozen=True, eq=False)
class Template:
    """A category's shape in canonical coordinates (x right, y down, within about ``[-1, 1]^2``).

    Attributes:
        outline: ``(M, 2)`` float64 closed polygon, consecutive points at most 0.04 apart
            (read-only).
        kps: ``(K, 2)`` float64 keypoint positions, ``K`` in 6..20 (read-only).
        names: ``K`` keypoint names; keypoint id ``k`` is ``names[k]``.
    """

    outline: np.ndarray
    kps: np.ndarray
    names: tuple[str, ...]


def _densify(vertices: np.ndarray, max_step: float = 0.04) -> np.ndarray:
    """A closed polygon ``(V, 2)`` with points inserted so that edges are ``<= max_step``."""
    out = []
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        n = max(1, math.ceil(float(np.linalg.norm(b - a)) / max_step))
        t = np.arange(n)[:, None] / n
        out.append(a + t * (b - a))
    return np.concatenate(out)


_Named = list[tuple[str, tuple[float, float]]]


def _polygon(named: _Named, interior: _Named) -> tuple[np.ndarray, _Named]:
    """A polygon whose vertices are all keypoints, plus interior keypoints."""
    verts = np.array([p for _, p in named], dtype=np.float64)
    return _densify(verts), named + interior


def _arrow() -> tuple[np.ndarray, _Named]:
    return _polygon(
        [("tip", (1.0, 0.0)), ("barb_upper", (0.25, -0.6)), ("neck_upper", (0.25, -0.2)),
         ("tail_upper", (-1.0, -0.2)), ("tail_notch", (-0.78, 0.0)), ("tail_lower", (-1.0, 0.2)),
         ("neck_lower", (0.25, 0.2)), ("barb_lower", (0.25, 0.6))],
        [("head_centre", (0.5, 0.0)), ("shaft_centre", (-0.3, 0.0))],
    )


def _bolt() -> tuple[np.ndarray, _Named]:
    return _polygon(
        [("top_left", (-0.25, -1.0)), ("top_right", (0.45, -1.0)), ("inner_right", (0.1, -0.2)),
         ("step_right", (0.55, -0.2)), ("bottom_tip", (-0.35, 1.0)), ("inner_left", (-0.05, 0.15)),
         ("step_left", (-0.5, 0.15))],
        [("upper_centre", (0.05, -0.55)), ("lower_centre", (0.0, 0.3))],
    )


def _cross() -> tuple[np.ndarray, _Named]:
    return _polygon(
        [("top_left", (-0.2, -1.0)), ("top_right", (0.2, -1.0)), ("armpit_upper_right", (0.2, -0.55)),
         ("right_top", (0.7, -0.55)), ("right_bottom", (0.7, -0.15)), ("armpit_lower_right", (0.2, -0.15)),
         ("bottom_right", (0.2, 1.0)), ("bottom_left", (-0.2, 1.0)), ("armpit_lower_left", (-0.2, -0.15)),
         ("left_bottom", (-0.7, -0.15)), ("left_top", (-0.7, -0.55)), ("armpit_upper_left", (-0.2, -0.55))],
        [("crossing", (0.0, -0.35)), ("stem_centre", (0.0, 0.45))],
    )


def _house() -> tuple[np.ndarray, _Named]:
    def roof(x: float) -> float:  # the right roof slope, from the apex (0, -1) to the eave (1, -0.1)
        return -1.0 + 0.9 * x

    verts = [
        ("apex", (0.0, -1.0)), ("chimney_base_left", (0.45, roof(0.45))), ("chimney_top_left", (0.45, -0.98)),
        ("chimney_top_right", (0.65, -0.98)), ("chimney_base_right", (0.65, roof(0.65))), ("eave_right", (1.0, -0.1)),
        ("wall_top_right", (0.8, -0.1)), ("base_right", (0.8, 1.0)), ("door_bottom_right", (0.2, 1.0)),
        ("door_top_right", (0.2, 0.45)), ("door_top_left", (-0.2, 0.45)), ("door_bottom_left", (-0.2, 1.0)),
        ("base_left", (-0.8, 1.0)), ("wall_top_left", (-0.8, -0.1)), ("eave_left", (-1.0, -0.1)),
    ]
    keep = {"apex", "chimney_top_left", "chimney_top_right", "eave_right", "base_right", "door_top_right",
            "door_top_left", "base_left", "eave_left", "wall_top_left", "wall_top_right"}
    outline, _ = _polygon(verts, [])
    kps = [v for v in verts if v[0] in keep] + [("wall_centre", (0.0, 0.15)), ("attic", (0.0, -0.5))]
    return outline, kps


def _star() -> tuple[np.ndarray, _Named]:
    names = ["tip_top", "notch_upper_right", "tip_right", "notch_lower_right", "tip_lower_right",
             "notch_bottom", "tip_lower_left", "notch_lower_left", "tip_left", "notch_upper_left"]
    named = []
    for k, name in enumerate(names):
        angle = -math.pi / 2 + k * math.pi / 5
        radius = 1.0 if k % 2 == 0 else 0.42
        named.append((name, (radius * math.cos(angle), radius * math.sin(angle))))
    return _polygon(named, [("centre", (0.0, 0.0)), ("top_ray_middle", (0.0, -0.6))])


def _heart() -> tuple[np.ndarray, _Named]:
    def point(t: float | np.ndarray) -> np.ndarray:
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x / 16, (y - 2.5) / 16], axis=-1)

    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    outline = point(t)
    grid = np.linspace(0, np.pi / 2, 2001)
    t_lobe = float(grid[np.argmin(point(grid)[:, 1])])  # the highest point of the right lobe
    at = {
        "notch": 0.0, "lobe_top_right": t_lobe, "side_right": np.pi / 2, "flank_right": 3 * np.pi / 4,
        "bottom_tip": np.pi, "flank_left": 5 * np.pi / 4, "side_left": 3 * np.pi / 2,
        "lobe_top_left": 2 * np.pi - t_lobe,
    }
    named = [(name, tuple(float(v) for v in point(tt))) for name, tt in at.items()]
    lobe = point(t_lobe)
    interior = [("centre", (0.0, 0.05)), ("lobe_centre_right", (float(lobe[0]), float(lobe[1]) + 0.3)),
                ("lobe_centre_left", (-float(lobe[0]), float(lobe[1]) + 0.3))]
    return outline, named + interior


def _crescent() -> tuple[np.ndarray, _Named]:
    big_r, small_r, centre = 1.0, 0.8, np.array([0.42, -0.1])
    d = float(np.linalg.norm(centre))
    a = (big_r**2 - small_r**2 + d**2) / (2 * d)
    h = math.sqrt(big_r**2 - a**2)
    axis = centre / d
    perp = np.array([-axis[1], axis[0]])
    horns = sorted([a * axis + h * perp, a * axis - h * perp], key=lambda p: p[1])  # upper first (y down)
    upper, lower = horns
    outer_from = math.atan2(upper[1], upper[0])
    outer_to = math.atan2(lower[1], lower[0]) - 2 * math.pi  # through the left (angle pi)
    inner_from = math.atan2(lower[1] - centre[1], lower[0] - centre[0])
    inner_to = math.atan2(upper[1] - centre[1], upper[0] - centre[0]) + 2 * math.pi
    ta = np.linspace(outer_from, outer_to, 120, endpoint=False)
    tb = np.linspace(inner_from, inner_to, 100, endpoint=False)
    outline = np.concatenate([
        big_r * np.stack([np.cos(ta), np.sin(ta)], -1),
        centre + small_r * np.stack([np.cos(tb), np.sin(tb)], -1),
    ])

    def band_middle(angle: float) -> tuple[float, float]:
        e = np.array([math.cos(angle), math.sin(angle)])
        ec = float(e @ centre)
        t_inner = ec + math.sqrt(ec**2 - d**2 + small_r**2)
        return tuple(float(v) for v in 0.5 * (t_inner + big_r) * e)

    def on_outer(angle: float) -> tuple[float, float]:
        return (big_r * math.cos(angle), big_r * math.sin(angle))

    named = [
        ("horn_upper", tuple(float(v) for v in upper)), ("horn_lower", tuple(float(v) for v in lower)),
        ("outer_left", on_outer(math.pi)), ("outer_upper_left", on_outer(-3 * math.pi / 4)),
        ("outer_lower_left", on_outer(3 * math.pi / 4)),
        ("inner_deepest", (float(centre[0] - small_r), float(centre[1]))),
        ("band_left", band_middle(math.pi)), ("band_upper_left", band_middle(-3 * math.pi / 4)),
        ("band_lower_left", band_middle(3 * math.pi / 4)),
    ]
    return outline, named


def _fish() -> tuple[np.ndarray, _Named]:
    cx, rx, ry = -0.2, 0.8, 0.5

    def body(t: float) -> tuple[float, float]:
        return (cx + rx * math.cos(t), ry * math.sin(t))

    def arc(t0: float, t1: float, n: int) -> list[tuple[float, float]]:
        return [body(t) for t in np.linspace(t0, t1, n, endpoint=False)]

    dorsal_a, dorsal_b, belly_a, belly_b = 4.25, 5.0, 2.0, 2.45
    tail_t = 0.55
    named = {
        "nose": body(math.pi), "dorsal_front": body(dorsal_a), "dorsal_tip": (0.05, -0.88),
        "dorsal_back": body(dorsal_b), "tail_joint_upper": body(2 * math.pi - tail_t),
        "tail_tip_upper": (1.0, -0.6), "tail_notch": (0.78, 0.0), "tail_tip_lower": (1.0, 0.6),
        "tail_joint_lower": body(tail_t), "belly_fin_back": body(belly_a), "belly_fin_tip": (-0.5, 0.72),
        "belly_fin_front": body(belly_b),
    }
    pts = (
        arc(math.pi, dorsal_a, 12) + [named["dorsal_front"], named["dorsal_tip"]]
        + arc(dorsal_b, 2 * math.pi - tail_t, 10)
        + [named["tail_joint_upper"], named["tail_tip_upper"], named["tail_notch"], named["tail_tip_lower"]]
        + arc(tail_t, belly_a, 14) + [named["belly_fin_back"], named["belly_fin_tip"]]
        + arc(belly_b, math.pi, 8)
    )
    # consecutive duplicates (a named point that is also an arc sample) would make zero-length edges
    uniq = [p for i, p in enumerate(pts) if i == 0 or np.hypot(p[0] - pts[i - 1][0], p[1] - pts[i - 1][1]) > 1e-9]
    outline = _densify(np.array(uniq, dtype=np.float64))
    keep = ["nose", "dorsal_tip", "dorsal_front", "dorsal_back", "tail_tip_upper", "tail_notch",
            "tail_tip_lower", "tail_joint_upper", "tail_joint_lower", "belly_fin_tip"]
    kps = [(k, tuple(float(v) for v in named[k])) for k in keep]
    kps += [("eye", (-0.68, -0.15)), ("gill", (-0.42, 0.05)), ("body_centre", (0.05, 0.0))]
    return outline, kps


_TEMPLATE_BUILDERS: MappingProxyType[str, Callable[[], tuple[np.ndarray, _Named]]] = MappingProxyType({
    "arrow": _arrow, "bolt": _bolt, "crescent": _crescent, "cross": _cross,
    "fish": _fish, "heart": _heart, "house": _house, "star": _star,
})


@cache
def template(category: str) -> Template:
    """The template of ``category`` (one of :data:`CATEGORIES`), built once per process.

    Raises:
        ConfigError: unknown category (the message lists the categories).
    """
    if category not in _TEMPLATE_BUILDERS:
        raise ConfigError(f"unknown synthetic category {category!r}; the categories are {list(CATEGORIES)}")
    outline, named = _TEMPLATE_BUILDERS[category]()
    outline = np.ascontiguousarray(outline, dtype=np.float64)
    kps = np.array([p for _, p in named], dtype=np.float64)
    outline.setflags(write=False)
    kps.setflags(write=False)
    return Template(outline=outline, kps=kps, names=tuple(n for n, _ in named))


@cache
def template_sdf(category: str) -> np.ndarray:
    """Signed distance to the outline of ``category``'s template, canonical units,
    negative inside: read-only float32 ``(SDF_RES, SDF_RES)``; pixel ``(i, j)`` (row, col)
    is centred at canonical ``(x, y) = (-SDF_HALF + (j + 0.5) * step, -SDF_HALF + (i + 0.5) * step)``
    with ``step = 2 * SDF_HALF / SDF_RES`` (about 0.005). Exact to about half a raster
    pixel (the distance between rasterised pixel centres). Cached per process."""
    from skimage.draw import polygon2mask

    step = 2 * SDF_HALF / SDF_RES
    idx = (template(category).outline + SDF_HALF) / step - 0.5  # (x, y) -> (col, row)
    mask = polygon2mask((SDF_RES, SDF_RES), idx[:, ::-1])
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    sdf = (np.where(mask, 0.5 - inside, outside - 0.5) * step).astype(np.float32)
    sdf.setflags(write=False)
    return sdf


def sample_sdf(sdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Bilinear samples of a :func:`template_sdf` raster at canonical points ``u``
    (``(..., 2)``, ``(x, y)``): float32 ``(...)``, canonical units, negative inside; points
    outside the raster take the nearest border value."""
    step = 2 * SDF_HALF / SDF_RES
    coords = [(u[..., 1] + SDF_HALF) / step - 0.5, (u[..., 0] + SDF_HALF) / step - 0.5]
    return ndimage.map_coordinates(sdf, coords, order=1, mode="nearest", output=np.float32)



def keypoint_names(category: str) -> tuple[str, ...]:
    """The names of a category's keypoints; keypoint id ``k`` (``str(k)`` in the JSON) is
    ``keypoint_names(category)[k]``.

    >>> keypoint_names("arrow")[:3]
    ('tip', 'barb_upper', 'neck_upper')
    """
    return template(category).names
