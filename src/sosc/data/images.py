"""Reading images from disk into float RGB tensors, with errors that name the file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sosc.errors import DatasetError, SoscError


def read_image(
    path: Path,
    error: type[SoscError] = DatasetError,
    if_missing: str = "re-extract the dataset or fix the annotation",
    if_unreadable: str = "the file is corrupt; re-download it",
) -> torch.Tensor:
    """Read an image file as ``(3, H, W)`` float RGB in ``[0, 1]``.

    A missing or unreadable file raises ``error`` naming the file, followed by the advice
    ``if_missing`` or ``if_unreadable`` (the defaults speak of a benchmark's files).
    """
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as err:
        raise error(f"image {path} is missing: {if_missing}") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise error(f"image {path} cannot be read ({err}): {if_unreadable}") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


@lru_cache(maxsize=65536)
def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError as err:
        raise DatasetError(f"image {path} is missing: re-extract the dataset or fix the annotation") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f"image {path} cannot be read ({err}): the file is corrupt; re-download it") from err
    return int(h), int(w)
