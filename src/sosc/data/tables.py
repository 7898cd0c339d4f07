"""Reading the split files of PF-PASCAL and PF-WILLOW: CSV rows and the cells in them.

A split file is a comma-separated text file (UTF-8, an optional byte-order mark) with one
pair per line. A **row** is ``(line number, cells)``: the 1-based line of the file it came
from (for error messages such as ``test_pairs.csv:7``) and its cells as stripped strings,
in file order. Blank lines are not rows. Cells hold image paths (``/`` or ``\\``
separated), class indices, flags, numbers, or ``;``-separated lists of numbers; an empty
cell is a missing value.

Every error is a :class:`sosc.errors.DatasetError` naming the file (and line and column
where there is one) and what was expected.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from sosc.errors import DatasetError

#: One data row of a split file: ``(1-based line number, stripped cells)``.
Row = tuple[int, list[str]]


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a float (``nan`` and ``inf`` included; ``""`` does not).

    >>> is_number("3.5"), is_number("-1e3"), is_number("XA"), is_number("")
    (True, True, False, False)
    """
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv_rows(path: Path, first_numeric: int = 2) -> tuple[list[str] | None, list[Row]]:
    """The header (if any) and the data rows of a split file.

    A header is told from data by one cell: the first non-blank line is a header when its
    cell at index ``first_numeric`` (0-based; a data row holds a number there: the class
    index of PF-PASCAL, the first coordinate of PF-WILLOW) holds text that is not a number.
    An empty cell there is a missing value of a data row, not a header; a line with no such
    cell is a data row. Only the first non-blank line can be a header.

    Args:
        path: the CSV file.
        first_numeric: index of the cell that is numeric in every data row.

    Returns:
        ``(header, rows)``: the header's stripped cells or None, and the data rows as
        ``(line number, cells)`` (see :data:`Row`), blank lines left out. An empty file
        gives ``(None, [])``.

    Raises:
        DatasetError: the file is missing, unreadable, not UTF-8 text, or malformed CSV
            (e.g. an unterminated quote); the message names the file.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "pairs.csv"
    >>> _ = f.write_text("source,target,class,flip\\n\\na.jpg,b.jpg,3,0\\n")
    >>> read_csv_rows(f)
    (['source', 'target', 'class', 'flip'], [(3, ['a.jpg', 'b.jpg', '3', '0'])])
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise DatasetError(f"split file {path} is missing") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"split file {path} cannot be read ({err}): is it a CSV text file?") from err
    rows: list[Row] = []
    header: list[str] | None = None
    try:
        for lineno, cells in enumerate(csv.reader(text.splitlines()), start=1):
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if (
                not rows
                and header is None
                and len(cells) > first_numeric
                and cells[first_numeric]
                and not is_number(cells[first_numeric])
            ):
                header = cells
                continue
            rows.append((lineno, cells))
    except csv.Error as err:
        raise DatasetError(f"{path}: malformed CSV ({err})") from err
    return header, rows


def cell_path(cell: str) -> PurePosixPath:
    """A path cell, ``/`` or ``\\`` separated, as a :class:`~pathlib.PurePosixPath`.

    >>> cell_path("PF-dataset-PASCAL\\\\JPEGImages\\\\2009_000001.jpg").name
    '2009_000001.jpg'
    """
    return PurePosixPath(cell.replace("\\", "/"))


def number_cells(cells: Sequence[str], where: str, first_column: int = 1) -> np.ndarray:
    """Cells that each hold one number, as ``(len(cells),)`` float64; an empty cell is NaN.

    Args:
        cells: the cells.
        where: ``file:line`` of the row, for messages.
        first_column: the 1-based column number of ``cells[0]`` in its row, for messages.

    Raises:
        DatasetError: ``"<where>: column <k> must be a number, got '<cell>'"``.

    >>> number_cells(["1.5", "", "-1"], "pairs.csv:2").tolist()
    [1.5, nan, -1.0]
    """
    values = []
    for i, cell in enumerate(cells):
        try:
            values.append(float(cell) if cell else math.nan)
        except ValueError as err:
            raise DatasetError(f"{where}: column {i + first_column} must be a number, got {cell!r}") from err
    return np.asarray(values, dtype=np.float64)


def number_list(cell: str, where: str, column: str) -> np.ndarray:
    """A ``;``-separated list of numbers in one cell, as ``(K,)`` float64.

    An empty item is NaN; one trailing ``;`` is allowed (``"1;2;"`` holds two values).

    Args:
        cell: the cell.
        where: ``file:line`` of the row, for messages.
        column: the column's name (``XA``), for messages.

    Raises:
        DatasetError: ``"<where>: column <column> must be ';'-separated numbers, got ..."``.

    >>> number_list("10;20.5;;", "test_pairs.csv:2", "XA").tolist()
    [10.0, 20.5, nan]
    """
    parts = [p.strip() for p in cell.split(";")]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    try:
        return np.array([float(p) if p else math.nan for p in parts], dtype=np.float64)
    except ValueError as err:
        raise DatasetError(f"{where}: column {column} must be ';'-separated numbers, got {cell[:60]!r}") from err
