"""A cache of a split's index (its validated records), so that set-up of a large benchmark takes seconds.

Reading SPair-71k's 58,724 training and validation pair files and checking every box and
keypoint against its image takes tens of seconds at every ``setup``. The data module keeps
what that gives (the records and the report of what was skipped) in one file per
(benchmark, tree, split, options), next to a **signature** of every file the reader reads:
the path, size and modification time of each (:func:`files_signature`). A cached index is used
only when the signature of the files now equals the one stored with it; any file added,
removed, rewritten or touched makes the data module read the split again and write the cache
anew (one file per key, replaced atomically: stale indexes do not pile up).

Where (:func:`cache_dir`): ``index_cache=True`` (the default) uses ``$SOSC_CACHE_DIR`` when set,
else ``$XDG_CACHE_HOME/sosc/index``, else ``~/.cache/sosc/index`` (the place users expect a
program's caches, outside the data tree, which may be read-only or shared); a path uses that
folder; ``False`` turns the cache off. A folder that cannot be written is reported once, as
a warning, and the split is read as if there were no cache. The files are Python pickles:
keep the folder as private as the data.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Bumped when what is cached (PairRecord, SkipReport, the readers' checks) changes meaning.
FORMAT = 1

_warned: set[str] = set()


def cache_dir(option: bool | str | Path | None) -> Path | None:
    """The folder of the index cache for a data module's ``index_cache`` option (see the module
    docstring); None when it is off."""
    if option is None or option is False:
        return None
    if option is True:
        env = os.environ.get("SOSC_CACHE_DIR")
        if env:
            return Path(env).expanduser()
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        return base / "sosc" / "index"
    return Path(option).expanduser()


def files_signature(files: Iterable[Path], folders: Iterable[Path] = ()) -> str:
    """SHA-256 over ``(path, size, mtime_ns)`` of each of ``files`` and of every file under each of
    ``folders`` (recursively), in sorted order; a missing file counts as missing."""
    entries: list[tuple[str, int, int]] = []

    def walk(folder: Path) -> None:
        try:
            it = os.scandir(folder)
        except OSError:
            entries.append((str(folder), -1, -1))
            return
        with it:
            for entry in it:
                if entry.is_dir(follow_symlinks=True):
                    walk(Path(entry.path))
                else:
                    try:
                        st = entry.stat()
                        entries.append((entry.path, st.st_size, st.st_mtime_ns))
                    except OSError:
                        entries.append((entry.path, -1, -1))

    for f in files:
        try:
            st = os.stat(f)
            entries.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            entries.append((str(f), -1, -1))
    for folder in folders:
        walk(Path(folder))
    digest = hashlib.sha256()
    for path, size, mtime in sorted(entries):
        digest.update(f"{path}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def cache_file(folder: Path, key: dict[str, Any]) -> Path:
    """The cache file of ``key`` (benchmark, tree, split, options) in ``folder``."""
    text = repr(sorted((k, repr(v)) for k, v in key.items()))
    return folder / f"{key.get('name', 'index')}-{key.get('split', '')}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pkl"


def load(path: Path, key: dict[str, Any], signature: str) -> Any | None:
    """The value cached at ``path`` for ``key``, when its stored signature equals ``signature``; else None."""
    try:
        with open(path, "rb") as fh:
            stored = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or stored.get("key") != key:
        return None
    if stored.get("signature") != signature:
        return None
    return stored.get("value")


def store(path: Path, key: dict[str, Any], signature: str, value: Any) -> bool:
    """Write ``value`` for ``key`` and ``signature`` to ``path`` atomically; False (and one warning
    per folder) when the folder cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump({"format": FORMAT, "key": key, "signature": signature, "value": value}, fh,
                            protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        folder = str(path.parent)
        if folder not in _warned:
            _warned.add(folder)
            warnings.warn(f"the split index cannot be cached in {folder} ({err}); set-up reads the split "
                          "files every time. Give data.init_args.index_cache a writable folder, set "
                          "SOSC_CACHE_DIR, or index_cache=false to silence this", stacklevel=3)
        return False
    return True
