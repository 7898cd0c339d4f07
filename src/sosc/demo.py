"""``make demo``: the main job on the offline synthetic benchmark, start to finish.

1. ``sosc fit`` (generates the synthetic set on first use, then a short training run);
2. ``sosc test`` with the resulting checkpoint, without KBC and with KBC (pred-box),
   each printing its PCK table and writing CSV and Markdown reports beside the logs.

Run ``python -m sosc.demo --help`` for the options; every step is an ordinary ``sosc``
command, printed before it runs, so it can be repeated by hand.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path

from sosc.cli import main as sosc


def _run(args: list[str]):
    print("\n$ sosc " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    cli = sosc(args)
    print(f"({time.perf_counter() - start:.0f} s)", flush=True)
    return cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--max-steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--logs", default="logs/demo", help="where logs, checkpoints and reports go")
    opts = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    if not Path(opts.config).is_file():
        raise SystemExit(f"config {opts.config} not found: run the demo from the repository root (make demo)")
    common = ["--config", opts.config, "--trainer.logger.init_args.save_dir", opts.logs]
    fit = _run(["fit", *common, "--trainer.max_steps", str(opts.max_steps), "--trainer.val_check_interval", str(opts.max_steps)])
    ckpt = fit.trainer.checkpoint_callback.best_model_path or fit.trainer.checkpoint_callback.last_model_path
    if not ckpt:
        raise SystemExit("training wrote no checkpoint; see the log above")
    _run(["test", *common, "--ckpt_path", ckpt, "--model.kbc.enabled", "false"])
    _run(["test", *common, "--ckpt_path", ckpt, "--model.kbc.enabled", "true", "--model.kbc.target", "pred-box"])
    print(f"\ncheckpoint: {ckpt}\nreports: {Path(opts.logs).resolve()}")


if __name__ == "__main__":
    main()
