"""The PCK report files: CSV rows and a Markdown table, fractions x100 only when printed."""

import csv

from sosc.report import markdown, write_report

RESULT = {
    "pairs": 3.0, "keypoints": 10.0, "skipped": 1.0,
    "pck@0.1": 0.5, "pck_kp@0.1": 0.4, "pck@0.1/cat": 0.25, "pairs/cat": 2.0,
    "pck@0.1/size=small": 1.0, "pairs/size=small": 1.0,
}


def test_csv_and_markdown(tmp_path):
    csv_path, md_path = write_report(RESULT, "PCK without KBC", tmp_path)
    rows = {r["subset"]: r for r in csv.DictReader(open(csv_path))}
    assert rows["all"]["pck@0.1"] == "0.500000" and rows["all"]["pck_kp@0.1"] == "0.400000"
    assert rows["cat"]["pairs"] == "2" and rows["size=small"]["pck@0.1"] == "1.000000"
    text = md_path.read_text()
    assert "| all | 3 | 50.0 |" in text and "| cat | 2 | 25.0 |" in text and "skipped: 1" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_title_in_markdown():
    assert markdown(RESULT, "PCK with KBC (target: oracle)").startswith("### PCK with KBC (target: oracle)")
