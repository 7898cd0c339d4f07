"""The one batch type that flows from a dataset to a matcher and to the metric.

Conventions (ARCHITECTURE.md): keypoints are ``(x, y)`` float pixels, shape
``(N, 2)`` per item (``(B, N, 2)`` batched), padded to a fixed ``N`` with a boolean
``valid`` mask; padded entries hold 0 and never enter a computation. Images are
float RGB in ``[0, 1]``. Windows and boxes are ``(x0, y0, x1, y1)`` in original
image pixels; the image spans ``[0, W] x [0, H]`` (pixel ``(i, j)`` covers
``[i, i + 1) x [j, j + 1)``).
"""

from __future__ import annotations

from typing import TypedDict

import torch


class PairItem(TypedDict, total=False):
    """One image pair as a dataset returns it (batched by :func:`sosc.data.collate_pairs`).

    Keys and shapes for one item (a batch adds a leading ``B``):

    - ``src_img``, ``trg_img``: ``(3, S_h, S_w)`` float in ``[0, 1]``, the window resampled
      to the network input size.
    - ``src_kps``, ``trg_kps``: ``(N, 2)`` keypoints in **input** pixels.
    - ``valid``: ``(N,)`` bool, keypoints present in both images.
    - ``src_window``, ``trg_window``: ``(4,)`` the original-pixel box resampled to the input.
    - ``src_size``, ``trg_size``: ``(2,)`` original ``(H, W)``.
    - ``src_bbox``, ``trg_bbox``: ``(4,)`` object box in original pixels, NaN when unknown.
    - ``pck_bound``: ``()`` the ``L`` of PCK in original target pixels.
    - ``category``: ``str``; ``category_id``: ``int``; ``pair_id``: ``str``; ``index``:
      ``int``, the item's index in its dataset (PCK drops pairs a distributed sampler repeats).
    - SPair-71k layout adds ``viewpoint_variation``, ``scale_variation``, ``truncation``,
      ``occlusion`` (``int``) and ``size_class`` (``str``: ``small``, ``medium``, ``large``).
    - Evaluation splits add ``src_orig``, ``trg_orig``: ``(3, H, W)`` original images
      (a list in a batch, sizes differ) so that KBC can crop at full resolution.
    """

    src_img: torch.Tensor
    trg_img: torch.Tensor
    src_kps: torch.Tensor
    trg_kps: torch.Tensor
    valid: torch.Tensor
    src_window: torch.Tensor
    trg_window: torch.Tensor
    src_size: torch.Tensor
    trg_size: torch.Tensor
    src_bbox: torch.Tensor
    trg_bbox: torch.Tensor
    pck_bound: torch.Tensor
    category: str
    category_id: int
    pair_id: str
    index: int
    viewpoint_variation: int
    scale_variation: int
    truncation: int
    occlusion: int
    size_class: str
    src_orig: torch.Tensor
    trg_orig: torch.Tensor
