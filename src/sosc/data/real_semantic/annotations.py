"""The hand annotations shipped with the package (``annotations.json``), read and checked.

Coordinates are the photograph's original pixels, ``(x, y)``, continuous convention (pixel
column ``i`` covers ``[i, i + 1)``, its centre is ``i + 0.5``); boxes are
``[x0, y0, x1, y1]`` in the same pixels. A keypoint that is not visible is ``None``.

Instances that share a photograph (the three geese, the two ibises) also carry an ``outline``: a polygon
traced along the object's silhouette, and ``occluders``: the instances of the same photo
that hide part of it. Pasting one of them cuts the others out (see
:mod:`sosc.data.real_semantic.compose`); the parser checks that no visible keypoint of one
instance lies within :data:`OUTLINE_SLACK` + :data:`KEYPOINT_CLEARANCE` px of another's
outline (unless it lies in front of that one), so that no neighbour's keypoint can be pasted.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import numpy as np

from sosc.errors import DatasetError

#: The package-data file, inside ``sosc.data.real_semantic``.
ANNOTATIONS_FILE = "annotations.json"
#: Split names that hold pairs (``trn`` is written empty).
EVAL_SPLITS = ("val", "test")
#: Outlines are grown by this many photo px (traced edges are approximate; a keypoint on
#: the edge, such as a crown or a beak tip, must stay inside its own grown outline).
OUTLINE_SLACK = 2.0
#: A visible keypoint lies at most this far (px) outside its own outline, and at least
#: OUTLINE_SLACK + KEYPOINT_CLEARANCE px from another same-photo instance's outline.
KEYPOINT_ON_OUTLINE = 0.5
KEYPOINT_CLEARANCE = 1.5


@dataclass(frozen=True)
class Photo:
    """A photograph shipped by an installed distribution.

    Attributes:
        name: key in ``annotations.json`` ``photos``.
        package: the distribution's name on PyPI (``pip install <package>``).
        path: the file inside the distribution's install tree (``site-packages/<path>``).
        licence: the photograph's licence and credit.
        version: the distribution version the keypoints were annotated on (None: backgrounds,
            any version does).
        sha256: the file's SHA-256 when keypoints depend on its exact pixels, else None.
    """

    name: str
    package: str
    path: str
    licence: str
    version: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Instance:
    """One annotated object.

    Attributes:
        name: key in ``annotations.json`` ``instances``.
        category: the category it belongs to.
        photo: the :class:`Photo` name it is annotated on.
        box: ``(4,)`` float ``[x0, y0, x1, y1]`` object box, original pixels.
        kps: ``(K, 2)`` float ``(x, y)`` original pixels, NaN where not visible; ``K`` and
            the order are the category's.
        visible: ``(K,)`` bool.
        yaw_deg: coarse heading (0 facing the camera, +90 facing image-right).
        truncated, occluded: the object is cut by the frame / hidden in part in the photo.
        outline: ``(N, 2)`` float polygon along the silhouette (photo px), or None; given for
            every instance whose photo holds other instances.
        occluders: names of same-photo instances in front of this one (they win where the
            outlines overlap).
    """

    name: str
    category: str
    photo: str
    box: np.ndarray
    kps: np.ndarray
    visible: np.ndarray
    yaw_deg: float
    truncated: bool
    occluded: bool
    outline: np.ndarray | None = None
    occluders: tuple[str, ...] = ()


@dataclass(frozen=True)
class SplitPlan:
    """What a split is made of: unordered instance pairs (both directions are used) and
    the background photographs of its pasted images."""

    instance_pairs: tuple[tuple[str, str], ...]
    backgrounds: tuple[str, ...]


@dataclass(frozen=True)
class Annotations:
    """The whole annotation file, checked. ``sha256`` identifies its content (the
    completion marker records it, so that edited annotations regenerate the set)."""

    about: str
    photos: MappingProxyType  # name -> Photo
    keypoint_names: MappingProxyType  # category -> tuple of names
    instances: MappingProxyType  # name -> Instance
    splits: MappingProxyType  # "val"/"test" -> SplitPlan
    sha256: str

    @property
    def categories(self) -> tuple[str, ...]:
        """Category names, in the file's order."""
        return tuple(self.keypoint_names)


def _need(data: dict, key: str, where: str):
    if not isinstance(data, dict) or key not in data:
        raise DatasetError(f"{ANNOTATIONS_FILE}: {where} has no key {key!r}; restore the file from the sosc package")
    return data[key]


def _box(value, where: str) -> np.ndarray:
    box = np.asarray(value, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
        raise DatasetError(f"{ANNOTATIONS_FILE}: {where} box must be [x0, y0, x1, y1] with x1 > x0, y1 > y0, got {value}")
    return box


def outline_distance(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance (px) from points ``(M, 2)`` to the polygon ``(N, 2)``: 0 inside, else the
    distance to its nearest edge (even-odd rule)."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    a, b = np.asarray(poly, np.float64), np.roll(np.asarray(poly, np.float64), -1, axis=0)
    ab = b - a
    ap = pts[:, None, :] - a[None]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    edge = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(1)
    x, y = pts[:, 0:1], pts[:, 1:2]
    crosses = ((a[:, 1] > y) != (b[:, 1] > y)) & (x < a[:, 0] + (y - a[:, 1]) * ab[:, 0] / np.where(ab[:, 1] == 0, 1e-12, ab[:, 1]))
    inside = crosses.sum(1) % 2 == 1
    return np.where(inside, 0.0, edge)


def _check_outlines(instances: dict[str, Instance]) -> None:
    """Outlines and occluders of instances that share a photo (see the module docstring)."""
    by_photo: dict[str, list[Instance]] = {}
    for inst in instances.values():
        by_photo.setdefault(inst.photo, []).append(inst)
    for group in by_photo.values():
        names = {i.name for i in group}
        for inst in group:
            where = f"instances.{inst.name}"
            for occ in inst.occluders:
                if occ not in names or occ == inst.name:
                    raise DatasetError(f"{ANNOTATIONS_FILE}: {where}.occluders: {occ!r} is not another instance of photo {inst.photo!r}")
                if inst.name in instances[occ].occluders:
                    raise DatasetError(f"{ANNOTATIONS_FILE}: {where} and {occ!r} list each other as occluders")
            if len(group) > 1 and inst.outline is None:
                raise DatasetError(
                    f"{ANNOTATIONS_FILE}: {where} needs an outline: photo {inst.photo!r} holds other instances "
                    f"({', '.join(sorted(names - {inst.name}))}) that are cut out of its pastes"
                )
            if inst.outline is None:
                continue
            vis = inst.kps[inst.visible]
            if (outline_distance(inst.outline, vis) > KEYPOINT_ON_OUTLINE).any():
                raise DatasetError(f"{ANNOTATIONS_FILE}: {where}: a visible keypoint lies outside its outline")
            for other in group:
                if other is inst or other.outline is None or inst.name in other.occluders:
                    continue
                if (outline_distance(other.outline, vis) <= OUTLINE_SLACK + KEYPOINT_CLEARANCE).any():
                    raise DatasetError(
                        f"{ANNOTATIONS_FILE}: {where}: a visible keypoint lies on or near the outline of {other.name!r} "
                        f"(closer than {OUTLINE_SLACK + KEYPOINT_CLEARANCE} px); fix the outline, or list "
                        f"{inst.name!r} among {other.name!r}'s occluders if it lies in front"
                    )


def parse_annotations(text: str) -> Annotations:
    """Parse and check the JSON text of an annotation file.

    Raises:
        DatasetError: naming the key at fault (unknown category, photo or instance, wrong
            number of keypoints, keypoint outside its box or outline, a keypoint near another
            same-photo instance's outline, a missing outline, an instance pair across
            categories, an instance pair in both splits).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{ANNOTATIONS_FILE} is not valid JSON ({err}); restore it from the sosc package") from err
    photos = {}
    for name, p in _need(data, "photos", "the file").items():
        photos[name] = Photo(
            name=name, package=_need(p, "package", f"photos.{name}"), path=_need(p, "path", f"photos.{name}"),
            licence=_need(p, "licence", f"photos.{name}"), version=p.get("version"), sha256=p.get("sha256"),
        )
    names = {c: tuple(v) for c, v in _need(data, "categories", "the file").items()}
    instances = {}
    for name, d in _need(data, "instances", "the file").items():
        where = f"instances.{name}"
        category = _need(d, "category", where)
        if category not in names:
            raise DatasetError(f"{ANNOTATIONS_FILE}: {where}.category {category!r} is not one of {list(names)}")
        photo = _need(d, "photo", where)
        if photo not in photos or photos[photo].sha256 is None:
            raise DatasetError(f"{ANNOTATIONS_FILE}: {where}.photo {photo!r} is not a photo with a sha256 in 'photos'")
        raw = _need(d, "keypoints", where)
        if len(raw) != len(names[category]):
            raise DatasetError(
                f"{ANNOTATIONS_FILE}: {where}.keypoints has {len(raw)} entries, category {category!r} has "
                f"{len(names[category])} keypoints ({', '.join(names[category])})"
            )
        kps = np.array([[math.nan, math.nan] if p is None else p for p in raw], dtype=np.float64)
        visible = np.array([p is not None for p in raw])
        box = _box(_need(d, "box", where), where)
        inside = (kps[visible] >= box[:2]) & (kps[visible] <= box[2:])
        if not inside.all():
            raise DatasetError(f"{ANNOTATIONS_FILE}: {where}: a visible keypoint lies outside its box {box.tolist()}")
        if visible.sum() < 3:
            raise DatasetError(f"{ANNOTATIONS_FILE}: {where} needs at least 3 visible keypoints")
        outline = None
        if d.get("outline") is not None:
            outline = np.asarray(d["outline"], dtype=np.float64)
            if outline.ndim != 2 or outline.shape[1] != 2 or len(outline) < 3:
                raise DatasetError(f"{ANNOTATIONS_FILE}: {where}.outline must be a list of at least 3 [x, y] points")
            outline.setflags(write=False)
        kps.setflags(write=False)
        visible.setflags(write=False)
        box.setflags(write=False)
        instances[name] = Instance(
            name=name, category=category, photo=photo, box=box, kps=kps, visible=visible,
            yaw_deg=float(_need(d, "yaw_deg", where)), truncated=bool(_need(d, "truncated", where)),
            occluded=bool(_need(d, "occluded", where)), outline=outline,
            occluders=tuple(d.get("occluders", ())),
        )
    _check_outlines(instances)
    splits = {}
    seen: dict[frozenset, str] = {}
    for split in EVAL_SPLITS:
        d = _need(_need(data, "splits", "the file"), split, "splits")
        pairs = []
        for a, b in _need(d, "instance_pairs", f"splits.{split}"):
            for n in (a, b):
                if n not in instances:
                    raise DatasetError(f"{ANNOTATIONS_FILE}: splits.{split}: unknown instance {n!r}")
            if a == b or instances[a].category != instances[b].category:
                raise DatasetError(f"{ANNOTATIONS_FILE}: splits.{split}: [{a!r}, {b!r}] must be two instances of one category")
            key = frozenset((a, b))
            if key in seen:
                raise DatasetError(f"{ANNOTATIONS_FILE}: instance pair [{a!r}, {b!r}] is in both {seen[key]} and {split}")
            seen[key] = split
            pairs.append((a, b))
        backgrounds = tuple(_need(d, "backgrounds", f"splits.{split}"))
        for bg in backgrounds:
            if bg not in photos:
                raise DatasetError(f"{ANNOTATIONS_FILE}: splits.{split}.backgrounds: unknown photo {bg!r}")
        splits[split] = SplitPlan(tuple(pairs), backgrounds)
    return Annotations(
        about=_need(data, "about", "the file"),
        photos=MappingProxyType(photos),
        keypoint_names=MappingProxyType(names),
        instances=MappingProxyType(instances),
        splits=MappingProxyType(splits),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def load_annotations() -> Annotations:
    """The annotations shipped as package data (``sosc/data/real_semantic/annotations.json``).

    Raises:
        DatasetError: the file is missing (a broken install: reinstall ``sosc``) or invalid.
    """
    try:
        text = resources.files(__package__).joinpath(ANNOTATIONS_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as err:
        raise DatasetError(
            f"the package data file sosc/data/real_semantic/{ANNOTATIONS_FILE} is missing ({err}); "
            "reinstall sosc (pip install --force-reinstall .) so that setuptools ships it"
        ) from err
    return parse_annotations(text)


def common_keypoints(a: Instance, b: Instance) -> np.ndarray:
    """Indices ``(N,)`` of the keypoints visible in both instances, ascending."""
    return np.flatnonzero(a.visible & b.visible)
