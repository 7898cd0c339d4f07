"""Measure what KBC gives on the synthetic test split: plain vs KBC in every target mode.

For each matcher (the training-free FeatureMatcher on EfficientNet-Lite0 features at strides
8+16 and at stride 16 alone, KBCNet's working stride, and, when a checkpoint is given, KBCNet)
this runs ``sosc test`` once per target mode (pred-box, object-bbox, oracle); each KBC run
also reports the plain result of its own pass 1. It collects PCK@0.05 and PCK@0.1 over all
pairs and for small / medium / large target objects, with the wall time of each run, into
one Markdown table.

    python scripts/kbc_table.py --kbcnet-ckpt runs/kbcnet/.../last.ckpt --out results/kbc_synthetic.md
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from sosc.cli import main as sosc

MODES = ("pred-box", "object-bbox", "oracle")
SUBSETS = ("all", "size=small", "size=medium", "size=large")


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as fh:
        return {row["subset"]: row for row in csv.DictReader(fh)}


def run_test(args: list[str]) -> tuple[Path, float]:
    start = time.perf_counter()
    cli = sosc(["test", *args])
    return Path(cli.trainer.log_dir), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--kbcnet-ckpt", default=None)
    parser.add_argument("--logs", default="runs/kbc_table")
    parser.add_argument("--out", default="results/kbc_synthetic.md")
    parser.add_argument("--max-pairs", type=int, default=None)
    opts = parser.parse_args()
    base = ["--config", opts.config, "--trainer.logger.init_args.save_dir", opts.logs,
            "--trainer.enable_progress_bar", "false"]
    if opts.max_pairs:
        base += ["--data.init_args.max_pairs", str(opts.max_pairs)]
    feature = ["--model.matcher", "sosc.matchers.FeatureMatcher", "--model.matcher.backbone", "tf_efficientnet_lite0",
               "--model.matcher.pretrained", "package", "--model.matcher.temperature", "0.02"]
    matchers = {
        "FeatureMatcher, strides 8+16 (training-free)": [*feature, "--model.matcher.strides", "[8, 16]"],
        "FeatureMatcher, stride 16 (training-free)": [*feature, "--model.matcher.strides", "[16]"],
    }
    if opts.kbcnet_ckpt:
        matchers["KBCNet (trained)"] = ["--ckpt_path", opts.kbcnet_ckpt]
    lines = ["| matcher | KBC | subset | pairs | PCK@0.05 | PCK@0.1 | test wall time (s) |", "|---|---|---|---|---|---|---|"]
    for name, extra in matchers.items():
        folder, plain_time = run_test([*base, *extra, "--model.kbc.enabled", "false"])
        plain = read_csv(folder / "pck_plain.csv")
        results = [("none", plain, plain_time)]
        for mode in MODES:
            folder, seconds = run_test([*base, *extra, "--model.kbc.enabled", "true", "--model.kbc.target", mode])
            label = mode + (" (leaks the answer)" if mode == "oracle" else "")
            results.append((label, read_csv(folder / f"pck_kbc_{mode}.csv"), seconds))
        for label, table, seconds in results:
            for subset in SUBSETS:
                row = table.get(subset)
                if row is None:
                    continue
                pairs = row.get("pairs", "")
                lines.append(
                    f"| {name} | {label} | {subset} | {pairs} | {100 * float(row['pck@0.05']):.1f} | "
                    f"{100 * float(row['pck@0.1']):.1f} | {seconds:.0f} |"
                )
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
