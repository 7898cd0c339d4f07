"""tables.py: split-file rows, header detection, cells, and errors that name the file."""

from pathlib import Path

import numpy as np
import pytest

from sosc.data.tables import cell_path, is_number, number_cells, number_list, read_csv_rows
from sosc.errors import DatasetError


def _csv(tmp_path, text, name="pairs.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class TestIsNumber:
    @pytest.mark.parametrize("text", ["0", "3.5", "-1", "1e3", " 2 ", "nan", "inf"])
    def test_numbers(self, text):
        assert is_number(text)

    @pytest.mark.parametrize("text", ["", "XA", "class", "1;2", "cat"])
    def test_not_numbers(self, text):
        assert not is_number(text)


class TestReadCsvRows:
    def test_header_and_rows_with_line_numbers(self, tmp_path):
        path = _csv(tmp_path, "source_image,target_image,class,flip\na.jpg,b.jpg,1,0\n\n c.jpg , d.jpg ,8,1\n")
        header, rows = read_csv_rows(path)
        assert header == ["source_image", "target_image", "class", "flip"]
        assert rows == [(2, ["a.jpg", "b.jpg", "1", "0"]), (4, ["c.jpg", "d.jpg", "8", "1"])]  # stripped, blank skipped

    def test_no_header_when_the_cell_is_a_number(self, tmp_path):
        header, rows = read_csv_rows(_csv(tmp_path, "a.jpg,b.jpg,3,0\n"))
        assert header is None and rows == [(1, ["a.jpg", "b.jpg", "3", "0"])]

    def test_an_empty_cell_is_a_missing_value_not_a_header(self, tmp_path):
        header, rows = read_csv_rows(_csv(tmp_path, "a.png,b.png,,4\n"))
        assert header is None and rows == [(1, ["a.png", "b.png", "", "4"])]

    def test_a_short_first_row_is_data(self, tmp_path):
        header, rows = read_csv_rows(_csv(tmp_path, "a.jpg,b.jpg\n"))
        assert header is None and rows == [(1, ["a.jpg", "b.jpg"])]

    def test_only_the_first_row_can_be_a_header(self, tmp_path):
        header, rows = read_csv_rows(_csv(tmp_path, "a,b,1\nx,y,class\n"))
        assert header is None and [r[1][2] for r in rows] == ["1", "class"]

    def test_first_numeric_chooses_the_cell(self, tmp_path):
        path = _csv(tmp_path, "7,b,c\n")
        assert read_csv_rows(path) == (["7", "b", "c"], [])  # cell 2, "c", is text: a header
        assert read_csv_rows(path, first_numeric=0) == (None, [(1, ["7", "b", "c"])])  # cell 0 is a number

    def test_leading_blank_lines_and_a_byte_order_mark(self, tmp_path):
        path = tmp_path / "bom.csv"
        path.write_bytes("\ufeff\n\nsrc,trg,class\na,b,2\n".encode())
        header, rows = read_csv_rows(path)
        assert header == ["src", "trg", "class"] and rows == [(4, ["a", "b", "2"])]

    def test_quoted_cells_keep_their_commas(self, tmp_path):
        _, rows = read_csv_rows(_csv(tmp_path, 'a,b,1,"1;2,5"\n'))
        assert rows == [(1, ["a", "b", "1", "1;2,5"])]

    @pytest.mark.parametrize("text", ["", "\n\n  \n", "source,target,class,flip\n"])
    def test_empty_files_give_no_rows(self, tmp_path, text):
        assert read_csv_rows(_csv(tmp_path, text))[1] == []

    def test_missing_file_names_it(self, tmp_path):
        with pytest.raises(DatasetError, match=rf"split file {tmp_path / 'none.csv'} is missing"):
            read_csv_rows(tmp_path / "none.csv")

    def test_binary_file_names_it(self, tmp_path):
        path = tmp_path / "bin.csv"
        path.write_bytes(b"\xff\xfe\x00\x81garbage")
        with pytest.raises(DatasetError, match=r"split file .*bin\.csv cannot be read .*is it a CSV text file"):
            read_csv_rows(path)

    def test_a_folder_names_it(self, tmp_path):
        (tmp_path / "dir.csv").mkdir()
        with pytest.raises(DatasetError, match=r"dir\.csv cannot be read"):
            read_csv_rows(tmp_path / "dir.csv")

    def test_malformed_csv_names_the_file(self, tmp_path):
        path = _csv(tmp_path, 'a,b,1,"' + "x" * 200_000 + '"\n')  # over the csv module's field limit
        with pytest.raises(DatasetError, match=r"pairs\.csv: malformed CSV"):
            read_csv_rows(path)


class TestCellPath:
    def test_both_separators(self):
        assert cell_path("PF-dataset/car(G)/Cars_006a.png").parts == ("PF-dataset", "car(G)", "Cars_006a.png")
        assert cell_path("PF-dataset-PASCAL\\JPEGImages\\2009_000001.jpg").name == "2009_000001.jpg"
        assert cell_path("2009_000001.jpg").name == "2009_000001.jpg"


class TestNumberCells:
    def test_values_and_missing(self):
        out = number_cells(["1.5", "", "-1", "nan"], "f.csv:2")
        assert out.dtype == np.float64 and out.shape == (4,)
        assert out[0] == 1.5 and np.isnan(out[1]) and out[2] == -1 and np.isnan(out[3])

    def test_error_names_the_place_and_1_based_column(self):
        with pytest.raises(DatasetError, match=r"^f\.csv:3: column 6 must be a number, got 'abc'$"):
            number_cells(["1", "2", "3", "abc"], "f.csv:3", first_column=3)
        with pytest.raises(DatasetError, match=r"column 1 must be a number"):
            number_cells(["x"], "f.csv:3")


class TestNumberList:
    def test_values_missing_and_a_trailing_separator(self):
        np.testing.assert_array_equal(number_list("10;20.5", "t.csv:2", "XA"), [10.0, 20.5])
        np.testing.assert_array_equal(number_list("10;20.5;", "t.csv:2", "XA"), [10.0, 20.5])
        out = number_list("1; ;3", "t.csv:2", "XA")
        assert out.tolist()[::2] == [1.0, 3.0] and np.isnan(out[1])
        assert number_list("", "t.csv:2", "XA").shape == (0,)

    def test_error_names_the_place_and_column(self):
        with pytest.raises(DatasetError, match=r"^t\.csv:2: column YB must be ';'-separated numbers, got '1;2;x'$"):
            number_list("1;2;x", "t.csv:2", "YB")


def test_row_numbers_match_the_file(tmp_path):
    """The line numbers are the file's, so that messages such as ``pairs.csv:7`` point at the line."""
    text = "h1,h2,h3\n\na,b,1\n\n\nc,d,2\n"
    path: Path = _csv(tmp_path, text)
    lines = text.splitlines()
    for lineno, cells in read_csv_rows(path)[1]:
        assert lines[lineno - 1].split(",") == cells
