"""The geometry of a view: smooth fields, 3D rotations seen by a pinhole camera, and the
view warp between image pixels and canonical template coordinates with its inverse.

Images are rendered by backward warping (:meth:`ViewWarp.backward`, pixel -> canonical) and
keypoints are moved by the forward map (:meth:`ViewWarp.forward`), the numerical inverse of
the very same backward map, so the annotated keypoints are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_CAMERA_DISTANCE = 4.0  # canonical units; smaller = stronger perspective
_MAX_TILT_DEG = 55.0  # out-of-plane tilt of any view


@dataclass(frozen=True, eq=False)
class SmoothField:
    """Displacement ``d(q) = sum_k amp_k * sin(freq_k . q + phase_k)``.

    Attributes:
        amp: ``(K, 2)`` canonical units. freq: ``(K, 2)`` radians per unit. phase: ``(K,)``.
        The Lipschitz constant ``sum_k |amp_k| |freq_k|`` is kept below 0.3 so that
        ``q + d(q)`` is a diffeomorphism.
    """

    amp: np.ndarray
    freq: np.ndarray
    phase: np.ndarray

    def __call__(self, q: np.ndarray) -> np.ndarray:
        """``(..., 2)`` -> ``(..., 2)`` displacement, in ``q``'s dtype."""
        dt = q.dtype
        out = np.zeros_like(q)
        for amp, freq, phase in zip(self.amp.astype(dt), self.freq.astype(dt), self.phase.astype(dt), strict=True):
            s = np.sin(q[..., 0] * freq[0] + q[..., 1] * freq[1] + phase)
            out[..., 0] += amp[0] * s
            out[..., 1] += amp[1] * s
        return out


def sample_field(rng: np.random.Generator, lipschitz: float, max_amp: float, terms: int = 3) -> SmoothField:
    """A random :class:`SmoothField` of ``terms`` sines: frequencies 0.8..2.5 rad per unit in
    random directions, each amplitude at most ``max_amp`` canonical units and at most a
    ``1 / terms`` share of the Lipschitz bound ``lipschitz``."""
    freq_norm = rng.uniform(0.8, 2.5, terms)
    freq_dir = rng.uniform(-np.pi, np.pi, terms)
    amp_norm = np.minimum(rng.uniform(0.3, 1.0, terms) * lipschitz / (terms * freq_norm), max_amp)
    amp_dir = rng.uniform(-np.pi, np.pi, terms)
    return SmoothField(
        amp=amp_norm[:, None] * np.stack([np.cos(amp_dir), np.sin(amp_dir)], -1),
        freq=freq_norm[:, None] * np.stack([np.cos(freq_dir), np.sin(freq_dir)], -1),
        phase=rng.uniform(-np.pi, np.pi, terms),
    )


def apply_homography(h: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Homography ``h`` ``(3, 3)`` applied to points ``(..., 2)``, in ``p``'s dtype."""
    m = h.astype(p.dtype)
    x, y = p[..., 0], p[..., 1]
    w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    return np.stack([(m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w, (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w], -1)


@dataclass(frozen=True, eq=False)
class ViewWarp:
    """The backward map ``u = B(p)`` from image pixels ``p`` to canonical template
    coordinates ``u``, and its inverse (the forward map, for points):

    ``q = H^-1 p`` (instance plane), ``q' = q + d_view(q)``, ``u = diag(1/a, a) (q' + d_inst(q'))``.

    Attributes:
        h: ``(3, 3)`` homography, instance plane -> image pixels.
        aspect: ``a``, the instance's aspect change (shared by both views).
        inst_field: the instance's smooth warp (shared). view_field: this view's.
    """

    h: np.ndarray
    aspect: float
    inst_field: SmoothField
    view_field: SmoothField

    def backward(self, p: np.ndarray) -> np.ndarray:
        """Image pixels ``(..., 2)`` -> canonical ``(..., 2)``, in ``p``'s dtype."""
        q = apply_homography(np.linalg.inv(self.h), p)
        q = q + self.view_field(q)
        u = q + self.inst_field(q)
        return u * np.array([1.0 / self.aspect, self.aspect], dtype=p.dtype)

    def value_and_jacobian(self, p: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`backward` at ``p`` ``(M, 2)`` and its derivative ``(M, 2, 2)``
        (``[m, i, j] = du_i / dp_j``, central differences with step ``eps`` pixels), from
        one stacked evaluation."""
        steps = np.array([[0.0, 0.0], [eps, 0.0], [-eps, 0.0], [0.0, eps], [0.0, -eps]])
        u = self.backward(p[None] + steps[:, None])  # (5, M, 2)
        jx = (u[1] - u[2]) / (2 * eps)
        jy = (u[3] - u[4]) / (2 * eps)
        return u[0], np.stack([jx, jy], axis=-1)

    def forward(self, u: np.ndarray) -> np.ndarray:
        """Canonical ``(M, 2)`` -> image pixels ``(M, 2)`` float64: solves ``B(p) = u`` by
        Newton's method; ``|B(p) - u| < 1e-9`` canonical units on return."""
        u = np.asarray(u, dtype=np.float64)
        p = apply_homography(self.h, u * np.array([self.aspect, 1.0 / self.aspect]))
        eps = 1e-5 * (1.0 + float(np.abs(p).max(initial=0.0)))
        for _ in range(30):
            value, jac = self.value_and_jacobian(p, eps)
            residual = value - u
            if np.abs(residual).max(initial=0.0) < 1e-11:
                break
            p = p - np.linalg.solve(jac, residual[..., None])[..., 0]
        err = float(np.abs(self.backward(p) - u).max(initial=0.0))
        if not err < 1e-9:
            raise RuntimeError(f"synthetic benchmark: the view warp could not be inverted (residual {err:.3g})")
        return p

    def moved(self, scale: float, centre: np.ndarray) -> ViewWarp:
        """The same warp followed by ``p -> scale * p + centre`` in the image."""
        a = np.array([[scale, 0.0, centre[0]], [0.0, scale, centre[1]], [0.0, 0.0, 1.0]])
        return ViewWarp(a @ self.h, self.aspect, self.inst_field, self.view_field)


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def rotation_angle(r: np.ndarray) -> float:
    """Angle of the ``(3, 3)`` rotation ``r`` in degrees, in ``[0, 180]``."""
    return math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def plane_homography(r: np.ndarray) -> np.ndarray:
    """The plane ``z = 0`` rotated by ``r`` ``(3, 3)`` and seen by a pinhole camera at
    distance 4 canonical units on the optical axis, focal length equal to that distance (so
    the unrotated plane maps to itself): the ``(3, 3)`` homography from the plane to the
    image, both in canonical units (pixels come from :meth:`ViewWarp.moved`)."""
    return np.array([
        [r[0, 0], r[0, 1], 0.0],
        [r[1, 0], r[1, 1], 0.0],
        [r[2, 0] / _CAMERA_DISTANCE, r[2, 1] / _CAMERA_DISTANCE, 1.0],
    ])


def sample_rotations(
    rng: np.random.Generator, angle_range_deg: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Source and target ``(3, 3)`` 3D rotations of the object plane whose relative rotation
    ``r_trg @ r_src.T`` has an angle drawn uniformly in ``angle_range_deg`` (degrees, about
    a random axis).

    The source is an in-plane rotation of -30..30 deg after a tilt of 0..30 deg about a
    random in-plane axis. Returns None when 50 draws of the target all tilted the plane
    more than 55 deg out of the image plane (the caller redraws the pair)."""
    theta = math.radians(rng.uniform(-30, 30))
    tilt_axis = rng.uniform(-np.pi, np.pi)
    r_src = axis_angle(np.array([0.0, 0.0, 1.0]), theta) @ axis_angle(
        np.array([math.cos(tilt_axis), math.sin(tilt_axis), 0.0]), math.radians(rng.uniform(0, 30))
    )
    lo, hi = angle_range_deg
    for _ in range(50):
        axis = rng.normal(size=3)
        r_trg = axis_angle(axis, math.radians(rng.uniform(lo, hi))) @ r_src
        if r_trg[2, 2] >= math.cos(math.radians(_MAX_TILT_DEG)):
            return r_src, r_trg
    return None

