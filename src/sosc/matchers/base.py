"""The matcher contract, the :class:`Matcher` base class, and the input checks matchers share.

A **matcher** is any callable ``matcher(src_img, trg_img, src_kps, valid)`` with

- ``src_img``, ``trg_img``: ``(B, 3, S_h, S_w)`` float RGB in ``[0, 1]`` (network input);
- ``src_kps``: ``(B, N, 2)`` ``(x, y)`` source keypoints in **source** input pixels;
- ``valid``: ``(B, N)`` bool; padded keypoints must not change the valid results;

that returns the target keypoints ``(B, N, 2)`` in **target** input pixels (float32), either
as a tensor or as a :class:`MatchOutput` that may carry a dense flow, a score volume and a
per-keypoint confidence alongside. :func:`keypoints_of` reads either. KBC and the metric need
nothing more. The package's matchers subclass :class:`Matcher` (an ``nn.Module``), which
records the arguments it was built with (for checkpoints) and states the input multiple it
needs; they normalise images for their own backbone inside ``forward`` (:class:`Normalize`)
and never import Lightning.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sosc.errors import ConfigError, ShapeError, check_shape


@dataclass
class MatchOutput:
    """What a matcher may return.

    Attributes:
        kps: ``(B, N, 2)`` predicted target keypoints, target input pixels.
        flow: ``(B, 2, h_s, w_s)`` optional dense source-to-target flow: for each source cell,
            the target position ``(x, y)`` in target input pixels.
        confidence: ``(B, N)`` optional, in ``[0, 1]``: how peaked each keypoint's score is.
        scores: optional score volume ``(B, h_s, w_s, h_t, w_t)`` (for analysis).
    """

    kps: torch.Tensor
    flow: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    scores: torch.Tensor | None = None


def _bound_arguments(cls: type, args: tuple, kwargs: dict) -> dict[str, Any] | None:
    """The arguments of ``cls(*args, **kwargs)`` by name, defaults included (None if they do not bind)."""
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return None
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop(next(iter(out)))  # self
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD and name in out:
            out.update(out.pop(name))
    return out


class Matcher(nn.Module):
    """Base class of ``sosc``'s matchers: an ``nn.Module`` that follows the matcher contract.

    Subclasses implement ``forward(src_img, trg_img, src_kps, valid) -> Tensor | MatchOutput``
    (see the module docstring) and set :attr:`input_multiple` when their input sides must be
    multiples of a stride. The arguments a subclass was constructed with are recorded
    (:attr:`init_args`), so that a checkpoint can rebuild it (:mod:`sosc.checkpoint`).
    Third-party matchers need not subclass it: any callable that follows the contract works
    with :class:`~sosc.kbc.KBCWrapper` and the metric.
    """

    #: Input height and width must be multiples of this (e.g. the coarsest backbone stride).
    input_multiple: int = 1
    #: KBC's zoom for this matcher, in input pixels (``KBCConfig(zoom_px="auto")``, the default,
    #: reads it): the size the grown keypoint box is zoomed to, where this matcher was measured
    #: to match best on validation pairs. ``None``: :data:`sosc.kbc.config.DEFAULT_ZOOM_PX`.
    kbc_zoom_px: float | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Matcher:
        self = super().__new__(cls)
        object.__setattr__(self, "_sosc_init_args", _bound_arguments(cls, args, kwargs))
        return self

    @property
    def init_args(self) -> dict[str, Any] | None:
        """The constructor's arguments by name (defaults included), or ``None`` if unknown."""
        args = self.__dict__.get("_sosc_init_args")
        return None if args is None else dict(args)

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor | MatchOutput:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(src_img, trg_img, src_kps, valid)")


def matcher_input_multiple(matcher: Any) -> int:
    """The multiple a matcher's input sides must have (:attr:`Matcher.input_multiple`; 1 if unknown)."""
    return int(getattr(matcher, "input_multiple", 1) or 1)


def check_input_size(input_size: Sequence[int], multiple: int, name: str = "input_size") -> None:
    """Raise :class:`ConfigError` unless both sides of ``input_size`` ``(S_h, S_w)`` are multiples
    of ``multiple``, naming ``name`` and the nearest valid sizes.

    >>> check_input_size((256, 256), 32)
    >>> check_input_size((250, 256), 32, "data.init_args.input_size")
    Traceback (most recent call last):
    ...
    sosc.errors.ConfigError: data.init_args.input_size (250, 256) must be a multiple of 32 on both sides (the matcher's coarsest stride); the nearest valid sizes are 224 and 256
    """
    bad = [s for s in input_size if int(s) % multiple]
    if not bad:
        return
    side = bad[0]
    lo = max(multiple, (int(side) // multiple) * multiple)
    hi = lo + multiple if lo < side else lo
    raise ConfigError(
        f"{name} {tuple(int(s) for s in input_size)} must be a multiple of {multiple} on both sides "
        f"(the matcher's coarsest stride); the nearest valid sizes are {lo} and {hi}"
    )


class Normalize(nn.Module):
    """Per-channel normalisation of RGB in ``[0, 1]``: ``(image - mean) / std``.

    ``mean`` and ``std`` are 3 floats each (non-persistent buffers ``(1, 3, 1, 1)``, so they
    follow ``.to(device)`` and never enter a checkpoint). Works on ``(B, 3, H, W)`` of any
    float dtype.

    >>> Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(torch.ones(1, 3, 1, 1)).flatten().tolist()
    [2.0, 2.0, 2.0]
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ConfigError(f"mean and std need 3 values each, std > 0; got mean={mean}, std={std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)


#: How far an image value may lie outside ``[0, 1]`` (resampling can overshoot a little).
IMAGE_RANGE_TOLERANCE = 0.01


def check_image_layout(name: str, image: torch.Tensor, batched: bool = True) -> None:
    """Raise :class:`ShapeError` unless ``image`` is a float tensor ``(B, 3, H, W)`` (or
    ``(3, H, W)`` when not ``batched``), naming ``name``, the shape or dtype given, the layout
    expected and the fix (channels last, integer pixels, an empty batch).

    >>> check_image_layout("src_img", torch.zeros(1, 8, 8, 3))
    Traceback (most recent call last):
    ...
    sosc.errors.ShapeError: src_img: expected shape (B, 3, H, W) float RGB in [0, 1], got (1, 8, 8, 3): channels last? pass img.permute(0, 3, 1, 2)
    """
    layout = ("B", 3, "H", "W") if batched else (3, "H", "W")
    text = "(" + ", ".join(str(s) for s in layout) + ") float RGB in [0, 1]"
    if not isinstance(image, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor {text}, got {type(image).__name__}")
    shape = tuple(image.shape)
    if image.dim() != len(layout) or image.shape[-3] != 3:
        hint = ""
        if image.dim() == len(layout) and image.shape[-1] == 3:
            perm = "(0, 3, 1, 2)" if batched else "(2, 0, 1)"
            hint = f": channels last? pass img.permute{perm}"
        elif batched and image.dim() == 3 and image.shape[0] == 3:
            hint = ": one image? pass img[None] (or a list [img])"
        raise ShapeError(f"{name}: expected shape {text}, got ({', '.join(str(s) for s in shape)}){hint}")
    if batched and shape[0] == 0:
        raise ShapeError(f"{name}: the batch is empty, got shape {shape}; expected (B, 3, H, W) with B >= 1")
    if not image.is_floating_point():
        raise ShapeError(
            f"{name}: expected float RGB in [0, 1], got dtype {image.dtype}; pass floats, e.g. img.float() / 255"
        )


def value_flags(images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per image, two 0-dim bool tensors: it holds NaN/Inf, and it leaves ``[0, 1]`` by more than
    :data:`IMAGE_RANGE_TOLERANCE` (for stacking into one host sync)."""
    flags = []
    for img in images:
        lo, hi = torch.aminmax(img.detach())
        flags.append(~torch.isfinite(img.detach()).all())
        flags.append((lo < -IMAGE_RANGE_TOLERANCE) | (hi > 1.0 + IMAGE_RANGE_TOLERANCE))
    return flags


def raise_value_error(name: str, image: torch.Tensor, nonfinite: bool, out_of_range: bool) -> None:
    """Raise the :class:`ShapeError` that :func:`value_flags` found for ``image`` (if any)."""
    if nonfinite:
        raise ShapeError(f"{name}: contains NaN or Inf; clean the input")
    if out_of_range:
        lo, hi = torch.aminmax(image.detach())
        scale = " (0-255 pixel values? divide by 255)" if float(hi) > 1.5 else ""
        raise ShapeError(
            f"{name}: values in [{float(lo):.4g}, {float(hi):.4g}] but images must be float RGB in [0, 1] "
            f"(within {IMAGE_RANGE_TOLERANCE:g}){scale}"
        )


def check_matcher_inputs(
    src_img: torch.Tensor,
    trg_img: torch.Tensor,
    src_kps: torch.Tensor,
    valid: torch.Tensor | None = None,
    multiple: int = 1,
    check_finite: bool = True,
) -> torch.Tensor:
    """Check a matcher's inputs against the contract; return ``valid`` (all True if None).

    ``src_img``, ``trg_img`` ``(B, 3, H, W)`` float (source and target sizes may differ),
    ``B >= 1``, each side a multiple of ``multiple``; ``src_kps`` ``(B, N, 2)`` float;
    ``valid`` ``(B, N)`` bool. With ``check_finite`` (one host sync for all of it): NaN/Inf in
    an image or at a *valid* keypoint raises, and so does an image with values outside
    ``[0, 1]`` by more than :data:`IMAGE_RANGE_TOLERANCE` (e.g. 0-255 pixel values); padded
    keypoints may hold anything.

    Raises:
        ShapeError: naming the argument, what was expected and what was given.
    """
    check_image_layout("src_img", src_img)
    check_image_layout("trg_img", trg_img)
    check_shape("trg_img", trg_img, (src_img.shape[0], 3, "H", "W"))
    check_shape("src_kps", src_kps, (src_img.shape[0], "N", 2))
    if not src_kps.is_floating_point():
        raise ShapeError(f"src_kps: expected float (x, y) pixels, got dtype {src_kps.dtype}; pass src_kps.float()")
    if valid is None:
        valid = torch.ones(src_kps.shape[:2], dtype=torch.bool, device=src_kps.device)
    check_shape("valid", valid, (src_img.shape[0], src_kps.shape[1]))
    if valid.dtype != torch.bool:
        raise ShapeError(f"valid: expected dtype torch.bool, got {valid.dtype}; pass valid.bool()")
    for name, img in (("src_img", src_img), ("trg_img", trg_img)):
        h, w = img.shape[-2:]
        if h % multiple or w % multiple:
            fit = (max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple))
            raise ShapeError(
                f"{name}: height and width must be multiples of {multiple} (the backbone's coarsest "
                f"stride), got {h}x{w}; resize the input to e.g. {fit[0]}x{fit[1]}"
            )
    if check_finite:
        flags = value_flags((src_img, trg_img))
        flags.append((~torch.isfinite(src_kps.detach()).all(-1) & valid).any())
        bad = torch.stack(flags).tolist()
        raise_value_error("src_img", src_img, bad[0], bad[1])
        raise_value_error("trg_img", trg_img, bad[2], bad[3])
        if bad[4]:
            raise ShapeError("src_kps: contains NaN or Inf at a valid keypoint; clean the input or mark the keypoint invalid")
    return valid


def keypoints_of(output: torch.Tensor | MatchOutput) -> torch.Tensor:
    """The ``(B, N, 2)`` keypoints of a matcher's output, whichever form it took."""
    return output.kps if isinstance(output, MatchOutput) else output
