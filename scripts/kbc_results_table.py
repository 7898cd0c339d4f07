"""Merge ``kbc_results.py`` outputs into one Markdown table per data set and matcher.

    python scripts/kbc_results_table.py runs/results/*.json

For each (data, split, matcher): one row per label (e.g. ``before``, ``now``) with PCK@0.1 x100
over all pairs and per size bin, without KBC (the plain pass of the same run) -> with KBC, the
pairs per bin, the pairs that zoomed, KBC's matcher passes per pair and the wall time; and whether each bin meets the goals of
issue #11 (KBC never more than 0.5 below plain; on small objects at least +7.5).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

ORDER = ["trg24", "trg48", "trg96", "trg160", "photo", "small", "medium", "large", "unknown"]


def mean(values: list[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else float("nan")


def main(paths: list[str]) -> None:
    runs = [json.loads(open(p).read()) for p in paths]
    groups = defaultdict(list)
    for run in runs:
        groups[(run["data"], run["split"], run["matcher"])].append(run)
    for (data, split, matcher), members in groups.items():
        bins = sorted({r["bin"] for run in members for r in run["pairs"]}, key=lambda b: ORDER.index(b) if b in ORDER else 99)
        counts = {b: sum(1 for r in members[0]["pairs"] if r["bin"] == b) for b in bins}
        print(f"\n#### {data} {split}, {matcher}: PCK@0.1 x100, without KBC -> with KBC\n")
        head = ["KBC", "all"] + [f"{b} ({counts[b]})" for b in bins] + ["pairs zoomed", "matcher passes per pair",
                                                                         "wall time (s)"]
        print(f"{len(members[0]['pairs'])} pairs; pairs per bin in brackets\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for run in members:
            cells = [run["label"]]
            for b in ["all", *bins]:
                rows = [r for r in run["pairs"] if b == "all" or r["bin"] == b]
                plain, kbc = mean([r["plain@0.1"] for r in rows]), mean([r["kbc@0.1"] for r in rows])
                cells.append(f"{plain:.1f} -> {kbc:.1f} ({kbc - plain:+.1f})")
            zoomed = sum(r["zoomed"] for r in run["pairs"])
            # KBC's own passes (pass 1, then pass 2 or, where pass 1 shrank the source, the plain pass)
            passes = sum(r.get("passes", 1 + r["zoomed"]) for r in run["pairs"]) / len(run["pairs"])
            cells += [f"{zoomed}/{len(run['pairs'])}", f"{passes:.2f}", f"{run['seconds']:.0f}"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
