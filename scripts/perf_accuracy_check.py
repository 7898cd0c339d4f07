"""Does a speed lever of issue #15 change what a trained KBCNet predicts? (``docs/PERF_NOTES.md``, entry 6)

Loads a trained synthetic KBCNet checkpoint (``sosc fit --config configs/synthetic.yaml``) and
scores the synthetic test split (plain path, no KBC, PCK@alpha of the target box) under each
setting, in one process, 1 thread:

- at 256 px, the center-pivot source branch as ``conv3d`` (before) and ``dilated-conv2d`` (now):
  the same sums in another order, so the PCK should not move;
- at 512 px, the correlation grid uncapped (``max_cells=None``, 32 x 32, the class default) and
  capped (``max_cells=16``, ``configs/spair.yaml``), with 256 px on the same pairs beside them.
  The checkpoint was trained at 256 px, so this is a proxy for what the cap does at 512 px, not
  a measurement of a model trained at 512 px.

    PYTHONPATH=src python scripts/perf_accuracy_check.py --ckpt logs/synthetic/checkpoints/last.ckpt \\
        --root data/synthetic --pairs 300 --out results/perf_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sosc.batch import original_keypoints, to_original
from sosc.checkpoint import read_record
from sosc.data import SyntheticDataModule
from sosc.matchers import cp4d
from sosc.matchers.kbcnet import KBCNet
from sosc.metrics import PCK


def build(ckpt: dict, **overrides) -> KBCNet:
    record = read_record(ckpt)
    args = dict(record.matcher["init_args"])
    args.update(pretrained=False, **overrides)
    net = KBCNet(**args)
    state = {k.removeprefix("matcher."): v for k, v in ckpt["state_dict"].items() if k.startswith("matcher.")}
    net.load_state_dict(state, strict=True)
    return net.eval()


def score(net: KBCNet, root: str, size: int, pairs: int, source_conv: str) -> dict[str, float]:
    dm = SyntheticDataModule(root=root, input_size=size, max_pairs=pairs, num_workers=0, eval_batch_size=4)
    dm.setup("test")
    pck = PCK((0.05, 0.1, 0.15))
    saved = dict(cp4d.SOURCE_CONV)
    cp4d.SOURCE_CONV["cpu"] = source_conv
    start = time.perf_counter()
    try:
        with torch.no_grad():
            for batch in dm.test_dataloader():
                pred = net(batch["src_img"], batch["trg_img"], batch["src_kps"], batch["valid"]).kps
                pck.update(to_original(batch, pred, "trg"), original_keypoints(batch, "trg"), batch["valid"],
                           batch["pck_bound"])
    finally:
        cp4d.SOURCE_CONV.clear()
        cp4d.SOURCE_CONV.update(saved)
    result = {k: float(v) for k, v in pck.compute().items() if k.startswith("pck@")}
    result["seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--root", default="data/synthetic")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--pairs-512", type=int, default=100)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", nargs="*", type=int, default=None, help="run only these rows (0-based)")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = torch.load(opts.ckpt, map_location="cpu", weights_only=False)
    rows = []
    settings = (
        ("256 px, source branch conv3d (before)", 256, opts.pairs, {}, "conv3d"),
        ("256 px, source branch dilated-conv2d (now)", 256, opts.pairs, {}, "dilated-conv2d"),
        ("256 px, the 512-px rows' pairs", 256, opts.pairs_512, {}, "dilated-conv2d"),
        ("512 px, max_cells=None: 32 x 32 grid (the class default)", 512, opts.pairs_512, {"max_cells": None}, "dilated-conv2d"),
        ("512 px, max_cells=16: 16 x 16 grid (configs/spair.yaml)", 512, opts.pairs_512, {"max_cells": 16}, "dilated-conv2d"),
    )
    for i, (label, size, pairs, kwargs, kind) in enumerate(settings):
        if opts.only is not None and i not in opts.only:
            continue
        result = score(build(ckpt, **kwargs), opts.root, size, pairs, kind)
        rows.append({"setting": label, "pairs": pairs, **result})
        print(f"{label:<48} pairs {pairs:>4}  " + "  ".join(f"{k} {100 * v:5.1f}" for k, v in result.items()
                                                             if k.startswith("pck")), flush=True)
    if opts.out:
        Path(opts.out).write_text(json.dumps({"ckpt": opts.ckpt, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
