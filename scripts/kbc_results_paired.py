"""Compare two ``kbc_results.py`` runs of the same pairs: the paired difference of PCK@0.1 with KBC.

    python scripts/kbc_results_paired.py runs/t/val_real_fm_none.json runs/t/val_real_fm_s48.json
    python scripts/kbc_results_paired.py A.json B.json --by-source   # real-semantic: per source x target bin

Per bin (the runs' target bins, or with ``--by-source`` each source keypoint-box bin of the
real-semantic set against each target bin, read from the pairs' annotation files): the pair
count, PCK@0.1 x100 without KBC, with KBC in run A and in run B, and B - A with the standard
error of the paired difference (the per-pair differences' standard deviation over sqrt(pairs)),
so that noise can be judged. The two runs must hold the same pairs in the same order.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

# the bins' order, shared with the tables (scripts/ is on the path when run as a script)
from kbc_results_table import ORDER


def source_bins(run: dict) -> dict[str, str]:
    """pair id (the annotation file's stem) -> the source keypoint box's bin (``src24`` ... ``src160``, ``photo``) of a real-semantic run."""
    if run["data"] != "real_semantic":
        raise SystemExit(f"--by-source needs real-semantic runs, got {run['data']!r}")
    folder = Path("data/real_semantic/PairAnnotation") / run["split"]
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: generate the set first (README, real-semantic set)")
    out = {}
    for path in folder.glob("*.json"):
        info = json.loads(path.read_text())
        out[path.stem] = "photo" if info.get("kind") == "photo" else f"src{info['src_kp_bin']}"
    return out


def paired(a: list[dict], b: list[dict]) -> tuple[float, float, float, float, float]:
    """PCK@0.1 x100 plain, A, B, and B - A with its standard error."""
    n = len(a)
    diff = [rb["kbc@0.1"] - ra["kbc@0.1"] for ra, rb in zip(a, b)]
    m = sum(diff) / n
    se = math.sqrt(sum((d - m) ** 2 for d in diff) / (n - 1) / n) if n > 1 else float("nan")
    mean = lambda rows, key: 100.0 * sum(r[key] for r in rows) / n  # noqa: E731
    return mean(a, "plain@0.1"), mean(a, "kbc@0.1"), mean(b, "kbc@0.1"), 100.0 * m, 100.0 * se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="kbc_results.py output (the reference)")
    parser.add_argument("b", help="kbc_results.py output on the same pairs")
    parser.add_argument("--by-source", action="store_true", help="real-semantic: bin by source and target size")
    opts = parser.parse_args()
    run_a, run_b = (json.loads(Path(p).read_text()) for p in (opts.a, opts.b))
    rows_a, rows_b = run_a["pairs"], run_b["pairs"]
    if [r["pair_id"] for r in rows_a] != [r["pair_id"] for r in rows_b]:
        raise SystemExit(f"{opts.a} and {opts.b} hold different pairs: run both on the same split and data")
    src = source_bins(run_a) if opts.by_source else {}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows_a):
        key = row["bin"] if not opts.by_source else f"{src[row['pair_id']]} -> {row['bin']}"
        groups[key].append(i)

    def order(key: str) -> tuple:
        parts = key.split(" -> ")
        return tuple(ORDER.index(p) if p in ORDER else int(p[3:]) if p[3:].isdigit() else 99 for p in parts[::-1])

    print(f"{run_a['data']} {run_a['split']}, {run_a['matcher']}: A = {run_a['label']}, B = {run_b['label']}; "
          "PCK@0.1 x100\n")
    print("| bin | pairs | without KBC | A | B | B - A (+- SE) |\n|---|---|---|---|---|---|")
    for key in ["all", *sorted(groups, key=order)]:
        idx = range(len(rows_a)) if key == "all" else groups[key]
        plain, a, b, d, se = paired([rows_a[i] for i in idx], [rows_b[i] for i in idx])
        print(f"| {key} | {len(idx)} | {plain:.1f} | {a:.1f} | {b:.1f} | {d:+.2f} +- {se:.2f} |")


if __name__ == "__main__":
    main()
