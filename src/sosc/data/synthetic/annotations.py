"""The annotation records of the SPair-71k layout, built from a pair's plan.

Names: image stems are ``<category>_<split>_<index:05d>_<view>`` (``view`` 0 = source,
1 = target), layout lines ``<pair_id>-<src_stem>-<trg_stem>:<category>``. Keypoints are
continuous pixels rounded to 2 decimals, ``null`` in an image annotation when not visible;
a pair keeps the keypoints visible in both images. Field orders are part of the format (the
files are compared byte for byte).
"""

from __future__ import annotations

import numpy as np

from sosc.data.synthetic.plan import Instance, PairPlan, View


def image_stem(category: str, split: str, index: int, view: int) -> str:
    """The file stem of view ``view`` (0 source, 1 target) of pair ``index`` of ``split``."""
    return f"{category}_{split}_{index:05d}_{view}"


def layout_line(index: int, stems: tuple[str, str], category: str) -> str:
    """The pair's line in ``Layout/large/<split>.txt`` (also its annotation's file stem)."""
    return f"{index}-{stems[0]}-{stems[1]}:{category}"


def _xy(p: np.ndarray) -> list[float]:
    """A point ``(2,)`` as ``[x, y]`` rounded to 2 decimals."""
    return [round(float(p[0]), 2), round(float(p[1]), 2)]


def image_annotation(stem: str, view: View, instance: Instance, occluded: bool) -> dict:
    """``ImageAnnotation/<category>/<stem>.json``: size, box, every keypoint (``null`` when
    not visible), the truncation and occlusion flags and the photographs used."""
    w, h = view.size_wh
    return {
        "filename": f"{stem}.jpg",
        "category": instance.category,
        "image_width": w,
        "image_height": h,
        "image_depth": 3,
        "bndbox": list(view.bbox),
        "kps": {str(k): (_xy(p) if view.visible[k] else None) for k, p in enumerate(view.kps_px)},
        "truncated": int(view.truncated),
        "occluded": int(occluded),
        "source_photo": instance.texture_photo,
        "background_photo": view.background_photo,
        "occluder_photo": view.occluder.photo if view.occluder is not None else None,
    }


def pair_annotation(index: int, stems: tuple[str, str], plan: PairPlan, occluded: tuple[bool, bool]) -> dict:
    """``PairAnnotation/<split>/<line>.json``: the two images, their boxes, the keypoints
    visible in both (ids as strings, in id order) and SPair-71k's four difficulty flags
    (``truncation`` / ``occlusion``: 0 none, 1 source, 2 target, 3 both)."""
    src, trg = plan.views
    common = np.flatnonzero(src.visible & trg.visible)
    return {
        "pair_id": index,
        "src_imname": f"{stems[0]}.jpg",
        "trg_imname": f"{stems[1]}.jpg",
        "src_imsize": [src.size_wh[0], src.size_wh[1], 3],
        "trg_imsize": [trg.size_wh[0], trg.size_wh[1], 3],
        "src_bndbox": list(src.bbox),
        "trg_bndbox": list(trg.bbox),
        "src_pose": 0,
        "trg_pose": 0,
        "src_kps": [_xy(src.kps_px[k]) for k in common],
        "trg_kps": [_xy(trg.kps_px[k]) for k in common],
        "kps_ids": [str(int(k)) for k in common],
        "category": plan.category,
        "mirror": 0,
        "viewpoint_variation": plan.viewpoint_variation(),
        "scale_variation": plan.scale_variation(),
        "truncation": int(src.truncated) + 2 * int(trg.truncated),
        "occlusion": int(occluded[0]) + 2 * int(occluded[1]),
    }
