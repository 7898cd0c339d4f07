"""One dataset class for every benchmark: records in, network-ready items out.

The flow of one item: read both images, mirror them if the record says so, choose a
window per image (the full image, or at training time a KBC window around the
ground-truth keypoints), resample each window to the input size, map the keypoints
into input pixels, and attach what the metric needs in original pixels.

An item's random draws (train-time KBC windows, photometric augmentation) come from a
generator seeded by :func:`item_seed` ``(seed, epoch, index)`` only: the training sampler
(:class:`sosc.data.datamodule.TrainSampler`) hands the dataset ``(index, epoch)`` keys, so
the same epoch redraws the same augmentation in any process, worker or resumed run.

Where the windows are resampled (:attr:`PairDataset.resample`, :data:`RESAMPLE`):

- ``"torch"`` (the reference): in the worker, :func:`sosc.geometry.resample_window` on the
  decoded float image;
- ``"pil"``: in the worker, by PIL on the 8-bit image (:func:`sosc.geometry.resample_window_8bit`,
  within 1/255 of the reference wherever no shrink is involved);
- ``"device"``: the worker only decodes; the item carries the decoded ``uint8`` images
  (``src_raw``, ``trg_raw``) with their windows and, when augmenting, the drawn photometric
  factors and noise seeds (``augment``, ``augment_seed``); :func:`finish_batch` (which
  :class:`~sosc.module.CorrespondenceModule` calls in ``on_after_batch_transfer``) resamples
  each window with :func:`~sosc.geometry.resample_window` and augments, on the batch's device.
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

from sosc.data.augment import Photometric, apply_photometric_batch
from sosc.data.images import image_size, read_image, read_image_8bit
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
    resample_window_8bit,
)
from sosc.types import PairBatch, PairItem

#: Where a dataset resamples its windows (see the module docstring).
RESAMPLE = ("torch", "pil", "device")

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
        resample: where windows are resampled: ``"torch"`` (default), ``"pil"`` or ``"device"``
            (see the module docstring; ``"device"`` needs :func:`finish_batch` on each batch and
            defers a :class:`~sosc.data.augment.Photometric` ``augment`` to it).

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
        resample: str = "torch",
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
        self.resample = resample

    @property
    def resample(self) -> str:
        return self._resample

    @resample.setter
    def resample(self, value: str) -> None:
        if value not in RESAMPLE:
            raise DatasetError(f"resample must be one of {RESAMPLE}, got {value!r}")
        if value == "device" and self.augment is not None and not isinstance(self.augment, Photometric):
            raise DatasetError("resample='device' defers the augmentation to the device: it must be a "
                               f"sosc.data.augment.Photometric, got {type(self.augment).__name__}")
        self._resample = value

    def _read(self, path: Path):
        """The decoded image: a float tensor (``"torch"``), or an 8-bit RGB PIL image where its
        mode allows (``"pil"``, ``"device"``; else the float tensor)."""
        return read_image(path) if self.resample == "torch" else read_image_8bit(path)

    def _window_input(self, image, window: torch.Tensor) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return resample_window(image, window, self.input_size)
        return resample_window_8bit(image, window, self.input_size).float().div_(255.0)

    def __len__(self) -> int:
        return len(self.records)

    def _pad(self, kps: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.max_kps, 2, dtype=torch.float32)
        out[: len(kps)] = kps
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> PairItem:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        rec = self.records[index]
        src, trg = self._read(rec.src_path), self._read(rec.trg_path)
        src_hw, trg_hw = _hw(src), _hw(trg)
        src_kps, trg_kps = _as_tensor(rec.src_kps, (-1, 2)), _as_tensor(rec.trg_kps, (-1, 2))
        src_bbox, trg_bbox = _as_tensor(rec.src_bbox, (4,)), _as_tensor(rec.trg_bbox, (4,))
        if rec.flip:
            src, trg = _mirror(src), _mirror(trg)
            src_kps, trg_kps = mirror_points(src_kps, src_hw[1]), mirror_points(trg_kps, trg_hw[1])
            src_bbox, trg_bbox = mirror_box(src_bbox, src_hw[1]), mirror_box(trg_bbox, trg_hw[1])
        n = rec.num_kps
        valid = torch.zeros(self.max_kps, dtype=torch.bool)
        valid[:n] = True
        src_kps_t, trg_kps_t = self._pad(src_kps), self._pad(trg_kps)

        generator = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
        if self.window_fn is not None:
            src_window, trg_window = self.window_fn(src_kps_t, trg_kps_t, valid, src_hw, trg_hw, generator)
        else:
            src_window, trg_window = full_window(*src_hw), full_window(*trg_hw)
        images: dict = {}
        if self.resample == "device":
            images["src_raw"], images["trg_raw"] = _as_uint8(src), _as_uint8(trg)
            images["resample_size"] = torch.tensor(self.input_size)
            if self.augment is not None:
                (fs, ss), (ft, st) = self.augment.deferred(generator), self.augment.deferred(generator)
                images["augment"] = torch.stack([fs, ft])
                images["augment_seed"] = torch.tensor([ss, st], dtype=torch.int64)
        else:
            src_in, trg_in = self._window_input(src, src_window), self._window_input(trg, trg_window)
            if self.augment is not None:
                src_in, trg_in = self.augment(src_in, generator), self.augment(trg_in, generator)
            images["src_img"], images["trg_img"] = src_in, trg_in

        item: PairItem = {
            **images,
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
            item["src_orig"], item["trg_orig"] = _as_float(src), _as_float(trg)
        return item


def _hw(image) -> tuple[int, int]:
    """``(H, W)`` of a float tensor or a PIL image."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    return int(image.size[1]), int(image.size[0])


def _mirror(image):
    if isinstance(image, torch.Tensor):
        return image.flip(-1)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _as_uint8(image) -> torch.Tensor:
    """``(3, H, W)`` uint8 of a PIL RGB image; a float tensor (an image whose mode needs floats)
    is rounded to 8 bits."""
    if isinstance(image, torch.Tensor):
        return (image * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def _as_float(image) -> torch.Tensor:
    """``(3, H, W)`` float32 in ``[0, 1]``, as :func:`~sosc.data.images.read_image` gives it."""
    if isinstance(image, torch.Tensor):
        return image
    return _as_uint8(image).float().div_(255.0)


def finish_batch(batch: PairBatch) -> PairBatch:
    """Finish a batch of a ``resample="device"`` dataset where it lives (its device): resample each
    ``src_raw``/``trg_raw`` through its window with :func:`~sosc.geometry.resample_window` into
    ``src_img``/``trg_img`` ``(B, 3, S_h, S_w)`` float in ``[0, 1]``, then apply the deferred
    photometric augmentation (:func:`~sosc.data.augment.apply_photometric_batch`). The raw
    images and the deferred keys are removed. Any other batch is returned as it is.
    """
    if "src_raw" not in batch:
        return batch
    size = tuple(int(v) for v in batch.pop("resample_size")[0].tolist())
    for side in ("src", "trg"):
        raw = batch.pop(f"{side}_raw")
        windows = batch[f"{side}_window"]
        batch[f"{side}_img"] = torch.stack([
            resample_window(image.float().div_(255.0), window, size) for image, window in zip(raw, windows)
        ])
    if "augment" in batch:
        factors, seeds = batch.pop("augment"), batch.pop("augment_seed")
        batch["src_img"] = apply_photometric_batch(batch["src_img"], factors[:, 0], seeds[:, 0])
        batch["trg_img"] = apply_photometric_batch(batch["trg_img"], factors[:, 1], seeds[:, 1])
    return batch


#: Keys whose per-item values differ in shape and stay lists in a batch.
LIST_KEYS = ("src_orig", "trg_orig", "src_raw", "trg_raw")


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
