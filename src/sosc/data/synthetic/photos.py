"""The bundled photographs every pixel comes from: which split may use which, and reading them.

The photographs ship with scikit-image (``skimage.data``) and scikit-learn (sample images),
so nothing is downloaded. Each is loaded once per process as a pyramid of uint8 levels
(:func:`photo_pyramid`); textures and occluders are sampled from it bilinearly
(:func:`sample_bilinear`), backgrounds are resized regions (:func:`resized_region`).

Pixel convention (all images here): pixel ``(row i, col j)`` covers ``[j, j + 1) x [i, i + 1)``,
its centre is ``(x, y) = (j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

import numpy as np
from PIL import Image
from scipy import ndimage

from sosc.errors import DatasetError

#: Object textures of ``trn`` and ``val`` pairs.
TRAIN_TEXTURE_PHOTOS = (
    "astronaut", "chelsea", "china", "coffee", "motorcycle_left", "motorcycle_right", "retina",
)
#: Backgrounds of ``trn`` and ``val`` pairs.
TRAIN_BACKGROUND_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "china", "coffee", "coins", "grass",
    "hubble_deep_field", "moon", "motorcycle_left", "motorcycle_right",
)
#: Object textures of ``test`` pairs only (never used in ``trn``/``val``).
TEST_TEXTURE_PHOTOS = ("flower", "immunohistochemistry")
#: Backgrounds of ``test`` pairs only (never used in ``trn``/``val``).
TEST_BACKGROUND_PHOTOS = ("gravel", "rocket")

#: Photograph name -> ``(package, loader key, item of a tuple result or None)``; all ship
#: with the package (``skimage``: ``skimage.data.<key>()``; ``sklearn``:
#: ``load_sample_image(key)``).
PHOTO_SOURCES = MappingProxyType({
    "astronaut": ("skimage", "astronaut", None),
    "brick": ("skimage", "brick", None),
    "camera": ("skimage", "camera", None),
    "chelsea": ("skimage", "chelsea", None),
    "coffee": ("skimage", "coffee", None),
    "coins": ("skimage", "coins", None),
    "grass": ("skimage", "grass", None),
    "gravel": ("skimage", "gravel", None),
    "hubble_deep_field": ("skimage", "hubble_deep_field", None),
    "immunohistochemistry": ("skimage", "immunohistochemistry", None),
    "moon": ("skimage", "moon", None),
    "motorcycle_left": ("skimage", "stereo_motorcycle", 0),
    "motorcycle_right": ("skimage", "stereo_motorcycle", 1),
    "retina": ("skimage", "retina", None),
    "rocket": ("skimage", "rocket", None),
    "china": ("sklearn", "china.jpg", None),
    "flower": ("sklearn", "flower.jpg", None),
})

_MAX_PHOTO_SIDE = 1024  # photos are downscaled to this longer side when loaded


@dataclass(frozen=True)
class PhotoPools:
    """The photographs a split may use, by role (names of :data:`PHOTO_SOURCES`)."""

    textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    occluders: tuple[str, ...]


def photo_pools(split: str) -> PhotoPools:
    """The photographs a split may use: ``test`` only the held-out ones
    (:data:`TEST_TEXTURE_PHOTOS`, :data:`TEST_BACKGROUND_PHOTOS`), ``trn``/``val`` the others;
    occluders come from the split's textures and backgrounds together (sorted)."""
    if split == "test":
        tex, bg = TEST_TEXTURE_PHOTOS, TEST_BACKGROUND_PHOTOS
    else:
        tex, bg = TRAIN_TEXTURE_PHOTOS, TRAIN_BACKGROUND_PHOTOS
    return PhotoPools(tex, bg, tuple(sorted(set(tex) | set(bg))))


def _load_photo(name: str) -> Image.Image:
    """The photograph ``name`` as an RGB PIL image at its original size.

    Raises:
        DatasetError: unknown name, or the package that ships it cannot load it (the message
            names the package to reinstall).
    """
    if name not in PHOTO_SOURCES:
        raise DatasetError(f"unknown photograph {name!r}; known: {sorted(PHOTO_SOURCES)}")
    package, key, item = PHOTO_SOURCES[name]
    try:
        if package == "skimage":
            import skimage.data

            arr = getattr(skimage.data, key)()
        else:
            from sklearn.datasets import load_sample_image

            arr = load_sample_image(key)
    except Exception as err:
        pip_name = "scikit-image" if package == "skimage" else "scikit-learn"
        raise DatasetError(
            f"the photograph {name!r} ({package} {key}) that the synthetic benchmark is made from "
            f"cannot be loaded ({type(err).__name__}: {err}); it ships with {pip_name}: reinstall it "
            f"(pip install --force-reinstall {pip_name})"
        ) from err
    if item is not None:
        arr = arr[item]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8))


@cache
def photo_pyramid(name: str) -> tuple[np.ndarray, ...]:
    """A bundled photograph as read-only uint8 ``(H, W, 3)`` arrays, coarser level by level.

    Level 0 is the photograph downscaled (box filter) to a longer side of at most 1024 px;
    level ``l`` is level 0 box-averaged ``2**l`` times (odd last rows/columns dropped), so a
    level-``l`` continuous coordinate is the level-0 one divided by ``2**l``. Levels stop at
    the first one whose shorter side is under 64 px. Cached per process.

    Raises:
        DatasetError: see :func:`_load_photo`.
    """
    image = _load_photo(name)
    scale = _MAX_PHOTO_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
    levels = []
    while True:
        level = np.asarray(image, dtype=np.uint8).copy()
        level.setflags(write=False)
        levels.append(level)
        if min(image.size) < 64:
            break
        image = image.crop((0, 0, image.width // 2 * 2, image.height // 2 * 2)).reduce(2)
    return tuple(levels)


@cache
def _photo_image(name: str, level: int) -> Image.Image:
    """A level of :func:`photo_pyramid` as a PIL image (never modified)."""
    return Image.fromarray(photo_pyramid(name)[level])


def pyramid_level(pyramid: tuple[np.ndarray, ...], photo_px_per_px: float) -> int:
    """The coarsest level of ``pyramid`` still at least as fine as the output, for a
    sampling rate of ``photo_px_per_px`` level-0 photo pixels per output pixel:
    ``floor(log2(rate))`` clipped to the existing levels."""
    return int(np.clip(math.floor(math.log2(max(photo_px_per_px, 1e-6))), 0, len(pyramid) - 1))


def resized_region(name: str, box: tuple[float, float, float, float], size_wh: tuple[int, int]) -> np.ndarray:
    """The region ``box`` (level-0 px ``x1, y1, x2, y2``) of a photo resized to ``size_wh``
    (``(W, H)``): uint8 ``(H, W, 3)``, bilinear, read from the coarsest pyramid level still
    at least as fine as the output."""
    pyramid = photo_pyramid(name)
    ratio = min((box[2] - box[0]) / size_wh[0], (box[3] - box[1]) / size_wh[1])
    level = pyramid_level(pyramid, ratio)
    f = 2.0**level
    image = _photo_image(name, level)
    x1, y1, x2, y2 = box[0] / f, box[1] / f, min(box[2] / f, image.width), min(box[3] / f, image.height)
    return np.asarray(image.resize(size_wh, Image.Resampling.BILINEAR, box=(x1, y1, x2, y2)))


def sample_bilinear(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` (``(H, W)`` or ``(H, W, C)``) at continuous pixel
    coordinates ``xy`` (``(..., 2)``, ``(x, y)``, pixel centres at ``+0.5``), reflected at
    the borders; float32 ``(...)`` or ``(..., C)`` in ``img``'s value range."""
    coords = [xy[..., 1] - 0.5, xy[..., 0] - 0.5]
    if img.ndim == 2:
        return ndimage.map_coordinates(img, coords, order=1, mode="reflect", output=np.float32)
    return np.stack(
        [ndimage.map_coordinates(img[..., c], coords, order=1, mode="reflect", output=np.float32) for c in range(img.shape[2])],
        axis=-1,
    )
