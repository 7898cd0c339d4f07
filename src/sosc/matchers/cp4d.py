"""Center-pivot 4D convolution, its full 4D reference, and the helpers its layout needs.

A 4D volume is a tensor ``(B, C, H_s, W_s, H_t, W_t)``: ``C`` channels over every pair of a
source cell ``(H_s, W_s)`` and a target cell ``(H_t, W_t)`` (a correlation volume).

A **center-pivot** 4D kernel ``(O, C, k, k, k, k)`` is zero except on two planes: the
source-dims kernel ``weight_src`` ``(O, C, k, k)`` where the target offset is the kernel
centre, and the target-dims kernel ``weight_trg`` ``(O, C, k, k)`` where the source offset
is the kernel centre (the centre tap belongs to both and gets their sum). Convolving with
it is two 2D convolutions, one over the source dims with the target dims folded into the
batch and one over the target dims with the source dims folded in: ``2 k^2`` instead of
``k^4`` multiply-adds per output and channel pair. A stride applies to the target dims only.

Layout: every function here returns its volume **channels-last** (memory order
``(B, H_s, W_s, H_t, W_t, C)``, logical shape unchanged, see :func:`to_channels_last_4d`). In
that order both folds are free views (the target-dims fold is an NHWC batch of 2D maps; the
source-dims fold is one NHWC map ``(B, C, H_s, W_s * H_t * W_t)`` on which the source kernel
is a 2D convolution dilated by ``H_t * W_t`` along its width, or, equivalently, an NDHWC 3D
map with a ``(k, k, 1)`` kernel), so a stack of layers copies the volume once, at its entry.
Any input layout is accepted.

The source branch's implementation is chosen per device (:data:`SOURCE_CONV`): on the CPU the
dilated 2D convolution, which PyTorch always runs through oneDNN, where a batch of one sends
the 3D convolution to its slow reference kernel (``docs/PERF_NOTES.md``, entry 6: 6-8x slower
at batch 1); on other devices the 3D convolution, until a GPU measurement says otherwise.
Both compute the same sums (equal to float rounding; tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sosc.errors import ConfigError, ShapeError

_CL_ORDER = (0, 2, 3, 4, 5, 1)  # logical dims in channels-last memory order
_CL_BACK = (0, 5, 1, 2, 3, 4)


def is_channels_last_4d(x: torch.Tensor) -> bool:
    """Whether the ``(B, C, H_s, W_s, H_t, W_t)`` volume ``x`` is stored channels-last."""
    return x.dim() == 6 and x.permute(*_CL_ORDER).is_contiguous()


def to_channels_last_4d(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, H_s, W_s, H_t, W_t)``, stored in memory order ``(B, H_s, W_s, H_t, W_t, C)``.

    The logical shape is unchanged; no copy is made when ``x`` is stored that way already.

    >>> y = to_channels_last_4d(torch.zeros(1, 2, 3, 3, 3, 3))
    >>> tuple(y.shape), y.stride()[1]
    ((1, 2, 3, 3, 3, 3), 1)
    """
    if is_channels_last_4d(x):
        return x
    return x.permute(*_CL_ORDER).contiguous().permute(*_CL_BACK)


def _check_volume(name: str, x: torch.Tensor, channels: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 6:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(
            f"{name}: expected a 4D volume of shape (B, C, H_s, W_s, H_t, W_t), got {got}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ShapeError(
            f"{name}: expected {channels} channels (dim 1), got shape {tuple(x.shape)}"
        )


def _check_geometry(kernel_size: int, stride: int, padding: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(
            f"kernel_size must be a positive odd int (it needs a centre), got {kernel_size}"
        )
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    if not 0 <= padding <= kernel_size // 2:
        raise ConfigError(
            f"padding must be in [0, kernel_size // 2] = [0, {kernel_size // 2}], got {padding}"
        )


def out_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output length of a convolution over a dim of length ``size``.

    >>> out_size(7, 3, 2, 1)
    4
    """
    return (size + 2 * padding - kernel_size) // stride + 1


def _taps(size: int, kernel_size: int, stride: int, padding: int) -> slice:
    """Indices of the input that sit under the kernel centre, one per output position."""
    n = out_size(size, kernel_size, stride, padding)
    start = kernel_size // 2 - padding
    return slice(start, start + stride * (n - 1) + 1, stride)


#: Implementation of the source-dims branch per device type: ``"dilated-conv2d"`` or
#: ``"conv3d"`` (see the module docstring; the benchmark harness measures both).
SOURCE_CONV: dict[str, str] = {"cpu": "dilated-conv2d"}
#: For device types :data:`SOURCE_CONV` does not name.
SOURCE_CONV_DEFAULT = "conv3d"
SOURCE_CONV_KINDS = ("dilated-conv2d", "conv3d")


def _fold_source(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H_s, W_s, H_t, W_t)`` -> ``(B, C, H_s, W_s, H_t * W_t)`` NDHWC (a view if channels-last)."""
    b, c, hs, ws, ht, wt = x.shape
    return x.permute(*_CL_ORDER).reshape(b, hs, ws, ht * wt, c).permute(0, 4, 1, 2, 3)


def _fold_target(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H_s, W_s, H_t, W_t)`` -> ``(B * H_s * W_s, C, H_t, W_t)`` NHWC (a view if channels-last)."""
    b, c, hs, ws, ht, wt = x.shape
    return x.permute(*_CL_ORDER).reshape(b * hs * ws, ht, wt, c).permute(0, 3, 1, 2)


def _unfold_target(y: torch.Tensor, b: int, hs: int, ws: int) -> torch.Tensor:
    """Inverse of :func:`_fold_target` for an output ``(B * H_s * W_s, O, H_t, W_t)``."""
    _, o, ht, wt = y.shape
    return y.permute(0, 2, 3, 1).reshape(b, hs, ws, ht, wt, o).permute(*_CL_BACK)


def _unfold_source(y: torch.Tensor, ht: int, wt: int) -> torch.Tensor:
    """Inverse of :func:`_fold_source` for an output ``(B, O, H_s, W_s, H_t * W_t)``."""
    b, o, hs, ws, _ = y.shape
    return y.permute(0, 2, 3, 4, 1).reshape(b, hs, ws, ht, wt, o).permute(*_CL_BACK)


def source_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                kind: str | None = None) -> torch.Tensor:
    """The source-dims branch: a ``k x k`` convolution over ``(H_s, W_s)`` at every target cell.

    ``x`` ``(B, C, H_s, W_s, H_t, W_t)`` channels-last, ``weight`` ``(O, C, k, k)``, zero padding
    ``padding`` on the source dims; returns ``(B, O, H_s', W_s', H_t, W_t)`` (channels-last from
    the dilated 2D convolution; the 3D one's layout is PyTorch's choice).
    ``kind``: ``"dilated-conv2d"`` or ``"conv3d"`` (default: :data:`SOURCE_CONV` for ``x``'s device).
    """
    kind = kind or SOURCE_CONV.get(x.device.type, SOURCE_CONV_DEFAULT)
    b, c, hs, ws, ht, wt = x.shape
    if kind == "conv3d":
        y = F.conv3d(_fold_source(x), weight[..., None], bias, padding=(padding, padding, 0))
        return _unfold_source(y, ht, wt)
    if kind != "dilated-conv2d":
        raise ConfigError(f"source convolution must be one of {SOURCE_CONV_KINDS}, got {kind!r}")
    cells = ht * wt
    folded = x.permute(*_CL_ORDER).reshape(b, hs, ws * cells, c).permute(0, 3, 1, 2)  # NHWC view
    y = F.conv2d(folded, weight, bias, padding=(padding, padding * cells), dilation=(1, cells))
    o, hs_out, w_out = y.shape[1], y.shape[2], y.shape[3]
    return y.permute(0, 2, 3, 1).reshape(b, hs_out, w_out // cells, ht, wt, o).permute(*_CL_BACK)


def center_pivot_conv4d(
    x: torch.Tensor,
    weight_src: torch.Tensor,
    weight_trg: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int | None = None,
) -> torch.Tensor:
    """Center-pivot 4D convolution of a volume ``(B, C, H_s, W_s, H_t, W_t)``.

    Equals a full 4D convolution (zero padding ``padding`` on all four dims, stride 1 on the
    source dims and ``stride`` on the target dims) whose ``(O, C, k, k, k, k)`` kernel is
    ``weight_src`` on the plane where the target offset is the centre, ``weight_trg`` on the
    plane where the source offset is the centre, and zero elsewhere.

    Args:
        x: ``(B, C, H_s, W_s, H_t, W_t)`` volume, any memory layout (channels-last avoids a copy).
        weight_src: ``(O, C, k, k)`` kernel over the source dims ``(H_s, W_s)``; ``k`` odd.
        weight_trg: ``(O, C, k, k)`` kernel over the target dims ``(H_t, W_t)``.
        bias: ``(O,)`` or ``None``.
        stride: stride over the target dims.
        padding: zero padding of every dim, in ``[0, k // 2]``; default ``k // 2``.

    Returns:
        ``(B, O, H_s', W_s', H_t', W_t')`` channels-last, with ``H_s' = H_s + 2p - k + 1`` and
        ``H_t' = (H_t + 2p - k) // stride + 1`` (likewise for ``W``).

    >>> x = torch.ones(1, 1, 3, 4, 5, 6)
    >>> w = torch.ones(1, 1, 3, 3)
    >>> y = center_pivot_conv4d(x, w, w, stride=2)
    >>> tuple(y.shape), float(y[0, 0, 1, 1, 1, 1])
    ((1, 1, 3, 4, 3, 3), 18.0)
    """
    _check_volume("x", x)
    if (
        weight_src.dim() != 4
        or weight_src.shape != weight_trg.shape
        or weight_src.shape[1] != x.shape[1]
    ):
        raise ShapeError(
            f"weight_src and weight_trg must both be (O, C={x.shape[1]}, k, k), got "
            f"{tuple(weight_src.shape)} and {tuple(weight_trg.shape)}"
        )
    k = weight_src.shape[-1]
    if weight_src.shape[-2] != k:
        raise ShapeError(
            f"weight_src: expected a square k x k kernel, got {tuple(weight_src.shape)}"
        )
    padding = k // 2 if padding is None else int(padding)
    _check_geometry(k, stride, padding)
    b, _, hs, ws, ht, wt = x.shape
    if min(hs, ws, ht, wt) + 2 * padding < k:
        raise ShapeError(
            f"x: every spatial dim + 2 * padding must be >= kernel size {k}, got {tuple(x.shape)}"
        )
    x = to_channels_last_4d(x)
    src_taps = (_taps(hs, k, 1, padding), _taps(ws, k, 1, padding))
    trg_taps = (_taps(ht, k, stride, padding), _taps(wt, k, stride, padding))

    # Source-dims kernel at the target centre: the target dims only select taps.
    pruned = x[:, :, :, :, trg_taps[0], trg_taps[1]]
    if stride > 1 or padding != k // 2:
        pruned = to_channels_last_4d(pruned)  # a copy of 1/stride^2 of the volume
    y = source_conv(pruned, weight_src, bias, padding)

    # Target-dims kernel at the source centre: the source dims only select taps.
    centred = x if padding == k // 2 else to_channels_last_4d(x[:, :, src_taps[0], src_taps[1]])
    y_trg = F.conv2d(_fold_target(centred), weight_trg, None, stride=stride, padding=padding)
    return y + _unfold_target(y_trg, b, centred.shape[2], centred.shape[3])


def conv4d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int | None = None,
) -> torch.Tensor:
    """Full 4D convolution of a volume ``(B, C, H_s, W_s, H_t, W_t)`` (the ablation's decoder).

    Loops over the ``k`` taps of the first kernel dim, each a 3D convolution over the other
    three dims; costs ``k^4`` per output and channel pair, so keep it for small volumes.

    Args:
        x: ``(B, C, H_s, W_s, H_t, W_t)``.
        weight: ``(O, C, k, k, k, k)``, ``k`` odd; dims in the order ``(H_s, W_s, H_t, W_t)``.
        bias: ``(O,)`` or ``None``.
        stride: stride over the target dims.
        padding: zero padding of every dim, in ``[0, k // 2]``; default ``k // 2``.

    Returns:
        ``(B, O, H_s', W_s', H_t', W_t')`` (sizes as in :func:`center_pivot_conv4d`), channels-last.

    >>> y = conv4d(torch.ones(1, 1, 3, 3, 3, 3), torch.ones(1, 1, 3, 3, 3, 3))
    >>> float(y[0, 0, 1, 1, 1, 1]), float(y[0, 0, 0, 0, 0, 0])
    (81.0, 16.0)
    """
    _check_volume("x", x)
    if weight.dim() != 6 or weight.shape[1] != x.shape[1] or len(set(weight.shape[2:])) != 1:
        raise ShapeError(
            f"weight: expected (O, C={x.shape[1]}, k, k, k, k), got {tuple(weight.shape)}"
        )
    k = weight.shape[-1]
    padding = k // 2 if padding is None else int(padding)
    _check_geometry(k, stride, padding)
    b, c, hs, ws, ht, wt = x.shape
    hs_out = out_size(hs, k, 1, padding)
    xp = F.pad(x, (0, 0, 0, 0, 0, 0, padding, padding))  # zero-pad H_s only

    def tap(i: int) -> torch.Tensor:
        rows = xp[:, :, i : i + hs_out].transpose(1, 2).reshape(b * hs_out, c, ws, ht, wt)
        return F.conv3d(rows, weight[:, :, i], None, stride=(1, stride, stride), padding=padding)

    out = tap(0)
    for i in range(1, k):
        out = out.add_(tap(i))
    out = out.reshape(b, hs_out, *out.shape[1:]).transpose(1, 2)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1, 1, 1)
    return to_channels_last_4d(out)


def _init_kernel(weight: torch.Tensor, fan_in: int) -> None:
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -math.sqrt(3.0) * bound, math.sqrt(3.0) * bound)  # variance 1 / fan_in


class CenterPivotConv4d(nn.Module):
    """Center-pivot 4D convolution layer (see :func:`center_pivot_conv4d`).

    Input ``(B, in_channels, H_s, W_s, H_t, W_t)``; output ``(B, out_channels, H_s', W_s',
    H_t', W_t')`` channels-last; ``stride`` applies to the target dims only.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: odd ``k`` of both ``k x k`` kernels.
        stride: target-dims stride (default 1).
        padding: zero padding of all dims (default ``kernel_size // 2``: source dims keep size).
        bias: learn an output bias (default True).

    Initialised with variance ``1 / fan_in``, fan-in ``2 * k^2 * in_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        _check_geometry(kernel_size, stride, padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight_src = nn.Parameter(torch.empty(shape))
        self.weight_trg = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        fan_in = 2 * kernel_size**2 * in_channels
        _init_kernel(self.weight_src, fan_in)
        _init_kernel(self.weight_trg, fan_in)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_volume("x", x, self.in_channels)
        return center_pivot_conv4d(
            x, self.weight_src, self.weight_trg, self.bias, self.stride, self.padding
        )


class Conv4d(nn.Module):
    """Full 4D convolution layer (see :func:`conv4d`); same arguments as :class:`CenterPivotConv4d`.

    Input ``(B, in_channels, H_s, W_s, H_t, W_t)``; output channels-last. For the decoder
    ablation only: ``k^4`` cost and parameters per channel pair.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        _check_geometry(kernel_size, stride, padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *(kernel_size,) * 4))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        _init_kernel(self.weight, kernel_size**4 * in_channels)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_volume("x", x, self.in_channels)
        return conv4d(x, self.weight, self.bias, self.stride, self.padding)


def subsample_target(
    x: torch.Tensor, kernel_size: int, stride: int, padding: int | None = None
) -> torch.Tensor:
    """The target cells of ``x`` ``(B, C, H_s, W_s, H_t, W_t)`` that a strided 4D conv centres on.

    Returns a view ``(B, C, H_s, W_s, H_t', W_t')`` with the output target size of
    :func:`center_pivot_conv4d` (for residual shortcuts around a strided layer).
    """
    padding = kernel_size // 2 if padding is None else padding
    _check_geometry(kernel_size, stride, padding)
    ht, wt = x.shape[-2:]
    return x[..., _taps(ht, kernel_size, stride, padding), _taps(wt, kernel_size, stride, padding)]


def pointwise_conv4d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """1x1x1x1 convolution (channel mixing) of ``x`` ``(B, C, H_s, W_s, H_t, W_t)``.

    ``weight`` ``(O, C)``, ``bias`` ``(O,)`` or ``None``; returns ``(B, O, H_s, W_s, H_t, W_t)``
    channels-last.
    """
    _check_volume("x", x, weight.shape[1])
    return F.linear(x.permute(*_CL_ORDER), weight, bias).permute(*_CL_BACK)


def group_norm_4d(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """GroupNorm of a volume ``(B, C, H_s, W_s, H_t, W_t)``, returned channels-last.

    Runs as a 2D group norm on the channels-last view ``(B, C, H_s * W_s, H_t * W_t)``, so a
    channels-last volume is normalised without a layout copy.
    """
    _check_volume("x", x)
    b, c, hs, ws, ht, wt = x.shape
    flat = (
        to_channels_last_4d(x)
        .permute(*_CL_ORDER)
        .reshape(b, hs * ws, ht * wt, c)
        .permute(0, 3, 1, 2)
    )
    y = F.group_norm(flat, num_groups, weight, bias, eps)
    return y.permute(0, 2, 3, 1).reshape(b, hs, ws, ht, wt, c).permute(*_CL_BACK)
