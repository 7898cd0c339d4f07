"""Which pairs a split holds, and how each pasted view is drawn (sizes, backgrounds, places).

A split lists unordered instance pairs; each is used in both directions. An ordered pair
``(src, trg)`` gives

* one **photo** pair, the two original photographs (only when the instances come from
  different photos), and
* ``repeats`` **pasted** pairs for every (source bin, target bin) in :data:`SIZE_BINS` x
  :data:`SIZE_BINS`: each object pasted into its own background so that the box of the
  pair's common keypoints has a longer side of the bin's size (times a jitter of
  ``exp(U(-0.1, 0.1))``). Source and target bins vary independently, so both large source /
  small target and the reverse occur. A bin that would enlarge the photo more than
  :data:`MAX_UPSCALE` times is skipped for that instance pair.

Each pasted pair draws from its own generator seeded by ``(seed, split, pair index)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sosc.data.real_semantic.annotations import Annotations, Instance, common_keypoints
from sosc.data.real_semantic.compose import Paste, paste_region

#: Keypoint-box sizes (longer side, output px) of the pasted objects; results are reported per bin.
SIZE_BINS = (24, 48, 96, 160)
#: Longer side of every pasted image, px.
IMAGE_SIDE = 480
#: Aspect ratios ``W / H`` of pasted images are drawn log-uniformly in this range.
ASPECT_RANGE = (3 / 4, 4 / 3)
#: Size jitter inside a bin: ``exp(U(-JITTER, JITTER))``.
JITTER = 0.1
#: Largest enlargement of a photograph.
MAX_UPSCALE = 3.0
#: Keypoints of a pasted object stay this many px inside the image.
KP_MARGIN = 6.0
_SPLIT_CODES = {"trn": 0, "val": 1, "test": 2}


def size_bin(size_px: float) -> int:
    """The :data:`SIZE_BINS` entry nearest to ``size_px`` in log scale.

    >>> size_bin(30), size_bin(35), size_bin(130)
    (24, 48, 160)
    """
    return min(SIZE_BINS, key=lambda b: abs(math.log(size_px / b)))


def kp_box_side(inst: Instance, ids: np.ndarray) -> float:
    """Longer side (photo px) of the box of keypoints ``ids`` of ``inst``."""
    pts = inst.kps[ids]
    return float((pts.max(0) - pts.min(0)).max())


@dataclass(frozen=True)
class PastedView:
    """One pasted image: ``instance`` at ``paste`` over ``background`` of ``size_wh``.

    ``bin`` is the nominal keypoint-box size; ``bg_seed`` seeds the background crop."""

    instance: str
    background: str
    size_wh: tuple[int, int]
    paste: Paste
    bin: int
    bg_seed: tuple[int, ...]


@dataclass(frozen=True)
class PairPlan:
    """A pair of a split: ``kind`` ``photo`` (both views None: the original photographs)
    or ``pasted``; ``kps_ids`` the common keypoint indices (ascending)."""

    index: int
    kind: str
    category: str
    src: str
    trg: str
    kps_ids: tuple[int, ...]
    src_view: PastedView | None = None
    trg_view: PastedView | None = None


def _place(
    rng: np.random.Generator, inst: Instance, ids: np.ndarray, photo_wh: tuple[int, int], scale: float, size_wh: tuple[int, int]
) -> Paste:
    """Put the object so that its keypoints ``ids`` are inside the image (with
    :data:`KP_MARGIN`), and the whole object box too when it fits."""
    region, ellipse = paste_region(inst.box, photo_wh)
    origin = (region[0], region[1])
    kp = inst.kps[ids]
    lo_kp = KP_MARGIN - scale * (kp.min(0) - origin)
    hi_kp = np.asarray(size_wh, np.float64) - KP_MARGIN - scale * (kp.max(0) - origin)
    lo_box = -scale * (inst.box[:2] - origin)
    hi_box = np.asarray(size_wh, np.float64) - scale * (inst.box[2:] - origin)
    offset = []
    for axis in (0, 1):
        lo, hi = max(lo_kp[axis], lo_box[axis]), min(hi_kp[axis], hi_box[axis])
        if hi < lo:  # the object box does not fit: only the keypoints must
            lo, hi = lo_kp[axis], hi_kp[axis]
        offset.append(math.floor(rng.uniform(math.ceil(lo), math.floor(hi) + 1)) if hi >= lo + 1 else math.ceil(lo))
    return Paste(scale=float(scale), origin=origin, offset=(int(offset[0]), int(offset[1])), region=region, ellipse=ellipse)


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    aspect = math.exp(rng.uniform(math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1])))
    return (IMAGE_SIDE, round(IMAGE_SIDE / aspect)) if aspect >= 1 else (round(IMAGE_SIDE * aspect), IMAGE_SIDE)


def _feasible(inst: Instance, ids: np.ndarray, bin_px: int) -> bool:
    return bin_px * math.exp(JITTER) / kp_box_side(inst, ids) <= MAX_UPSCALE


def plan_split(
    ann: Annotations, split: str, seed: int, repeats: int, photo_sizes: dict[str, tuple[int, int]]
) -> Iterator[PairPlan]:
    """The pairs of ``split`` in order (``photo_sizes``: photo name -> ``(W, H)``)."""
    if split not in ann.splits:
        return
    plan = ann.splits[split]
    index = 0
    for a, b in plan.instance_pairs:
        for s_name, t_name in ((a, b), (b, a)):
            src, trg = ann.instances[s_name], ann.instances[t_name]
            ids = common_keypoints(src, trg)
            common = tuple(int(k) for k in ids)
            if src.photo != trg.photo:
                yield PairPlan(index, "photo", src.category, s_name, t_name, common)
                index += 1
            for s_bin in SIZE_BINS:
                for t_bin in SIZE_BINS:
                    if not (_feasible(src, ids, s_bin) and _feasible(trg, ids, t_bin)):
                        continue
                    for _ in range(repeats):
                        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
                        bgs = [str(x) for x in rng.choice(plan.backgrounds, size=2, replace=False)]
                        views = []
                        for k, (inst, bin_px, bg) in enumerate(((src, s_bin, bgs[0]), (trg, t_bin, bgs[1]))):
                            size_wh = _image_size(rng)
                            scale = bin_px * math.exp(rng.uniform(-JITTER, JITTER)) / kp_box_side(inst, ids)
                            paste = _place(rng, inst, ids, photo_sizes[inst.photo], scale, size_wh)
                            views.append(PastedView(inst.name, bg, size_wh, paste, bin_px, (seed, _SPLIT_CODES[split], index, k)))
                        yield PairPlan(index, "pasted", src.category, s_name, t_name, common, views[0], views[1])
                        index += 1
