"""The 4D correlation of KBCNet and the center-pivot decoder that turns it into one score.

Volumes are ``(B, K, h_s, w_s, h_t, w_t)``: ``K`` channels over every pair of a source cell
``(h_s, w_s)`` and a target cell ``(h_t, w_t)``; the decoder keeps them channels-last (see
:mod:`sosc.matchers.cp4d`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sosc.errors import ConfigError, ShapeError
from sosc.matchers.checkpointing import run_checkpointed
from sosc.matchers.cp4d import (
    CenterPivotConv4d,
    Conv4d,
    group_norm_4d,
    pointwise_conv4d,
    subsample_target,
    to_channels_last_4d,
)

DECODERS = ("center-pivot", "full")


def resample_to(feature: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample a map ``(B, C, h, w)`` to ``size`` ``(h', w')`` cells of the same image.

    Finer maps are area-averaged, coarser ones bilinearly upsampled (``align_corners=False``,
    so cell centres stay on cell centres); an equal size is returned as is.
    """
    h, w = int(size[0]), int(size[1])
    if tuple(feature.shape[-2:]) == (h, w):
        return feature
    if feature.shape[-2] >= h and feature.shape[-1] >= w:
        return F.adaptive_avg_pool2d(feature, (h, w))
    return F.interpolate(feature, size=(h, w), mode="bilinear", align_corners=False)


def correlation_volume(src: torch.Tensor, trg: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Multi-channel cosine correlation of feature stacks.

    Args:
        src: ``(B, K, C, h_s, w_s)``, ``K`` feature maps of the source image.
        trg: ``(B, K, C, h_t, w_t)``, the matching ``K`` maps of the target image.
        eps: floor of the L2 norms.

    Returns:
        ``(B, K, h_s, w_s, h_t, w_t)``: channel ``k`` is the cosine similarity of source map
        ``k`` at ``(h_s, w_s)`` and target map ``k`` at ``(h_t, w_t)``, in ``[-1, 1]``.

    >>> src = torch.tensor([1.0, 0.0]).view(1, 1, 2, 1, 1)  # one cell, feature (1, 0)
    >>> trg = torch.tensor([[3.0, 0.0], [0.0, 2.0]]).view(1, 1, 2, 1, 2)  # cells (3, 0), (0, 2)
    >>> correlation_volume(src, trg).flatten().tolist()
    [1.0, 0.0]
    """
    if src.dim() != 5 or trg.dim() != 5 or src.shape[:3] != trg.shape[:3]:
        raise ShapeError(
            f"src and trg must be (B, K, C, h, w) with equal B, K, C; got {tuple(src.shape)} and {tuple(trg.shape)}"
        )
    b, k, _, hs, ws = src.shape
    ht, wt = trg.shape[-2:]
    s = F.normalize(src.flatten(3), dim=2, eps=eps)
    t = F.normalize(trg.flatten(3), dim=2, eps=eps)
    return torch.matmul(s.transpose(-1, -2), t).view(b, k, hs, ws, ht, wt)


def interpolation_matrix(
    n_out: int, n_in: int, stride: int, *, device=None, dtype=torch.float32
) -> torch.Tensor:
    """``(n_out, n_in)`` linear interpolation from every ``stride``-th sample back to all.

    Sample ``i`` of the input sits at full-resolution index ``i * stride``; row ``j`` holds the
    weights of full index ``j`` (held constant past the last sample).

    >>> interpolation_matrix(4, 2, 2).tolist()
    [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]]
    """
    u = (torch.arange(n_out, device=device, dtype=torch.float32) / stride).clamp(max=n_in - 1)
    i0 = u.floor().long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    frac = (u - i0)[:, None]
    m = F.one_hot(i0, n_in) * (1.0 - frac) + F.one_hot(i1, n_in) * frac
    return m.to(dtype)


def upsample_target(x: torch.Tensor, size: Sequence[int], stride: int) -> torch.Tensor:
    """Upsample the target dims of ``x`` ``(B, h_s, w_s, h_t', w_t')`` back to ``size`` ``(h_t, w_t)``.

    ``x`` holds every ``stride``-th target cell (the taps of a strided 4D conv); the result is
    their bilinear interpolation, ``(B, h_s, w_s, h_t, w_t)``.
    """
    mh = interpolation_matrix(int(size[0]), x.shape[-2], stride, device=x.device, dtype=x.dtype)
    mw = interpolation_matrix(int(size[1]), x.shape[-1], stride, device=x.device, dtype=x.dtype)
    return torch.einsum("bsrij,hi,wj->bsrhw", x, mh, mw)


class DecoderBlock4d(nn.Module):
    """``relu(groupnorm(conv4d(x)) + shortcut(x))`` on a volume ``(B, C_in, h_s, w_s, h_t, w_t)``.

    ``conv4d`` is center-pivot (``full=False``) or a full 4D conv, without bias (the norm
    follows); ``stride`` reduces the target dims. The shortcut is the identity, or a
    pointwise conv on the strided taps where channels or size change. Output channels-last.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        groups: int,
        full: bool = False,
    ) -> None:
        super().__init__()
        if out_channels % groups:
            raise ConfigError(
                f"decoder channels ({out_channels}) must be divisible by groups ({groups})"
            )
        conv = Conv4d if full else CenterPivotConv4d
        self.conv = conv(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.norm = nn.GroupNorm(groups, out_channels)
        self.kernel_size, self.stride = kernel_size, stride
        self.shortcut = (
            None
            if in_channels == out_channels and stride == 1
            else nn.Parameter(torch.empty(out_channels, in_channels))
        )
        if self.shortcut is not None:
            nn.init.kaiming_uniform_(self.shortcut, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = group_norm_4d(
            self.conv(x), self.norm.num_groups, self.norm.weight, self.norm.bias, self.norm.eps
        )
        if self.shortcut is None:
            skip = x
        else:
            skip = pointwise_conv4d(
                subsample_target(x, self.kernel_size, self.stride), self.shortcut
            )
        return torch.relu(y + skip)


class CorrelationDecoder(nn.Module):
    """Turns a correlation volume ``(B, K, h_s, w_s, h_t, w_t)`` into scores ``(B, h_s, w_s, h_t, w_t)``.

    ``score = sum_k skip_k * corr_k + head(blocks(corr))``, the head's target dims upsampled
    back to full size when the blocks strided them. ``skip`` starts at ``1 / K`` (the mean
    correlation) and the head's last conv near zero, so the untrained decoder follows the raw
    correlation and a pretrained backbone gives a sensible start.

    Args:
        in_channels: ``K``.
        channels: output channels of each block (default ``(16, 16, 16)``); may be empty.
        strides: target-dims stride of each block (default all 1); their product must be at
            most the target grid size to be useful; the head upsamples back.
        kernel_size: odd kernel size of every 4D conv (default 3).
        groups: GroupNorm groups (default 4).
        decoder: ``"center-pivot"`` (default) or ``"full"`` 4D convs (ablation; ``k^4`` cost).
        head_init: std of the normal init of the head's kernels (default ``1e-4``).
        grad_checkpointing: recompute each block's activations in backward instead of
            storing them (default ``False``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (16, 16, 16),
        strides: Sequence[int] | None = None,
        kernel_size: int = 3,
        groups: int = 4,
        decoder: str = "center-pivot",
        head_init: float = 1e-4,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = grad_checkpointing
        if decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        channels = tuple(int(c) for c in channels)
        strides = (1,) * len(channels) if strides is None else tuple(int(s) for s in strides)
        if len(strides) != len(channels):
            raise ConfigError(
                f"decoder strides {strides} and channels {channels} must have the same length"
            )
        full = decoder == "full"
        widths = (in_channels, *channels)
        self.blocks = nn.ModuleList(
            DecoderBlock4d(widths[i], widths[i + 1], kernel_size, strides[i], groups, full)
            for i in range(len(channels))
        )
        self.total_stride = 1
        for s in strides:
            self.total_stride *= s
        head = Conv4d if full else CenterPivotConv4d
        self.head = head(widths[-1], 1, kernel_size)
        for name, p in self.head.named_parameters():
            if name.startswith("weight"):
                nn.init.normal_(p, std=head_init)
            else:
                nn.init.zeros_(p)
        self.skip = nn.Parameter(torch.full((1, in_channels), 1.0 / in_channels))

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        corr = to_channels_last_4d(corr)
        base = pointwise_conv4d(corr, self.skip)[:, 0]
        x = corr
        for block in self.blocks:
            x = run_checkpointed(block, x) if self.grad_checkpointing else block(x)
        refine = self.head(x)[:, 0]
        if refine.shape[-2:] != base.shape[-2:]:
            refine = upsample_target(refine, base.shape[-2:], self.total_stride)
        return base + refine
