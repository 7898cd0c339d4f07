"""What identifies a synthetic set: its parameters, its splits and its completion marker.

A set is determined by :class:`SyntheticSpec` (seed and pair counts) and
:data:`GENERATOR_VERSION`; the marker ``root/.sosc-complete.json`` (:data:`MARKER_NAME`),
written last, records both, so that a complete set is recognised and never regenerated, and
a set made with other parameters is never mistaken for the asked one. The marker also
records the path and size of every file written (:data:`sosc.data.manifest.FILES_KEY`,
not part of the set's identity), so that a set damaged after it was written (a folder
deleted, a file missing or cut short) is found (:func:`tree_damage`) and repaired.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

from sosc.data.manifest import FILES_KEY, Damage, find_damage, layout_damage, recorded_files
from sosc.errors import ConfigError, DatasetError

#: Bumped whenever the generated content changes for the same parameters.
GENERATOR_VERSION = "1"
#: The completion marker, written last (inside the temporary folder, before the rename).
MARKER_NAME = ".sosc-complete.json"
#: The marker's ``generator`` field: what tells a synthetic set from any other folder.
GENERATOR_NAME = "sosc.data.synthetic"
#: SPair-71k's split names, in the order they are generated.
SPLITS = ("trn", "val", "test")
#: Split name -> the integer that enters every pair's seed ``(seed, code, index, attempt)``.
SPLIT_CODES = MappingProxyType({"trn": 0, "val": 1, "test": 2})


@dataclass(frozen=True)
class SyntheticSpec:
    """The parameters that determine the generated content (not how it is computed).

    Attributes:
        seed: non-negative base seed.
        n_train, n_val, n_test: number of pairs in ``trn``, ``val`` and ``test``.
    """

    seed: int = 0
    n_train: int = 3000
    n_val: int = 300
    n_test: int = 300

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"synthetic benchmark: {name} must be a non-negative int, got {value!r}")

    def counts(self) -> dict[str, int]:
        """Number of pairs per SPair split name (``trn``, ``val``, ``test``)."""
        return {"trn": self.n_train, "val": self.n_val, "test": self.n_test}

    def marker(self) -> dict:
        """The content of the completion marker (what identifies the generated set)."""
        return {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, **asdict(self)}


def read_marker(root: Path) -> dict | None:
    """The completion marker of ``root`` as a dict, or None when there is none.

    Raises:
        DatasetError: the marker exists but is not a readable JSON object (the error names
            the file and says to delete the folder and generate again).
    """
    path = root / MARKER_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(
            f"completion marker {path} cannot be read ({err}): delete the folder {root} "
            "(rm -r) and generate the synthetic set again"
        ) from err
    if not isinstance(data, dict):
        raise DatasetError(f"completion marker {path} is not a JSON object: delete {root} and generate again")
    return data


def is_complete(root: str | Path) -> bool:
    """Whether ``root`` holds a completely written synthetic set (any parameters)."""
    try:
        marker = read_marker(Path(root))
    except DatasetError:
        return False
    return marker is not None and marker.get("generator") == GENERATOR_NAME


def check_existing(root: Path, spec: SyntheticSpec) -> bool:
    """Whether the existing path ``root`` already holds the set of ``spec`` (True) or is an
    empty folder to write it into (False).

    Raises:
        DatasetError: ``root`` is not a folder, holds a set made with other parameters (the
            message lists each differing parameter), or is a non-empty folder without the
            marker (never overwritten).
    """
    if not root.is_dir():
        raise DatasetError(f"{root} exists and is not a folder: choose another root for the synthetic set")
    marker = read_marker(root)
    want = spec.marker()
    if marker is not None:
        marker = {k: v for k, v in marker.items() if k != FILES_KEY}
        keys = sorted(set(marker) | set(want))
        diffs = [f"{k}: {marker.get(k)!r} on disk, {want.get(k)!r} asked" for k in keys if marker.get(k) != want.get(k)]
        if not diffs:
            return True
        raise DatasetError(
            f"{root} holds a synthetic set made with other parameters ({'; '.join(diffs)}): "
            f"delete it (rm -r {root}) to generate the new one there, or choose another root"
        )
    if any(root.iterdir()):
        raise DatasetError(
            f"{root} exists, is not empty and has no {MARKER_NAME}: it is not a synthetic set "
            "written by sosc (or one whose writing never finished), and it will not be "
            "overwritten; choose an empty or new folder as root, or delete this one if it is yours to delete"
        )
    return False


def pair_paths(split: str, line: str) -> list[str]:
    """The files of the pair on layout line ``line`` (``"<index>-<src stem>-<trg stem>:<category>"``)
    of ``split``, relative to the root.

    >>> pair_paths("trn", "0-star_trn_00000_0-star_trn_00000_1:star")[:2]
    ['PairAnnotation/trn/0-star_trn_00000_0-star_trn_00000_1:star.json', 'JPEGImages/star/star_trn_00000_0.jpg']
    """
    left, category = line.rsplit(":", 1)
    stems = left.split("-")[1:]
    paths = [f"PairAnnotation/{split}/{line}.json"]
    for stem in stems:
        paths += [f"JPEGImages/{category}/{stem}.jpg", f"ImageAnnotation/{category}/{stem}.json"]
    return paths


def tree_damage(root: Path, marker: dict) -> tuple[Damage, bool]:
    """What the set at ``root`` lacks against its marker, and whether the marker records its files.

    With a file record (sets written since sets record their files): every recorded file
    exists with its recorded size. Without (older sets): every layout file exists, and every
    file of every pair it lists.
    """
    record = recorded_files(marker)
    if record is not None:
        return find_damage(root, record), True
    return layout_damage(root, SPLITS, pair_paths), False
