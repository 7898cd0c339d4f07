"""Writing the set in the SPair-71k layout, with a completion marker.

Tree (read unchanged by :func:`sosc.data.spair.read_spair`)::

    root/
      JPEGImages/<category>/<stem>.jpg
      ImageAnnotation/<category>/<stem>.json     # per image: instance, photo, paste transform, all keypoints
      PairAnnotation/{trn,val,test}/<line>.json
      Layout/large/{trn,val,test}.txt            # "<pair_id>-<src_stem>-<trg_stem>:<category>"; trn is empty
      .sosc-complete.json                        # generator, version, parameters, annotations' SHA-256,
                                                 # and the path and size of every file written

Stems: an original photograph is ``<instance>``; a pasted image is
``<category>_<split>_<pair index:05d>_<0 source | 1 target>``. The set is written into a
sibling ``<root>.partial-<random>`` folder renamed to ``root`` when complete (leftovers of
an interrupted run are removed), so the same parameters give the same bytes and an
interrupted run is redone from scratch. A set damaged after it was written (a folder
deleted, a file missing or cut short) is found against the marker's file record by the
next :func:`generate_real_semantic` (one ``stat`` per file), which writes the set again
into a sibling folder and puts back the damaged files, with a warning; a set written
before markers recorded files is checked through its layout files and, if damaged, named
with what to delete.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import warnings
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from sosc.data.manifest import (
    FILES_KEY,
    Damage,
    find_damage,
    layout_damage,
    list_files,
    recorded_files,
)
from sosc.data.real_semantic.annotations import Annotations, Instance, load_annotations
from sosc.data.real_semantic.compose import KeepMap, background_view, composite, instance_keep
from sosc.data.real_semantic.pairs import PairPlan, PastedView, plan_split, size_bin
from sosc.data.real_semantic.photos import PhotoCache
from sosc.errors import ConfigError, DatasetError

#: Bumped whenever the generated content changes for the same parameters and annotations.
GENERATOR_VERSION = "2"
GENERATOR_NAME = "sosc.data.real_semantic"
MARKER_NAME = ".sosc-complete.json"
JPEG_QUALITY = 92
SPLITS = ("trn", "val", "test")
_VIEWPOINT_THRESHOLDS = (17.5, 37.5)  # degrees of heading difference
_SCALE_THRESHOLDS = (1.5, 2.25)  # ratio of relative object sizes


@dataclass(frozen=True)
class RealSemanticSpec:
    """The parameters that determine the set.

    Attributes:
        seed: non-negative base seed.
        val_repeats, test_repeats: pasted pairs per (source bin, target bin) cell and
            ordered instance pair, in ``val`` and ``test``.
    """

    seed: int = 0
    val_repeats: int = 2
    test_repeats: int = 1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"real-semantic set: {name} must be a non-negative int, got {value!r}")

    def repeats(self, split: str) -> int:
        return {"trn": 0, "val": self.val_repeats, "test": self.test_repeats}[split]

    def marker(self, ann: Annotations) -> dict:
        return {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, **asdict(self), "annotations_sha256": ann.sha256}


def _read_marker(root: Path) -> dict | None:
    path = root / MARKER_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"completion marker {path} cannot be read ({err}): delete {root} (rm -r) and generate again") from err
    if not isinstance(data, dict):
        raise DatasetError(f"completion marker {path} is not a JSON object: delete {root} and generate again")
    return data


def is_complete(root: str | Path) -> bool:
    """Whether ``root`` holds a completely written real-semantic set (any parameters)."""
    try:
        marker = _read_marker(Path(root))
    except DatasetError:
        return False
    return marker is not None and marker.get("generator") == GENERATOR_NAME


def _check_existing(root: Path, want: dict) -> bool:
    """True when ``root`` holds this very set, False when it is an empty folder; raises otherwise."""
    if not root.is_dir():
        raise DatasetError(f"{root} exists and is not a folder: choose another root for the real-semantic set")
    marker = _read_marker(root)
    if marker is not None:
        marker = {k: v for k, v in marker.items() if k != FILES_KEY}
        diffs = [f"{k}: {marker.get(k)!r} on disk, {want.get(k)!r} asked" for k in sorted(set(marker) | set(want)) if marker.get(k) != want.get(k)]
        if not diffs:
            return True
        raise DatasetError(
            f"{root} holds a real-semantic set made with other parameters or annotations ({'; '.join(diffs)}): "
            f"delete it (rm -r {root}) to generate the new one there, or choose another root"
        )
    if any(root.iterdir()):
        raise DatasetError(
            f"{root} exists, is not empty and has no {MARKER_NAME}: it is not a set written by sosc (or its "
            "writing never finished) and will not be overwritten; choose an empty or new folder, or delete this one"
        )
    return False


def pair_paths(split: str, line: str) -> list[str]:
    """The files of the pair on layout line ``line`` of ``split`` that the line names (its pair
    annotation; the images are named inside it, see :func:`tree_damage`)."""
    return [f"PairAnnotation/{split}/{line}.json"]


def _pair_and_images(root: Path):
    """``pair_paths`` plus the two images and image annotations the pair annotation names."""

    def paths(split: str, line: str) -> list[str]:
        out = pair_paths(split, line)
        try:
            pair = json.loads((root / out[0]).read_text())
            category = pair["category"]
            stems = [Path(pair["src_imname"]).stem, Path(pair["trg_imname"]).stem]
        except (OSError, ValueError, KeyError, TypeError):
            return out  # a missing or unreadable pair annotation is reported as missing or not at all
        for stem in stems:
            out += [f"JPEGImages/{category}/{stem}.jpg", f"ImageAnnotation/{category}/{stem}.json"]
        return out

    return paths


def tree_damage(root: Path, marker: dict) -> tuple[Damage, bool]:
    """What the set at ``root`` lacks against its marker, and whether the marker records its files
    (without a record, older sets: every layout file, and every file of every pair it lists)."""
    record = recorded_files(marker)
    if record is not None:
        return find_damage(root, record), True
    return layout_damage(root, SPLITS, _pair_and_images(root)), False


def _delete_advice(root: Path) -> str:
    return (f"delete the folder {root} (rm -r {root}) and generate the set again (the same parameters give "
            "the same bytes), or choose another root")


def _check_and_repair(root: Path, spec: RealSemanticSpec, ann: Annotations, marker: dict) -> None:
    """Check the set at ``root`` against its marker; put back what is damaged (warns), or raise
    :class:`DatasetError` saying what to delete."""
    damage, recorded = tree_damage(root, marker)
    if not damage:
        return
    if not recorded:
        raise DatasetError(
            f"the real-semantic set {root} is damaged ({damage.describe()}): its completion marker says complete "
            f"but was written before sets recorded their files, so it cannot be repaired in place: {_delete_advice(root)}"
        )
    tmp = root.with_name(f"{root.name}.partial-{secrets.token_hex(6)}")  # removed by the next run if left over
    try:
        tmp.mkdir()
        write_all(tmp, spec, ann)
        for rel in damage.paths:
            if (tmp / rel).is_file():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, root / rel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    still, _ = tree_damage(root, marker)
    if still:
        raise DatasetError(
            f"the real-semantic set {root} is damaged ({damage.describe()}) and writing it again did not restore "
            f"{still.describe()}: {_delete_advice(root)}"
        )
    warnings.warn(
        f"the real-semantic set {root} was damaged ({damage.describe()}): wrote it again and put back "
        f"{len(damage.paths)} file(s); it matches its completion marker again",
        UserWarning,
        stacklevel=3,
    )


def generate_real_semantic(root: str | Path, seed: int = 0, *, val_repeats: int = 2, test_repeats: int = 1) -> Path:
    """Write the real-semantic evaluation set in the SPair-71k layout under ``root``.

    Returns at once when ``root`` already holds the set made with the same parameters and
    annotations and every file its marker records; files deleted or changed since are put
    back (the set is written again into a sibling folder, with a warning). See
    :mod:`sosc.data.real_semantic` for the content and conventions.

    Args:
        root: the folder to create (its parent is created if needed).
        seed: non-negative base seed (sizes, places, backgrounds of pasted pairs).
        val_repeats, test_repeats: pasted pairs per size cell and ordered instance pair.

    Returns:
        ``root`` as an absolute path.

    Raises:
        DatasetError: ``root`` holds another set or unrelated files, or a damaged set that
            cannot be repaired in place (the message says what to delete); a photo's package is
            missing or holds another file than the annotated one.
        ConfigError: a parameter is invalid.
    """
    spec = RealSemanticSpec(seed=seed, val_repeats=val_repeats, test_repeats=test_repeats)
    ann = load_annotations()
    root = Path(root).expanduser().absolute()
    if root.parent.is_dir():
        for leftover in sorted(root.parent.iterdir()):
            if leftover.name.startswith(f"{root.name}.partial-") and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
    if root.exists() and _check_existing(root, spec.marker(ann)):
        _check_and_repair(root, spec, ann, _read_marker(root) or {})
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.partial-{secrets.token_hex(6)}")
    try:
        tmp.mkdir()
        write_all(tmp, spec, ann)
        marker = {**spec.marker(ann), FILES_KEY: list_files(tmp)}
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")
        if root.exists():
            root.rmdir()
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _jpeg(arr: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _xy(p: np.ndarray) -> list[float]:
    return [round(float(p[0]), 2), round(float(p[1]), 2)]


def _int_box(box: np.ndarray, size_wh: tuple[int, int]) -> tuple[list[int], bool]:
    """Floor/ceil of a float box clipped to the image, and whether it was clipped."""
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    clipped = [max(0, x0), max(0, y0), min(size_wh[0], x1), min(size_wh[1], y1)]
    return clipped, clipped != [x0, y0, x1, y1]


@dataclass(frozen=True)
class _Written:
    stem: str
    size_wh: tuple[int, int]
    kps: np.ndarray  # (K, 2) all category keypoints in this image, NaN where not visible
    box: list[int]
    truncated: bool
    occluded: bool
    rel_size: float  # longer side of the unclipped object box / longer image side


def _inside(kps: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    return np.isfinite(kps).all(1) & (kps[:, 0] >= 0) & (kps[:, 1] >= 0) & (kps[:, 0] < size_wh[0]) & (kps[:, 1] < size_wh[1])


def _write_photo(out: Path, inst: Instance, photos: PhotoCache, ann: Annotations, done: dict[str, _Written]) -> _Written:
    """The original photograph of ``inst`` (written once per category)."""
    if inst.name in done:
        return done[inst.name]
    arr = photos.get(ann.photos[inst.photo])
    size_wh = (arr.shape[1], arr.shape[0])
    box, _ = _int_box(inst.box, size_wh)
    written = _Written(inst.name, size_wh, inst.kps, box, inst.truncated, inst.occluded,
                       float(np.max(inst.box[2:] - inst.box[:2]) / max(size_wh)))
    (out / "JPEGImages" / inst.category / f"{inst.name}.jpg").write_bytes(_jpeg(arr))
    _write_image_annotation(out, inst, written, photo=inst.photo, background=None, view=None)
    done[inst.name] = written
    return written


def _write_pasted(
    out: Path, stem: str, inst: Instance, view: PastedView, photos: PhotoCache, ann: Annotations, keep: KeepMap | None
) -> _Written:
    photo = photos.get(ann.photos[inst.photo])
    bg = background_view(photos.get(ann.photos[view.background]), view.size_wh, np.random.default_rng(list(view.bg_seed)))
    img = composite(bg, photo, view.paste, keep)
    (out / "JPEGImages" / inst.category / f"{stem}.jpg").write_bytes(_jpeg(img))
    kps = view.paste.map_points(inst.kps)
    kps[~_inside(kps, view.size_wh)] = np.nan
    obj = view.paste.map_box(inst.box)
    box, clipped = _int_box(obj, view.size_wh)
    written = _Written(stem, view.size_wh, kps, box, clipped or inst.truncated, inst.occluded,
                       float(np.max(obj[2:] - obj[:2]) / max(view.size_wh)))
    _write_image_annotation(out, inst, written, photo=inst.photo, background=view.background, view=view,
                            removed=keep.removed if keep is not None else ())
    return written


def _write_image_annotation(
    out: Path, inst: Instance, w: _Written, *, photo: str, background: str | None, view: PastedView | None,
    removed: tuple[str, ...] = (),
) -> None:
    annotation = {
        "filename": f"{w.stem}.jpg",
        "category": inst.category,
        "instance": inst.name,
        "image_width": w.size_wh[0],
        "image_height": w.size_wh[1],
        "image_depth": 3,
        "bndbox": w.box,
        "kps": {str(k): (_xy(p) if np.isfinite(p).all() else None) for k, p in enumerate(w.kps)},
        "truncated": int(w.truncated),
        "occluded": int(w.occluded),
        "source_photo": photo,
        "background_photo": background,
        "paste": None if view is None else {
            "scale": view.paste.scale, "origin": list(view.paste.origin), "offset": list(view.paste.offset),
            "kp_bin": view.bin, "removed_instances": list(removed),
        },
    }
    (out / "ImageAnnotation" / inst.category / f"{w.stem}.json").write_text(json.dumps(annotation, indent=1) + "\n")


def _flag(value: float, thresholds: tuple[float, float]) -> int:
    return int(np.searchsorted(thresholds, value, side="right"))


def _write_pair(
    out: Path, split: str, plan: PairPlan, photos: PhotoCache, ann: Annotations, done: dict[str, _Written],
    keeps: dict[str, KeepMap | None],
) -> str:
    src, trg = ann.instances[plan.src], ann.instances[plan.trg]
    if plan.kind == "photo":
        ws, wt = _write_photo(out, src, photos, ann, done), _write_photo(out, trg, photos, ann, done)
    else:
        ws = _write_pasted(out, f"{plan.category}_{split}_{plan.index:05d}_0", src, plan.src_view, photos, ann, keeps[src.name])
        wt = _write_pasted(out, f"{plan.category}_{split}_{plan.index:05d}_1", trg, plan.trg_view, photos, ann, keeps[trg.name])
    ids = np.array(plan.kps_ids, dtype=int)
    for w in (ws, wt):
        if not _inside(w.kps[ids], w.size_wh).all():
            raise RuntimeError(f"real-semantic set: a keypoint of {w.stem} left its image (generator bug)")
    src_side = float((ws.kps[ids].max(0) - ws.kps[ids].min(0)).max())
    trg_side = float((wt.kps[ids].max(0) - wt.kps[ids].min(0)).max())
    yaw = abs((src.yaw_deg - trg.yaw_deg + 180.0) % 360.0 - 180.0)
    rho = max(ws.rel_size, wt.rel_size) / min(ws.rel_size, wt.rel_size)
    line = f"{plan.index}-{ws.stem}-{wt.stem}:{plan.category}"
    names = ann.keypoint_names[plan.category]
    pair = {
        "pair_id": plan.index,
        "src_imname": f"{ws.stem}.jpg",
        "trg_imname": f"{wt.stem}.jpg",
        "src_imsize": [ws.size_wh[0], ws.size_wh[1], 3],
        "trg_imsize": [wt.size_wh[0], wt.size_wh[1], 3],
        "src_bndbox": ws.box,
        "trg_bndbox": wt.box,
        "src_pose": 0,
        "trg_pose": 0,
        "src_kps": [_xy(ws.kps[k]) for k in ids],
        "trg_kps": [_xy(wt.kps[k]) for k in ids],
        "kps_ids": [str(k) for k in ids],
        "category": plan.category,
        "mirror": 0,
        "viewpoint_variation": _flag(yaw, _VIEWPOINT_THRESHOLDS),
        "scale_variation": _flag(rho, _SCALE_THRESHOLDS),
        "truncation": int(ws.truncated) + 2 * int(wt.truncated),
        "occlusion": int(ws.occluded) + 2 * int(wt.occluded),
        # extra fields (the SPair-71k reader ignores them)
        "kind": plan.kind,
        "src_instance": plan.src,
        "trg_instance": plan.trg,
        "src_kp_size": round(src_side, 2),
        "trg_kp_size": round(trg_side, 2),
        "src_kp_bin": plan.src_view.bin if plan.src_view else size_bin(src_side),
        "trg_kp_bin": plan.trg_view.bin if plan.trg_view else size_bin(trg_side),
        "kps_names": [names[k] for k in ids],
    }
    (out / "PairAnnotation" / split / f"{line}.json").write_text(json.dumps(pair, indent=1) + "\n")
    return line


def write_all(out: Path, spec: RealSemanticSpec, ann: Annotations) -> None:
    """Write every split into the (empty) folder ``out``; no marker."""
    for split in SPLITS:
        (out / "PairAnnotation" / split).mkdir(parents=True)
    for category in ann.categories:
        (out / "JPEGImages" / category).mkdir(parents=True)
        (out / "ImageAnnotation" / category).mkdir(parents=True)
    (out / "Layout" / "large").mkdir(parents=True)
    photos = PhotoCache()
    sizes = {}
    for inst in ann.instances.values():
        arr = photos.get(ann.photos[inst.photo])
        sizes[inst.photo] = (arr.shape[1], arr.shape[0])
    keeps = {name: instance_keep(ann, name, sizes[inst.photo]) for name, inst in ann.instances.items()}
    done: dict[str, _Written] = {}
    for split in SPLITS:
        lines = [_write_pair(out, split, plan, photos, ann, done, keeps) for plan in plan_split(ann, split, spec.seed, spec.repeats(split), sizes)]
        (out / "Layout" / "large" / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))


