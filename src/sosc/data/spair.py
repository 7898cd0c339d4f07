"""SPair-71k (Min et al. 2019): reader and data module.

On disk (the official archive as extracted, and the CATs/CHM download scripts' tree alike:
both scripts put the same ``SPair-71k/`` folder under their data path)::

    SPair-71k/
      JPEGImages/<category>/<image>.jpg
      ImageAnnotation/<category>/<image>.json          (not used)
      PairAnnotation/{trn,val,test}/<pair>.json
      Layout/large/{trn,val,test}.txt      # "<pair_id>-<src>-<trg>:<category>" per line

``root`` may be the ``SPair-71k`` folder itself or the folder that contains it. The
synthetic benchmark is written in this same layout and read by this same reader.

Conventions: keypoints and boxes in original pixels, ``(x, y)`` and ``(x1, y1, x2, y2)``
as in the JSON; ``src_imsize``/``trg_imsize`` are checked against the real image, accepting
either ``[W, H, C]`` (what the annotation files hold as far as we know) or ``[H, W, C]``
(the order is not documented), and failing loudly when they match neither. Boxes are
checked against their image: up to :data:`~sosc.data.records.BOX_TOLERANCE` px outside is
clipped, further is an error (or, with ``strict=False``, a skipped and counted pair). The four
difficulty flags (``viewpoint_variation``, ``scale_variation``, ``truncation``,
``occlusion``) are copied as integers onto each item. PCK threshold: ``max(w, h)`` of the
target object box.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sosc.data.datamodule import PairDataModule
from sosc.data.download import ArchiveSpec, manual_instructions
from sosc.data.images import image_size
from sosc.data.records import (
    BOX_OUTSIDE,
    DIFFICULTY_FLAGS,
    BoxOutsideImage,
    PairRecord,
    SkipReport,
    fit_box_to_image,
)
from sosc.errors import DatasetError

SPAIR_CATEGORIES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "train", "tvmonitor",
)
#: ``sosc`` split name -> SPair-71k's file name.
SPAIR_SPLITS = {"train": "trn", "val": "val", "test": "test"}


#: The official archive (no published checksum).
SPAIR_ARCHIVE = ArchiveSpec(
    name="SPair-71k",
    url="http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz",
    env="SOSC_SPAIR_URL",
    filename="SPair-71k.tar.gz",
    folder="SPair-71k",
)


def find_spair_root(root: Path, missing_help: str | None = None) -> Path:
    """The folder holding ``Layout/``, ``PairAnnotation/`` and ``JPEGImages/``: ``root`` itself
    or ``root/SPair-71k`` (official archive and CATs/CHM tree alike).

    Raises:
        DatasetError: naming every path searched and how to get the data (``missing_help``,
            default: how to download and place SPair-71k).
    """
    root = Path(root).expanduser()
    searched = []
    for candidate in (root, root / "SPair-71k"):
        needed = [candidate / "Layout", candidate / "PairAnnotation", candidate / "JPEGImages"]
        if all(p.is_dir() for p in needed):
            return candidate
        searched.append(", ".join(str(p) for p in needed))
    raise DatasetError(
        f"no SPair-71k tree under {root}: looked for the folders [{'] and ['.join(searched)}]. "
        + (missing_help if missing_help is not None else manual_instructions(SPAIR_ARCHIVE, root))
    )


def _field(data: dict[str, Any], key: str, path: Path) -> Any:
    """``data[key]`` of the pair file ``path``, or a :class:`DatasetError` naming the file and key."""
    try:
        return data[key]
    except KeyError as err:
        raise DatasetError(f"{path}: missing key {key!r}; the file is not an SPair-71k pair annotation") from err


def _points(value: Any, key: str, path: Path) -> np.ndarray:
    """A keypoint list ``[[x, y], ...]`` as ``(N, 2)`` float32, or a :class:`DatasetError` naming the file and key."""
    try:
        arr = np.asarray(value, dtype=np.float32).reshape(-1, 2)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{path}: {key!r} must be a list of [x, y] pairs, got {str(value)[:80]}") from err
    return arr


def _check_imsize(imsize: Any, path_img: Path, key: str, path: Path) -> tuple[int, int]:
    """Check ``*_imsize`` against the real image; returns the image's ``(H, W)``.

    SPair's ``*_imsize`` order is not documented: the files hold ``[W, H, 3]`` as far as we
    know; ``[H, W, 3]`` is accepted too. Neither matching the image raises.
    """
    try:
        h, w = image_size(path_img)
    except DatasetError as err:
        raise DatasetError(f"{path}: {err}") from err
    try:
        got = [int(v) for v in list(imsize)[:2]]
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{path}: {key} must be [W, H, C], got {imsize!r}") from err
    if got not in ([w, h], [h, w]):
        raise DatasetError(
            f"{path}: {key}={list(imsize)} does not match image {path_img} of size W={w}, H={h}; "
            "the annotation and the image disagree: re-extract the dataset"
        )
    return h, w


def read_spair_pair(path: Path, images: Path, categories: Sequence[str], pair_id: str) -> PairRecord:
    """Read one SPair-71k pair JSON into a :class:`PairRecord`.

    Both ``*_imsize`` are checked against the real images, and both boxes against them: a
    box up to :data:`~sosc.data.records.BOX_TOLERANCE` px outside its image is clipped to it.

    Raises:
        BoxOutsideImage: a box further outside its image (a :class:`DatasetError` naming the
            file, the key, the box and the image size).
        DatasetError: a missing file or key, malformed JSON, a category not in
            ``categories``, a size or box that does not fit the image; naming the file.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DatasetError(f"pair annotation {path} is missing: re-extract SPair-71k") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: malformed JSON ({err}); re-extract SPair-71k") from err
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object of pair fields, got {type(data).__name__}")
    category = _field(data, "category", path)
    if category not in categories:
        raise DatasetError(f"{path}: category {category!r} is not one of {list(categories)}")
    src_kps = _points(_field(data, "src_kps", path), "src_kps", path)
    trg_kps = _points(_field(data, "trg_kps", path), "trg_kps", path)
    if len(src_kps) != len(trg_kps):
        raise DatasetError(f"{path}: {len(src_kps)} source but {len(trg_kps)} target keypoints")
    src_path = images / category / _field(data, "src_imname", path)
    trg_path = images / category / _field(data, "trg_imname", path)
    src_hw = _check_imsize(_field(data, "src_imsize", path), src_path, "src_imsize", path)
    trg_hw = _check_imsize(_field(data, "trg_imsize", path), trg_path, "trg_imsize", path)
    boxes = []
    for key, image, size_hw in (("src_bndbox", src_path, src_hw), ("trg_bndbox", trg_path, trg_hw)):
        box = np.asarray(_field(data, key, path), dtype=np.float32).reshape(-1)
        if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
            raise DatasetError(f"{path}: {key} must be [x1, y1, x2, y2] with x2 > x1, y2 > y1, got {box.tolist()}")
        boxes.append(fit_box_to_image(box, size_hw, what=f"{path}: {key}", image=image))
    flags = {flag: int(_field(data, flag, path)) for flag in DIFFICULTY_FLAGS}
    return PairRecord(
        pair_id=pair_id,
        src_path=src_path,
        trg_path=trg_path,
        src_kps=src_kps,
        trg_kps=trg_kps,
        category=category,
        category_id=list(categories).index(category),
        bound="bbox",
        src_bbox=boxes[0],
        trg_bbox=boxes[1],
        flags=flags,
        source=str(path),
    )


def read_spair(
    root: Path,
    split: str,
    categories: Sequence[str] = SPAIR_CATEGORIES,
    *,
    missing_help: str | None = None,
    strict: bool = True,
) -> tuple[list[PairRecord], SkipReport]:
    """All pairs of a split (``train``, ``val``, ``test``) of an SPair-71k-layout tree.

    Pairs with no keypoint are counted in the :class:`SkipReport` (with their layout line),
    never dropped silently; every malformed file raises :class:`DatasetError` naming it. An
    object box further than :data:`~sosc.data.records.BOX_TOLERANCE` px outside its image
    raises :class:`BoxOutsideImage` with ``strict=True``; with ``strict=False`` the pair is
    skipped and counted (reason :data:`~sosc.data.records.BOX_OUTSIDE`, with its file).
    The report's ``split_file`` is the layout file; an empty one gives no record (the data
    module turns a split with no pair into an error naming it).
    """
    if split not in SPAIR_SPLITS:
        raise DatasetError(f"unknown split {split!r}; SPair-71k has {list(SPAIR_SPLITS)}")
    base = find_spair_root(root, missing_help)
    layout = base / "Layout" / "large" / f"{SPAIR_SPLITS[split]}.txt"
    if not layout.is_file():
        raise DatasetError(f"split file {layout} is missing: re-extract SPair-71k (it ships Layout/large/)")
    records: list[PairRecord] = []
    report = SkipReport(split_file=layout)
    for lineno, line in enumerate(layout.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if ":" not in line:
            raise DatasetError(f"{layout}:{lineno}: expected '<pair>-<src>-<trg>:<category>', got {line!r}")
        pair_file = base / "PairAnnotation" / SPAIR_SPLITS[split] / f"{line}.json"
        try:
            rec = read_spair_pair(pair_file, base / "JPEGImages", categories, line)
        except BoxOutsideImage:
            if strict:
                raise
            report.skip_pair(BOX_OUTSIDE, str(pair_file))
            continue
        if rec.num_kps == 0:
            report.skip_pair("no keypoint in common", f"{layout}:{lineno}")
            continue
        records.append(rec)
    return records, report


class SPair71kDataModule(PairDataModule):
    """SPair-71k: 53,340 / 5,384 / 12,234 pairs (large layout), 18 categories, PCK by the
    target object box; items carry the four difficulty flags and the object size class.

    Arguments: see :class:`sosc.data.datamodule.PairDataModule`; ``root`` is the
    ``SPair-71k`` folder or its parent, the archive is ``SPair-71k.tar.gz`` (mirror:
    ``$SOSC_SPAIR_URL``), and the default input is 512, as the field uses for SPair-71k.
    """

    name = "SPair-71k"
    archive: ArchiveSpec = SPAIR_ARCHIVE
    categories: Sequence[str] = SPAIR_CATEGORIES
    difficulty_flags: Sequence[str] = DIFFICULTY_FLAGS
    default_input_size = 512

    def find_root(self, root: Path) -> Path:
        return find_spair_root(root)

    def missing_help(self) -> str:
        """What to do when the tree is missing (subclasses that generate their data override it)."""
        return manual_instructions(self.archive, self.root)

    def read_split(self, split: str) -> tuple[list[PairRecord], SkipReport]:
        return read_spair(self.root, split, self.categories, missing_help=self.missing_help(), strict=self.strict)

    def index_files(self, split: str) -> tuple[list[Path], list[Path]] | None:
        """The split's layout file, its pair-annotation folder and the images (for the index cache)."""
        if split not in SPAIR_SPLITS:
            return None
        try:
            base = find_spair_root(self.root, self.missing_help())
        except DatasetError:
            return None
        layout = base / "Layout" / "large" / f"{SPAIR_SPLITS[split]}.txt"
        return [layout], [base / "PairAnnotation" / SPAIR_SPLITS[split], base / "JPEGImages"]
