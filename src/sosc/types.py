"""The batch types that flow from a dataset to a matcher and to the metric.

Conventions (``docs/METHOD.md``, the README): keypoints are ``(x, y)`` float pixels, shape
``(N, 2)`` per item (``(B, N, 2)`` batched), padded to a fixed ``N`` with a boolean
``valid`` mask; padded entries hold 0 and never enter a computation. Images are float RGB in
``[0, 1]``. Windows and boxes are ``(x0, y0, x1, y1)`` in original image pixels; the image
spans ``[0, W] x [0, H]`` (pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``). Sizes are
``(H, W)``.
"""

from __future__ import annotations

from typing import TypedDict

import torch


class PairItem(TypedDict, total=False):
    """One image pair as a dataset returns it (:class:`sosc.data.dataset.PairDataset`).

    Keys, shapes and units for one item:

    - ``src_img``, ``trg_img``: ``(3, S_h, S_w)`` float in ``[0, 1]``, the window resampled
      to the network input size ``(S_h, S_w)`` (the data module's ``input_size``).
    - ``src_kps``, ``trg_kps``: ``(N, 2)`` keypoints in **input** pixels (0 where padded).
    - ``valid``: ``(N,)`` bool, keypoints present in both images.
    - ``src_window``, ``trg_window``: ``(4,)`` the original-pixel box resampled to the input.
    - ``src_size``, ``trg_size``: ``(2,)`` original ``(H, W)``.
    - ``src_bbox``, ``trg_bbox``: ``(4,)`` object box in original pixels, NaN when unknown.
    - ``pck_bound``: ``()`` the ``L`` of PCK in original target pixels.
    - ``category``: ``str``; ``category_id``: ``int``; ``pair_id``: ``str``; ``index``:
      ``int``, the item's index in its dataset (PCK drops pairs a distributed sampler repeats).
    - SPair-71k layout adds ``viewpoint_variation``, ``scale_variation``, ``truncation``,
      ``occlusion`` (``int``); every item has ``size_class`` (``str``: ``small``, ``medium``,
      ``large`` or ``unknown``).
    - Evaluation splits add ``src_orig``, ``trg_orig``: ``(3, H, W)`` original images, so that
      KBC can crop at full resolution.
    - A ``resample="device"`` dataset (:mod:`sosc.data.dataset`) has no ``src_img``/``trg_img``
      yet: it carries ``src_raw``, ``trg_raw`` ``(3, H, W)`` ``uint8`` decoded originals (mirrored
      if the record says so), ``resample_size`` ``(2,)`` the input ``(S_h, S_w)``, and when it
      augments ``augment`` ``(2, 7)`` the drawn photometric factors (source, target) and
      ``augment_seed`` ``(2,)`` int64 their noise seeds; :func:`sosc.data.dataset.finish_batch`
      turns a batch of them into ``src_img``/``trg_img`` and removes these keys.
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
    src_raw: torch.Tensor
    trg_raw: torch.Tensor
    resample_size: torch.Tensor
    augment: torch.Tensor
    augment_seed: torch.Tensor


class PairBatch(TypedDict, total=False):
    """``B`` items stacked by :func:`sosc.data.dataset.collate_pairs`: the keys of
    :class:`PairItem` with a leading ``B`` (``(B, 3, S_h, S_w)``, ``(B, N, 2)``, ``(B, N)``,
    ``(B, 4)``, ``(B, 2)``, ``(B,)``); strings become lists of ``B`` strings; ``src_orig`` and
    ``trg_orig`` (and ``src_raw``, ``trg_raw``) stay lists of ``B`` tensors ``(3, H_i, W_i)``
    (their sizes differ)."""

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
    category: list[str]
    category_id: torch.Tensor
    pair_id: list[str]
    index: torch.Tensor
    viewpoint_variation: torch.Tensor
    scale_variation: torch.Tensor
    truncation: torch.Tensor
    occlusion: torch.Tensor
    size_class: list[str]
    src_orig: list[torch.Tensor]
    trg_orig: list[torch.Tensor]
    src_raw: list[torch.Tensor]
    trg_raw: list[torch.Tensor]
    resample_size: torch.Tensor
    augment: torch.Tensor
    augment_seed: torch.Tensor
