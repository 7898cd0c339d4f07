"""Adapters: put third-party correspondence nets behind the matcher contract.

Each adapter is a :class:`~sosc.matchers.base.Matcher` with ``forward(src_img, trg_img,
src_kps, valid)`` (see :mod:`sosc.matchers.base`): images ``(B, 3, S_h, S_w)`` float RGB in
``[0, 1]``, keypoints ``(B, N, 2)`` ``(x, y)`` in **source** input pixels, ``valid``
``(B, N)`` bool or ``None``; it returns target keypoints in **target** input pixels. Each
optionally normalises the images (``mean``/``std``, default none: the net gets ``[0, 1]``)
and may state the multiple its input sides need (``input_multiple``, checked by
:class:`~sosc.kbc.KBCWrapper` when it is built).

What each adapter expects of the net, and what must be said when wrapping one:

- :class:`CallableMatcher`: a function that already follows the contract; nothing to say.
- :class:`FlowMatcher`: a net returning a dense flow on one image's grid into the other;
  say which argument's grid it lives on (``flow_on``: the adapter then calls the net so that
  the flow lives on the **source** grid and points into the target) and how to read it
  (``flow_format``, ``flow_units``, ``pixel_convention``).
- :class:`ScoreVolumeMatcher`: a net returning scores between every source and every target
  cell; say whose grid leads (``rows``), the grids of a flattened volume (``src_grid``,
  ``trg_grid``) and the read-out (``readout``: this package's, or CHM's).
- :class:`FeatureFnMatcher`: a feature extractor ``image -> (B, C, h, w)`` whose grid covers
  its input; matched by cosine similarity, as :class:`~sosc.matchers.feature.FeatureMatcher`.

**Grids.** A net's ``h x w`` grid covers its whole input; cell ``(i, j)`` stands for the
input point ``((j + 0.5) S_w / w, (i + 0.5) S_h / h)`` (:mod:`sosc.matchers.grid`, the one
convention of the package, that of ``grid_sample(..., align_corners=False)`` and of a
stride-``s`` network on an input that is a multiple of ``s``). The one exception is
``ScoreVolumeMatcher(readout="chm")``, which reproduces CHM's own transfer, cell ``j`` at
``S j / (n - 1)`` (see :func:`chm_transfer`).

**Directions, for the field's two best-known nets** (read from their public code):

- CATs (``forward(target, source)`` by its argument names) returns a *displacement*, in cells
  of its 16 x 16 feature grid, defined on the grid of its **first** argument and pointing
  into the **second**; CATs' own evaluation calls ``net(trg, src)`` to move *target*
  keypoints into the source. To move source keypoints:
  ``FlowMatcher(cats, flow_on="first", flow_format="displacement", flow_units="grid",
  mean=IMAGENET_MEAN, std=IMAGENET_STD)``, which calls ``cats(src, trg)``.
- CHM (``forward(src_img, trg_img)``) returns its score volume flattened,
  ``(B, h*w, h*w)``, source cells first (rows), target cells last, ``h = w = S / 8``:
  ``ScoreVolumeMatcher(chm, src_grid=(30, 30), readout="chm", mean=IMAGENET_MEAN,
  std=IMAGENET_STD)`` at a 240-pixel input.

The maths lives in :func:`flow_to_input_pixels`, :func:`transfer_by_flow`,
:func:`as_score_volume`, :func:`transfer_by_scores`, :func:`chm_transfer` and
:func:`~sosc.matchers.grid.transfer_by_features`; the modules store settings and call them.
Each keypoint is transferred on its own, so padded entries never change valid results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import nn

from sosc.errors import ConfigError, ShapeError, check_shape
from sosc.geometry import as_size
from sosc.matchers.base import Matcher, MatchOutput, Normalize, check_matcher_inputs
from sosc.matchers.grid import (
    cell_centers,
    check_soft_argmax_options,
    from_cells,
    sample_at,
    sample_flow,
    soft_argmax,
    to_cells,
    transfer_by_features,
)

FlowFormat = Literal["absolute", "displacement"]
FlowUnits = Literal["grid", "input", "normalized"]
PixelConvention = Literal["continuous", "index"]
FlowOn = Literal["first", "second"]
Rows = Literal["source", "target"]
Readout = Literal["bilinear", "chm"]

#: CHM's read-out (``Geometry.transfer_kps`` of its public code): the Gaussian kernel's sigma in
#: target cells, the attentive radius as a fraction of half the input side, the softmax
#: temperature (CHM's softmax has none).
CHM_SIGMA, CHM_RADIUS, CHM_TEMPERATURE = 17.0, 0.1, 1.0


# --------------------------------------------------------------------------- shared pieces


class _NetAdapter(Matcher):
    """Shared part of the adapters: the optional input normalisation and the input multiple."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None, input_multiple: int = 1) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std (3 floats each for RGB in [0, 1]) or neither")
        if int(input_multiple) != input_multiple or input_multiple < 1:
            raise ConfigError(f"input_multiple must be a positive int, got {input_multiple!r}")
        self.normalize = Normalize(mean, std) if mean is not None else None
        self.input_multiple = int(input_multiple)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> what the net expects."""
        return image if self.normalize is None else self.normalize(image)


def _pick(output: Any, key: str) -> torch.Tensor:
    """The tensor of a net's output: the tensor itself, ``output[key]`` of a dict, or the
    first element of a tuple/list."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        if key not in output:
            raise ShapeError(f"the net returned a dict without {key!r} (keys: {sorted(output)}); return {key!r}")
        return output[key]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ShapeError(f"the net must return a tensor, a dict with {key!r} or a tuple led by it; got {type(output).__name__}")


def _no_target_first(adapter: str, target_first: bool | None, fix: str) -> None:
    """The migration of the removed ``target_first`` option: ``True`` is refused with ``fix``."""
    if target_first:
        raise ConfigError(
            f"{adapter}: target_first is gone: it named the argument order, not which image's grid the "
            f"net's output lives on, and the advice to set it for CATs moved keypoints the wrong way. {fix}"
        )


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")


# --------------------------------------------------------------------------- functional core


def flow_to_input_pixels(
    flow: torch.Tensor,
    input_size: int | Sequence[int],
    flow_format: FlowFormat = "absolute",
    flow_units: FlowUnits = "grid",
    pixel_convention: PixelConvention = "continuous",
    target_size: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Convert a net's dense flow ``(B, 2, h, w)`` to sosc's: ``(x, y)`` input pixels, same grid.

    The flow lives on the **source** grid: cell ``(i, j)`` stands for the source input point
    ``((j + 0.5) S_w / w, (i + 0.5) S_h / h)``; its values point into the **target** input.

    Args:
        flow: ``(B, 2, h, w)`` channel 0 is ``x``, channel 1 is ``y``.
        input_size: the source input ``(S_h, S_w)`` the flow's grid covers.
        flow_format: ``"absolute"`` (values are target positions) or ``"displacement"``
            (values are target minus source position; source and target inputs of one size).
        flow_units: ``"grid"`` cells of an ``h x w`` grid (a displacement in cells is scaled
            by ``S_w / w``, ``S_h / h``; an absolute position is a cell coordinate of the same
            ``h x w`` grid over the target), ``"input"`` input pixels, ``"normalized"``
            ``[-1, 1]`` over the input (as ``grid_sample``).
        pixel_convention: ``"continuous"`` (sosc's: pixel ``i`` spans ``[i, i + 1)``; for
            normalized units, ``align_corners=False``) or ``"index"`` (pixel ``i`` is the
            point ``i``, as most research code and OpenCV; for normalized units,
            ``align_corners=True``). Only absolute positions depend on it.
        target_size: the target input ``(S_h, S_w)`` absolute positions lie in (defaults to
            ``input_size``).

    Returns:
        ``(B, 2, h, w)`` float32 (whatever ``flow``'s dtype: positions are never rounded to
        bf16), same format (absolute stays absolute, displacement stays displacement), in
        continuous input pixels.

    >>> f = torch.zeros(1, 2, 2, 2); f[:, 0] = torch.tensor([[0.5, 1.5], [0.5, 1.5]])
    >>> flow_to_input_pixels(f, 8)[0, 0].tolist()
    [[2.0, 6.0], [2.0, 6.0]]
    """
    check_shape("flow", flow, ("B", 2, "h", "w"))
    if flow_format not in ("absolute", "displacement"):
        raise ConfigError(f"flow_format must be 'absolute' or 'displacement', got {flow_format!r}")
    if flow_units not in ("grid", "input", "normalized"):
        raise ConfigError(f"flow_units must be 'grid', 'input' or 'normalized', got {flow_units!r}")
    if pixel_convention not in ("continuous", "index"):
        raise ConfigError(f"pixel_convention must be 'continuous' or 'index', got {pixel_convention!r}")
    s_h, s_w = as_size(input_size if flow_format == "displacement" or target_size is None else target_size)
    h, w = flow.shape[-2:]
    flow = flow.float()
    absolute = flow_format == "absolute"
    index = pixel_convention == "index"

    def axis(v: torch.Tensor, size: int, cells: int) -> torch.Tensor:
        if flow_units == "normalized":
            if not absolute:
                return v * (0.5 * (size - 1) if index else 0.5 * size)
            return (v + 1.0) * 0.5 * (size - 1) + 0.5 if index else (v + 1.0) * 0.5 * size
        shift = 0.5 if (absolute and index) else 0.0
        scale = size / cells if flow_units == "grid" else 1.0
        return (v + shift) * scale

    return torch.stack([axis(flow[:, 0], s_w, w), axis(flow[:, 1], s_h, h)], dim=1)


def transfer_by_flow(
    flow: torch.Tensor, src_kps: torch.Tensor, input_size: int | Sequence[int], flow_format: FlowFormat = "absolute"
) -> torch.Tensor:
    """Transfer keypoints through a flow in input pixels (:func:`flow_to_input_pixels`).

    The flow is read at each keypoint by :func:`~sosc.matchers.grid.sample_flow`: bilinear
    between cell centres and linear extrapolation in the half cell between the outer centres
    and the border, so an affine flow (identity, shift, zoom, mirror) is transferred exactly
    up to the image border, in either format (clamping to the outer centres would move a
    keypoint at ``(1, 1)`` of a 64-pixel input with a 4 x 4 identity flow to ``(8, 8)``).

    Args:
        flow: ``(B, 2, h, w)`` input pixels, absolute target positions or displacements.
        src_kps: ``(B, N, 2)`` source keypoints, input pixels.
        input_size: ``(S_h, S_w)``.
        flow_format: ``"absolute"``: the sampled position; ``"displacement"``: the keypoint
            plus the sampled displacement.

    Returns:
        ``(B, N, 2)`` float32 target keypoints, input pixels.

    >>> identity = cell_centers(4, 4, 64).permute(2, 0, 1)[None]
    >>> out = transfer_by_flow(identity, torch.tensor([[[1.0, 1.0], [63.0, 32.0]]]), 64)
    >>> [[round(v, 4) for v in p] for p in out[0].tolist()]
    [[1.0, 1.0], [63.0, 32.0]]
    """
    src_kps = src_kps.float()
    sampled = sample_flow(flow, src_kps, as_size(input_size))
    return src_kps + sampled if flow_format == "displacement" else sampled


def displacement_to_absolute(flow: torch.Tensor, input_size: int | Sequence[int]) -> torch.Tensor:
    """A displacement flow ``(B, 2, h, w)`` in input pixels plus its cell centres: absolute positions."""
    h, w = flow.shape[-2:]
    centers = cell_centers(h, w, input_size, device=flow.device, dtype=flow.dtype)
    return flow + centers.permute(2, 0, 1)[None]


def _grid(name: str, grid: Sequence[int] | None) -> tuple[int, int] | None:
    if grid is None:
        return None
    try:
        out = tuple(int(g) for g in grid)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be (h, w) of positive ints, got {grid!r}") from err
    if len(out) != 2 or min(out) <= 0:
        raise ConfigError(f"{name} must be (h, w) of positive ints, got {grid!r}")
    return out  # type: ignore[return-value]


def _grid_hint(cells: int) -> str:
    side = math.isqrt(cells)
    return f", e.g. ({side}, {side}) for a square one" if side * side == cells else ""


def as_score_volume(
    scores: torch.Tensor,
    src_grid: Sequence[int] | None = None,
    trg_grid: Sequence[int] | None = None,
    rows: Rows = "source",
) -> torch.Tensor:
    """A net's score volume as sosc's ``(B, h_s, w_s, h_t, w_t)``: source cells lead.

    Accepted layouts, with ``rows="source"`` (the source grid leads, as CHM's and as
    ``net(src, trg)`` of a correlation ``src^T trg`` give it):

    - ``(B, h_s, w_s, h_t, w_t)``, or ``(B, 1, h_s, w_s, h_t, w_t)`` (one channel);
    - flattened ``(B, h_s * w_s, h_t * w_t)`` (CHM's) or ``(B, h_s * w_s, h_t, w_t)``, cells
      in row-major order (index ``i * w + j``); the grids must then be given.

    With ``rows="target"`` the same layouts with the target grid first (``(B, h_t, w_t, h_s,
    w_s)``, ``(B, h_t * w_t, h_s * w_s)``, ...); the volume is transposed.

    Args:
        scores: the volume, higher is better.
        src_grid, trg_grid: ``(h, w)`` of the source and target grids; needed for a flattened
            grid, checked against the volume otherwise; ``trg_grid`` defaults to ``src_grid``.
        rows: which image's grid leads the volume.

    Raises:
        ShapeError: a layout that is none of these, or grids that do not multiply to the
            flattened sizes, naming the shape and the fix.

    >>> as_score_volume(torch.zeros(1, 6, 6), src_grid=(2, 3)).shape
    torch.Size([1, 2, 3, 2, 3])
    """
    _check_choice("rows", rows, ("source", "target"))
    src_grid, trg_grid = _grid("src_grid", src_grid), _grid("trg_grid", trg_grid)
    lead, last = (src_grid, trg_grid) if rows == "source" else (trg_grid, src_grid)
    lead_name, last_name = ("src_grid", "trg_grid") if rows == "source" else ("trg_grid", "src_grid")
    order = "(B, h_s, w_s, h_t, w_t)" if rows == "source" else "(B, h_t, w_t, h_s, w_s)"
    if not isinstance(scores, torch.Tensor):
        raise ShapeError(f"scores: expected a torch.Tensor, got {type(scores).__name__}")
    shape = tuple(scores.shape)
    if scores.dim() == 6:
        if shape[1] != 1:
            raise ShapeError(
                f"scores: a 6D volume needs one channel, (B, 1, h_s, w_s, h_t, w_t), got {shape}; "
                "reduce the channels (e.g. mean) in the net"
            )
        scores = scores[:, 0]
    elif scores.dim() in (3, 4):
        lead_hw = lead or last  # one grid given: both grids are that one
        if lead_hw is None:
            raise ShapeError(
                f"scores: a flattened volume {shape} needs its grids: give {lead_name}=(h, w)"
                f"{_grid_hint(shape[1])} (and {last_name} when the other grid differs); expected {order}"
            )
        last_hw = (last or lead_hw) if scores.dim() == 3 else tuple(shape[2:])
        if shape[1] != lead_hw[0] * lead_hw[1] or (scores.dim() == 3 and shape[2] != last_hw[0] * last_hw[1]):
            raise ShapeError(
                f"scores: a flattened volume {shape} does not fit {lead_name}={lead_hw} and {last_name}={last_hw} "
                f"({lead_hw[0] * lead_hw[1]} and {last_hw[0] * last_hw[1]} cells); give the grids the net computes on"
            )
        scores = scores.reshape(shape[0], *lead_hw, *last_hw)
    elif scores.dim() != 5:
        raise ShapeError(
            f"scores: expected {order}, (B, 1, ...) or flattened (B, h*w, h*w) with {lead_name}, got {shape}"
        )
    got_lead, got_last = tuple(scores.shape[1:3]), tuple(scores.shape[3:5])
    if (lead is not None and got_lead != lead) or (last is not None and got_last != last):
        raise ShapeError(
            f"scores: a volume {tuple(scores.shape)} does not fit {lead_name}={lead}, {last_name}={last}; "
            f"expected {order}"
        )
    if rows == "target":
        scores = scores.permute(0, 3, 4, 1, 2)
    return scores


def transfer_by_scores(
    scores: torch.Tensor,
    src_kps: torch.Tensor,
    src_size: int | Sequence[int],
    trg_size: int | Sequence[int] | None = None,
    temperature: float = 0.05,
    kernel_sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transfer keypoints through a score volume: read its rows at the keypoints, soft-argmax.

    Between the source cell centres, a keypoint's score row is the bilinear blend of the rows
    of the four source cells around it, and its target position the (kernel) soft-argmax
    of that row over the target cells (:func:`sosc.matchers.grid.soft_argmax`).

    Near the border (the half cell between the outer centres and the image edge) the scores
    are **not** extrapolated: scores are similarities, not affine in position, and a linear
    extrapolation (weights 1.5 and -0.5) would subtract a neighbour's peak and leave the
    range of the scores. What is extrapolated is the transferred *position*, as
    :func:`~sosc.matchers.grid.sample_flow` does for a flow: the keypoint is transferred at
    its position clamped to the outer centres, plus the offset to the clamped position times
    the local slope of the transfer (the difference of the positions transferred from the
    outer cell and its inner neighbour, per axis; zero on a grid one cell wide). An affine
    correspondence (shift, zoom, mirror) whose rows transfer exactly at the cell centres is
    so transferred exactly up to the border. The confidence is that of the clamped position.

    Args:
        scores: ``(B, h_s, w_s, h_t, w_t)`` or ``(B, 1, h_s, w_s, h_t, w_t)``, source cells
            first (:func:`as_score_volume` reads the other layouts), higher is better.
        src_kps: ``(B, N, 2)`` source keypoints, input pixels.
        src_size, trg_size: the inputs ``(S_h, S_w)`` the source and target grids cover
            (``trg_size`` defaults to ``src_size``).
        temperature: softmax temperature on the scores.
        kernel_sigma: Gaussian window around the arg-max, in target cells (``None``: plain).

    Returns:
        ``(B, N, 2)`` float32 target keypoints in input pixels, and ``(B, N)`` confidence (the
        peak probability).
    """
    scores = as_score_volume(scores)
    b, h_s, w_s, h_t, w_t = scores.shape
    check_shape("src_kps", src_kps, (b, "N", 2))
    n = src_kps.shape[1]
    grid = (h_s, w_s)
    kps = torch.nan_to_num(src_kps.float(), nan=0.0, posinf=0.0, neginf=0.0)
    cells = to_cells(kps, grid, src_size)
    hi = torch.tensor([w_s - 1, h_s - 1], device=kps.device, dtype=cells.dtype)
    clamped = torch.minimum(torch.maximum(cells, torch.zeros_like(hi)), hi)
    offset = cells - clamped  # (B, N, 2) cells beyond the outer centres, 0 inside
    inward = -torch.sign(offset)  # one cell back towards the interior, per axis
    ex, ey = torch.tensor([1.0, 0.0], device=kps.device), torch.tensor([0.0, 1.0], device=kps.device)
    probes = torch.cat([clamped, clamped + inward[..., :1] * ex, clamped + inward[..., 1:] * ey], dim=1)
    probes = torch.minimum(torch.maximum(probes, torch.zeros_like(hi)), hi)
    rows = scores.reshape(b, h_s, w_s, h_t * w_t).permute(0, 3, 1, 2)
    at = sample_at(rows, from_cells(probes, grid, src_size), src_size)  # (B, 3N, h_t * w_t)
    pos, conf = soft_argmax(at.reshape(b, 3 * n, h_t, w_t), trg_size or src_size, temperature, kernel_sigma)
    here, back_x, back_y = pos[:, :n], pos[:, n:2 * n], pos[:, 2 * n:]
    # slope per cell along each axis; inward is 0 on a one-cell axis, so is the correction there
    out = here + (here - back_x) * offset[..., :1].abs() + (here - back_y) * offset[..., 1:].abs()
    return out, conf[:, :n]


def chm_cell_positions(height: int, width: int, size: int | Sequence[int], *, device=None) -> torch.Tensor:
    """CHM's placement of an ``height x width`` grid over ``size``: ``(height, width, 2)``
    input-pixel ``(x, y)``, cell ``(i, j)`` at ``(S_w j / (w - 1), S_h i / (h - 1))`` (the
    corner cells on the image corners; a one-cell axis sits at its middle).

    >>> chm_cell_positions(1, 3, (8, 240))[0, :, 0].tolist()
    [0.0, 120.0, 240.0]
    """
    s_h, s_w = as_size(size)

    def axis(n: int, s: int) -> torch.Tensor:
        if n == 1:
            return torch.full((1,), s / 2.0, device=device)
        return torch.arange(n, device=device, dtype=torch.float32) * (s / (n - 1))

    return torch.stack(torch.meshgrid(axis(width, s_w), axis(height, s_h), indexing="xy"), dim=-1)


def chm_transfer(
    scores: torch.Tensor,
    src_kps: torch.Tensor,
    src_size: int | Sequence[int],
    trg_size: int | Sequence[int] | None = None,
    temperature: float = CHM_TEMPERATURE,
    sigma: float = CHM_SIGMA,
    radius: float = CHM_RADIUS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CHM's keypoint transfer through a score volume, as its public code does it
    (``Geometry.transfer_kps``), for any batch, grid and input size.

    1. Per source cell (a row of the volume), a Gaussian of ``sigma`` target cells centred on
       the row's arg-max multiplies the scores (kernel soft-argmax); a softmax over the target
       cells (scores / ``temperature``; CHM's has none, 1) gives the probabilities, and their
       expectation the cell's predicted target position.
    2. Per keypoint, the predictions of the source cells within ``radius`` of it are averaged
       with weights ``radius - distance`` (attentive averaging), distances measured in
       coordinates normalised to ``[-1, 1]`` over each axis of the source input (CHM's
       ``thres``: 0.1 is 12 px on CHM's 240-pixel input). Where no source cell lies within
       ``radius`` (a grid coarser than CHM's; CHM gives NaN there), the nearest cell's
       prediction is used.

    **Cells and pixels are CHM's:** cell ``j`` of an ``n``-cell axis sits at ``S j / (n - 1)``
    (:func:`chm_cell_positions`), on both grids, and keypoints are read and written as CHM's
    are, ``x = S / 2 (u + 1)`` for its normalised ``u``. This is not the package's cell-centre
    convention (:mod:`sosc.matchers.grid`); it is CHM's, kept so that the transfer equals
    CHM's own (to 1e-4 px on a fixed volume: ``scripts/third_party_transfer.py``).

    Args:
        scores: ``(B, h_s, w_s, h_t, w_t)`` (:func:`as_score_volume` reads the other
            layouts), higher is better.
        src_kps: ``(B, N, 2)`` source keypoints, source input pixels.
        src_size, trg_size: the inputs ``(S_h, S_w)`` of the two grids (``trg_size`` defaults
            to ``src_size``).
        temperature, sigma, radius: as above; CHM's are :data:`CHM_TEMPERATURE`,
            :data:`CHM_SIGMA`, :data:`CHM_RADIUS`.

    Returns:
        ``(B, N, 2)`` float32 target keypoints in target input pixels, ``(B, N)`` confidence
        (the attentive average of the cells' peak probabilities), and ``(B, h_s * w_s, 2)``
        each source cell's predicted target position.

    >>> scores = torch.full((1, 2, 2, 2, 2), -10.0); scores[..., 1, 0] = 10.0  # all -> row 1, column 0
    >>> kps, conf, _ = chm_transfer(scores, torch.tensor([[[4.0, 4.0]]]), 8, temperature=0.1)
    >>> [round(v, 3) for v in kps[0, 0].tolist()], round(float(conf), 3)
    ([0.0, 8.0], 1.0)
    """
    scores = as_score_volume(scores)
    b, h_s, w_s, h_t, w_t = scores.shape
    check_shape("src_kps", src_kps, (b, "N", 2))
    trg_size = trg_size if trg_size is not None else src_size
    dev = scores.device
    with torch.autocast(device_type=dev.type, enabled=False):
        flat = scores.reshape(b, h_s * w_s, h_t * w_t).float()
        peak = flat.argmax(dim=-1)  # (B, Ns)
        rows_t = torch.arange(h_t, device=dev, dtype=torch.float32)
        cols_t = torch.arange(w_t, device=dev, dtype=torch.float32)
        dy = rows_t[None, None, :, None] - torch.div(peak, w_t, rounding_mode="floor")[..., None, None].float()
        dx = cols_t[None, None, None, :] - (peak % w_t)[..., None, None].float()
        kernel = torch.exp(-(dx**2 + dy**2) / (2.0 * sigma**2)).reshape(b, h_s * w_s, h_t * w_t)
        prob = torch.softmax(kernel * flat / temperature, dim=-1)
        per_cell = prob @ chm_cell_positions(h_t, w_t, trg_size, device=dev).reshape(-1, 2)  # (B, Ns, 2)
        peak_prob = prob.amax(dim=-1)  # (B, Ns)

        s_h, s_w = as_size(src_size)
        half = torch.tensor([s_w / 2.0, s_h / 2.0], device=dev)
        kps = torch.nan_to_num(src_kps.float(), nan=0.0, posinf=0.0, neginf=0.0)
        unit = (kps - half) / half  # (B, N, 2) in [-1, 1]
        grid = chm_cell_positions(h_s, w_s, (2, 2), device=dev).reshape(-1, 2) - 1.0  # (Ns, 2) in [-1, 1]
        dist = (((grid[None, None] - unit[:, :, None]) ** 2).sum(-1) + 1e-5).sqrt()  # (B, N, Ns)
        weight = (radius - dist).clamp_min(0.0)
        nearest = torch.zeros_like(weight).scatter_(-1, dist.argmin(dim=-1, keepdim=True), 1.0)
        total = weight.sum(-1, keepdim=True)
        weight = torch.where(total > 0, weight / total.clamp_min(1e-12), nearest)
        out = weight @ per_cell
        conf = (weight * peak_prob[:, None]).sum(-1)
    return out, conf, per_cell


# --------------------------------------------------------------------------- modules


class CallableMatcher(_NetAdapter):
    """Wrap a plain callable ``fn(src_img, trg_img, src_kps, valid)`` as a matcher module.

    ``fn`` sees the (optionally normalised) images, source first, the keypoints ``(B, N, 2)``
    in **source** input pixels and a bool ``valid`` (all ``True`` when the caller gives
    ``None``); it returns target keypoints in **target** input pixels, with pixel ``i``
    spanning ``[i, i + 1)`` (sosc's continuous convention; a function written for
    integer-index pixels adds 0.5 on the way in and subtracts it on the way out): the
    ``(B, N, 2)`` keypoints, a :class:`MatchOutput`, or a dict with ``"kps"`` (and optionally
    ``"flow"``, ``"confidence"``, ``"scores"``). The output shape is checked, and returned as
    float32.

    Args:
        fn: the callable.
        mean, std: optional normalisation of RGB in ``[0, 1]`` before ``fn``.
        input_multiple: the multiple ``fn`` needs its input sides to be (e.g. its stride).

    >>> m = CallableMatcher(lambda s, t, k, v: k + 1.0)
    >>> m(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2), None).tolist()
    [[[1.0, 1.0], [1.0, 1.0]]]
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_multiple: int = 1,
    ) -> None:
        super().__init__(mean, std, input_multiple)
        if not callable(fn):
            raise ConfigError(f"CallableMatcher needs a callable, got {type(fn).__name__}")
        self.fn = fn

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor | MatchOutput:
        valid = check_matcher_inputs(src_img, trg_img, src_kps, valid, multiple=self.input_multiple)
        out = self.fn(self.prepare(src_img), self.prepare(trg_img), src_kps, valid)
        if isinstance(out, dict):
            if "kps" not in out:
                raise ShapeError(f"the callable returned a dict without 'kps' (keys: {sorted(out)})")
            out = MatchOutput(**{k: out.get(k) for k in ("kps", "flow", "confidence", "scores")})
        kps = out.kps if isinstance(out, MatchOutput) else out
        check_shape("keypoints returned by the callable", kps, tuple(src_kps.shape))
        if kps.dtype != torch.float32:  # the contract's coordinates are float32 (a bf16 result stays rounded)
            out = MatchOutput(kps.float(), out.flow, out.confidence, out.scores) if isinstance(out, MatchOutput) else kps.float()
        return out


def _check_flow(raw: Any, batch: int, flow_on: str) -> torch.Tensor:
    """The flow a net returned, checked: ``(B, 2, h, w)`` and finite (one host sync)."""
    where = "its first argument's grid" if flow_on == "first" else "its second argument's grid"
    if isinstance(raw, torch.Tensor) and raw.dim() == 4 and raw.shape[1] != 2 and raw.shape[-1] == 2:
        raise ShapeError(
            f"flow returned by the net: expected (B, 2, h, w) on {where}, got {tuple(raw.shape)}: channels last? "
            "return flow.permute(0, 3, 1, 2)"
        )
    check_shape(f"flow returned by the net (on {where})", raw, (batch, 2, "h", "w"))
    if not bool(torch.isfinite(raw.detach()).all()):
        raise ShapeError("flow returned by the net: contains NaN or Inf")
    return raw


class FlowMatcher(_NetAdapter):
    """A net that returns a dense flow from one image into the other, as a matcher (CATs-style).

    **Which grid, which direction.** ``flow_on`` says which of the net's two arguments the
    flow is defined on: ``"first"`` (the default), the net's ``forward(a, b)`` returns, for
    each cell of ``a``'s grid, where it lands in ``b`` (as CATs does: its ``forward(target,
    source)`` returns a flow on the grid of its first argument pointing into its second);
    ``"second"``, a flow on ``b``'s grid pointing into ``a``. The adapter calls the net so
    that the flow lives on the **source** grid and points into the **target**: ``net(src,
    trg)`` for ``"first"``, ``net(trg, src)`` for ``"second"``. (A flow on the target grid
    that points into the source, *read* at source keypoints, moves them the wrong way:
    229 px off on a 256-pixel pair for CATs, which is what the removed ``target_first=True``
    did.)

    **Grid, units, convention.** The returned ``(B, 2, h, w)`` (or a dict with ``"flow"``,
    or a tuple led by it) may have another resolution than the input; its ``h x w`` grid
    covers the whole source input, cell ``(i, j)`` standing for the source point
    ``((j + 0.5) S_w / w, (i + 0.5) S_h / h)`` (:mod:`sosc.matchers.grid`). Channel 0 is
    ``x``, 1 is ``y``; ``flow_format``, ``flow_units`` and ``pixel_convention`` say how to
    read the values (:func:`flow_to_input_pixels`); :func:`transfer_by_flow` samples the flow
    at the source keypoints (bilinear, exact for an affine flow up to the border). CATs:
    ``flow_format="displacement", flow_units="grid"`` (cells of its 16 x 16 grid) and
    ImageNet ``mean``/``std`` (its backbone's; without them its features are off).

    Args:
        net: the flow network (any callable of two images).
        flow_format, flow_units, pixel_convention: how to read the flow
            (:func:`flow_to_input_pixels`).
        mean, std: optional normalisation of RGB in ``[0, 1]`` before the net.
        flow_on: ``"first"`` or ``"second"``, as above.
        input_multiple: the multiple the net needs its input sides to be.
        target_first: removed; ``True`` raises :class:`~sosc.errors.ConfigError` saying what to
            give instead (``False``, the old default, is ``flow_on="first"``).

    Returns (forward):
        :class:`MatchOutput` with ``kps`` ``(B, N, 2)`` target input pixels and ``flow``
        ``(B, 2, h, w)`` on the source grid: absolute target positions in target input pixels.

    Raises:
        ShapeError: the net's flow is not ``(B, 2, h, w)`` (channels last is named) or not
            finite; a displacement flow between inputs of different sizes.
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., Any],
        flow_format: FlowFormat = "absolute",
        flow_units: FlowUnits = "grid",
        pixel_convention: PixelConvention = "continuous",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flow_on: FlowOn = "first",
        input_multiple: int = 1,
        target_first: bool | None = None,
    ) -> None:
        _no_target_first(
            "FlowMatcher", target_first,
            "Say which of the net's arguments the flow is defined on: flow_on='first' (CATs: forward(a, b) returns a "
            "flow on a's grid pointing into b; FlowMatcher then calls net(src, trg)) or flow_on='second' (a flow on "
            "the second argument's grid pointing into the first; FlowMatcher calls net(trg, src), as target_first=True "
            "did).",
        )
        super().__init__(mean, std, input_multiple)
        _check_choice("flow_on", flow_on, ("first", "second"))
        flow_to_input_pixels(torch.zeros(1, 2, 1, 1), 1, flow_format, flow_units, pixel_convention)  # check options
        self.net = net
        self.flow_format = flow_format
        self.flow_units = flow_units
        self.pixel_convention = pixel_convention
        self.flow_on = flow_on

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> MatchOutput:
        check_matcher_inputs(src_img, trg_img, src_kps, valid, multiple=self.input_multiple)
        src_size, trg_size = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        if self.flow_format == "displacement" and src_size != trg_size:
            raise ShapeError(
                f"FlowMatcher: a displacement flow needs source and target inputs of one size, got {src_size} and "
                f"{trg_size}; resize them to one size (KBCWrapper does)"
            )
        src, trg = self.prepare(src_img), self.prepare(trg_img)
        out = self.net(src, trg) if self.flow_on == "first" else self.net(trg, src)
        raw = _check_flow(_pick(out, "flow"), src_img.shape[0], self.flow_on)
        flow = flow_to_input_pixels(raw, src_size, self.flow_format, self.flow_units, self.pixel_convention, trg_size)
        kps = transfer_by_flow(flow, src_kps, src_size, self.flow_format)
        absolute = displacement_to_absolute(flow, src_size) if self.flow_format == "displacement" else flow
        return MatchOutput(kps=kps, flow=absolute)


class ScoreVolumeMatcher(_NetAdapter):
    """A net that returns a 4D score volume between the two grids, as a matcher (CHM-style).

    **Grids and direction.** The net is called ``net(src, trg)`` and returns scores, higher
    is better, between every source cell and every target cell (or a dict with
    ``"scores"``, or a tuple led by it), in any layout :func:`as_score_volume` reads:
    ``(B, h_s, w_s, h_t, w_t)``, ``(B, 1, ...)`` or **flattened** ``(B, h_s * w_s, h_t *
    w_t)`` (CHM's) with ``src_grid`` (and ``trg_grid`` when it differs) given. ``rows`` says
    which image's grid leads the volume: ``"source"`` (CHM's; a correlation ``src^T trg``)
    or ``"target"`` (the volume is transposed). Each grid covers its whole input.

    **Read-out** (``readout``):

    - ``"bilinear"`` (default): a keypoint's score row is the bilinear blend of the rows of
      the four source cells around it, and its target position the (kernel) soft-argmax of
      that row over the target cells; cells at their centres, ``(j + 0.5) S / n``
      (:func:`transfer_by_scores`). ``temperature`` defaults to 0.05 (cosine similarities);
      ``kernel_sigma`` (target cells) windows the probabilities around the arg-max.
    - ``"chm"``: CHM's own transfer (:func:`chm_transfer`): per source cell a Gaussian of
      ``kernel_sigma`` target cells (default CHM's 17) around its arg-max multiplies the
      scores, softmax (``temperature`` default 1, as CHM), expectation; then the mean of the
      per-cell predictions within ``radius`` (default CHM's 0.1 of half the input side) of
      each keypoint, weighted ``radius - distance``; cells where CHM puts them,
      ``S j / (n - 1)``. Equal to CHM's own code on a fixed volume (to 1e-4 px).

    Args:
        net: the network.
        temperature: softmax temperature on the scores; ``None``: the read-out's default.
        kernel_sigma: kernel window in target cells; ``None``: none for ``"bilinear"``, CHM's
            17 for ``"chm"``.
        dense_flow: also return the dense flow (every source cell's target position).
        mean, std: optional normalisation of RGB in ``[0, 1]`` before the net.
        src_grid, trg_grid: ``(h, w)`` of the grids; needed for a flattened volume.
        rows: ``"source"`` or ``"target"``, as above.
        readout: ``"bilinear"`` or ``"chm"``, as above.
        radius: the attentive radius of ``"chm"`` (``None``: CHM's 0.1); refused with
            ``"bilinear"``.
        input_multiple: the multiple the net needs its input sides to be.
        target_first: removed; ``True`` raises :class:`~sosc.errors.ConfigError` saying what to
            give instead.

    Returns (forward):
        :class:`MatchOutput` with ``kps`` ``(B, N, 2)`` target input pixels, ``confidence``
        ``(B, N)``, ``scores`` the volume as ``(B, h_s, w_s, h_t, w_t)``, and ``flow``
        ``(B, 2, h_s, w_s)`` if ``dense_flow`` (target input pixels).
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., Any],
        temperature: float | None = None,
        kernel_sigma: float | None = None,
        dense_flow: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        src_grid: Sequence[int] | None = None,
        trg_grid: Sequence[int] | None = None,
        rows: Rows = "source",
        readout: Readout = "bilinear",
        radius: float | None = None,
        input_multiple: int = 1,
        target_first: bool | None = None,
    ) -> None:
        _no_target_first(
            "ScoreVolumeMatcher", target_first,
            "The net is called net(src, trg); say which image's grid leads its volume with rows='source' (as CHM) "
            "or rows='target' (the volume is transposed). A net that must get the target first: wrap it, "
            "lambda src, trg: net(trg, src).",
        )
        super().__init__(mean, std, input_multiple)
        _check_choice("readout", readout, ("bilinear", "chm"))
        _check_choice("rows", rows, ("source", "target"))
        chm = readout == "chm"
        if radius is not None and not chm:
            raise ConfigError(f"radius is CHM's attentive radius: give it with readout='chm' (got radius={radius})")
        self.temperature = temperature if temperature is not None else (CHM_TEMPERATURE if chm else 0.05)
        self.kernel_sigma = kernel_sigma if kernel_sigma is not None else (CHM_SIGMA if chm else None)
        self.radius = radius if radius is not None else (CHM_RADIUS if chm else None)
        check_soft_argmax_options(self.temperature, self.kernel_sigma)
        if chm and not self.radius > 0:
            raise ConfigError(f"radius must be > 0 (a fraction of half the input side), got {radius}")
        self.src_grid, self.trg_grid = _grid("src_grid", src_grid), _grid("trg_grid", trg_grid)
        self.net = net
        self.dense_flow = dense_flow
        self.rows = rows
        self.readout = readout

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> MatchOutput:
        check_matcher_inputs(src_img, trg_img, src_kps, valid, multiple=self.input_multiple)
        raw = _pick(self.net(self.prepare(src_img), self.prepare(trg_img)), "scores")
        scores = as_score_volume(raw, self.src_grid, self.trg_grid, self.rows)
        if scores.shape[0] != src_img.shape[0]:
            raise ShapeError(f"scores: expected {src_img.shape[0]} pairs, got shape {tuple(raw.shape)}")
        src_size, trg_size = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        flow = None
        if self.readout == "chm":
            kps, conf, per_cell = chm_transfer(scores, src_kps, src_size, trg_size, self.temperature,
                                               self.kernel_sigma, self.radius)
            if self.dense_flow:
                flow = per_cell.transpose(1, 2).reshape(scores.shape[0], 2, *scores.shape[1:3])
        else:
            kps, conf = transfer_by_scores(scores, src_kps, src_size, trg_size, self.temperature, self.kernel_sigma)
            if self.dense_flow:
                pos, _ = soft_argmax(scores, trg_size, self.temperature, self.kernel_sigma)
                flow = pos.permute(0, 3, 1, 2)
        return MatchOutput(kps=kps, flow=flow, confidence=conf, scores=scores)


class FeatureFnMatcher(_NetAdapter):
    """Any feature extractor ``fn(image) -> (B, C, h, w)`` as a matcher (DIFT, SD+DINO, DINOv2...).

    ``fn`` is called once per image batch, ``fn(src)`` and ``fn(trg)``, on the images as
    ``(B, 3, S_h, S_w)`` RGB in ``[0, 1]``, normalised first with ``mean``/``std`` when given
    (DINOv2 and CLIP: ImageNet's or their own; Stable Diffusion's VAE: ``[-1, 1]``, i.e.
    ``mean=std=(0.5, 0.5, 0.5)``). It returns features ``(B, C, h, w)`` whose ``h x w`` grid
    covers the **whole** input: cell ``(i, j)`` stands for the input point ``((j + 0.5) S_w /
    w, (i + 0.5) S_h / h)`` (:mod:`sosc.matchers.grid`), as a patch-``s`` ViT or a stride-``s``
    network gives on an input that is a multiple of ``s`` (state it as ``input_multiple``, so
    that :class:`~sosc.kbc.KBCWrapper` checks its input size), and as features upsampled to
    the input size do. An extractor that crops, pads or resizes inside must undo it before
    returning. Source and target may differ in size; ``C`` must agree.

    Keypoints are transferred by cosine similarity and soft-argmax
    (:func:`~sosc.matchers.grid.transfer_by_features`, the maths of :class:`FeatureMatcher`):
    source features sampled bilinearly at the keypoint, compared with every target cell.

    Args:
        fn: the extractor; an ``nn.Module`` is registered as a submodule (``.to``, ``.eval``).
        mean, std: optional normalisation of RGB in ``[0, 1]`` before ``fn``.
        input_multiple: the multiple ``fn`` needs its input sides to be (14 for DINOv2).
        temperature: softmax temperature on cosine similarity. Default 0.02.
        kernel_sigma: kernel soft-argmax window in target cells, or ``None``.

    Returns (forward):
        :class:`MatchOutput` with ``kps`` ``(B, N, 2)`` target input pixels and
        ``confidence`` ``(B, N)``.

    >>> m = FeatureFnMatcher(lambda img: img, temperature=0.01)  # colours as features
    >>> src = torch.zeros(1, 3, 4, 4); src[0, 0, 1, 1] = 1.0; src[0, 2] = 0.1
    >>> m(src, src.flip(-1), torch.tensor([[[1.5, 1.5]]])).kps.round().tolist()
    [[[2.0, 2.0]]]
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_multiple: int = 1,
        temperature: float = 0.02,
        kernel_sigma: float | None = None,
    ) -> None:
        super().__init__(mean, std, input_multiple)
        if not callable(fn):
            raise ConfigError(f"FeatureFnMatcher needs a callable image -> (B, C, h, w), got {type(fn).__name__}")
        check_soft_argmax_options(temperature, kernel_sigma)
        self.fn = fn
        self.temperature = temperature
        self.kernel_sigma = kernel_sigma

    def features(self, image: torch.Tensor, name: str) -> torch.Tensor:
        """``fn`` of one (normalised) image batch, checked: ``(B, C, h, w)``."""
        feats = self.fn(self.prepare(image))
        check_shape(f"features of {name} returned by fn", feats, (image.shape[0], "C", "h", "w"))
        return feats

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> MatchOutput:
        check_matcher_inputs(src_img, trg_img, src_kps, valid, multiple=self.input_multiple)
        src_f, trg_f = self.features(src_img, "src_img"), self.features(trg_img, "trg_img")
        if src_f.shape[1] != trg_f.shape[1]:
            raise ShapeError(
                f"features returned by fn: {src_f.shape[1]} channels for src_img but {trg_f.shape[1]} for trg_img"
            )
        if not bool(torch.stack([torch.isfinite(src_f.detach()).all(), torch.isfinite(trg_f.detach()).all()]).all()):
            raise ShapeError("features returned by fn: contain NaN or Inf")
        src_size, trg_size = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        kps, conf = transfer_by_features(src_f, trg_f, src_kps, src_size, trg_size, self.temperature, self.kernel_sigma)
        return MatchOutput(kps=kps, confidence=conf)
