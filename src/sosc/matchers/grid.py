"""Feature grids over an input image: the one cell-centre convention, sampling, soft-argmax.

A feature map of ``h x w`` cells covers an input of ``S_h x S_w`` pixels. Cell ``(i, j)``
(row ``i``, column ``j``) covers ``[j S_w / w, (j + 1) S_w / w) x [i S_h / h, (i + 1) S_h / h)``
and sits at its centre::

    x = (j + 0.5) * S_w / w,   y = (i + 0.5) * S_h / h        (input pixels)

the same continuous convention as :mod:`sosc.geometry` (pixel ``i`` covers ``[i, i + 1)``) and
as ``grid_sample(..., align_corners=False)``. Every matcher reads and writes cells through
these functions; none restates the convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sosc.errors import ConfigError
from sosc.geometry import as_size


def cell_centers(height: int, width: int, size: int | Sequence[int], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Input-pixel ``(x, y)`` centres of an ``height x width`` grid over ``size``, ``(height, width, 2)``.

    >>> cell_centers(2, 2, 8)[1, 0].tolist()
    [2.0, 6.0]
    """
    s_h, s_w = as_size(size)
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (s_w / width)
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (s_h / height)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def to_cells(points: torch.Tensor, grid_hw: Sequence[int], size: int | Sequence[int]) -> torch.Tensor:
    """Input-pixel points ``(..., 2)`` as fractional cell coordinates ``(u, v)`` of an
    ``h x w`` grid over ``size``: the centre of cell ``(i, j)`` is ``(u, v) = (j, i)``.

    >>> to_cells(torch.tensor([2.0, 6.0]), (2, 2), 8).tolist()
    [0.0, 1.0]
    """
    s_h, s_w = as_size(size)
    h, w = int(grid_hw[0]), int(grid_hw[1])
    scale = torch.tensor([w / s_w, h / s_h], device=points.device, dtype=points.dtype)
    return points * scale - 0.5


def from_cells(cells: torch.Tensor, grid_hw: Sequence[int], size: int | Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_cells`: fractional cell coordinates ``(u, v)`` to input pixels.

    >>> from_cells(torch.tensor([0.0, 1.0]), (2, 2), 8).tolist()
    [2.0, 6.0]
    """
    s_h, s_w = as_size(size)
    h, w = int(grid_hw[0]), int(grid_hw[1])
    scale = torch.tensor([s_w / w, s_h / h], device=cells.device, dtype=cells.dtype)
    return (cells + 0.5) * scale


def _grid_sample(field: torch.Tensor, points: torch.Tensor, size: Sequence[float]) -> torch.Tensor:
    """Bilinear samples ``(B, N, C)`` of ``field`` ``(B, C, h, w)`` at ``points`` ``(B, N, 2)``
    in pixels of an input of ``size`` ``(S_h, S_w)`` (border values beyond the outer centres),
    computed in float32 with autocast off: sampling positions are never rounded to a
    low-precision dtype (sampled in bf16, a point at 240.3 px of a 256-pixel input was read
    at 240.0)."""
    with torch.autocast(device_type=points.device.type, enabled=False):
        points = points.float()
        scale = torch.tensor([2.0 / size[1], 2.0 / size[0]], device=points.device, dtype=torch.float32)
        grid = (points * scale - 1.0).clamp(-1.0, 1.0)
        out = F.grid_sample(field.float(), grid[:, :, None, :], mode="bilinear", padding_mode="border",
                            align_corners=False)
    return out[..., 0].transpose(1, 2)


def sample_at(features: torch.Tensor, points: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinearly sample ``features`` ``(B, C, h, w)`` at input-pixel ``points`` ``(B, N, 2)``.

    Points beyond the outer cell centres take the border value (constant extrapolation: right
    for features and scores, whose value at a cell stands for the whole cell; flows, which
    change linearly to the border, use :func:`sample_flow`). The positions and the
    interpolation are float32 whatever ``features``' dtype (and under autocast); returns
    ``(B, N, C)`` in ``features``' dtype.

    >>> ramp = torch.arange(4.0).view(1, 1, 1, 4)  # cells centred at x = 1, 3, 5, 7
    >>> sample_at(ramp, torch.tensor([[[2.0, 1.0], [0.0, 1.0]]]), (2, 8)).flatten().tolist()
    [0.5, 0.0]
    """
    return _grid_sample(features, points, as_size(size)).to(features.dtype)


def pad_linear(field: torch.Tensor) -> torch.Tensor:
    """Pad a map ``(B, C, h, w)`` by one cell on each side by linear extrapolation.

    A side of length 1 is padded by replication. Returns ``(B, C, h + 2, w + 2)``.

    >>> pad_linear(torch.tensor([[[[1.0, 2.0]]]])).tolist()
    [[[[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]]]]
    """
    for dim in (2, 3):
        n = field.shape[dim]
        first, last = field.narrow(dim, 0, 1), field.narrow(dim, n - 1, 1)
        if n > 1:
            first = 2 * first - field.narrow(dim, 1, 1)
            last = 2 * last - field.narrow(dim, n - 2, 1)
        field = torch.cat([first, field, last], dim=dim)
    return field


def sample_flow(flow: torch.Tensor, points: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Values of a dense field ``flow`` ``(B, C, h, w)`` at input-pixel ``points`` ``(B, N, 2)``.

    Bilinear between cell centres, linear extrapolation in the half cell between the outer
    centres and the border (an affine field, e.g. an identity or shifted flow, is reproduced
    exactly everywhere in the image). Returns ``(B, N, C)`` float32 whatever ``flow``'s dtype
    (positions and interpolation in float32, autocast off).

    >>> flow = torch.stack(torch.meshgrid(torch.tensor([4.0, 12.0]), torch.tensor([4.0, 12.0]), indexing="xy"))
    >>> sample_flow(flow[None], torch.tensor([[[1.0, 15.0]]]), (16, 16)).tolist()
    [[[1.0, 15.0]]]
    """
    s_h, s_w = as_size(size)
    h, w = flow.shape[-2:]
    points = points.float()
    cell = torch.tensor([s_w / w, s_h / h], device=points.device, dtype=torch.float32)
    padded_size = ((h + 2) * s_h / h, (w + 2) * s_w / w)
    with torch.autocast(device_type=points.device.type, enabled=False):
        padded = pad_linear(flow.float())
    return _grid_sample(padded, points + cell, padded_size)


def check_soft_argmax_options(temperature: float, kernel_sigma: float | None) -> None:
    """Raise :class:`ConfigError` unless ``temperature > 0`` and ``kernel_sigma`` is None or > 0
    (the options of :func:`soft_argmax`, checked once when a matcher is built).

    >>> check_soft_argmax_options(0.02, "none")
    Traceback (most recent call last):
    ...
    sosc.errors.ConfigError: kernel_sigma must be a number > 0 of cells, or None (null in JSON/YAML) for the plain soft-argmax, got 'none'
    """
    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not number(temperature) or not temperature > 0:
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r}")
    if kernel_sigma is not None and (not number(kernel_sigma) or not kernel_sigma > 0):
        raise ConfigError("kernel_sigma must be a number > 0 of cells, or None (null in JSON/YAML) for the plain "
                          f"soft-argmax, got {kernel_sigma!r}")


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
        (a confidence in ``[0, 1]``), both float32 whatever ``scores``' dtype: the softmax
        and the expectation run in float32 with autocast off (in bf16, two peaks at 200 and
        216 px weighted 7:3 would give 205.0 instead of 204.8).

    >>> scores = torch.full((1, 1, 16), -1e4); scores[0, 0, 12:14] = torch.tensor([0.7, 0.3]).log()
    >>> pos, conf = soft_argmax(scores, (16, 256), temperature=1.0)
    >>> [round(v, 4) for v in pos[0].tolist()], round(float(conf[0]), 4)
    ([204.8, 8.0], 0.7)
    """
    *lead, h, w = scores.shape
    with torch.autocast(device_type=scores.device.type, enabled=False):
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
    return pos.reshape(*lead, 2), conf.reshape(lead)


def transfer_by_features(
    src_feats: torch.Tensor,
    trg_feats: torch.Tensor,
    src_kps: torch.Tensor,
    src_size: int | Sequence[int],
    trg_size: int | Sequence[int] | None = None,
    temperature: float = 0.02,
    kernel_sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transfer keypoints by the cosine similarity of two feature grids, then soft-argmax.

    Each grid covers its whole input (the convention of this module): source features
    ``(B, C, h_s, w_s)`` over ``src_size``, target features ``(B, C, h_t, w_t)`` over
    ``trg_size``. The source features are sampled bilinearly at each keypoint
    (:func:`sample_at`), L2-normalised, compared with every L2-normalised target cell, and the
    target position is the (kernel) soft-argmax of that similarity (:func:`soft_argmax`).
    Each keypoint is transferred on its own.

    Args:
        src_feats, trg_feats: feature grids with the same ``C``.
        src_kps: ``(B, N, 2)`` source keypoints, source input pixels.
        src_size, trg_size: the inputs ``(S_h, S_w)`` the grids cover (``trg_size`` defaults
            to ``src_size``).
        temperature, kernel_sigma: see :func:`soft_argmax`.

    Returns:
        ``(B, N, 2)`` float32 target keypoints in target input pixels, and ``(B, N)`` the
        peak probability.

    >>> f = torch.eye(4).view(1, 4, 2, 2)  # four cells, four orthogonal features
    >>> kps, _ = transfer_by_features(f, f.flip(-1), torch.tensor([[[2.0, 2.0]]]), 8, temperature=0.01)
    >>> [round(v, 3) for v in kps[0, 0].tolist()]
    [6.0, 2.0]
    """
    query = F.normalize(sample_at(src_feats, src_kps, src_size), dim=-1)  # (B, N, C)
    scores = torch.einsum("bnc,bchw->bnhw", query, F.normalize(trg_feats, dim=1))
    return soft_argmax(scores, trg_size if trg_size is not None else src_size, temperature, kernel_sigma)
