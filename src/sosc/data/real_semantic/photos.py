"""Photographs read from installed distributions (no network, nothing downloaded).

A photo is located with :mod:`importlib.metadata` (``distribution(package).locate_file(path)``)
so the package itself is never imported. Photographs whose keypoints were annotated are
checked against the SHA-256 recorded in ``annotations.json``: another file (another
version of the package that re-encoded it) would silently move every keypoint.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from sosc.data.real_semantic.annotations import Photo
from sosc.errors import DatasetError


def photo_path(photo: Photo) -> Path:
    """The file of ``photo`` in its installed distribution.

    Raises:
        DatasetError: the distribution is not installed, or lacks the file; says what to install.
    """
    pin = f"=={photo.version}" if photo.version else ""
    try:
        dist = metadata.distribution(photo.package)
    except metadata.PackageNotFoundError as err:
        raise DatasetError(
            f"photo {photo.name!r} ships with the Python package {photo.package!r}, which is not installed: "
            f"pip install '{photo.package}{pin}' (it is a dependency of sosc: reinstall sosc)"
        ) from err
    path = Path(str(dist.locate_file(photo.path)))
    if not path.is_file():
        raise DatasetError(
            f"photo {photo.name!r}: {photo.package} {dist.version} has no file {photo.path} (looked at {path}); "
            f"install the version it was taken from: pip install '{photo.package}{pin}'"
        )
    return path


def load_photo(photo: Photo) -> np.ndarray:
    """The photograph as uint8 RGB ``(H, W, 3)`` in its original pixels (greyscale is
    repeated over the three channels, alpha dropped).

    Raises:
        DatasetError: missing package or file, or (for annotated photos) a file whose
            SHA-256 differs from the one the keypoints were annotated on.
    """
    path = photo_path(photo)
    data = path.read_bytes()
    if photo.sha256 is not None and hashlib.sha256(data).hexdigest() != photo.sha256:
        raise DatasetError(
            f"photo {photo.name!r} ({path}) is not the file its keypoints were annotated on (SHA-256 differs); "
            f"install the annotated version: pip install '{photo.package}=={photo.version}'"
        )
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class PhotoCache:
    """Loads each photo once for one generation run (no module-level state)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, photo: Photo) -> np.ndarray:
        """:func:`load_photo`, memoised; the array is read-only."""
        if photo.name not in self._arrays:
            arr = load_photo(photo)
            arr.setflags(write=False)
            self._arrays[photo.name] = arr
        return self._arrays[photo.name]
