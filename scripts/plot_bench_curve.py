"""Plot the cost curve of issue #15 from ``sosc-bench`` JSON files: pairs/s and peak memory
against input size, one line per measurement (floor, KBCNet, KBC's extra pass, training step).

    PYTHONPATH=src python scripts/plot_bench_curve.py results/bench_curve_cpu.json --out results/bench_curve_cpu.png

Each JSON may hold any sizes; rows of every file are merged (a row per (what, size)). KBC's
extra pass is drawn as the seconds of ``kbc-zoom`` minus those of ``kbcnet`` (pass 2 on every pair).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "backbone": "floor: ResNet-101 features, both images",
    "kbcnet": "KBCNet inference",
    "kbc-zoom": "KBCNet + KBC, pass 2 on every pair",
    "kbc-extra": "KBC's extra pass alone (kbc-zoom - kbcnet)",
    "train": "KBCNet training step",
}
COLOURS = {"backbone": "tab:blue", "kbcnet": "tab:orange", "kbc-zoom": "tab:red", "kbc-extra": "tab:purple",
           "train": "tab:green"}


def load_rows(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    rows, meta = [], []
    for path in paths:
        data = json.loads(path.read_text())
        rows.extend(data["rows"])
        meta.append({"device": data.get("device"), "load": data.get("load_average")})
    return rows, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default=None)
    opts = parser.parse_args()
    rows, meta = load_rows(opts.json)
    by = {(r["what"], r["size"]): r for r in rows}
    sizes = sorted({r["size"] for r in rows})
    series: dict[str, dict[str, list]] = {}
    for what in ("backbone", "kbcnet", "kbc-zoom", "train"):
        pts = [(s, by[(what, s)]) for s in sizes if (what, s) in by]
        series[what] = {"size": [s for s, _ in pts], "pairs": [r["pairs_per_s"] for _, r in pts],
                        "ratio": [r["ratio_to_floor"] for _, r in pts], "mem": [r["peak_mem_mib"] for _, r in pts]}
    extra = [(s, by[("kbc-zoom", s)]["seconds"] - by[("kbcnet", s)]["seconds"], by[("kbc-zoom", s)])
             for s in sizes if ("kbc-zoom", s) in by and ("kbcnet", s) in by]
    series["kbc-extra"] = {"size": [s for s, _, _ in extra],
                           "pairs": [r["batch"] / sec if sec > 0 else float("nan") for _, sec, r in extra],
                           "mem": [r["peak_mem_mib"] for _, _, r in extra], "ratio": []}
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8))
    for what, data in series.items():
        if not data["size"]:
            continue
        style = dict(color=COLOURS[what], label=LABELS[what])
        ax1.plot(data["size"], data["pairs"], "o-", **style)
        if what != "kbc-extra":
            ax3.plot(data["size"], [m if m is not None else float("nan") for m in data["mem"]], "o-", **style)
        if data["ratio"] and what != "backbone":
            ax2.plot(data["size"], data["ratio"], "o-", **style)
    ax1.set(xlabel="input side (px)", ylabel="pairs/s", yscale="log",
            title="throughput (each size its own run: compare within a size)")
    ax2.set(xlabel="input side (px)", ylabel="x floor (same rounds)", title="ratio to the floor")
    ax2.axhline(1.0, color="grey", lw=0.8)
    ax3.set(xlabel="input side (px)", ylabel="MiB", title="peak memory of one call (CPU: resident-set growth)")
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(sizes)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    ax3.legend(fontsize=8)
    loads = ", ".join(f"{m['load'][0]:.1f}" for m in meta if m.get("load"))
    fig.suptitle(opts.title or f"{meta[0]['device']}; load average at the end of each run: {loads}", fontsize=10)
    fig.tight_layout()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(opts.out, dpi=110)
    print(f"written to {opts.out}")


if __name__ == "__main__":
    main()
