"""Benchmark-independent description of one annotated pair, the PCK bound rules, and the
account of what a reader left out.

Every benchmark reader turns its files into a list of :class:`PairRecord` and a
:class:`SkipReport`; one dataset class (:class:`sosc.data.dataset.PairDataset`) turns
records into network inputs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sosc.errors import DatasetError

#: PCK threshold kinds: ``bbox`` max side of the target object box (SPair-71k),
#: ``img`` max side of the target image (PF-PASCAL), ``bbox-kp`` max extent of the
#: valid target keypoints (PF-WILLOW).
BOUND_KINDS = ("bbox", "img", "bbox-kp")

#: Relative object size ``max(box_w, box_h) / max(W, H)`` of the target object:
#: ``small`` below the first threshold, ``medium`` below the second, ``large`` above.
SIZE_THRESHOLDS = (0.25, 0.5)
SIZE_CLASSES = ("small", "medium", "large")

#: SPair-71k difficulty flags, in the order they are reported.
DIFFICULTY_FLAGS = ("viewpoint_variation", "scale_variation", "truncation", "occlusion")


@dataclass
class PairRecord:
    """One annotated pair, in original pixels, before any image is read.

    Attributes:
        pair_id: unique within the split.
        src_path, trg_path: image files.
        src_kps, trg_kps: ``(N, 2)`` float ``(x, y)`` original pixels, the keypoints present
            in both images, in matching order.
        category: class name; ``category_id`` its index in the benchmark's class list.
        bound: PCK threshold kind, one of :data:`BOUND_KINDS`.
        src_bbox, trg_bbox: ``(4,)`` object boxes ``(x0, y0, x1, y1)``, NaN when unknown.
        flip: use both images mirrored horizontally (PF-PASCAL's ``flip`` column).
        flags: SPair-71k difficulty flags (empty for other benchmarks).
        source: the annotation file (and line) the record came from, for error messages.
    """

    pair_id: str
    src_path: Path
    trg_path: Path
    src_kps: np.ndarray
    trg_kps: np.ndarray
    category: str
    category_id: int
    bound: str
    src_bbox: np.ndarray = field(default_factory=lambda: np.full(4, np.nan, dtype=np.float32))
    trg_bbox: np.ndarray = field(default_factory=lambda: np.full(4, np.nan, dtype=np.float32))
    flip: bool = False
    flags: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def num_kps(self) -> int:
        return int(self.src_kps.shape[0])


def pck_bound(kind: str, trg_bbox: np.ndarray, trg_size_hw: tuple[int, int], trg_kps: np.ndarray) -> float:
    """The ``L`` of PCK in original target pixels.

    Args:
        kind: ``bbox``, ``img`` or ``bbox-kp`` (see :data:`BOUND_KINDS`).
        trg_bbox: ``(4,)`` target object box.
        trg_size_hw: target image ``(H, W)``.
        trg_kps: ``(N, 2)`` the **valid** target keypoints only (no padding).

    >>> pck_bound("bbox", np.array([10, 20, 110, 70.0]), (300, 400), np.zeros((0, 2)))
    100.0
    >>> pck_bound("img", np.full(4, np.nan), (300, 400), np.zeros((0, 2)))
    400.0
    >>> pck_bound("bbox-kp", np.full(4, np.nan), (300, 400), np.array([[5, 5], [25, 45.0]]))
    40.0
    """
    if kind == "bbox":
        w, h = float(trg_bbox[2] - trg_bbox[0]), float(trg_bbox[3] - trg_bbox[1])
        value = max(w, h)
    elif kind == "img":
        value = float(max(trg_size_hw))
    elif kind == "bbox-kp":
        if len(trg_kps) == 0:
            return float("nan")
        extent = trg_kps.max(axis=0) - trg_kps.min(axis=0)
        value = float(extent.max())
    else:
        raise ValueError(f"unknown PCK bound kind {kind!r}; expected one of {BOUND_KINDS}")
    return value


def size_class(box: np.ndarray, size_hw: tuple[int, int]) -> str:
    """``small``, ``medium`` or ``large`` from an object box relative to its image.

    ``max(box_w, box_h) / max(H, W)`` against :data:`SIZE_THRESHOLDS` (below 0.25 small,
    below 0.5 medium, else large); ``unknown`` when the box has a non-finite value (no box).

    Args:
        box: ``(4,)`` ``(x1, y1, x2, y2)`` pixels.
        size_hw: the image ``(H, W)``.

    >>> size_class(np.array([0, 0, 40, 30.0]), (400, 300))
    'small'
    >>> size_class(np.full(4, np.nan), (400, 300))
    'unknown'
    """
    if not np.all(np.isfinite(box)):
        return "unknown"
    rel = max(float(box[2] - box[0]), float(box[3] - box[1])) / float(max(size_hw))
    for name, thr in zip(SIZE_CLASSES, SIZE_THRESHOLDS):
        if rel < thr:
            return name
    return SIZE_CLASSES[-1]


#: How far (pixels) an object box may exceed its image and still be accepted, clipped to
#: the image: annotation tools round boxes outward, or count the last pixel as ``W`` or ``W + 1``.
BOX_TOLERANCE = 2.0

#: :class:`SkipReport` reason of a pair left out because an object box lies outside its image.
BOX_OUTSIDE = "object box outside the image"


class BoxOutsideImage(DatasetError):
    """An object box exceeds its image by more than the tolerance (see :func:`fit_box`).

    Readers raise it with ``strict=True``; with ``strict=False`` they skip the pair and count
    it in their :class:`SkipReport` under :data:`BOX_OUTSIDE`.
    """


def fit_box(box: np.ndarray, size_hw: tuple[int, int], tolerance: float = BOX_TOLERANCE) -> np.ndarray | None:
    """An object box checked against its image: clipped to it, or None when it lies further outside.

    Conventions: ``box`` is ``(4,)`` ``(x1, y1, x2, y2)`` in pixels of the image, which spans
    ``[0, W] x [0, H]`` (as keypoints do: ``x2 = W`` touches the right edge). A box whose
    sides exceed that range by at most ``tolerance`` pixels is clipped to it; a box further
    outside, one with a non-finite coordinate, or one with no area after clipping
    (``x2 <= x1`` or ``y2 <= y1``) gives None. An all-NaN box means "unknown" (PF-WILLOW
    has no boxes) and is returned as it is.

    Args:
        box: ``(4,)`` the box.
        size_hw: the image ``(H, W)``.
        tolerance: pixels a side may lie outside the image.

    Returns:
        ``(4,)`` float32, or None.

    >>> fit_box(np.array([-1.0, 0, 207, 100]), (205, 206)).tolist()
    [0.0, 0.0, 206.0, 100.0]
    >>> fit_box(np.array([0.0, 0, 5000, 5000]), (205, 206)) is None
    True
    """
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    if box.shape != (4,):
        return None
    if np.isnan(box).all():
        return box.astype(np.float32)
    if not np.isfinite(box).all():
        return None
    h, w = float(size_hw[0]), float(size_hw[1])
    x1, y1, x2, y2 = box
    if min(x1, y1) < -tolerance or x2 > w + tolerance or y2 > h + tolerance:
        return None
    out = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h)])
    if not (out[2] > out[0] and out[3] > out[1]):
        return None
    return out.astype(np.float32)


def fit_box_to_image(
    box: np.ndarray, size_hw: tuple[int, int], *, what: str, image: Path | str, tolerance: float = BOX_TOLERANCE
) -> np.ndarray:
    """:func:`fit_box`, raising :class:`BoxOutsideImage` instead of returning None.

    Args:
        box: ``(4,)`` ``(x1, y1, x2, y2)`` pixels of ``image``.
        size_hw: ``image``'s ``(H, W)``.
        what: the annotation file and key, for the message (``".../pair.json: trg_bndbox"``).
        image: the image file, for the message.
        tolerance: pixels a side may lie outside the image.

    Raises:
        BoxOutsideImage: naming ``what``, the box, the image and its size, and the fix.
    """
    fitted = fit_box(box, size_hw, tolerance)
    if fitted is None:
        h, w = size_hw
        values = np.asarray(box, dtype=np.float64).reshape(-1).tolist()
        raise BoxOutsideImage(
            f"{what} {values} does not lie within image {image} of size W={w}, H={h} (boxes are "
            f"[x1, y1, x2, y2] pixels of their image; up to {tolerance:g} px outside is clipped): the PCK "
            "threshold and the size class would be computed from it. Fix the box in the annotation, or "
            "pass strict=False (data.strict: false) to skip such pairs (they are counted and reported)"
        )
    return fitted


def fit_record_boxes(
    rec: PairRecord, src_hw: tuple[int, int], trg_hw: tuple[int, int], tolerance: float = BOX_TOLERANCE
) -> PairRecord:
    """``rec`` with both object boxes checked against their images (:func:`fit_box`): clipped
    when within ``tolerance`` px, unchanged when unknown (all NaN).

    Args:
        rec: the pair; its boxes in original pixels of the unflipped images.
        src_hw, trg_hw: ``(H, W)`` of ``rec.src_path`` and ``rec.trg_path``.
        tolerance: pixels a side may lie outside its image.

    Raises:
        BoxOutsideImage: a box further outside, naming ``rec.source`` (or the pair id), the
            side, the box and the image size.
    """
    where = rec.source or rec.pair_id
    src_bbox = fit_box_to_image(rec.src_bbox, src_hw, what=f"{where}: source object box", image=rec.src_path,
                                tolerance=tolerance)
    trg_bbox = fit_box_to_image(rec.trg_bbox, trg_hw, what=f"{where}: target object box", image=rec.trg_path,
                                tolerance=tolerance)
    return replace(rec, src_bbox=src_bbox, trg_bbox=trg_bbox)


@dataclass
class SkipReport:
    """What a reader or validator left out, and why (never silent), and which split file it read.

    Attributes:
        pairs: pairs left out, counted by reason.
        keypoints: keypoints left out (from pairs that were kept or not), by reason.
        examples: per reason, the first :attr:`max_examples` places (``file:line``, an
            annotation file or a pair id) so that the warning points at the data.
        split_file: the file that lists the split's pairs (SPair-71k's layout file,
            PF-PASCAL's and PF-WILLOW's CSV), so that an empty split can name it; None when
            unknown.

    >>> report = SkipReport()
    >>> report.skip_pair("no keypoint in common", "test.txt:2")
    >>> report.skip_keypoints("outside the image", 3, "a.json")
    >>> report.summary()
    '1 pairs (no keypoint in common; e.g. test.txt:2), 3 keypoints (outside the image; e.g. a.json)'
    """

    pairs: Counter = field(default_factory=Counter)
    keypoints: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    split_file: Path | None = None

    #: Places kept per reason.
    max_examples = 3

    def _example(self, reason: str, where: str) -> None:
        if where:
            kept = self.examples.setdefault(reason, [])
            if len(kept) < self.max_examples:
                kept.append(where)

    def skip_pair(self, reason: str, where: str = "") -> None:
        """Count one pair left out for ``reason`` (``where``: the file and line or pair id)."""
        self.pairs[reason] += 1
        self._example(reason, where)

    def skip_keypoints(self, reason: str, count: int, where: str = "") -> None:
        """Count ``count`` keypoints left out for ``reason``."""
        if count:
            self.keypoints[reason] += count
            self._example(reason, where)

    def merge(self, other: SkipReport) -> SkipReport:
        """A new report with both reports' counts added, their examples (up to
        :attr:`max_examples` per reason, ``self``'s first) and ``self``'s split file (else ``other``'s)."""
        out = SkipReport(
            self.pairs + other.pairs, self.keypoints + other.keypoints,
            split_file=self.split_file if self.split_file is not None else other.split_file,
        )
        for source in (self.examples, other.examples):
            for reason, places in source.items():
                for where in places:
                    out._example(reason, where)
        return out

    def __bool__(self) -> bool:
        return bool(self.pairs) or bool(self.keypoints)

    def _why(self, reason: str) -> str:
        places = self.examples.get(reason)
        return f"{reason}; e.g. {', '.join(places)}" if places else reason

    def summary(self) -> str:
        """``"<n> pairs (<reason>; e.g. <places>), <m> keypoints (...)"``, or ``"nothing"``."""
        parts = [f"{n} pairs ({self._why(why)})" for why, n in self.pairs.items()]
        parts += [f"{n} keypoints ({self._why(why)})" for why, n in self.keypoints.items()]
        return ", ".join(parts) if parts else "nothing"


def empty_split_error(benchmark: str, split: str, report: SkipReport, hint: str = "") -> DatasetError:
    """The error for a split with no pair left to train or evaluate on.

    Names the benchmark and split, the split file (``report.split_file``), what was skipped
    (``report.summary()``, or that the file lists no pair), and what to do; ``hint`` is
    appended (where the benchmark's split files come from).

    >>> print(empty_split_error("SPair-71k", "val", SkipReport(split_file=Path("Layout/large/val.txt"))))
    SPair-71k val split has no pair: Layout/large/val.txt lists none. Put the benchmark's published val split file there (re-extracting the dataset's archive restores it); a split needs at least one pair.
    """
    source = str(report.split_file) if report.split_file is not None else f"the {split} split file"
    if report.pairs:
        what = f"every pair listed in {source} was left out: {report.summary()}"
        todo = (
            "Fix the annotations named there (or re-extract the dataset: a complete download has "
            "usable pairs in every split); a split needs at least one pair with a keypoint in both images"
        )
    else:
        what = f"{source} lists none"
        todo = (
            f"Put the benchmark's published {split} split file there (re-extracting the dataset's "
            "archive restores it); a split needs at least one pair"
        )
    tail = f" {hint}" if hint else ""
    return DatasetError(f"{benchmark} {split} split has no pair: {what}. {todo}.{tail}")
