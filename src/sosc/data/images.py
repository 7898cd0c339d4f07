"""Reading images from disk into float RGB tensors, with errors that name the file.

:func:`read_image` is the one reader (the datasets and ``sosc-match`` use it). Every image
becomes ``(3, H, W)`` float32 RGB in ``[0, 1]``, scaled by the real range of its mode,
or is refused with an error that names the file and the mode:

- 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ...): ``/ 255``. A 48-bit
  RGB PNG is given by PIL as 8-bit ``RGB`` (its high bytes): that is its range too.
- 16-bit greyscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): ``/ 65535``, on three channels.
- 32-bit integer ``I``: ``/ 65535`` when it comes from a PNG (PNG has no 32-bit samples:
  PIL gives some 16-bit PNGs as ``I``); from any other format it is refused (no fixed range).
- 32-bit float ``F``: taken as is when every value lies in ``[0, 1]``; refused otherwise.
- Transparency (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, ``P`` or ``L``/``RGB`` with a
  transparent colour): composited over ``background`` (default white), with a warning once
  per file that says so; a wholly opaque alpha changes nothing and says nothing.
- EXIF orientation: ``orientation="apply"`` rotates and mirrors the pixels as viewers show
  them (all eight values, :func:`PIL.ImageOps.exif_transpose`), as ``sosc-match`` does;
  ``"stored"`` (the benchmarks' readers: their annotations follow the stored frame) keeps
  the stored pixels and warns once per file whose tag is not the identity.
- A file that PIL recognises but cannot decode (a truncated JPEG) is reported as truncated
  or damaged; a file in no format PIL reads, as such.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from sosc.errors import DatasetError, SoscError

Orientation = Literal["apply", "stored"]
#: EXIF tag number of Orientation.
ORIENTATION_TAG = 0x0112
#: What a viewer does to the stored pixels for each EXIF Orientation value (1 is the identity).
ORIENTATION_NAMES = {
    2: "mirror left-right",
    3: "rotate 180",
    4: "mirror top-bottom",
    5: "mirror along the main diagonal (transpose)",
    6: "rotate 90 clockwise",
    7: "mirror along the anti-diagonal (transverse)",
    8: "rotate 90 counter-clockwise",
}
#: Modes with an alpha channel.
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
#: Modes of 16-bit unsigned greyscale samples.
UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Leading bytes of formats that PIL reads: a file that starts so but cannot be opened is damaged.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")

_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, path: Path, message: str) -> None:
    """Warn ``message`` once per ``(kind, file)`` in this process."""
    key = (kind, str(path))
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def as_background(background: float | str | Sequence[float]) -> tuple[float, float, float]:
    """An RGB background in ``[0, 1]`` from ``"white"``, ``"black"``, a grey level or 3 floats.

    >>> as_background("white"), as_background(0.5), as_background((1, 0, 0))
    ((1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (1.0, 0.0, 0.0))
    """
    named = {"white": 1.0, "black": 0.0}
    if isinstance(background, str):
        if background not in named:
            raise SoscError(f"background must be 'white', 'black', a grey level or 3 floats in [0, 1], got {background!r}")
        background = named[background]
    values = [float(background)] * 3 if isinstance(background, (int, float)) else [float(v) for v in background]
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise SoscError(f"background must be 'white', 'black', a grey level or 3 floats in [0, 1], got {background!r}")
    return values[0], values[1], values[2]


def exif_orientation(im: Image.Image) -> int:
    """The EXIF Orientation value of an open image (1, the identity, when there is none)."""
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block is no orientation
        return 1
    return int(value) if value in ORIENTATION_NAMES else 1


def _check_stored_orientation(im: Image.Image, path: Path) -> None:
    """Warn once per file whose EXIF orientation is not the identity (its pixels are kept as stored)."""
    value = exif_orientation(im)
    if value != 1:
        w, h = im.size
        shown = (h, w) if value >= 5 else (w, h)
        _warn_once(
            "orientation", path,
            f"image {path} has EXIF Orientation {value} ({ORIENTATION_NAMES[value]}): it is read as stored "
            f"({w}x{h}), the frame the benchmark's annotations use; viewers show it turned ({shown[0]}x{shown[1]}). "
            "If its keypoints were read off the image as shown, re-save it with the orientation applied "
            "(PIL.ImageOps.exif_transpose)",
        )


def _refuse(error: type[SoscError], path: Path, mode: str, why: str) -> SoscError:
    return error(f"image {path} has mode {mode!r} ({why}); save it as an 8-bit or 16-bit PNG or JPEG")


def _grey_array(im: Image.Image, path: Path, error: type[SoscError]) -> np.ndarray | None:
    """``(H, W)`` float32 in ``[0, 1]`` for the modes that are not 8 bits a sample; None for the others."""
    mode = im.mode
    if mode in UINT16_MODES:
        return np.asarray(im).astype(np.float32) / 65535.0
    if mode == "I":
        if im.format != "PNG":
            raise _refuse(error, path, mode, "32-bit integer samples have no fixed range to scale to [0, 1]")
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if not (np.isfinite(arr).all() and lo >= 0.0 and hi <= 1.0):
            raise _refuse(error, path, mode, f"32-bit float samples in [{lo:g}, {hi:g}], read only when in [0, 1]")
        return arr
    if mode.startswith("I;") or mode.startswith("F;"):
        raise _refuse(error, path, mode, "a sample format sosc does not scale")
    return None


def _to_tensor(
    im: Image.Image, path: Path, background: tuple[float, float, float], error: type[SoscError]
) -> torch.Tensor:
    """``(3, H, W)`` float32 RGB in ``[0, 1]`` of an open, loaded image (see the module docstring)."""
    grey = _grey_array(im, path, error)
    if grey is not None:
        return torch.from_numpy(np.array(grey, dtype=np.float32)).expand(3, *grey.shape).clone()
    has_alpha = im.mode in ALPHA_MODES or (im.mode in ("P", "L", "RGB", "1") and "transparency" in im.info)
    try:
        arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    except ValueError as err:
        raise _refuse(error, path, im.mode, f"PIL cannot convert it to RGB: {err}") from err
    rgb = torch.from_numpy(arr[..., :3].copy()).permute(2, 0, 1).float().div_(255.0)
    if has_alpha and bool((arr[..., 3] < 255).any()):
        alpha = torch.from_numpy(arr[..., 3].copy()).float().div_(255.0)
        bg = torch.tensor(background, dtype=torch.float32).view(3, 1, 1)
        rgb = rgb * alpha + bg * (1.0 - alpha)
        _warn_once(
            "alpha", path,
            f"image {path} has transparent pixels (mode {im.mode}): composited over the background "
            f"RGB {background} (background= argument of read_image / --background of sosc-match)",
        )
    return rgb


def _damaged_header(path: Path) -> bool:
    """Whether the file starts like a format PIL reads (so that failing to open it means damage)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in _MAGIC)


#: The advice after a dataset image's error (a missing file, a file in no format PIL reads, a
#: truncated or damaged one); ``sosc-match`` passes its own.
IF_MISSING = "re-extract the dataset or fix the annotation"
IF_UNREADABLE = "the file is corrupt; re-download it"
IF_DAMAGED = "re-download or re-extract it"


def read_image(
    path: Path,
    error: type[SoscError] = DatasetError,
    if_missing: str = IF_MISSING,
    if_unreadable: str = IF_UNREADABLE,
    *,
    if_damaged: str = IF_DAMAGED,
    orientation: Orientation = "stored",
    background: float | str | Sequence[float] = "white",
) -> torch.Tensor:
    """Read an image file as ``(3, H, W)`` float32 RGB in ``[0, 1]`` (see the module docstring).

    Args:
        path: the file.
        error: the :class:`SoscError` type raised (datasets: :class:`DatasetError`).
        if_missing, if_unreadable, if_damaged: the advice after the message for a missing
            file, a file in no format PIL reads, and a truncated or damaged one.
        orientation: ``"stored"`` (the stored pixels; a non-identity EXIF orientation warns
            once per file) or ``"apply"`` (the pixels as viewers show them).
        background: what transparent pixels are composited over: ``"white"`` (default),
            ``"black"``, a grey level or RGB in ``[0, 1]``.

    Raises:
        ``error``: naming the file and what is wrong with it (missing, not an image,
        truncated or damaged, a mode whose range is unknown).
    """
    path = Path(path)
    bg = as_background(background)
    im = _open_loaded(path, error, if_missing, if_unreadable, if_damaged, orientation)
    with im:
        return _to_tensor(im, path, bg, error)


def _open_loaded(
    path: Path, error: type[SoscError], if_missing: str, if_unreadable: str, if_damaged: str,
    orientation: Orientation,
) -> Image.Image:
    """The decoded image at ``path`` (orientation applied or checked), or ``error`` naming the file."""
    if orientation not in ("apply", "stored"):
        raise SoscError(f"orientation must be 'apply' or 'stored', got {orientation!r}")
    try:
        im = Image.open(path)
    except FileNotFoundError as err:
        raise error(f"image {path} is missing: {if_missing}") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if _damaged_header(path):
            raise error(f"image {path} is truncated or damaged ({err}): {if_damaged}") from err
        raise error(f"image {path} cannot be read ({err}): {if_unreadable}") from err
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as err:
        im.close()
        raise error(f"image {path} is truncated or damaged ({err}): {if_damaged}") from err
    if orientation == "apply":
        im = ImageOps.exif_transpose(im)
    else:
        _check_stored_orientation(im, path)
    return im


def read_image_8bit(
    path: Path,
    error: type[SoscError] = DatasetError,
    *,
    if_missing: str = IF_MISSING,
    if_unreadable: str = IF_UNREADABLE,
    if_damaged: str = IF_DAMAGED,
    orientation: Orientation = "stored",
) -> Image.Image | torch.Tensor:
    """The image at ``path`` as a decoded 8-bit ``RGB`` PIL image when its mode is plain 8-bit
    colour (``RGB``, ``L``, ``P``, ``CMYK``, ``YCbCr`` without transparency: the values
    :func:`read_image` gives are exactly its samples ``/ 255``); otherwise as :func:`read_image`'s
    float tensor (16-bit, float, transparent images: their range or compositing needs floats).
    Errors as :func:`read_image`. The fast data path resamples the PIL image itself
    (:func:`sosc.geometry.resample_window_8bit`)."""
    path = Path(path)
    im = _open_loaded(path, error, if_missing, if_unreadable, if_damaged, orientation)
    has_alpha = im.mode in ALPHA_MODES or (im.mode in ("P", "L", "RGB", "1") and "transparency" in im.info)
    if im.mode in ("RGB", "L", "P", "CMYK", "YCbCr") and not has_alpha:
        return im if im.mode == "RGB" else im.convert("RGB")
    with im:
        return _to_tensor(im, path, as_background("white"), error)


@lru_cache(maxsize=65536)
def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image as stored, from its header only (a non-identity EXIF orientation
    warns once per file, as :func:`read_image` with ``orientation="stored"`` does)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            _check_stored_orientation(im, Path(path))
    except FileNotFoundError as err:
        raise DatasetError(f"image {path} is missing: {IF_MISSING}") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f"image {path} cannot be read ({err}): {IF_UNREADABLE}") from err
    return int(h), int(w)
