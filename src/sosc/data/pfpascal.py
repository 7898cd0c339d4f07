"""PF-PASCAL (Ham et al. 2017): reader and data module.

Two trees are accepted, found by themselves from ``root`` (the dataset folder or its parent):

- the official archive ``PF-dataset-PASCAL.zip`` as extracted, with NCNet's split files
  placed beside ``JPEGImages/`` (or in ``root``, or in an ``image_pairs/`` folder)::

      PF-dataset-PASCAL/
        JPEGImages/<image>.jpg
        Annotations/<class>/<image>.mat          # kps (N x 2, NaN rows = missing), bbox
        train_pairs.csv  val_pairs.csv  test_pairs.csv

- the tree of the CATs/CHM download scripts::

      PF-PASCAL/
        JPEGImages/  Annotations/<class>/*.mat
        trn_pairs.csv  val_pairs.csv  test_pairs.csv

Split files are read by column position: source path, target path, 1-based class index
into :data:`PFPASCAL_CATEGORIES`, then either ``flip`` (train/val: ``1`` = use both images
mirrored horizontally, :attr:`PairRecord.flip`) or, in ``test_pairs.csv``, the keypoint
columns ``XA, YA, XB, YB`` (``;``-separated lists). Images are looked up by base name in
``JPEGImages/``, annotations as ``Annotations/<class>/<image stem>.mat``. Accepted names:
:data:`PFPASCAL_SPLIT_FILES` (NCNet's ``train_pairs.csv``, CATs' ``trn_pairs.csv``,
CNNGeometric's ``*_pairs_pf_pascal.csv``).

Which annotation wins: for train and val, the ``.mat`` files (keypoints present in *both*
images, in ``kps`` order). For the test split, the coordinates in ``test_pairs.csv`` (as
NCNet-style evaluations use them); when the ``.mat`` files are there too, the two are
compared and a warning counts the pairs that differ by more than
``CSV_MAT_TOLERANCE`` pixels; the ``.mat`` boxes are attached either way. A test CSV
without coordinate columns falls back to the ``.mat`` files.

Coordinates are used as stored, ``(x, y)`` pixels. The ``.mat`` boxes are checked against
their images: up to :data:`~sosc.data.records.BOX_TOLERANCE` px outside is clipped, further
is an error (or, with ``strict=False``, a skipped and counted pair). PCK threshold: ``max(H, W)`` of the
target image (``img``). 95 of the 299 test pairs also appear in NCNet's train split: the
data module warns with the count of overlapping pairs between the splits it loads.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from sosc.data.datamodule import PairDataModule
from sosc.data.download import ArchiveSpec, manual_instructions
from sosc.data.images import image_size
from sosc.data.records import BOX_OUTSIDE, BoxOutsideImage, PairRecord, SkipReport, fit_box_to_image
from sosc.data.tables import cell_path, number_list, read_csv_rows
from sosc.errors import DatasetError

log = logging.getLogger(__name__)

#: The 20 PASCAL VOC classes; the split files' ``class`` column is a 1-based index into it.
PFPASCAL_CATEGORIES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

#: The official archive (no published checksum).
PFPASCAL_ARCHIVE = ArchiveSpec(
    name="PF-PASCAL",
    url="https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset-PASCAL.zip",
    env="SOSC_PFPASCAL_URL",
    filename="PF-dataset-PASCAL.zip",
    folder="PF-dataset-PASCAL",
)

#: Folder names of a PF-PASCAL tree: the official archive's, then the CATs/CHM scripts'.
PFPASCAL_FOLDERS = ("PF-dataset-PASCAL", "PF-PASCAL")

#: ``sosc`` split -> accepted split file names (NCNet, CATs/CHM, CNNGeometric).
PFPASCAL_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train_pairs.csv", "trn_pairs.csv", "train_pairs_pf_pascal.csv", "trn_pairs_pf_pascal.csv"),
    "val": ("val_pairs.csv", "val_pairs_pf_pascal.csv"),
    "test": ("test_pairs.csv", "test_pairs_pf_pascal.csv"),
}

#: Largest difference (pixels) between ``test_pairs.csv`` and the ``.mat`` files that is not warned about.
CSV_MAT_TOLERANCE = 1.0


def split_files_help(base: Path | str = "<PF-dataset-PASCAL or PF-PASCAL>", root: Path | str = "<data.root>") -> str:
    """Where the PF-PASCAL split files come from and where to put them."""
    return (
        "The split files are not in PF-dataset-PASCAL.zip: use the ones everybody uses, published in "
        "NCNet's GitHub repository (ignacio-rocco/ncnet, folder datasets/pf-pascal/image_pairs/: "
        "train_pairs.csv, val_pairs.csv, test_pairs.csv); the CATs and CHM download scripts ship the "
        "same files as trn_pairs.csv, val_pairs.csv, test_pairs.csv, and CNNGeometric's resources "
        "name them *_pairs_pf_pascal.csv. Put them in "
        f"{base} (beside JPEGImages/) or in {root}."
    )


# -- finding the tree -----------------------------------------------------------------------------
def find_pfpascal_root(root: Path) -> Path:
    """The PF-PASCAL folder (the one holding ``JPEGImages/``): ``root``, ``root/PF-dataset-PASCAL``
    or ``root/PF-PASCAL``.

    Raises:
        DatasetError: naming every path searched, which archive to put where, and where the
            split files come from.
    """
    root = Path(root).expanduser()
    candidates = [root] + [root / name for name in PFPASCAL_FOLDERS]
    for candidate in candidates:
        if (candidate / "JPEGImages").is_dir():
            return candidate
    searched = ", ".join(str(c / "JPEGImages") for c in candidates)
    raise DatasetError(
        f"no PF-PASCAL tree under {root}: looked for {searched}. "
        + manual_instructions(PFPASCAL_ARCHIVE, root, split_files_help(root / PFPASCAL_FOLDERS[0], root))
    )


def pfpascal_layout(base: Path) -> str:
    """``"cats"`` for the CATs/CHM scripts' tree (``PF-PASCAL/`` or ``trn_pairs.csv``), else ``"official"``."""
    return "cats" if base.name == "PF-PASCAL" or (base / "trn_pairs.csv").is_file() else "official"


def find_split_file(base: Path, split: str) -> Path:
    """The split file of ``split``, searched beside ``JPEGImages/``, in the parent folder, and in
    an ``image_pairs/`` folder of either (NCNet's name), under each of
    :data:`PFPASCAL_SPLIT_FILES` names."""
    if split not in PFPASCAL_SPLIT_FILES:
        raise DatasetError(f"unknown split {split!r}; PF-PASCAL has {list(PFPASCAL_SPLIT_FILES)}")
    folders = [base, base.parent, base / "image_pairs", base.parent / "image_pairs"]
    tried = []
    for folder in folders:
        for name in PFPASCAL_SPLIT_FILES[split]:
            path = folder / name
            if path.is_file():
                return path
            tried.append(str(path))
    raise DatasetError(
        f"PF-PASCAL {split} split file not found; looked for {', '.join(tried)}. "
        + split_files_help(base, base.parent)
    )


# -- reading files --------------------------------------------------------------------------------
def read_pfpascal_mat(path: Path, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """One PF-PASCAL annotation: ``kps`` ``(N, 2)`` float ``(x, y)`` (NaN rows = missing) and
    ``bbox`` ``(4,)`` ``(x1, y1, x2, y2)``.

    Args:
        path: the ``.mat`` file.
        where: the split file and line that asked for it, for messages.
    """
    ctx = f"{where}: " if where else ""
    if not Path(path).is_file():
        raise DatasetError(
            f"{ctx}annotation {path} is missing: re-extract PF-dataset-PASCAL.zip (it ships Annotations/<class>/)"
        )
    try:
        data = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError, OSError...
        raise DatasetError(f"{ctx}annotation {path} is not a readable .mat file ({err}); re-extract it") from err
    for key in ("kps", "bbox"):
        if key not in data:
            found = sorted(k for k in data if not k.startswith("__"))
            raise DatasetError(f"{ctx}{path}: no {key!r} variable (found {found}); not a PF-PASCAL annotation")
    try:
        kps = np.asarray(data["kps"], dtype=np.float64)
        bbox = np.asarray(data["bbox"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{ctx}{path}: 'kps' and 'bbox' must be numeric arrays ({err})") from err
    if kps.size == 0:
        kps = np.zeros((0, 2))
    if kps.ndim != 2 or kps.shape[1] != 2:
        raise DatasetError(f"{ctx}{path}: 'kps' must be N x 2 (x, y), got shape {tuple(kps.shape)}")
    if bbox.shape != (4,):
        raise DatasetError(f"{ctx}{path}: 'bbox' must hold [x1, y1, x2, y2], got {bbox.tolist()}")
    return kps, bbox


def _image(base: Path, cell: str, where: str) -> Path:
    """The image a path cell names, looked up by base name in ``base/JPEGImages/``."""
    name = cell_path(cell).name
    path = base / "JPEGImages" / name
    if not path.is_file():
        raise DatasetError(
            f"{where}: image {path} (from {cell!r}) is missing: re-extract PF-dataset-PASCAL.zip, "
            "or check that the split file belongs to PF-PASCAL"
        )
    return path


def _category(cell: str, where: str) -> int:
    """The 0-based class index of a ``class`` cell (1-based in the file)."""
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not (value.is_integer() and 1 <= value <= len(PFPASCAL_CATEGORIES)):
        raise DatasetError(
            f"{where}: class {cell!r} must be a 1-based index into the 20 PASCAL VOC classes (1..20)"
        )
    return int(value) - 1


def _flip(cell: str, where: str) -> bool:
    """A ``flip`` cell: ``0`` or ``1`` (``0.0``/``1.0`` accepted)."""
    if cell not in ("0", "1", "0.0", "1.0"):
        raise DatasetError(f"{where}: flip must be 0 or 1, got {cell!r}")
    return cell.startswith("1")


def _columns(header: list[str] | None, width: int) -> dict[str, int]:
    """Column positions: ``flip`` and/or ``XA, YA, XB, YB``, by header name; without a header,
    or with one that names neither, by position (source, target, class, then flip or the four
    coordinate columns), as the field's split files are laid out."""
    if header is not None:
        upper = [h.upper() for h in header]
        if all(k in upper for k in ("XA", "YA", "XB", "YB")):
            return {k: upper.index(k) for k in ("XA", "YA", "XB", "YB")}
        if "FLIP" in upper:
            return {"flip": upper.index("FLIP")}
    if width >= 7:
        return {"XA": 3, "YA": 4, "XB": 5, "YB": 6}
    if width >= 4:
        return {"flip": 3}
    return {}


def pair_key(record: PairRecord) -> tuple[str, str]:
    """What makes two PF-PASCAL pairs the same: source and target image names (flip ignored)."""
    return (Path(record.src_path).name, Path(record.trg_path).name)


def read_pfpascal_keys(root: Path, split: str) -> list[tuple[str, str]]:
    """``(source name, target name)`` of every row of a split file, without reading annotations."""
    base = find_pfpascal_root(root)
    path = find_split_file(base, split)
    _, rows = read_csv_rows(path)
    out = []
    for lineno, cells in rows:
        if len(cells) < 3:
            raise DatasetError(f"{path}:{lineno}: expected source,target,class[,...], got {cells}")
        out.append((cell_path(cells[0]).name, cell_path(cells[1]).name))
    return out


@dataclass(frozen=True)
class SplitRow:
    """One row of a split file, checked and resolved to files (no annotation read yet).

    Attributes:
        index: 0-based position among the file's data rows (makes pair ids unique).
        where: ``<split file>:<line>``, for messages and :attr:`PairRecord.source`.
        line: 1-based line number in the split file.
        cells: the row's stripped cells.
        columns: positions of ``flip`` or of ``XA, YA, XB, YB`` (see :func:`_columns`).
        src_path, trg_path: the images in ``JPEGImages/``.
        category_id: 0-based index into :data:`PFPASCAL_CATEGORIES`.
        flip: use both images mirrored horizontally.
        src_mat, trg_mat: ``Annotations/<class>/<image stem>.mat`` (may not exist).
    """

    index: int
    where: str
    line: int
    cells: list[str]
    columns: dict[str, int]
    src_path: Path
    trg_path: Path
    category_id: int
    flip: bool
    src_mat: Path
    trg_mat: Path

    @property
    def has_coordinates(self) -> bool:
        """Whether the row carries keypoints itself (``test_pairs.csv``'s ``XA, YA, XB, YB``)."""
        return "XA" in self.columns


@dataclass
class PairAnnotation:
    """The keypoints and boxes of one pair, in original pixels of the unflipped images.

    Attributes:
        src_kps, trg_kps: ``(K, 2)`` float64 ``(x, y)``: the keypoints present in both
            images, in matching order (``K`` may be 0).
        src_bbox, trg_bbox: ``(4,)`` ``(x1, y1, x2, y2)`` from the ``.mat`` files, NaN when
            no ``.mat`` file was read.
    """

    src_kps: np.ndarray
    trg_kps: np.ndarray
    src_bbox: np.ndarray = field(default_factory=lambda: np.full(4, np.nan))
    trg_bbox: np.ndarray = field(default_factory=lambda: np.full(4, np.nan))


def parse_split_row(
    base: Path, path: Path, header: list[str] | None, index: int, line: int, cells: list[str]
) -> SplitRow:
    """Check one row of the split file ``path`` and resolve its images, class, flip and
    annotation files under the PF-PASCAL folder ``base``.

    Raises:
        DatasetError: too few columns, a missing image, a class outside 1..20, a flip other
            than 0/1; the message names ``path:line``.
    """
    where = f"{path}:{line}"
    if len(cells) < 3:
        raise DatasetError(f"{where}: expected at least source,target,class; got {len(cells)} column(s): {cells}")
    columns = _columns(header, len(cells))
    if any(c >= len(cells) for c in columns.values()):
        raise DatasetError(f"{where}: expected {max(columns.values()) + 1} columns, got {len(cells)}")
    src_path, trg_path = _image(base, cells[0], where), _image(base, cells[1], where)
    cid = _category(cells[2], where)
    flip = _flip(cells[columns["flip"]], where) if "flip" in columns else False
    ann = base / "Annotations" / PFPASCAL_CATEGORIES[cid]
    return SplitRow(
        index=index, where=where, line=line, cells=cells, columns=columns, src_path=src_path,
        trg_path=trg_path, category_id=cid, flip=flip,
        src_mat=ann / f"{src_path.stem}.mat", trg_mat=ann / f"{trg_path.stem}.mat",
    )


def read_mat_pair(row: SplitRow) -> PairAnnotation:
    """A pair from its two ``.mat`` files (train and val rows, and test rows without
    coordinates): the keypoints present in both, in ``kps`` order, and both boxes.

    Raises:
        DatasetError: a missing or malformed ``.mat`` file, or two files listing different
            numbers of keypoints; the message names the split file's line and the files.
    """
    s_kps, src_bbox = read_pfpascal_mat(row.src_mat, row.where)
    t_kps, trg_bbox = read_pfpascal_mat(row.trg_mat, row.where)
    if len(s_kps) != len(t_kps):
        raise DatasetError(
            f"{row.where}: {row.src_mat} has {len(s_kps)} keypoint rows but {row.trg_mat} has {len(t_kps)}; "
            "a pair's annotations must list the same keypoints"
        )
    both = np.isfinite(s_kps).all(1) & np.isfinite(t_kps).all(1)
    return PairAnnotation(s_kps[both], t_kps[both], src_bbox, trg_bbox)


def read_csv_pair(row: SplitRow, tolerance: float = CSV_MAT_TOLERANCE) -> tuple[PairAnnotation, str | None]:
    """A test pair from the coordinates in its split-file row (``XA, YA, XB, YB``), which win.

    When both ``.mat`` files exist their boxes are attached and their keypoints compared
    with the row's (:func:`csv_mat_mismatch`); without them the boxes are NaN.

    Returns:
        The annotation (keypoints present in both images, from the CSV), and a note such as
        ``"line 3 (5.00 px)"`` when the ``.mat`` keypoints differ by more than ``tolerance``
        pixels (else None).

    Raises:
        DatasetError: a coordinate cell that is not ``;``-separated numbers, or coordinate
            lists of different lengths; the message names ``file:line`` and the column.
    """
    where = row.where
    xa, ya, xb, yb = (number_list(row.cells[row.columns[k]], where, k) for k in ("XA", "YA", "XB", "YB"))
    if not (len(xa) == len(ya) == len(xb) == len(yb)):
        raise DatasetError(
            f"{where}: XA, YA, XB, YB must list as many values each, got {len(xa)}, {len(ya)}, {len(xb)}, {len(yb)}"
        )
    src_all, trg_all = np.stack([xa, ya], 1), np.stack([xb, yb], 1)
    both = np.isfinite(src_all).all(1) & np.isfinite(trg_all).all(1)
    pair = PairAnnotation(src_all[both], trg_all[both])
    if not (row.src_mat.is_file() and row.trg_mat.is_file()):
        return pair, None
    s_kps, pair.src_bbox = read_pfpascal_mat(row.src_mat, where)
    t_kps, pair.trg_bbox = read_pfpascal_mat(row.trg_mat, where)
    return pair, csv_mat_mismatch(row.line, pair, s_kps, t_kps, tolerance)


def csv_mat_mismatch(
    line: int, pair: PairAnnotation, mat_src: np.ndarray, mat_trg: np.ndarray, tolerance: float = CSV_MAT_TOLERANCE
) -> str | None:
    """None when a test pair's split-file keypoints agree with its ``.mat`` keypoints
    ``(N, 2)`` (NaN rows = missing) within ``tolerance`` pixels, else a note for the warning:
    ``"line <line> (<difference> px)"`` or ``"line <line> (different keypoint count)"``.

    >>> m = np.array([[1.0, 2.0], [5.0, 6.0]])
    >>> csv_mat_mismatch(3, PairAnnotation(m + [5.0, 0.0], m), m, m)
    'line 3 (5.00 px)'
    """
    diff = csv_mat_difference(pair.src_kps, pair.trg_kps, mat_src, mat_trg)
    if diff <= tolerance:
        return None
    return f"line {line} ({'different keypoint count' if math.isinf(diff) else f'{diff:.2f} px'})"


def fit_pair_boxes(row: SplitRow, pair: PairAnnotation) -> PairAnnotation:
    """The pair with its ``.mat`` boxes checked against their images: a box up to
    :data:`~sosc.data.records.BOX_TOLERANCE` px outside is clipped to the image; NaN boxes
    (no ``.mat`` read) stay NaN.

    Raises:
        BoxOutsideImage: a box further outside, naming the split file's line, the ``.mat``
            file, the box and the image size.
    """
    boxes = []
    for box, mat, image in ((pair.src_bbox, row.src_mat, row.src_path), (pair.trg_bbox, row.trg_mat, row.trg_path)):
        boxes.append(fit_box_to_image(box, image_size(image), what=f"{row.where}: 'bbox' of {mat}", image=image))
    return PairAnnotation(pair.src_kps, pair.trg_kps, boxes[0], boxes[1])


def _record(row: SplitRow, pair: PairAnnotation) -> PairRecord:
    """The :class:`PairRecord` of a row and its annotation (PCK by the target image: ``img``)."""
    return PairRecord(
        pair_id=f"{row.index}-{row.src_path.stem}-{row.trg_path.stem}" + ("-flip" if row.flip else ""),
        src_path=row.src_path,
        trg_path=row.trg_path,
        src_kps=pair.src_kps.astype(np.float32),
        trg_kps=pair.trg_kps.astype(np.float32),
        category=PFPASCAL_CATEGORIES[row.category_id],
        category_id=row.category_id,
        bound="img",
        src_bbox=np.asarray(pair.src_bbox, dtype=np.float32),
        trg_bbox=np.asarray(pair.trg_bbox, dtype=np.float32),
        flip=row.flip,
        source=row.where,
    )


def read_pfpascal(
    root: Path, split: str, *, tolerance: float = CSV_MAT_TOLERANCE, strict: bool = True
) -> tuple[list[PairRecord], SkipReport]:
    """All pairs of a PF-PASCAL split (``train``, ``val``, ``test``), in either tree.

    Each row is checked and resolved (:func:`parse_split_row`), then annotated from the
    ``.mat`` files (:func:`read_mat_pair`) or, in a test file with coordinates, from the row
    itself (:func:`read_csv_pair`); see the module docstring for the formats and which
    annotation wins. Pairs with no keypoint present in both images are counted in the
    :class:`SkipReport` with their line, never dropped silently; anything malformed raises
    :class:`DatasetError` naming the file and line. Test rows whose ``.mat`` keypoints
    differ by more than ``tolerance`` pixels are counted in one warning.

    The ``.mat`` boxes are checked against their images (:func:`fit_pair_boxes`): a box
    further outside than :data:`~sosc.data.records.BOX_TOLERANCE` px raises
    :class:`BoxOutsideImage` with ``strict=True``; with ``strict=False`` the pair is skipped
    and counted (reason :data:`~sosc.data.records.BOX_OUTSIDE`, with its line). The
    report's ``split_file`` is the CSV read.
    """
    base = find_pfpascal_root(root)
    path = find_split_file(base, split)
    header, rows = read_csv_rows(path)
    report = SkipReport(split_file=path)
    records: list[PairRecord] = []
    mismatches: list[str] = []
    for index, (line, cells) in enumerate(rows):
        row = parse_split_row(base, path, header, index, line, cells)
        if row.has_coordinates:
            pair, mismatch = read_csv_pair(row, tolerance)
            if mismatch is not None:
                mismatches.append(mismatch)
        else:
            pair = read_mat_pair(row)
        try:
            pair = fit_pair_boxes(row, pair)
        except BoxOutsideImage:
            if strict:
                raise
            report.skip_pair(BOX_OUTSIDE, row.where)
            continue
        if len(pair.src_kps) == 0:
            report.skip_pair("no keypoint in common", row.where)
            continue
        records.append(_record(row, pair))
    if mismatches:
        warnings.warn(
            f"PF-PASCAL {split}: {len(mismatches)} of {len(rows)} pairs in {path} have keypoints that differ "
            f"from the .mat annotations by more than {tolerance} px (e.g. {', '.join(mismatches[:3])}); "
            "the split file's coordinates are used",
            stacklevel=2,
        )
    return records, report


def csv_mat_difference(
    csv_src: np.ndarray, csv_trg: np.ndarray, mat_src: np.ndarray, mat_trg: np.ndarray
) -> float:
    """Largest coordinate difference (pixels) between a test pair's split-file keypoints
    ``(K, 2)`` and its ``.mat`` keypoints ``(N, 2)`` (NaN rows = missing) restricted to those
    present in both images; ``inf`` when the counts differ.

    >>> m = np.array([[1.0, 2.0], [np.nan, np.nan], [5.0, 6.0]])
    >>> csv_mat_difference(np.array([[1.0, 2.5], [5.0, 6.0]]), np.array([[1.0, 2.0], [5.0, 6.0]]), m, m)
    0.5
    """
    if len(mat_src) != len(mat_trg):
        return math.inf
    both = np.isfinite(mat_src).all(1) & np.isfinite(mat_trg).all(1)
    if int(both.sum()) != len(csv_src) or len(csv_src) != len(csv_trg):
        return math.inf
    if len(csv_src) == 0:
        return 0.0
    return float(max(np.abs(csv_src - mat_src[both]).max(), np.abs(csv_trg - mat_trg[both]).max()))


def count_overlaps(splits: Mapping[str, Sequence[tuple[str, str]]]) -> dict[tuple[str, str], int]:
    """For each ordered pair of splits ``(a, b)`` with ``a`` after ``b`` in train, val, test order:
    how many pairs of ``a`` also appear in ``b`` (keys from :func:`pair_key`).

    >>> count_overlaps({"train": [("a", "b"), ("c", "d")], "test": [("a", "b"), ("x", "y")]})
    {('test', 'train'): 1}
    """
    order = [s for s in ("train", "val", "test") if s in splits] + sorted(s for s in splits if s not in ("train", "val", "test"))
    out = {}
    for i, a in enumerate(order):
        for b in order[:i]:
            seen = set(splits[b])
            out[(a, b)] = sum(1 for key in splits[a] if key in seen)
    return out


class PFPascalDataModule(PairDataModule):
    """PF-PASCAL: 2,940 / 308 / 299 pairs (NCNet's splits), 20 VOC classes, PCK by the
    target image size; train pairs may be mirrored (``flip``).

    Args:
        root: the PF-PASCAL folder or its parent (default ``data``); a download is extracted
            into ``root``.
        input_size: network input side (default 256).
        download: fetch and extract ``PF-dataset-PASCAL.zip`` in ``prepare_data`` when the tree
            is missing (the split files are never downloaded: see :func:`split_files_help`);
            ``False`` never downloads and only explains what to put where.
        url: download from this URL (a mirror) instead of ``$SOSC_PFPASCAL_URL`` or the official one.
        sha256: expected checksum of the archive (none is published).
        Other arguments: see :class:`sosc.data.datamodule.PairDataModule`.
    """

    name = "PF-PASCAL"
    archive: ArchiveSpec = PFPASCAL_ARCHIVE
    categories: Sequence[str] = PFPASCAL_CATEGORIES

    def find_root(self, root: Path) -> Path:
        return find_pfpascal_root(root)

    def extra_help(self) -> str:
        return split_files_help(self.root / PFPASCAL_FOLDERS[0], self.root)

    def read_split(self, split: str) -> tuple[list[PairRecord], SkipReport]:
        return read_pfpascal(self.root, split, strict=self.strict)

    def check_overlaps(self, splits: dict[str, list[PairRecord]]) -> None:
        """Warn with the number of pairs a loaded split shares with another (same source and
        target image). When only val or test is loaded, the train split file is read too
        (names only) so that a test-in-train overlap is always reported."""
        keys = {s: [pair_key(r) for r in recs] for s, recs in splits.items() if s in PFPASCAL_SPLIT_FILES}
        if keys and "train" not in keys:
            try:
                keys["train"] = read_pfpascal_keys(self.root, "train")
            except DatasetError:
                log.info("PF-PASCAL: no train split file, so no overlap check against it")
        for (a, b), count in count_overlaps(keys).items():
            if count and a in splits:
                warnings.warn(
                    f"PF-PASCAL: {count} of {len(keys[a])} {a} pairs also appear in the {b} split "
                    "(same source and target image; NCNet's splits are known to share test pairs "
                    "with train). Scores on these pairs partly measure memorisation.",
                    stacklevel=2,
                )

