"""Benchmark-independent description of one annotated pair, the PCK bound rules, and the
account of what a reader left out.

Every benchmark reader turns its files into a list of :class:`PairRecord` and a
:class:`SkipReport`; one dataset class (:class:`sosc.data.dataset.PairDataset`) turns
records into network inputs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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

    >>> size_class(np.array([0, 0, 40, 30.0]), (400, 300))
    'small'
    """
    if not np.all(np.isfinite(box)):
        return "unknown"
    rel = max(float(box[2] - box[0]), float(box[3] - box[1])) / float(max(size_hw))
    for name, thr in zip(SIZE_CLASSES, SIZE_THRESHOLDS):
        if rel < thr:
            return name
    return SIZE_CLASSES[-1]


@dataclass
class SkipReport:
    """What a reader or validator left out, and why (never silent).

    ``pairs`` and ``keypoints`` count by reason; ``examples`` keeps, per reason, the first
    few places (``file:line`` or pair id) so that the warning points at the data.
    """

    pairs: Counter = field(default_factory=Counter)
    keypoints: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

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
        out = SkipReport(self.pairs + other.pairs, self.keypoints + other.keypoints)
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
        parts = [f"{n} pairs ({self._why(why)})" for why, n in self.pairs.items()]
        parts += [f"{n} keypoints ({self._why(why)})" for why, n in self.keypoints.items()]
        return ", ".join(parts) if parts else "nothing"
