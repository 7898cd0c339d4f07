"""Measure KBC per object-size bin: plain (no KBC), and KBC with a given configuration.

One run evaluates one matcher on one split with ``KBCWrapper`` (pred-box, leak-free) and
records, per pair, PCK@0.05/0.1 without KBC (the plain pass of the same run) and with it, the target
keypoint-box size bin, whether the pair zoomed, and the wall time. It runs against whichever
``sosc`` is importable, so that "KBC as before" is measured with the code as it was:

    # KBC now (this checkout), training-free FeatureMatcher, real-semantic test split
    python scripts/kbc_results.py --data real_semantic --split test --label now --out runs/results/real_feature_now.json
    # KBC as before: the same script against the code at 1aef5a5 (a worktree of it)
    PYTHONPATH=/path/to/worktree-at-1aef5a5/src python scripts/kbc_results.py --data real_semantic --split test \
        --label before --out runs/results/real_feature_before.json
    # a trained KBCNet: --ckpt <checkpoint>; the synthetic test split: --data synthetic
    python scripts/kbc_results_table.py runs/results/*.json > results/kbc_real_semantic.md

Bins: on the real-semantic set, the pasted target keypoint box's side (24, 48, 96, 160 px in
480-px images; "photo" for the full photographs); on the synthetic set, the target object's
size class (small < 0.25 <= medium < 0.5 <= large of the image side).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

ROOTS = {"real_semantic": "data/real_semantic", "synthetic": "data/synthetic"}


def records(data: str, split: str):
    """The split's pair records (read with the SPair-71k reader both sets are written for)."""
    from sosc.data.spair import read_spair

    root = Path(ROOTS[data])
    if not root.is_dir():
        raise SystemExit(f"{root} is missing: generate it first (sosc test --config configs/{data}.yaml)")
    categories = sorted(p.name for p in (root / "JPEGImages").iterdir() if p.is_dir())
    recs, _ = read_spair(root, split, categories)
    return recs


def bin_of(rec, data: str) -> str:
    if data == "real_semantic":
        info = json.loads(Path(rec.source).read_text())
        return "photo" if info.get("kind") == "photo" else f"trg{info['trg_kp_bin']}"
    import numpy as np

    from sosc.data.images import image_size
    from sosc.data.records import size_class

    return size_class(np.asarray(rec.trg_bbox), image_size(rec.trg_path))


def build_matcher(ckpt: str | None, matcher_options: dict | None = None):
    if ckpt:
        try:
            from sosc.checkpoint import load_module
        except ImportError:  # the code before the checkpoint record
            from sosc.inference import load_module
        return load_module(ckpt).matcher.eval()
    from sosc.matchers.feature import FeatureMatcher

    options = {"backbone": "tf_efficientnet_lite0", "pretrained": "package", **(matcher_options or {})}
    return FeatureMatcher(**options).eval()


def pair_batches(dataset, batch: int, input_size: int):
    """Yield ``(first, n, b, src_kps, gt)`` for each run of ``batch`` pairs of ``dataset`` (a
    ``PairDataset`` with ``keep_original=True``): ``b`` the collated pairs, ``src_kps`` and ``gt``
    ``(n, N, 2)`` their source and target keypoints in original pixels."""
    from sosc.data.dataset import collate_pairs
    from sosc.geometry import points_from_window

    for first in range(0, len(dataset), batch):
        b = collate_pairs([dataset[i] for i in range(first, min(first + batch, len(dataset)))])
        yield (first, len(b["valid"]), b, points_from_window(b["src_kps"], b["src_window"], input_size),
               points_from_window(b["trg_kps"], b["trg_window"], input_size))


def pck_per_pair(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, bound: torch.Tensor,
                 alpha: float = 0.1) -> torch.Tensor:
    """``(B,)`` PCK@``alpha`` of each pair: the fraction of its valid keypoints within ``alpha``
    times its ``bound`` (``(B,)``, original pixels) of ``gt``."""
    err = torch.linalg.vector_norm(pred - gt, dim=-1)
    return ((err <= alpha * bound[:, None]) & valid).sum(-1) / valid.sum(-1)


def print_paired(pck: dict, ref: str, title: str, width: int = 22) -> None:
    """Print ``pck`` (name -> bin -> per-pair PCK, with an ``"all"`` bin) x100 per name: all pairs
    with the paired change against ``ref`` +- its standard error, then each bin with its count."""
    base = torch.tensor(pck[ref]["all"])
    bins = sorted(k for k in next(iter(pck.values())) if k != "all")
    print(title)
    for name, t in pck.items():
        a = torch.tensor(t["all"])
        d = (a - base) * 100
        print(f"{name:{width}s} all {a.mean() * 100:.1f} ({d.mean():+.2f} +- {d.std() / len(d) ** 0.5:.2f}) "
              + " ".join(f"{k} ({len(t[k])}) {torch.tensor(t[k]).mean() * 100:.1f}" for k in bins))


def build_wrapper(matcher, input_size: int, options: dict):
    from sosc.kbc import KBCWrapper

    return KBCWrapper(matcher, input_size=input_size, **options)


@torch.no_grad()
def run(data: str, split: str, ckpt: str | None, input_size: int, options: dict, batch: int, max_pairs: int | None,
        matcher_options: dict | None = None):
    from sosc.data.dataset import PairDataset

    recs = records(data, split)[:max_pairs]
    dataset = PairDataset(recs, input_size, keep_original=True)
    wrapper = build_wrapper(build_matcher(ckpt, matcher_options), input_size, options)
    rows, start = [], time.perf_counter()
    for first, n, b, src_kps, gt in pair_batches(dataset, batch, input_size):
        info = wrapper.forward_with_info(b["src_orig"], b["trg_orig"], src_kps, b["valid"],
                                         trg_bbox=b["trg_bbox"], trg_kps=gt)
        for i in range(n):
            v = b["valid"][i]
            bound = float(b["pck_bound"][i])
            row = {"pair_id": b["pair_id"][i], "bin": bin_of(recs[first + i], data), "zoomed": bool(info.refined[i])}
            shrunk = getattr(info, "pass1_shrunk", None)  # pass1_src_px (the code since it has one)
            if shrunk is not None:
                row["shrunk"] = bool(shrunk[i])
            passes = getattr(info, "passes", None)  # KBC's own matcher passes (the code since it counts them)
            if passes is not None:
                row["passes"] = int(passes[i])
            elif shrunk is not None:  # the plain pass for comparison not counted
                row["passes"] = 1 + int(bool(info.refined[i]) or bool(shrunk[i]))
            for name, pred in (("plain", info.plain_kps[i]), ("kbc", info.kps[i])):
                err = torch.linalg.vector_norm(pred[v] - gt[i][v], dim=-1)
                for alpha in (0.05, 0.1):
                    row[f"{name}@{alpha:g}"] = float((err <= alpha * bound).float().mean())
                row[f"{name}_err"] = float(err.mean())
            rows.append(row)
        print(f"{len(rows)}/{len(dataset)}", flush=True)
    config = getattr(wrapper, "config", None)  # the options used ("auto" zoom resolved), if this code has one
    return rows, time.perf_counter() - start, None if config is None else dataclasses.asdict(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(ROOTS), default="real_semantic")
    parser.add_argument("--split", default="test")
    parser.add_argument("--ckpt", default=None, help="a KBCNet checkpoint (default: the training-free FeatureMatcher)")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--options", default="{}", help="KBCWrapper keyword options as JSON (default: its defaults)")
    parser.add_argument("--matcher-options", default="{}",
                        help="FeatureMatcher keyword options as JSON, e.g. '{\"kernel_sigma\": 2}' (no --ckpt)")
    parser.add_argument("--label", required=True, help="e.g. now, before")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    import sosc

    rows, seconds, config = run(opts.data, opts.split, opts.ckpt, opts.input_size, json.loads(opts.options), opts.batch,
                                opts.max_pairs, json.loads(opts.matcher_options))
    payload = {"label": opts.label, "data": opts.data, "split": opts.split, "matcher": "KBCNet" if opts.ckpt else
               "FeatureMatcher", "ckpt": opts.ckpt, "input_size": opts.input_size, "options": json.loads(opts.options),
               "matcher_options": json.loads(opts.matcher_options),
               "config": config, "sosc": str(Path(sosc.__file__).parent), "seconds": seconds, "pairs": rows}
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(payload))
    print(f"{len(rows)} pairs in {seconds:.0f} s -> {opts.out}")


if __name__ == "__main__":
    main()
