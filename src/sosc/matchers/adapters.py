"""Adapters: put third-party correspondence nets behind the matcher contract.

Each adapter is a plain ``nn.Module`` with ``forward(src_img, trg_img, src_kps, valid)``
(see :mod:`sosc.matchers.base`): images ``(B, 3, S_h, S_w)`` float RGB in ``[0, 1]``,
keypoints ``(B, N, 2)`` ``(x, y)`` input pixels, ``valid`` ``(B, N)`` bool or ``None``. Each
optionally normalises the images (``mean``/``std``, default none: the net gets ``[0, 1]``)
and calls the net **source first** (``target_first=True`` for nets such as CATs whose
``forward`` takes the target first).

- :class:`CallableMatcher`: a plain function that already follows the contract.
- :class:`FlowMatcher`: a net that returns a dense flow field (as CATs does).
- :class:`ScoreVolumeMatcher`: a net that returns a 4D score volume (as CHM does).

The maths lives in :func:`flow_to_input_pixels`, :func:`transfer_by_flow` and
:func:`transfer_by_scores`; the modules store settings and call them. Each keypoint is
transferred on its own, so padded entries never change valid results.
"""

from __future__ import annotations

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
)

FlowFormat = Literal["absolute", "displacement"]
FlowUnits = Literal["grid", "input", "normalized"]
PixelConvention = Literal["continuous", "index"]


# --------------------------------------------------------------------------- shared pieces


class _NetAdapter(Matcher):
    """Shared part of the adapters: the optional input normalisation and the call order."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None, target_first: bool) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std (3 floats each for RGB in [0, 1]) or neither")
        self.normalize = Normalize(mean, std) if mean is not None else None
        self.target_first = target_first

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> what the net expects."""
        return image if self.normalize is None else self.normalize(image)

    def call_net(self, net: Callable[..., Any], src_img: torch.Tensor, trg_img: torch.Tensor) -> Any:
        src, trg = self.prepare(src_img), self.prepare(trg_img)
        return net(trg, src) if self.target_first else net(src, trg)


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


# --------------------------------------------------------------------------- functional core


def flow_to_input_pixels(
    flow: torch.Tensor,
    input_size: int | Sequence[int],
    flow_format: FlowFormat = "absolute",
    flow_units: FlowUnits = "grid",
    pixel_convention: PixelConvention = "continuous",
) -> torch.Tensor:
    """Convert a net's dense flow ``(B, 2, h, w)`` to sosc's: ``(x, y)`` input pixels, same grid.

    The flow's grid cell ``(i, j)`` stands for the input point ``((j + 0.5) S_w / w, (i + 0.5) S_h / h)``.

    Args:
        flow: ``(B, 2, h, w)`` channel 0 is ``x``, channel 1 is ``y``.
        input_size: the input ``(S_h, S_w)`` the flow's grid covers.
        flow_format: ``"absolute"`` (values are target positions) or ``"displacement"``
            (values are target minus source position).
        flow_units: ``"grid"`` pixels of the flow's own ``h x w`` grid (scaled by
            ``S_w / w``, ``S_h / h``), ``"input"`` input pixels, ``"normalized"``
            ``[-1, 1]`` over the input (as ``grid_sample``).
        pixel_convention: ``"continuous"`` (sosc's: pixel ``i`` spans ``[i, i + 1)``; for
            normalized units, ``align_corners=False``) or ``"index"`` (pixel ``i`` is the
            point ``i``, as most research code and OpenCV; for normalized units,
            ``align_corners=True``). Only absolute positions depend on it.

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
    s_h, s_w = as_size(input_size)
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


def as_score_volume(scores: torch.Tensor) -> torch.Tensor:
    """``(B, h_s, w_s, h_t, w_t)`` from that shape or ``(B, 1, h_s, w_s, h_t, w_t)``."""
    if scores.dim() == 6:
        if scores.shape[1] != 1:
            raise ShapeError(
                f"scores: a 6D volume needs one channel, (B, 1, h_s, w_s, h_t, w_t), got {tuple(scores.shape)}; "
                "reduce the channels (e.g. mean) in the net"
            )
        return scores[:, 0]
    check_shape("scores", scores, ("B", "h_s", "w_s", "h_t", "w_t"))
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
        scores: ``(B, h_s, w_s, h_t, w_t)`` or ``(B, 1, h_s, w_s, h_t, w_t)``, higher is better.
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


# --------------------------------------------------------------------------- modules


class CallableMatcher(_NetAdapter):
    """Wrap a plain callable ``fn(src_img, trg_img, src_kps, valid)`` as a matcher module.

    ``fn`` sees the (optionally normalised) images, the keypoints in input pixels and a
    bool ``valid`` (all ``True`` when the caller gives ``None``); it may return the
    ``(B, N, 2)`` keypoints, a :class:`MatchOutput`, or a dict with ``"kps"`` (and
    optionally ``"flow"``, ``"confidence"``, ``"scores"``). The output shape is checked.

    >>> m = CallableMatcher(lambda s, t, k, v: k + 1.0)
    >>> m(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2), None).tolist()
    [[[1.0, 1.0], [1.0, 1.0]]]
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__(mean, std, target_first=False)
        if not callable(fn):
            raise ConfigError(f"CallableMatcher needs a callable, got {type(fn).__name__}")
        self.fn = fn

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor | MatchOutput:
        valid = check_matcher_inputs(src_img, trg_img, src_kps, valid)
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


class FlowMatcher(_NetAdapter):
    """A net that returns a dense source-to-target flow, as a matcher (CATs-style).

    ``net(src, trg)`` returns ``(B, 2, h, w)`` (or a dict with ``"flow"``, or a tuple led by
    it), possibly at another resolution than the input; :func:`flow_to_input_pixels`
    converts it, :func:`transfer_by_flow` samples it at the source keypoints.

    Args:
        net: the flow network.
        flow_format, flow_units, pixel_convention: how to read the flow
            (:func:`flow_to_input_pixels`).
        mean, std: optional normalisation of RGB in ``[0, 1]`` before the net.
        target_first: call ``net(trg, src)`` (CATs' ``forward(target, source)``).

    Returns (forward):
        :class:`MatchOutput` with ``kps`` ``(B, N, 2)`` input pixels and ``flow``
        ``(B, 2, h, w)`` absolute target positions in input pixels.
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., Any],
        flow_format: FlowFormat = "absolute",
        flow_units: FlowUnits = "grid",
        pixel_convention: PixelConvention = "continuous",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        target_first: bool = False,
    ) -> None:
        super().__init__(mean, std, target_first)
        flow_to_input_pixels(torch.zeros(1, 2, 1, 1), 1, flow_format, flow_units, pixel_convention)  # check options
        self.net = net
        self.flow_format = flow_format
        self.flow_units = flow_units
        self.pixel_convention = pixel_convention

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> MatchOutput:
        check_matcher_inputs(src_img, trg_img, src_kps, valid)
        size = tuple(src_img.shape[-2:])
        raw = _pick(self.call_net(self.net, src_img, trg_img), "flow")
        check_shape("flow returned by the net", raw, (src_img.shape[0], 2, "h", "w"))
        flow = flow_to_input_pixels(raw, size, self.flow_format, self.flow_units, self.pixel_convention)
        kps = transfer_by_flow(flow, src_kps, size, self.flow_format)
        absolute = displacement_to_absolute(flow, size) if self.flow_format == "displacement" else flow
        return MatchOutput(kps=kps, flow=absolute)


class ScoreVolumeMatcher(_NetAdapter):
    """A net that returns a 4D score volume, as a matcher (CHM-style).

    ``net(src, trg)`` returns ``(B, h_s, w_s, h_t, w_t)`` or ``(B, 1, h_s, w_s, h_t, w_t)``
    (or a dict with ``"scores"``, or a tuple led by it), higher is better; the grids cover
    the whole input. Keypoints by :func:`transfer_by_scores`.

    Args:
        net: the network.
        temperature: softmax temperature on the scores (for cosine similarities in
            ``[-1, 1]``, ``0.05`` is common; for log-probabilities use ``1``).
        kernel_sigma: kernel soft-argmax window in target cells (``None``: plain soft-argmax).
        dense_flow: also return the dense flow (soft-argmax of every source cell).
        mean, std: optional normalisation of RGB in ``[0, 1]`` before the net.
        target_first: call ``net(trg, src)``.

    Returns (forward):
        :class:`MatchOutput` with ``kps`` ``(B, N, 2)`` input pixels, ``confidence``
        ``(B, N)``, ``scores`` the volume, and ``flow`` ``(B, 2, h_s, w_s)`` if ``dense_flow``.
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., Any],
        temperature: float = 0.05,
        kernel_sigma: float | None = None,
        dense_flow: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        target_first: bool = False,
    ) -> None:
        super().__init__(mean, std, target_first)
        check_soft_argmax_options(temperature, kernel_sigma)
        self.net = net
        self.temperature = temperature
        self.kernel_sigma = kernel_sigma
        self.dense_flow = dense_flow

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> MatchOutput:
        check_matcher_inputs(src_img, trg_img, src_kps, valid)
        scores = as_score_volume(_pick(self.call_net(self.net, src_img, trg_img), "scores"))
        if scores.shape[0] != src_img.shape[0]:
            raise ShapeError(f"scores: expected {src_img.shape[0]} pairs, got shape {tuple(scores.shape)}")
        src_size, trg_size = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        kps, conf = transfer_by_scores(scores, src_kps, src_size, trg_size, self.temperature, self.kernel_sigma)
        flow = None
        if self.dense_flow:
            pos, _ = soft_argmax(scores, trg_size, self.temperature, self.kernel_sigma)
            flow = pos.permute(0, 3, 1, 2)
        return MatchOutput(kps=kps, flow=flow, confidence=conf, scores=scores)
