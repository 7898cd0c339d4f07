"""Rendering a planned view into JPEG bytes: background, object, occluder, photometric change.

Every object pixel centre is mapped to canonical coordinates by the view's backward warp
(:func:`render_object`), so the rendered object and the planned keypoints agree exactly;
alpha comes from the template's signed distance, anti-aliased over one pixel, and colour
from the texture photograph's pyramid level that matches the local sampling rate.
"""

from __future__ import annotations

import math
from io import BytesIO

import numpy as np
from PIL import Image

from sosc.data.synthetic.occluders import Occluder
from sosc.data.synthetic.photos import photo_pyramid, pyramid_level, resized_region, sample_bilinear
from sosc.data.synthetic.plan import Instance, View
from sosc.data.synthetic.shapes import sample_sdf, template_sdf

#: Quality of the written JPEG files (part of the format: it changes the bytes).
JPEG_QUALITY = 92


def _pixel_grid(window: tuple[int, int, int, int]) -> np.ndarray:
    """Float32 ``(h, w, 2)`` centres ``(x + 0.5, y + 0.5)`` of the window's pixels."""
    x0, y0, x1, y1 = window
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32) + 0.5, np.arange(y0, y1, dtype=np.float32) + 0.5)
    return np.stack([gx, gy], -1)


def render_object(
    view: View, instance: Instance, pyramid: tuple[np.ndarray, ...], sdf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The object over ``view.window`` (``x1, y1, x2, y2``, ``h = y2 - y1``, ``w = x2 - x1``):
    float32 RGB ``(h, w, 3)`` in [0, 1] (0 outside the object) and alpha ``(h, w)`` in [0, 1].

    Every pixel centre is mapped to canonical coordinates by ``view.warp.backward``; alpha
    comes from the signed distance raster ``sdf`` (:func:`~.shapes.template_sdf`, converted
    to px with ``view.px_per_unit`` and anti-aliased over one pixel), colour from the
    texture ``pyramid`` (uint8 ``(H, W, 3)`` levels as :func:`~.photos.photo_pyramid`)
    through ``instance.tex_affine``, blended towards ``instance.rim``'s grey near the
    outline (at least 1 px wide)."""
    u = view.warp.backward(_pixel_grid(view.window))
    d_px = sample_sdf(sdf, u) * np.float32(view.px_per_unit)
    alpha = np.clip(0.5 - d_px, 0.0, 1.0)
    rgb = np.zeros(alpha.shape + (3,), dtype=np.float32)
    inside = alpha > 0
    level = pyramid_level(pyramid, instance.tex_scale / view.px_per_unit)
    a = instance.tex_affine.astype(np.float32) / np.float32(2**level)
    uu = u[inside]
    colour = sample_bilinear(pyramid[level], uu @ a[:, :2].T + a[:, 2]) / 255
    if instance.rim is not None:
        grey, width = instance.rim
        weight = np.clip(d_px[inside] + max(1.0, width * view.px_per_unit) + 0.5, 0.0, 1.0)[:, None]
        colour = colour * (1 - weight) + np.float32(grey) * weight
    rgb[inside] = colour
    return rgb, alpha


def render_occluder(occ: Occluder, size_wh: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """``(window, rgb (h, w, 3), alpha (h, w))`` of an occluder in an image of ``size_wh``
    ``(W, H)``: ``window`` ``(x1, y1, x2, y2)`` clipped to the image, float32 RGB in [0, 1]
    and alpha in [0, 1] over it; empty arrays when the window is empty."""
    w, h = size_wh
    reach = float(np.hypot(*occ.half)) + 2
    window = (max(0, math.floor(occ.centre[0] - reach)), max(0, math.floor(occ.centre[1] - reach)),
              min(w, math.ceil(occ.centre[0] + reach)), min(h, math.ceil(occ.centre[1] + reach)))
    if window[2] <= window[0] or window[3] <= window[1]:
        return window, np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32)
    p = _pixel_grid(window)
    alpha = np.clip(0.5 - occ.distance(p), 0.0, 1.0).astype(np.float32)
    pyramid = photo_pyramid(occ.photo)
    level = pyramid_level(pyramid, occ.photo_scale)
    a = occ.photo_affine.astype(np.float32) / np.float32(2**level)
    rgb = sample_bilinear(pyramid[level], occ.local(p) @ a[:, :2].T + a[:, 2]) / 255
    return window, rgb, alpha


def _blend(img: np.ndarray, window: tuple[int, int, int, int], rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Composite float ``rgb`` ``(h, w, 3)`` in [0, 1] with ``alpha`` ``(h, w)`` over the
    ``window`` (``x1, y1, x2, y2``) of the uint8 image ``img`` ``(H, W, 3)``, in place."""
    x0, y0, x1, y1 = window
    under = img[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    img[y0:y1, x0:x1] = np.clip(a * (rgb * 255) + (1 - a) * under + 0.5, 0, 255).astype(np.uint8)


def _draw_occluder(img: np.ndarray, view: View, occluder: Occluder, alpha: np.ndarray) -> bool:
    """Composite ``occluder`` over the uint8 image ``img`` ``(H, W, 3)`` in place; return
    whether it hides the object: it covers at least one pixel's worth of the object's
    ``alpha`` (over ``view.window``) or one of the in-frame keypoints."""
    owin, orgb, oalpha = render_occluder(occluder, view.size_wh)
    if not oalpha.size:
        return False
    w, h = view.size_wh
    x0, y0, x1, y1 = view.window
    obj_alpha = np.zeros((h, w), np.float32)
    obj_alpha[y0:y1, x0:x1] = alpha
    hidden_area = float((obj_alpha[owin[1] : owin[3], owin[0] : owin[2]] * oalpha).sum())
    hidden_kp = bool((occluder.covers(view.kps_px) & view.in_frame()).any())
    _blend(img, owin, orgb, oalpha)
    return hidden_area >= 1.0 or hidden_kp


def render_view(view: View, instance: Instance) -> tuple[bytes, bool]:
    """The finished image of ``view`` as JPEG bytes (quality :data:`JPEG_QUALITY`) and
    whether its occluder hides part of the object (the image's ``occluded`` flag).

    The background region is resized to the image, the object and then the occluder are
    composited over it, and the view's photometric change is applied last."""
    img = resized_region(view.background_photo, view.bg_box, view.size_wh).copy()
    rgb, alpha = render_object(view, instance, photo_pyramid(instance.texture_photo), template_sdf(instance.category))
    _blend(img, view.window, rgb, alpha)
    occluded = False
    if view.occluder is not None:
        occluded = _draw_occluder(img, view, view.occluder, alpha)
    buf = BytesIO()
    view.photometric.apply(Image.fromarray(img)).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), occluded

