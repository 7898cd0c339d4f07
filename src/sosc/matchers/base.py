"""The matcher contract and the functional pieces that matchers share.

A **matcher** is any callable ``matcher(src_img, trg_img, src_kps, valid)`` with

- ``src_img``, ``trg_img``: ``(B, 3, S_h, S_w)`` float RGB in ``[0, 1]`` (network input);
- ``src_kps``: ``(B, N, 2)`` ``(x, y)`` source keypoints in input pixels;
- ``valid``: ``(B, N)`` bool; padded keypoints must not change the valid results;

that returns the target keypoints ``(B, N, 2)`` in input pixels, either as a tensor or as
a :class:`MatchOutput` that may carry a dense flow, a score volume and a per-keypoint
confidence alongside. :func:`keypoints_of` reads either. Matchers normalise images for
their own backbone inside ``forward`` and never import Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from sosc.errors import ConfigError, ShapeError, check_shape
from sosc.geometry import as_size


@dataclass
class MatchOutput:
    """What a matcher may return.

    Attributes:
        kps: ``(B, N, 2)`` predicted target keypoints, input pixels.
        flow: ``(B, 2, h_s, w_s)`` optional dense source-to-target flow: for each source cell,
            the target position ``(x, y)`` in input pixels.
        confidence: ``(B, N)`` optional, in ``[0, 1]``: how peaked each keypoint's score is.
        scores: optional score volume ``(B, h_s, w_s, h_t, w_t)`` (for analysis).
    """

    kps: torch.Tensor
    flow: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    scores: torch.Tensor | None = None


@runtime_checkable
class Matcher(Protocol):
    """Structural type of a matcher (see the module docstring)."""

    def __call__(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor | MatchOutput: ...


def check_matcher_inputs(
    src_img: torch.Tensor,
    trg_img: torch.Tensor,
    src_kps: torch.Tensor,
    valid: torch.Tensor | None = None,
    multiple: int = 1,
    check_finite: bool = True,
) -> torch.Tensor:
    """Check a matcher's inputs against the contract; return ``valid`` (all True if None).

    ``src_img``, ``trg_img`` ``(B, 3, H, W)`` (source and target sizes may differ), each side a
    multiple of ``multiple``; ``src_kps`` ``(B, N, 2)``; ``valid`` ``(B, N)`` bool. With
    ``check_finite`` (one host sync), NaN/Inf in an image or at a *valid* keypoint raises;
    padded keypoints may hold anything.
    """
    check_shape("src_img", src_img, ("B", 3, "H", "W"))
    check_shape("trg_img", trg_img, (src_img.shape[0], 3, "H", "W"))
    check_shape("src_kps", src_kps, (src_img.shape[0], "N", 2))
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
        bad = torch.stack(
            [
                ~torch.isfinite(src_img).all(),
                ~torch.isfinite(trg_img).all(),
                (~torch.isfinite(src_kps).all(-1) & valid).any(),
            ]
        ).tolist()
        for name, is_bad in zip(("src_img", "trg_img", "src_kps"), bad):
            if is_bad:
                where = " at a valid keypoint" if name == "src_kps" else ""
                raise ShapeError(f"{name}: contains NaN or Inf{where}; clean the input or mark the keypoint invalid")
    return valid


def keypoints_of(output: torch.Tensor | MatchOutput) -> torch.Tensor:
    """The ``(B, N, 2)`` keypoints of a matcher's output, whichever form it took."""
    return output.kps if isinstance(output, MatchOutput) else output


def cell_centers(height: int, width: int, size: int | Sequence[int], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Input-pixel ``(x, y)`` centres of an ``height x width`` feature grid, ``(height, width, 2)``.

    Feature cell ``(i, j)`` of a map covering an ``S_h x S_w`` input sits at
    ``((j + 0.5) * S_w / width, (i + 0.5) * S_h / height)``.

    >>> cell_centers(2, 2, 8)[1, 0].tolist()
    [2.0, 6.0]
    """
    s_h, s_w = as_size(size)
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (s_w / width)
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (s_h / height)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def sample_at(features: torch.Tensor, points: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinearly sample ``features`` ``(B, C, h, w)`` at input-pixel ``points`` ``(B, N, 2)``.

    Points are clamped to the image; the result is ``(B, N, C)``.
    """
    s_h, s_w = as_size(size)
    scale = torch.tensor([2.0 / s_w, 2.0 / s_h], device=points.device, dtype=points.dtype)
    grid = (points * scale - 1.0).clamp(-1.0, 1.0).to(features.dtype)
    out = F.grid_sample(features, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


def check_soft_argmax_options(temperature: float, kernel_sigma: float | None) -> None:
    """Raise :class:`ConfigError` unless ``temperature > 0`` and ``kernel_sigma`` is None or > 0
    (the options of :func:`soft_argmax`, checked once when a matcher is built)."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if kernel_sigma is not None and not kernel_sigma > 0:
        raise ConfigError(f"kernel_sigma must be > 0 cells or None, got {kernel_sigma}")


def soft_argmax(
    scores: torch.Tensor, size: int | Sequence[int], temperature: float = 0.05, kernel_sigma: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected input-pixel position under a softmax over the last two dims of ``scores``.

    Args:
        scores: ``(..., h, w)`` similarity (higher is better).
        size: input ``(S_h, S_w)`` the grid covers.
        temperature: softmax temperature on ``scores``.
        kernel_sigma: if given, a Gaussian window (sigma in grid cells) centred on the
            arg-max multiplies the probabilities before renormalisation (kernel soft-argmax):
            a second mode far from the peak cannot drag the estimate.

    Returns:
        ``(..., 2)`` positions ``(x, y)`` in input pixels, and ``(...)`` the peak probability
        (a confidence in ``[0, 1]``).
    """
    *lead, h, w = scores.shape
    flat = scores.reshape(-1, h * w).float()
    prob = torch.softmax(flat / temperature, dim=-1)
    centers = cell_centers(h, w, size, device=scores.device).reshape(h * w, 2)
    if kernel_sigma is not None:
        peak = flat.argmax(dim=-1)
        grid_xy = cell_centers(h, w, (h, w), device=scores.device).reshape(h * w, 2)
        d2 = ((grid_xy[None] - grid_xy[peak][:, None]) ** 2).sum(-1)
        prob = prob * torch.exp(-d2 / (2.0 * kernel_sigma**2))
        prob = prob / prob.sum(-1, keepdim=True).clamp_min(1e-12)
    pos = prob @ centers
    conf = prob.amax(dim=-1)
    return pos.reshape(*lead, 2).to(scores.dtype), conf.reshape(lead)
