"""Stand-ins for the field's networks, each written from that network's convention and with a
known behaviour (imported as ``third_party_nets``).

The conventions were read from the networks' public code; none of it is copied here:

- **CATs** (``SunghwanHong/Cost-Aggregation-transformers``, ``models/cats.py``): ``forward(a, b)``
  (its arguments are named ``target, source``) returns ``(B, 2, 16, 16)``, for each cell of
  the 16 x 16 grid of its **first** argument the displacement, in cells of that grid, to where
  the cell lands in the **second**. Its evaluation calls ``net(trg, src)`` and moves *target*
  keypoints into the source; its training target (``data/keypoint_to_flow.py``) is built from
  keypoint pairs: each cell of the first image's grid has a receptive box around its centre
  (``j * jsz + jsz // 2``, ``jsz`` the cell size in pixels), and its flow is the matching
  point in the second image minus the mean of the first image's points inside the box,
  divided by ``jsz``.
- **CHM** (``juhongm999/chm``, ``model/chmnet.py``): ``forward(src_img, trg_img)`` returns its
  score volume flattened, ``(B, h*w, h*w)``, a row per **source** cell and a column per
  **target** cell, both row-major, ``h = w = S / 8``.
- **DIFT**-style extractors: an image batch in, a feature map over the whole image out
  (DIFT upsamples its U-Net features to the image size).

Each stand-in finds how the second image is shifted against the first (exhaustive search,
whole pixels) and answers as its network would for that shift, so the direction it is called
in matters, as it does for the real networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CATS_FEATURE = 16  # CATs' feature_size
CHM_STRIDE = 8  # CHM's volume is at 1/8 of the input


def shifted_pair(size: int = 64, shift: tuple[int, int] = (8, 0), seed: int = 0,
                 grain: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, 3, size, size)`` source and target, the target showing the source moved by
    ``shift = (dx, dy)`` whole pixels (a point at ``p`` in the source is at ``p + shift`` in the
    target); a smooth random texture (random values every ``grain`` pixels, bicubic between),
    so that the shift is found unambiguously."""
    dx, dy = shift
    g = torch.Generator().manual_seed(seed)
    big = size + 2 * max(abs(dx), abs(dy)) + 8
    base = F.interpolate(torch.rand(1, 3, big // grain, big // grain, generator=g), size=(big, big), mode="bicubic",
                         align_corners=False).clamp(0, 1)
    o = (big - size) // 2
    src = base[..., o:o + size, o:o + size]
    trg = base[..., o - dy:o - dy + size, o - dx:o - dx + size]
    return src.contiguous(), trg.contiguous()


def find_shift(a: torch.Tensor, b: torch.Tensor, max_shift: int = 12, margin: int = 2) -> torch.Tensor:
    """Per pair, the whole-pixel ``(dx, dy)`` with ``b(p + d) = a(p)`` (``(B, 2)`` float): the
    smallest mean absolute difference over the overlap, ``margin`` pixels off the borders."""
    bsz, _, h, w = a.shape
    best = torch.zeros(bsz, 2)
    err_best = torch.full((bsz,), float("inf"))
    m = margin
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            ya, yb = slice(max(0, -dy) + m, min(h, h - dy) - m), slice(max(0, dy) + m, min(h, h + dy) - m)
            xa, xb = slice(max(0, -dx) + m, min(w, w - dx) - m), slice(max(0, dx) + m, min(w, w + dx) - m)
            err = (a[..., ya, xa] - b[..., yb, xb]).abs().flatten(1).mean(1)
            better = err < err_best
            err_best = torch.where(better, err, err_best)
            best[better] = torch.tensor([float(dx), float(dy)])
    return best


def cats_training_flow(points_a: torch.Tensor, points_b: torch.Tensor, size: int, feature: int = CATS_FEATURE,
                       receptive: int | None = None) -> torch.Tensor:
    """CATs' training flow from point pairs, as its ``keypoint_to_flow.py`` builds it (restated):
    ``(2, feature, feature)`` displacements in cells on the first image's grid.

    ``points_a``, ``points_b``: ``(N, 2)`` ``(x, y)`` pixels of the first and second image.
    Cell ``(i, j)`` has the box of side ``receptive`` around ``(j * jsz + jsz // 2, i * jsz +
    jsz // 2)``; its flow is a matching point of the second image minus the mean of the first
    image's points in the box, over ``jsz``; cells without a point keep 0.
    """
    jsz = size // feature
    receptive = receptive if receptive is not None else jsz - 1
    flow = torch.zeros(2, feature, feature)
    for i in range(feature):
        for j in range(feature):
            centre = torch.tensor([j * jsz + jsz // 2, i * jsz + jsz // 2], dtype=torch.float32)
            inside = ((points_a - centre).abs() <= receptive // 2).all(dim=1)
            if inside.any():
                mean_a = points_a[inside].mean(dim=0)
                flow[:, i, j] = (points_b[inside][-1] - mean_a) / jsz
    return flow


class CATsStyle(nn.Module):
    """CATs' convention: ``forward(a, b)`` -> ``(B, 2, 16, 16)`` displacement in cells on the grid
    of ``a``, pointing into ``b`` (built as CATs builds its training flow, from the point pairs
    at ``a``'s cell centres and where the found shift moves them in ``b``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:  # CATs' argument names
        self.calls.append((target, source))
        size = target.shape[-1]
        jsz = size // CATS_FEATURE
        idx = torch.arange(CATS_FEATURE, dtype=torch.float32) * jsz + jsz // 2
        points_a = torch.stack(torch.meshgrid(idx, idx, indexing="xy"), dim=-1).reshape(-1, 2)
        shifts = find_shift(target, source)
        return torch.stack([cats_training_flow(points_a, points_a + d, size) for d in shifts])


class CHMStyle(nn.Module):
    """CHM's convention: ``forward(src, trg)`` -> ``(B, h*w, h*w)`` flattened scores, source
    cells as rows, ``h = w = S / 8``; each row peaks (a Gaussian one cell wide, height
    ``height``) at the target cell the found shift, rounded to whole cells, moves it to."""

    def __init__(self, height: float = 30.0) -> None:
        super().__init__()
        self.height = height

    def forward(self, src_img: torch.Tensor, trg_img: torch.Tensor) -> torch.Tensor:
        bsz, _, s_h, s_w = src_img.shape
        h, w = s_h // CHM_STRIDE, s_w // CHM_STRIDE
        cells = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(h), indexing="xy"), -1).reshape(-1, 2).float()
        moves = torch.round(find_shift(src_img, trg_img) / CHM_STRIDE)  # (B, 2) whole cells
        peaks = cells[None] + moves[:, None]  # (B, h*w, 2)
        d2 = ((peaks[:, :, None] - cells[None, None]) ** 2).sum(-1)  # (B, h*w, h*w)
        return self.height * torch.exp(-d2 / 2.0)


class DIFTStyle(nn.Module):
    """A DIFT-style extractor: ``image -> (B, 16, S_h, S_w)`` features over the whole image (a
    fixed random convolution, pooled to stride 8 and upsampled back to the image size)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 5, padding=2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feats = F.avg_pool2d(self.conv(image), 8)
        return F.interpolate(feats, size=image.shape[-2:], mode="bilinear", align_corners=False)
