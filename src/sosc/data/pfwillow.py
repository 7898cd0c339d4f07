"""PF-WILLOW (Ham et al. 2016): reader and data module (a test set only).

Two trees are accepted, found by themselves from ``root`` (the dataset folder or its parent):

- the official archive ``PF-dataset.zip`` as extracted, with the pair list placed beside
  the sub-class folders (or in ``root``)::

      PF-dataset/
        car(G)/Cars_006a.png ...   (10 sub-class folders)
        test_pairs.csv             (CNNGeometric names it test_pairs_pf.csv; both accepted)

- the tree of the CATs/CHM download scripts::

      PF-WILLOW/
        test_pairs.csv
        car(G)/ ... winebottle(woC)/

``test_pairs.csv`` (header row optional): column 0 the source image, column 1 the target
image (paths such as ``PF-dataset/car(G)/Cars_006a.png``: the first component is dropped
unless it is a sub-class, and the rest is looked up under the folder holding the
sub-classes), then 10 source x, 10 source y, 10 target x, 10 target y.

Keypoints: exactly 10 per pair. A keypoint is missing when a coordinate is empty or NaN,
or when both its coordinates are negative (the ``-1`` padding some published CSVs use);
missing keypoints are dropped from both images and counted in the :class:`SkipReport`.
No object boxes (NaN). Categories (:data:`PFWILLOW_CATEGORIES`) are the 10 sub-classes,
read from the image path. PCK threshold: the max extent of the **valid** target keypoints
(``bbox-kp``), so padding never widens it.

There is no train or val split: the field evaluates the PF-PASCAL-trained model here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from sosc.data.datamodule import PairDataModule
from sosc.data.download import ArchiveSpec, manual_instructions
from sosc.data.records import PairRecord, SkipReport
from sosc.data.tables import cell_path, number_cells, read_csv_rows
from sosc.errors import ConfigError, DatasetError

#: The 10 sub-classes (object class and variation), as PF-dataset.zip names its folders.
PFWILLOW_CATEGORIES = (
    "car(G)", "car(M)", "car(S)", "duck(S)", "motorbike(G)", "motorbike(M)", "motorbike(S)",
    "winebottle(M)", "winebottle(wC)", "winebottle(woC)",
)

#: Keypoints per pair in ``test_pairs.csv``.
PFWILLOW_NUM_KPS = 10

#: The official archive (no published checksum).
PFWILLOW_ARCHIVE = ArchiveSpec(
    name="PF-WILLOW",
    url="https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset.zip",
    env="SOSC_PFWILLOW_URL",
    filename="PF-dataset.zip",
    folder="PF-dataset",
)

#: Folder names of a PF-WILLOW tree: the official archive's, then the CATs/CHM scripts'.
PFWILLOW_FOLDERS = ("PF-dataset", "PF-WILLOW")

#: Accepted names of the pair list (CATs/CHM, then CNNGeometric's).
PFWILLOW_PAIR_FILES = ("test_pairs.csv", "test_pairs_pf.csv")


def pair_file_help(base: Path | str = "<PF-dataset or PF-WILLOW>", root: Path | str = "<data.root>") -> str:
    """Where the PF-WILLOW pair list comes from and where to put it."""
    return (
        "The pair list (900 pairs, 10 keypoints each) is the one CNNGeometric published as "
        "test_pairs_pf.csv (its 'other resources', on the same WILLOW site as the dataset), "
        "shipped by the CATs and CHM download scripts as PF-WILLOW/test_pairs.csv. Put it in "
        f"{base} (beside the sub-class folders) or in {root}."
    )


def find_pfwillow_root(root: Path) -> Path:
    """The folder holding the sub-class folders: ``root``, ``root/PF-dataset`` or ``root/PF-WILLOW``.

    Raises:
        DatasetError: naming every path searched and which archive to put where.
    """
    root = Path(root).expanduser()
    candidates = [root] + [root / name for name in PFWILLOW_FOLDERS]
    for candidate in candidates:
        if any((candidate / sub).is_dir() for sub in PFWILLOW_CATEGORIES):
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise DatasetError(
        f"no PF-WILLOW tree under {root}: looked for the sub-class folders ({', '.join(PFWILLOW_CATEGORIES)}) "
        f"in {searched}. " + manual_instructions(PFWILLOW_ARCHIVE, root, pair_file_help(root / PFWILLOW_FOLDERS[0], root))
    )


def find_pair_file(base: Path) -> Path:
    """The pair list, beside the sub-class folders or in the folder above."""
    tried = []
    for folder in (base, base.parent):
        for name in PFWILLOW_PAIR_FILES:
            path = folder / name
            if path.is_file():
                return path
            tried.append(str(path))
    raise DatasetError(f"PF-WILLOW pair list not found; looked for {', '.join(tried)}. " + pair_file_help(base, base.parent))


def _image(base: Path, cell: str, where: str) -> tuple[Path, str]:
    """The image file a CSV path names, and its sub-class."""
    parts = cell_path(cell).parts
    if len(parts) >= 2 and parts[0] not in PFWILLOW_CATEGORIES:
        parts = parts[1:]
    if len(parts) < 2 or parts[0] not in PFWILLOW_CATEGORIES:
        raise DatasetError(
            f"{where}: image path {cell!r} does not name a PF-WILLOW sub-class folder "
            f"(expected e.g. PF-dataset/car(G)/Cars_006a.png; sub-classes: {', '.join(PFWILLOW_CATEGORIES)})"
        )
    path = base.joinpath(*parts)
    if not path.is_file():
        raise DatasetError(f"{where}: image {path} (from {cell!r}) is missing: re-extract PF-dataset.zip")
    return path, parts[0]


def missing_keypoints(kps: np.ndarray) -> np.ndarray:
    """``(N,)`` True where a keypoint ``(N, 2)`` is missing: a NaN coordinate, or both negative.

    >>> missing_keypoints(np.array([[1.0, 2.0], [-1.0, -1.0], [np.nan, 3.0], [-0.5, 4.0]])).tolist()
    [False, True, True, False]
    """
    return ~np.isfinite(kps).all(1) | (kps < 0).all(1)


def read_pfwillow(root: Path, split: str = "test") -> tuple[list[PairRecord], SkipReport]:
    """The 900 PF-WILLOW test pairs (see the module docstring for the format); the report's
    ``split_file`` is the pair list read.

    Raises:
        ConfigError: for any split but ``test`` (train on PF-PASCAL instead).
        DatasetError: a missing or malformed file, naming it and the line.
    """
    if split != "test":
        raise ConfigError(
            f"PF-WILLOW has no {split!r} split: it is a test set only (900 pairs). Train on PF-PASCAL "
            "(sosc fit --config configs/pfpascal.yaml) and evaluate that checkpoint here "
            "(sosc test --config configs/pfwillow.yaml --ckpt_path <checkpoint>)"
        )
    base = find_pfwillow_root(root)
    path = find_pair_file(base)
    _, rows = read_csv_rows(path)
    width = 2 + 4 * PFWILLOW_NUM_KPS
    report = SkipReport(split_file=path)
    records: list[PairRecord] = []
    for index, (lineno, cells) in enumerate(rows):
        where = f"{path}:{lineno}"
        if len(cells) != width:
            raise DatasetError(
                f"{where}: expected {width} columns (imageA, imageB, 10 source x, 10 source y, 10 target x, "
                f"10 target y), got {len(cells)}"
            )
        src_path, category = _image(base, cells[0], where)
        trg_path, trg_category = _image(base, cells[1], where)
        if trg_category != category:
            raise DatasetError(f"{where}: source is in {category} but target in {trg_category}")
        n = PFWILLOW_NUM_KPS
        values = number_cells(cells[2:], where, first_column=3)
        src = np.stack([values[0:n], values[n : 2 * n]], 1)
        trg = np.stack([values[2 * n : 3 * n], values[3 * n : 4 * n]], 1)
        keep = ~(missing_keypoints(src) | missing_keypoints(trg))
        report.skip_keypoints("missing in the pair list", int((~keep).sum()), where)
        if not keep.any():
            report.skip_pair("no keypoint in common", where)
            continue
        records.append(PairRecord(
            pair_id=f"{index}-{category}-{src_path.stem}-{trg_path.stem}",
            src_path=src_path,
            trg_path=trg_path,
            src_kps=src[keep].astype(np.float32),
            trg_kps=trg[keep].astype(np.float32),
            category=category,
            category_id=PFWILLOW_CATEGORIES.index(category),
            bound="bbox-kp",
            source=where,
        ))
    return records, report


class PFWillowDataModule(PairDataModule):
    """PF-WILLOW: 900 test pairs over 10 sub-classes, 10 keypoints each, no boxes; PCK by the
    extent of the valid target keypoints. Only ``sosc test`` / ``validate`` / ``predict`` on the
    test split make sense: ``fit`` raises a :class:`ConfigError` pointing at PF-PASCAL.

    Args:
        root: the PF-WILLOW folder or its parent (default ``data``); a download is extracted
            into ``root``.
        input_size: network input side (default 256).
        download: fetch and extract ``PF-dataset.zip`` in ``prepare_data`` when the tree is
            missing (the pair list is never downloaded: see :func:`pair_file_help`); ``False``
            never downloads and only explains what to put where.
        url: download from this URL (a mirror) instead of ``$SOSC_PFWILLOW_URL`` or the official one.
        sha256: expected checksum of the archive (none is published).
        Other arguments: see :class:`sosc.data.datamodule.PairDataModule`.
    """

    name = "PF-WILLOW"
    archive: ArchiveSpec = PFWILLOW_ARCHIVE
    categories: Sequence[str] = PFWILLOW_CATEGORIES

    def find_root(self, root: Path) -> Path:
        return find_pfwillow_root(root)

    def extra_help(self) -> str:
        return pair_file_help(self.root / PFWILLOW_FOLDERS[0], self.root)

    def check_stage(self, stage: str) -> None:
        """``fit``: the :class:`ConfigError` that points at PF-PASCAL (PF-WILLOW is a test set only)."""
        if stage == "fit":
            read_pfwillow(self.root, "train")

    def prepare_data(self) -> None:
        """Download and extract PF-dataset.zip into ``root`` if no tree is there (sets no attributes).

        Under ``sosc fit`` it raises the :class:`ConfigError` that points at PF-PASCAL first,
        before anything is downloaded.
        """
        trainer = getattr(self, "trainer", None)
        if trainer is not None and getattr(trainer.state, "fn", None) == "fit":
            read_pfwillow(self.root, "train")
        super().prepare_data()

    def read_split(self, split: str) -> tuple[list[PairRecord], SkipReport]:
        return read_pfwillow(self.root, split)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            read_pfwillow(self.root, "train")  # raises the ConfigError that points at PF-PASCAL
        if stage == "validate":
            stage = "test"  # validating on PF-WILLOW means its only split
        super().setup(stage)

    def val_dataloader(self) -> DataLoader:
        """The test split (PF-WILLOW's only one), so that ``sosc validate`` works too."""
        return self._loader("test", train=False)
