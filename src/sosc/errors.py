"""Exception types of ``sosc`` and the one shape-check helper.

Every error raised on user input is one of these types and says what was wrong
(the argument, file or key), what was expected, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


class SoscError(Exception):
    """Base class of every error ``sosc`` raises on purpose."""


class ShapeError(SoscError, ValueError):
    """A tensor argument has the wrong shape, dtype or content."""


class DatasetError(SoscError, RuntimeError):
    """A dataset file or folder is missing, malformed or inconsistent."""


class ConfigError(SoscError, ValueError):
    """A configuration value is invalid or two values contradict each other."""


def check_shape(name: str, tensor: torch.Tensor, shape: Sequence[int | str | None]) -> None:
    """Raise :class:`ShapeError` unless ``tensor`` has ``shape``.

    ``shape`` lists one entry per dimension: an ``int`` is an exact size, a string or
    ``None`` matches any size (the string names the dimension in the message).

    >>> import torch
    >>> check_shape("src_kps", torch.zeros(2, 5, 2), ("B", "N", 2))
    >>> check_shape("src_kps", torch.zeros(2, 5), ("B", "N", 2))
    Traceback (most recent call last):
    ...
    sosc.errors.ShapeError: src_kps: expected shape (B, N, 2), got (2, 5)
    """
    import torch  # on first use: the errors are imported by light modules (sosc-match's parser)

    if not isinstance(tensor, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    expected = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
    got = "(" + ", ".join(str(s) for s in tensor.shape) + ")"
    if tensor.dim() != len(shape):
        raise ShapeError(f"{name}: expected shape {expected}, got {got}")
    for size, want in zip(tensor.shape, shape):
        if isinstance(want, int) and size != want:
            raise ShapeError(f"{name}: expected shape {expected}, got {got}")
