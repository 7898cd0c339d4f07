"""The file record of a generated set, and what a tree on disk lacks against it.

The generated sets (:mod:`sosc.data.synthetic`, :mod:`sosc.data.real_semantic`) write, in
their completion marker, the relative path and size of every file they wrote
(:data:`FILES_KEY`). A set whose marker says complete is checked against that record
(one ``stat`` per file: a deleted folder, a missing or truncated file is found) before it is
used, and what is damaged is regenerated (the same parameters give the same bytes) or
named, with what to delete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: The marker's key holding ``{relative POSIX path: size in bytes}`` of every file written.
FILES_KEY = "files"


def list_files(root: Path, exclude: Iterable[str] = ()) -> dict[str, int]:
    """``{relative POSIX path: size}`` of every file under ``root`` (``exclude``: top-level names
    left out, e.g. the marker itself), sorted by path."""
    skip = set(exclude)
    out: dict[str, int] = {}

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if not prefix and entry.name in skip:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, rel + "/")
                elif entry.is_file():
                    out[rel] = entry.stat().st_size

    walk(str(root), "")
    return dict(sorted(out.items()))


@dataclass
class Damage:
    """What a tree lacks against its record: files ``missing`` and files whose size ``changed``
    (relative POSIX paths, sorted)."""

    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.changed)

    @property
    def paths(self) -> list[str]:
        """Every damaged path, sorted."""
        return sorted(self.missing + self.changed)

    def describe(self, limit: int = 4) -> str:
        """A short account, e.g. ``"3 files missing (Layout/large/test.txt, ...); 1 changed size (...)"``.

        >>> Damage(["a.jpg", "b.jpg"], ["c.json"]).describe()
        '2 files missing (a.jpg, b.jpg); 1 file changed size (c.json)'
        """
        parts = []
        for what, paths in (("missing", self.missing), ("changed size", self.changed)):
            if paths:
                shown = ", ".join(paths[:limit]) + (f", ... {len(paths) - limit} more" if len(paths) > limit else "")
                parts.append(f"{len(paths)} file{'s' if len(paths) != 1 else ''} {what} ({shown})")
        return "; ".join(parts) or "nothing"


def find_damage(root: Path, record: dict[str, int]) -> Damage:
    """Check ``root`` against ``record`` (``{relative path: size}``): one ``stat`` per file.

    Files on disk that the record does not name are ignored.
    """
    damage = Damage()
    for rel, size in record.items():
        try:
            st = os.stat(os.path.join(root, rel))
        except OSError:
            damage.missing.append(rel)
            continue
        if st.st_size != size:
            damage.changed.append(rel)
    damage.missing.sort()
    damage.changed.sort()
    return damage


def recorded_files(marker: dict) -> dict[str, int] | None:
    """The file record of a marker, or ``None`` for a marker written before sets recorded their
    files (or a malformed record)."""
    files = marker.get(FILES_KEY)
    if not isinstance(files, dict) or not all(isinstance(v, int) for v in files.values()):
        return None
    return files


def layout_damage(root: Path, splits: Iterable[str], pair_paths) -> Damage:
    """The check of a set whose marker has no file record: each ``Layout/large/<split>.txt``
    exists, and every file that ``pair_paths(split, line)`` names for each of its lines."""
    damage = Damage()
    for split in splits:
        layout = root / "Layout" / "large" / f"{split}.txt"
        if not layout.is_file():
            damage.missing.append(f"Layout/large/{split}.txt")
            continue
        for line in layout.read_text().splitlines():
            if line.strip():
                damage.missing += [rel for rel in pair_paths(split, line.strip()) if not (root / rel).is_file()]
    damage.missing.sort()
    return damage
