"""Output paths, checked before any work: a run must not end by failing to write its result.

Light on purpose (no Lightning): ``sosc-match`` and the Lightning callbacks share it. Every
message starts with the option and the path, then says what is wrong and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from sosc.errors import ConfigError


def check_output_file(path: str | Path, overwrite: bool, option: str, create_folder: bool = True) -> None:
    """Raise :class:`ConfigError` before any work when ``path`` cannot be written: it is a folder,
    it exists and ``overwrite`` is false, or its folder cannot be written. A missing folder is
    created (``create_folder``) or refused. ``option`` names the setting to change.

    >>> check_output_file(".", True, "--out")
    Traceback (most recent call last):
    ...
    sosc.errors.ConfigError: --out . is a folder: give a file name
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder: give a file name")
    if path.exists() and not overwrite:
        raise ConfigError(f"{option} {path} already exists: give another path, or allow overwriting it")
    if not create_folder and not path.parent.exists():
        raise ConfigError(f"{option} {path} cannot be written: its folder {path.parent} does not exist "
                          "(create it, or choose another path)")
    check_output_folder(path.parent, option, what=f"{option} {path}")


def check_output_folder(folder: str | Path, option: str, what: str | None = None) -> None:
    """Create ``folder`` if needed and raise :class:`ConfigError` naming ``option`` (or ``what``)
    when it cannot be created or written."""
    folder = Path(folder)
    what = what or f"{option} {folder}"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} cannot be written: {folder} is a file, not a folder (choose another path)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{what} cannot be written: cannot create the folder {folder} ({err}); "
                          "choose another path") from err
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{what} cannot be written: the folder {folder} is not writable (choose another path)")
