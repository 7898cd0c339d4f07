"""Turning a PCK result dict into the tables ``sosc test`` prints and writes."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path


def split_keys(result: Mapping[str, float]) -> tuple[list[str], list[str]]:
    """Alphas (``"0.1"``...) and breakdown names (``""`` overall, ``"cat"``, ``"size=0"``...)."""
    alphas, parts = [], [""]
    for key in result:
        if not key.startswith("pck@"):
            continue
        head, _, part = key[4:].partition("/")
        if head not in alphas:
            alphas.append(head)
        if part and part not in parts:
            parts.append(part)
    return alphas, parts


def rows(result: Mapping[str, float]) -> list[dict[str, str]]:
    """One row per breakdown (overall first), one PCK column per alpha (fractions)."""
    alphas, parts = split_keys(result)
    out = []
    for part in parts:
        row = {"subset": part or "all", "pairs": f"{result.get(f'pairs/{part}' if part else 'pairs', 0):.0f}"}
        for a in alphas:
            value = result.get(f"pck@{a}/{part}" if part else f"pck@{a}")
            row[f"pck@{a}"] = "" if value is None else f"{value:.6f}"
        if not part:
            for a in alphas:
                row[f"pck_kp@{a}"] = f"{result[f'pck_kp@{a}']:.6f}"
        out.append(row)
    return out


def markdown(result: Mapping[str, float], title: str, note: str = "") -> str:
    """A Markdown table with PCK x 100, one line per subset; ``note`` (e.g. what KBC decided)
    goes under the counts."""
    alphas, _ = split_keys(result)
    table = rows(result)
    head = ["subset", "pairs"] + [f"PCK@{a}" for a in alphas]
    lines = [f"### {title}", "", f"pairs: {int(result.get('pairs', 0))}, keypoints: {int(result.get('keypoints', 0))}, "
             f"skipped: {int(result.get('skipped', 0))}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for row in table:
        cells = [row["subset"], row["pairs"]] + [f"{100 * float(row[f'pck@{a}']):.1f}" if row[f"pck@{a}"] else "" for a in alphas]
        lines.append("| " + " | ".join(cells) + " |")
    if table:
        kp = ", ".join(f"PCK_kp@{a} {100 * float(table[0][f'pck_kp@{a}']):.1f}" for a in alphas)
        lines += ["", f"per keypoint: {kp}"]
    return "\n".join(lines) + "\n"


def write_report(
    result: Mapping[str, float], title: str, folder: Path, stem: str = "pck", note: str = ""
) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` into ``folder`` (atomically); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    table = rows(result)
    csv_path, md_path = folder / f"{stem}.csv", folder / f"{stem}.md"
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        fields = list(dict.fromkeys(k for row in table for k in row))
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)
    tmp.replace(csv_path)
    tmp = md_path.with_suffix(".md.tmp")
    tmp.write_text(markdown(result, title, note))
    tmp.replace(md_path)
    return csv_path, md_path
