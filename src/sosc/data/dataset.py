"""One dataset class for every benchmark: records in, network-ready items out.

The flow of one item: read both images, mirror them if the record says so, choose a
window per image (the full image, or at training time a KBC window around the
ground-truth keypoints), resample each window to the input size, map the keypoints
into input pixels, and attach what the metric needs in original pixels.

An item's random draws (train-time KBC windows, photometric augmentation) come from a
generator seeded by :func:`item_seed` ``(seed, epoch, index)`` only: the training sampler
(:class:`sosc.data.datamodule.TrainSampler`) hands the dataset ``(index, epoch)`` keys, so
the same epoch redraws the same augmentation in any process, worker or resumed run.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from sosc.data.images import image_size, read_image
from sosc.data.records import (
    BOX_OUTSIDE,
    BOX_TOLERANCE,
    BoxOutsideImage,
    PairRecord,
    SkipReport,
    fit_record_boxes,
    pck_bound,
    size_class,
)
from sosc.errors import DatasetError
from sosc.geometry import (
    as_size,
    full_window,
    inside_image,
    mirror_box,
    mirror_points,
    points_box,
    points_to_window,
    resample_window,
)
from sosc.types import PairBatch, PairItem

log = logging.getLogger(__name__)

#: Skip reason of a pair whose image does not decode (:func:`verify_images`, ``strict=False``).
UNDECODABLE = "image does not decode"

#: ``(src_kps, trg_kps, valid, src_size_hw, trg_size_hw, generator) -> (src_window, trg_window)``
WindowFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int], torch.Generator],
    tuple[torch.Tensor, torch.Tensor],
]


def _as_tensor(values: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 tensor of ``shape`` from a record's numpy array."""
    return torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(shape).copy())


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one item's random draws: a pure function of the run's ``seed``, the
    ``epoch`` and the item's ``index`` (all non-negative), well mixed
    (:class:`numpy.random.SeedSequence`), in ``[0, 2**63)``.

    >>> item_seed(0, 0, 0) == item_seed(0, 0, 0) != item_seed(0, 1, 0)
    True
    >>> item_seed(0, 0, 1)
    7231514099887645586
    """
    words = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, np.uint32)
    return ((int(words[0]) << 32) | int(words[1])) & 0x7FFF_FFFF_FFFF_FFFF


def verify_images(records: Sequence[PairRecord], *, strict: bool = True) -> tuple[list[PairRecord], SkipReport]:
    """Decode every image of ``records`` in full (headers alone miss a truncated file).

    With ``strict=True`` any image that does not decode raises :class:`DatasetError` naming
    every such file (up to ten) and the fix; with ``strict=False`` the pairs that use one are
    skipped and counted (``image does not decode``).
    """
    bad: dict[Path, str] = {}
    for path in dict.fromkeys(p for rec in records for p in (rec.src_path, rec.trg_path)):
        try:
            with Image.open(path) as im:
                im.load()
        except (OSError, SyntaxError, ValueError) as err:
            bad[Path(path)] = str(err)
    if bad and strict:
        listed = "; ".join(f"{path} ({why})" for path, why in list(bad.items())[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DatasetError(
            f"{len(bad)} image(s) do not decode: {listed}{more}. Re-download or re-extract them, or pass "
            "strict=False to skip the pairs that use them (they are counted and reported)"
        )
    report = SkipReport()
    kept = []
    for rec in records:
        if Path(rec.src_path) in bad or Path(rec.trg_path) in bad:
            report.skip_pair(UNDECODABLE, str(rec.source or rec.pair_id))
        else:
            kept.append(rec)
    return kept, report


def validate_records(
    records: Sequence[PairRecord], *, strict: bool = True, tolerance: float = BOX_TOLERANCE
) -> tuple[list[PairRecord], SkipReport]:
    """Check every object box and keypoint against its image (within ``tolerance`` px).

    Boxes (:func:`sosc.data.records.fit_record_boxes`): one within ``tolerance`` px of its
    image is clipped to it; one further outside raises, with ``strict=True``, a
    :class:`DatasetError` naming the annotation, the box and the image size, and with
    ``strict=False`` skips the pair (counted as ``object box outside the image``).
    Keypoints: with ``strict=True`` the first offending keypoint raises :class:`DatasetError`
    naming the annotation, the pair and the point; with ``strict=False`` offending keypoints
    are dropped from both images (a pair left with none is dropped) and counted.
    """
    kept: list[PairRecord] = []
    report = SkipReport()
    for rec in records:
        try:
            rec = fit_record_boxes(rec, image_size(rec.src_path), image_size(rec.trg_path), tolerance)
        except BoxOutsideImage:
            if strict:
                raise
            report.skip_pair(BOX_OUTSIDE, rec.source or rec.pair_id)
            continue
        ok = np.ones(rec.num_kps, dtype=bool)
        for side, path, kps in (("source", rec.src_path, rec.src_kps), ("target", rec.trg_path, rec.trg_kps)):
            h, w = image_size(path)
            inside = inside_image(torch.from_numpy(np.asarray(kps, dtype=np.float64)), (h, w), tolerance).numpy()
            if strict and not inside.all():
                k = int(np.flatnonzero(~inside)[0])
                raise DatasetError(
                    f"{rec.source or rec.pair_id}: {side} keypoint {k} at {kps[k].tolist()} lies outside "
                    f"image {path} of size {w}x{h} (W x H); fix the annotation, or pass strict=False "
                    "to drop such keypoints (they are counted and reported)"
                )
            ok &= inside
        if not ok.all():
            report.skip_keypoints("outside the image", int((~ok).sum()), rec.source or rec.pair_id)
            if not ok.any():
                report.skip_pair("no keypoint inside both images", rec.source or rec.pair_id)
                continue
            rec = replace(rec, src_kps=rec.src_kps[ok], trg_kps=rec.trg_kps[ok])
        kept.append(rec)
    return kept, report


class PairDataset(Dataset):
    """Items of :class:`sosc.types.PairItem` from a list of :class:`PairRecord`.

    Args:
        records: the pairs.
        input_size: network input ``(S_h, S_w)`` or an int for a square.
        max_kps: pad keypoints to this ``N`` (default: the most any record has).
        keep_original: add ``src_orig``/``trg_orig`` (full-resolution images) for KBC at
            evaluation time.
        augment: photometric augmentation ``(image, generator) -> image`` (training only).
        window_fn: train-time window choice (KBC augmentation); ``None`` = full images.
        seed: the run's seed of per-item randomness (:func:`item_seed`).

    ``dataset[index]`` or ``dataset[(index, epoch)]`` (the keys :class:`~sosc.data.datamodule.TrainSampler` yields):
    the item's random draws depend on ``(seed, epoch, index)`` alone (epoch 0 for a bare index).
    """

    def __init__(
        self,
        records: Sequence[PairRecord],
        input_size: int | Sequence[int],
        *,
        max_kps: int | None = None,
        keep_original: bool = False,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        window_fn: WindowFn | None = None,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.seed = int(seed)
        self.input_size = as_size(input_size)
        most = max((r.num_kps for r in self.records), default=0)
        self.max_kps = max_kps if max_kps is not None else most
        if most > self.max_kps:
            raise DatasetError(f"a pair has {most} keypoints but max_kps={self.max_kps}: raise max_kps")
        self.keep_original = keep_original
        self.augment = augment
        self.window_fn = window_fn

    def __len__(self) -> int:
        return len(self.records)

    def _pad(self, kps: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.max_kps, 2, dtype=torch.float32)
        out[: len(kps)] = kps
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> PairItem:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        rec = self.records[index]
        src, trg = read_image(rec.src_path), read_image(rec.trg_path)
        src_kps, trg_kps = _as_tensor(rec.src_kps, (-1, 2)), _as_tensor(rec.trg_kps, (-1, 2))
        src_bbox, trg_bbox = _as_tensor(rec.src_bbox, (4,)), _as_tensor(rec.trg_bbox, (4,))
        if rec.flip:
            src, trg = src.flip(-1), trg.flip(-1)
            src_kps, trg_kps = mirror_points(src_kps, src.shape[-1]), mirror_points(trg_kps, trg.shape[-1])
            src_bbox, trg_bbox = mirror_box(src_bbox, src.shape[-1]), mirror_box(trg_bbox, trg.shape[-1])
        src_hw = (int(src.shape[-2]), int(src.shape[-1]))
        trg_hw = (int(trg.shape[-2]), int(trg.shape[-1]))
        n = rec.num_kps
        valid = torch.zeros(self.max_kps, dtype=torch.bool)
        valid[:n] = True
        src_kps_t, trg_kps_t = self._pad(src_kps), self._pad(trg_kps)

        generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
        if self.window_fn is not None:
            src_window, trg_window = self.window_fn(src_kps_t, trg_kps_t, valid, src_hw, trg_hw, generator)
        else:
            src_window, trg_window = full_window(*src_hw), full_window(*trg_hw)
        src_in = resample_window(src, src_window, self.input_size)
        trg_in = resample_window(trg, trg_window, self.input_size)
        if self.augment is not None:
            src_in, trg_in = self.augment(src_in, generator), self.augment(trg_in, generator)

        item: PairItem = {
            "src_img": src_in,
            "trg_img": trg_in,
            "src_kps": torch.where(valid[:, None], points_to_window(src_kps_t, src_window, self.input_size), 0.0),
            "trg_kps": torch.where(valid[:, None], points_to_window(trg_kps_t, trg_window, self.input_size), 0.0),
            "valid": valid,
            "src_window": src_window,
            "trg_window": trg_window,
            "src_size": torch.tensor(src_hw, dtype=torch.float32),
            "trg_size": torch.tensor(trg_hw, dtype=torch.float32),
            "src_bbox": src_bbox,
            "trg_bbox": trg_bbox,
            "pck_bound": torch.tensor(pck_bound(rec.bound, trg_bbox.numpy(), trg_hw, trg_kps.numpy()), dtype=torch.float32),
            "category": rec.category,
            "category_id": rec.category_id,
            "pair_id": rec.pair_id,
            "index": index,
            "size_class": size_class(
                (trg_bbox if bool(torch.isfinite(trg_bbox).all()) else points_box(trg_kps)).numpy(), trg_hw
            ),
        }
        for flag, value in rec.flags.items():
            item[flag] = int(value)
        if self.keep_original:
            item["src_orig"], item["trg_orig"] = src, trg
        return item


#: Keys whose per-item values differ in shape and stay lists in a batch.
LIST_KEYS = ("src_orig", "trg_orig")


def collate_pairs(items: Sequence[PairItem]) -> PairBatch:
    """Stack items into a batch: tensors gain a leading ``B``, strings become lists, and the
    full-resolution originals (different sizes) stay lists of ``(3, H_i, W_i)`` tensors."""
    if not items:
        raise DatasetError("cannot collate an empty batch")
    lists = {k: [it[k] for it in items] for k in LIST_KEYS if k in items[0]}
    rest = [{k: v for k, v in it.items() if k not in LIST_KEYS} for it in items]
    batch = default_collate(rest)
    batch.update(lists)
    return batch


def warn_skips(name: str, split: str, report: SkipReport) -> None:
    """Say what was skipped, once per split (a warning, so users see it)."""
    if report:
        warnings.warn(f"{name} {split}: skipped {report.summary()}", stacklevel=2)
