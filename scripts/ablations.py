"""KBCNet ablations on the synthetic benchmark: the full model, without the stride-8 keypoint
refinement, without CSFA, and with a full (not center-pivot) 4D decoder of the same depth, each trained with the same config and the same budget of steps (``--max-steps``, default
200: the full 4D decoder makes a step about 2.5 times slower on this CPU).

For each variant: ``sosc fit`` (``configs/synthetic.yaml`` plus the variant's override), then
``sosc test`` of the last checkpoint (no KBC); it records the test PCK, the parameter count,
the training wall time and the inference time per pair (batch 8 at the config's input size,
median of 5 after 2 warm-ups, on this machine). A variant whose checkpoint is given with
``--ckpt NAME=PATH`` is not trained again (its training time is then read from nothing and
left empty).

    python scripts/ablations.py --out results/ablations_synthetic.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

from sosc.cli import main as sosc

VARIANTS = {
    "KBCNet (full)": [],
    "without refinement": ["--model.matcher.init_args.refine", "false"],
    "without CSFA": ["--model.matcher.init_args.use_csfa", "false"],
    "full 4D decoder": ["--model.matcher.init_args.decoder", "full"],
}


def inference_seconds_per_pair(matcher: torch.nn.Module, size: int, batch: int = 8) -> float:
    matcher.eval()
    src, trg = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)
    kps, valid = torch.rand(batch, 12, 2) * size, torch.ones(batch, 12, dtype=torch.bool)
    times = []
    with torch.no_grad():
        for i in range(7):
            start = time.perf_counter()
            matcher(src, trg, kps, valid)
            if i >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--logs", default="runs/ablations")
    parser.add_argument("--out", default="results/ablations_synthetic.md")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default all)")
    parser.add_argument("--ckpt", nargs="*", default=[], help="NAME=PATH: reuse a trained checkpoint")
    parser.add_argument("--max-steps", type=int, default=200, help="training steps of every variant (default 200)")
    parser.add_argument("--base", action="append", default=None,
                        help="one sosc argument added to every variant (repeat), e.g. --base=--model.matcher.init_args.refine --base=false")
    opts = parser.parse_args()
    reuse = dict(item.split("=", 1) for item in opts.ckpt)
    lines = ["| variant | params | test PCK@0.05 | test PCK@0.1 | train wall time (min) | inference s/pair |",
             "|---|---|---|---|---|---|"]
    for name, override in VARIANTS.items():
        if opts.only and name not in opts.only:
            continue
        common = ["--config", opts.config, "--trainer.logger.init_args.save_dir", opts.logs,
                  "--trainer.logger.init_args.name", name.replace(" ", "_").replace("(", "").replace(")", ""),
                  "--trainer.enable_progress_bar", "false", "--trainer.max_steps", str(opts.max_steps),
                  "--trainer.val_check_interval", str(opts.max_steps), *(opts.base or []), *override]
        train_min = ""
        if name in reuse:
            ckpt = reuse[name]
        else:
            start = time.perf_counter()
            fit = sosc(["fit", *common])
            train_min = f"{(time.perf_counter() - start) / 60:.1f}"
            ckpt = fit.trainer.checkpoint_callback.last_model_path
        test = sosc(["test", *common, "--ckpt_path", ckpt, "--model.kbc.enabled", "false"])
        with open(Path(test.trainer.log_dir) / "pck_plain.csv") as fh:
            overall = next(row for row in csv.DictReader(fh) if row["subset"] == "all")
        matcher = test.model.matcher
        params = sum(p.numel() for p in matcher.parameters())
        per_pair = inference_seconds_per_pair(matcher, test.model.input_size[0])
        lines.append(f"| {name} | {params:,} | {100 * float(overall['pck@0.05']):.1f} | "
                     f"{100 * float(overall['pck@0.1']):.1f} | {train_min} | {per_pair:.3f} |")
        print("\n".join(lines), flush=True)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
