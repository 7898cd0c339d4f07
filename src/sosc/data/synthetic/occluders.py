"""Occluders: textured ellipses and rectangles laid over a view, and where they are drawn.

An occluder is cut from another photograph and placed near one of the object's keypoints
(:func:`sample_occluder`); its approximate signed distance (:meth:`Occluder.distance`) gives
both its anti-aliased alpha and which keypoints it hides (:meth:`Occluder.covers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sosc.data.synthetic.photos import photo_pyramid


@dataclass(frozen=True, eq=False)
class Occluder:
    """A textured ellipse (``kind`` 0) or rectangle (1) over the image.

    Attributes:
        kind: 0 ellipse, 1 rectangle.
        centre: ``(2,)`` image px. half: ``(2,)`` half axes, px. angle: radians, the
            rotation of the shape's first axis from the image's x axis.
        photo: the photograph the texture is cut from (a :data:`~.photos.PHOTO_SOURCES` name).
        photo_affine: ``(2, 3)`` local occluder px (:meth:`local`) -> level-0 photo px.
        photo_scale: level-0 photo px per image px.
    """

    kind: int
    centre: np.ndarray
    half: np.ndarray
    angle: float
    photo: str
    photo_affine: np.ndarray
    photo_scale: float

    def local(self, p: np.ndarray) -> np.ndarray:
        """Image points ``(..., 2)`` in the occluder's frame (origin at the centre, axes along
        the shape's axes), px, in ``p``'s dtype."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        d = p - self.centre.astype(p.dtype)
        return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Approximate signed distance in px (negative inside) at image points ``(..., 2)``."""
        q = self.local(p)
        hx, hy = float(self.half[0]), float(self.half[1])
        if self.kind == 0:
            return (np.hypot(q[..., 0] / hx, q[..., 1] / hy) - 1) * min(hx, hy)
        return np.maximum(np.abs(q[..., 0]) - hx, np.abs(q[..., 1]) - hy)

    def covers(self, p: np.ndarray) -> np.ndarray:
        """``(...)`` bool: the points ``(..., 2)`` lie under the occluder."""
        return self.distance(p) < 0


def sample_occluder(
    rng: np.random.Generator, photos: list[str], kps: np.ndarray, extent: float
) -> Occluder:
    """An occluder centred near one of ``kps`` (``(n, 2)`` in-frame keypoints, px), its half
    axes 15-35 % of ``extent`` (the object's size, px; at least 3 px), textured by a rotated
    region of one of ``photos``."""
    centre = kps[rng.integers(len(kps))] + rng.uniform(-0.2, 0.2, 2) * extent
    half = np.maximum(rng.uniform(0.15, 0.35, 2) * extent, 3.0)
    name = str(rng.choice(photos))
    h, w = photo_pyramid(name)[0].shape[:2]
    radius = float(np.hypot(*half)) + 2  # image px
    scale = min(rng.uniform(0.6, 1.5), 0.45 * min(h, w) / radius)  # photo px per image px
    reach = scale * radius
    pc = np.array([rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)])
    rot = rng.uniform(-np.pi, np.pi)
    c, s = math.cos(rot), math.sin(rot)
    return Occluder(
        kind=int(rng.integers(2)),
        centre=centre,
        half=half,
        angle=float(rng.uniform(0, np.pi)),
        photo=name,
        photo_affine=np.array([[c * scale, -s * scale, pc[0]], [s * scale, c * scale, pc[1]]]),
        photo_scale=float(scale),
    )
