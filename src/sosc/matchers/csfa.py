"""CSFA, cross-scale feature alignment: working-stride features attend to the other scales.

Each backbone scale ``i`` (a map ``(B, C_i, h_i, w_i)``) is projected to ``channels`` by a
1x1 convolution (a per-cell linear map) and a per-cell LayerNorm. The cells of the working
scale are queries that cross-attend, multi-head, to the cells of every other scale (the
finer one brings detail, the coarser one semantics); queries and keys carry a 2D sine
encoding of the cell centre in normalised image coordinates, so a cell of one scale finds
the cells of another that cover the same place, plus a learned per-scale embedding on the
keys. Each layer is pre-norm: attention with a residual, then an MLP with a residual.
Source and target images go through the same weights (one call on their joint batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sosc.errors import ConfigError, ShapeError
from sosc.matchers.grid import cell_centers

#: Highest frequency of the sine encoding, in half-periods per image side: resolves a cell of
#: a 64-cell-wide map (a stride-8 map of a 512-pixel input).
PE_MAX_FREQ = 64.0


def sine_positions(
    height: int, width: int, channels: int, *, device=None, dtype=torch.float32
) -> torch.Tensor:
    """2D sine/cosine encoding of the cell centres of an ``height x width`` grid, ``(height * width, channels)``.

    Cell ``(i, j)`` sits at ``((j + 0.5) / width, (i + 0.5) / height)`` in ``[0, 1]^2``, whatever
    the grid's resolution, so grids of different strides over one image share positions.
    ``channels / 4`` frequencies ``pi * f`` with ``f`` geometric in ``[1, PE_MAX_FREQ]``; the
    channels hold ``sin`` and ``cos`` of ``x`` then of ``y``. Rows are in row-major cell order.

    >>> pe = sine_positions(2, 3, 8)
    >>> tuple(pe.shape), round(float(pe[0, 1]), 4)
    ((6, 8), 0.866)
    """
    if channels % 4:
        raise ConfigError(f"sine positional encoding needs channels divisible by 4, got {channels}")
    n = channels // 4
    freqs = math.pi * torch.logspace(0.0, math.log2(PE_MAX_FREQ), n, base=2.0, device=device)
    centres = cell_centers(height, width, (height, width), device=device)  # cell (i, j) at (j + 0.5, i + 0.5)
    xs, ys = centres[0, :, 0] / width, centres[:, 0, 1] / height
    ax, ay = xs[:, None] * freqs, ys[:, None] * freqs  # (w, n), (h, n)
    enc_x = torch.cat([ax.sin(), ax.cos()], dim=-1)[None].expand(height, width, 2 * n)
    enc_y = torch.cat([ay.sin(), ay.cos()], dim=-1)[:, None].expand(height, width, 2 * n)
    return torch.cat([enc_x, enc_y], dim=-1).reshape(height * width, channels).to(dtype)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, L, C)`` -> ``(B, heads, L, C / heads)``."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


class CrossScaleAttention(nn.Module):
    """One pre-norm cross-attention layer plus MLP, both residual.

    ``forward(query, query_pos, memory, memory_pos)``: ``query`` ``(B, L, C)`` tokens,
    ``query_pos`` ``(L, C)``, ``memory`` ``(B, M, C)``, ``memory_pos`` ``(M, C)`` (added to keys
    only, never to values). Returns ``(B, L, C)``.

    The attention output projection and the MLP's last layer start near zero (normal, std
    ``residual_init``), so that an untrained layer passes its queries on almost unchanged.
    """

    def __init__(
        self, channels: int, heads: int, mlp_ratio: float = 2.0, residual_init: float = 1e-3
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ConfigError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)
        hidden = max(1, int(round(channels * mlp_ratio)))
        self.norm_mlp = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels)
        )
        for last in (self.out, self.mlp[-1]):
            nn.init.normal_(last.weight, std=residual_init)
            nn.init.zeros_(last.bias)

    def forward(
        self,
        query: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
    ) -> torch.Tensor:
        b, n, c = query.shape
        kv = self.norm_kv(memory)
        q = _split_heads(self.q(self.norm_q(query) + query_pos), self.heads)
        k = _split_heads(self.k(kv + memory_pos), self.heads)
        v = _split_heads(self.v(kv), self.heads)
        att = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, C / heads)
        x = query + self.out(att.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm_mlp(x))


class CSFA(nn.Module):
    """Cross-scale feature alignment (see the module docstring).

    Args:
        in_channels: channels ``C_i`` of each backbone scale.
        strides: stride of each scale (e.g. ``(8, 16, 32)``), same order.
        working_stride: the scale whose cells are queries; one of ``strides``.
        channels: projected width ``C`` (default 128).
        heads: attention heads (default 4); ``channels`` divisible by ``heads`` and by 4.
        layers: attention layers (default 1); 0 skips attention (the ablation without CSFA:
            the aligned map is the projected working scale).
        mlp_ratio: MLP hidden width over ``channels`` (default 2.0).

    ``forward(feats)``: ``feats`` list of ``(B, C_i, h_i, w_i)``, one per scale. Returns
    ``(aligned, projected)``: ``aligned`` ``(B, C, h_w, w_w)`` at the working stride, and
    ``projected`` the list of ``(B, C, h_i, w_i)`` normalised projections, one per scale.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        working_stride: int,
        channels: int = 128,
        heads: int = 4,
        layers: int = 1,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise ConfigError(
                f"in_channels {tuple(in_channels)} and strides {tuple(strides)} differ in length"
            )
        if working_stride not in strides:
            raise ConfigError(
                f"working stride {working_stride} is not one of the scales {tuple(strides)}"
            )
        if channels % 4:
            raise ConfigError(f"channels must be divisible by 4 (sine positions), got {channels}")
        if layers < 0:
            raise ConfigError(f"layers must be >= 0, got {layers}")
        if layers and len(strides) < 2:
            raise ConfigError(
                f"cross-scale attention needs at least two scales, got strides {tuple(strides)}"
            )
        self.channels = channels
        self.strides = tuple(int(s) for s in strides)
        self.working = self.strides.index(working_stride)
        self.proj = nn.ModuleList(nn.Linear(c, channels) for c in in_channels)
        self.proj_norm = nn.ModuleList(nn.LayerNorm(channels) for _ in in_channels)
        self.scale_embed = (
            nn.Parameter(torch.zeros(len(self.strides), channels)) if layers else None
        )
        self.layers = nn.ModuleList(
            CrossScaleAttention(channels, heads, mlp_ratio) for _ in range(layers)
        )

    def project(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale tokens ``(B, h_i * w_i, C)``: 1x1 projection + LayerNorm of each map."""
        if len(feats) != len(self.proj):
            raise ShapeError(f"feats: expected {len(self.proj)} feature maps, got {len(feats)}")
        return [
            norm(proj(f.flatten(2).transpose(1, 2)))
            for f, proj, norm in zip(feats, self.proj, self.proj_norm)
        ]

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        tokens = self.project(feats)
        sizes = [tuple(f.shape[-2:]) for f in feats]
        maps = [t.transpose(1, 2).unflatten(2, hw) for t, hw in zip(tokens, sizes)]
        x = tokens[self.working]
        if self.layers:
            dtype, device = x.dtype, x.device
            pos = [
                sine_positions(h, w, self.channels, device=device, dtype=dtype) for h, w in sizes
            ]
            others = [i for i in range(len(tokens)) if i != self.working]
            memory = torch.cat([tokens[i] for i in others], dim=1)
            memory_pos = torch.cat([pos[i] + self.scale_embed[i].to(dtype) for i in others], dim=0)
            query_pos = pos[self.working] + self.scale_embed[self.working].to(dtype)
            for layer in self.layers:
                x = layer(x, query_pos, memory, memory_pos)
        aligned = x.transpose(1, 2).unflatten(2, sizes[self.working])
        return aligned, maps
