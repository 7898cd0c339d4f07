"""Repairing a written set that was damaged afterwards: its marker says complete, its tree does not.

:func:`check_and_repair` compares the tree with the file record of the marker
(:func:`~.spec.tree_damage`); the pairs whose files are missing or changed are written again
(each pair depends only on ``(seed, split, index)``: the same bytes), the layout files are
written again from the recorded pair annotations, and the tree is checked once more. What
cannot be repaired (a set written before sets recorded their files, a file the generator
does not write) raises an error that says exactly what to delete.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import warnings
from pathlib import Path

from sosc.data.manifest import FILES_KEY, Damage
from sosc.data.synthetic.spec import SPLITS, SyntheticSpec, tree_damage
from sosc.data.synthetic.write import make_tree, write_pair
from sosc.errors import DatasetError

_IMAGE_STEM = re.compile(r"[a-z]+_(trn|val|test)_(\d+)_[01]")


def _delete_advice(root: Path) -> str:
    return (f"delete the folder {root} (rm -r {root}) and generate the set again (the same parameters give "
            "the same bytes), or choose another root")


def damaged_pairs(paths: list[str]) -> tuple[set[tuple[str, int]], set[str], list[str]]:
    """The ``(split, index)`` pairs and the splits' layouts that ``paths`` belong to, and the
    paths that belong to neither.

    >>> damaged_pairs(["JPEGImages/star/star_val_00003_1.jpg", "Layout/large/trn.txt", "notes.txt"])
    ({('val', 3)}, {'trn'}, ['notes.txt'])
    """
    pairs: set[tuple[str, int]] = set()
    layouts: set[str] = set()
    unknown: list[str] = []
    for rel in paths:
        parts = rel.split("/")
        stem = parts[-1].rsplit(".", 1)[0]
        image = _IMAGE_STEM.fullmatch(stem)
        if len(parts) == 3 and parts[0] in ("JPEGImages", "ImageAnnotation") and image:
            pairs.add((image.group(1), int(image.group(2))))
        elif len(parts) == 3 and parts[0] == "PairAnnotation" and parts[1] in SPLITS and stem.split("-")[0].isdigit():
            pairs.add((parts[1], int(stem.split("-")[0])))
        elif len(parts) == 3 and parts[:2] == ["Layout", "large"] and stem in SPLITS:
            layouts.add(stem)
        else:
            unknown.append(rel)
    return pairs, layouts, unknown


def _layout_text(record: dict[str, int], split: str) -> str:
    """``Layout/large/<split>.txt`` as written: the pair annotations' stems in index order."""
    prefix = f"PairAnnotation/{split}/"
    lines = [rel[len(prefix):-len(".json")] for rel in record if rel.startswith(prefix) and rel.endswith(".json")]
    return "".join(f"{line}\n" for line in sorted(lines, key=lambda line: int(line.split("-")[0])))


def _repair(root: Path, spec: SyntheticSpec, record: dict[str, int], damage: Damage) -> tuple[int, list[str]]:
    """Write the damaged pairs and layouts of ``root`` again; return how many pairs and which layouts."""
    pairs, layouts, unknown = damaged_pairs(damage.paths)
    if unknown:
        raise DatasetError(
            f"the synthetic set {root} is damaged ({damage.describe()}) and {unknown[0]} is not a file the "
            f"generator can write again: {_delete_advice(root)}"
        )
    tmp = root.with_name(f"{root.name}.partial-{secrets.token_hex(6)}")  # removed by the next run if left over
    try:
        make_tree(tmp)
        for split, index in sorted(pairs):
            write_pair(tmp, spec.seed, split, index)
        for split in sorted(layouts):
            (tmp / "Layout" / "large" / f"{split}.txt").write_text(_layout_text(record, split))
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dest = root / path.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(pairs), sorted(layouts)


def check_and_repair(root: Path, spec: SyntheticSpec, marker: dict) -> None:
    """Check the set at ``root`` (whose marker matches ``spec``) against its marker, and repair it.

    Warns what was damaged and written again.

    Raises:
        DatasetError: the set cannot be repaired (no file record, or a file the generator does
            not write, or still damaged after the repair), saying exactly what to delete.
    """
    damage, recorded = tree_damage(root, marker)
    if not damage:
        return
    if not recorded:
        raise DatasetError(
            f"the synthetic set {root} is damaged ({damage.describe()}): its completion marker says complete but "
            f"was written before sets recorded their files, so it cannot be repaired in place: {_delete_advice(root)}"
        )
    record = marker[FILES_KEY]
    n_pairs, layouts = _repair(root, spec, record, damage)
    still, _ = tree_damage(root, marker)
    if still:
        raise DatasetError(
            f"the synthetic set {root} is damaged ({damage.describe()}) and writing it again did not restore "
            f"{still.describe()}: {_delete_advice(root)}"
        )
    warnings.warn(
        f"the synthetic set {root} was damaged ({damage.describe()}): wrote {n_pairs} pair(s)"
        + (f" and the layout of {', '.join(layouts)}" if layouts else "")
        + " again; it matches its completion marker again",
        UserWarning,
        stacklevel=3,
    )
