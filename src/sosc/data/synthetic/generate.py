"""The entry point :func:`generate_synthetic`: a set appears at its root complete or not at all.

The set is written into a sibling ``<root>.partial-<random>`` folder with the completion
marker (with the path and size of every file written) last, then renamed to ``root``;
leftovers of an interrupted run are removed first, and a root that already holds the asked
set is checked against its marker, repaired if damaged (:mod:`~.repair`), and returned.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

from sosc.data.manifest import FILES_KEY, list_files
from sosc.data.synthetic.repair import check_and_repair
from sosc.data.synthetic.spec import MARKER_NAME, SyntheticSpec, check_existing, read_marker
from sosc.data.synthetic.write import write_all
from sosc.errors import ConfigError


def _remove_leftovers(root: Path) -> None:
    """Delete the ``<root>.partial-*`` folders that interrupted runs left next to ``root``."""
    if root.parent.is_dir():
        for leftover in sorted(root.parent.iterdir()):
            if leftover.name.startswith(f"{root.name}.partial-") and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)


def generate_synthetic(
    root: str | Path,
    *,
    seed: int = 0,
    n_train: int = 3000,
    n_val: int = 300,
    n_test: int = 300,
    num_workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write the synthetic SOSC benchmark in the SPair-71k layout under ``root``.

    Returns at once when ``root`` already holds the set made with the same parameters and
    every file its marker records (one ``stat`` per file); pairs whose files were deleted or
    changed since are written again (with a warning), and a set that cannot be repaired
    raises an error that says what to delete.
    ``num_workers`` and ``progress`` do not change the output. See :mod:`sosc.data.synthetic`
    for the content, the conventions and the held-out photographs.

    Args:
        root: the folder to create (its parent is created if needed).
        seed: non-negative base seed.
        n_train, n_val, n_test: pairs in ``trn``, ``val``, ``test``.
        num_workers: worker processes (``multiprocessing``: fork on Linux, spawn elsewhere);
            0 or 1 runs in this process.
        progress: show a tqdm progress bar.

    Returns:
        ``root`` as an absolute path.

    Raises:
        DatasetError: ``root`` holds a set made with other parameters, or is a non-empty
            folder without the completion marker (never overwritten), or holds a damaged set
            that cannot be repaired in place (the message says what to delete).
        ConfigError: a parameter is invalid.
    """
    spec = SyntheticSpec(seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"synthetic benchmark: num_workers must be a non-negative int, got {num_workers!r}")
    root = Path(root).expanduser().absolute()
    _remove_leftovers(root)
    if root.exists() and check_existing(root, spec):
        check_and_repair(root, spec, read_marker(root) or {})
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.partial-{secrets.token_hex(6)}")
    try:
        tmp.mkdir()
        write_all(tmp, spec, num_workers, progress)
        marker = {**spec.marker(), FILES_KEY: list_files(tmp)}
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")
        if root.exists():  # an empty folder (checked above)
            root.rmdir()
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
