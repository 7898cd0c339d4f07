"""Probe (issue #11): pass 1 with the target at a larger network input than the source.

A target keypoint box of 24 px in a 480-px photograph spans about 13 input pixels at input
256, under one stride-16 feature cell, and pass 1 does not find it. This probe runs pass 1
with the **target** resampled to ``--trg-input`` pixels (the source stays at ``--input-size``,
whole or in ``pass1_src_px``'s shrunk window with ``--src-px``), then KBC's default window plan,
zoomed pass (at ``--input-size``) and ``shape`` choice on that pass 1 (a pair that does not zoom
keeps this pass 1; ``pass1_src_px`` would run the plain pass for it), and reports PCK@0.1 per
bin against the plain pass and default KBC of the same pairs (the FeatureMatcher compares
feature grids of different sizes; val pairs only):

    python scripts/probes/kbc_pass1_hires.py --data real_semantic --split val --trg-input 512
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kbc_results import bin_of, build_matcher, pair_batches, pck_per_pair, print_paired, records  # noqa: E402


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="real_semantic")
    parser.add_argument("--split", default="val")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--trg-input", type=int, default=512)
    parser.add_argument("--src-px", type=float, default=None, help="shrink the source as pass1_src_px does")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-pairs", type=int, default=None)
    opts = parser.parse_args()

    from sosc.data.dataset import PairDataset
    from sosc.geometry import (
        full_windows,
        image_sizes,
        points_from_window,
        points_to_window,
        resample_windows,
    )
    from sosc.kbc import KBCWrapper, kbc_box, pass1_source_windows
    from sosc.kbc.choice import choose_pass2
    from sosc.kbc.passes import index_images, run_in_windows
    from sosc.kbc.plan import plan_windows, target_box
    from sosc.matchers.base import keypoints_of

    s = opts.input_size
    recs = records(opts.data, opts.split)[:opts.max_pairs]
    dataset = PairDataset(recs, s, keep_original=True)
    matcher = build_matcher(opts.ckpt)
    default = KBCWrapper(matcher, input_size=s)
    cfg = default.config
    pck = defaultdict(lambda: defaultdict(list))
    for first, n, b, src_kps, gt in pair_batches(dataset, opts.batch, s):
        valid = b["valid"]
        src_size = image_sizes(b["src_orig"]).float()
        trg_size = image_sizes(b["trg_orig"]).float()
        base = default.forward_with_info(b["src_orig"], b["trg_orig"], src_kps, valid)
        src_box = kbc_box(src_kps, valid, cfg.margin, cfg.min_margin)
        src_win, _ = pass1_source_windows(src_box, src_size, s, opts.src_px)
        trg_full = full_windows(trg_size)
        out = matcher(resample_windows(b["src_orig"], src_win, s), resample_windows(b["trg_orig"], trg_full, opts.trg_input),
                      points_to_window(src_kps, src_win, s), valid)
        p1 = points_from_window(keypoints_of(out).float(), trg_full, opts.trg_input)
        box = target_box(cfg, p1, valid, src_kps=src_kps, src_box=src_box)
        plan = plan_windows(cfg, src_box, box, src_size, trg_size, s)
        kbc = p1.clone()
        idx = plan.refined.nonzero().flatten()
        if idx.numel():
            kps2, _ = run_in_windows(matcher, index_images(b["src_orig"], idx), index_images(b["trg_orig"], idx),
                                     src_kps[idx], valid[idx], plan.src_window[idx], plan.trg_window[idx], s)
            use2 = choose_pass2(cfg, valid[idx], first=p1[idx], second=kps2, src_kps=src_kps[idx])
            kbc[idx] = torch.where(use2[..., None], kps2, p1[idx])
        bound = b["pck_bound"].float()
        for name, pred in (("plain", base.plain_kps), ("kbc default", base.kps), ("pass 1 hi-res", p1),
                           ("kbc on hi-res pass 1", kbc)):
            hit = pck_per_pair(pred, gt, valid, bound)
            for i in range(n):
                pck[name][bin_of(recs[first + i], opts.data)].append(float(hit[i]))
                pck[name]["all"].append(float(hit[i]))
        print(f"{first + n}/{len(dataset)}", file=sys.stderr, flush=True)
    print_paired(pck, "kbc default", f"{opts.data} {opts.split}, {len(pck['plain']['all'])} pairs, trg input "
                 f"{opts.trg_input}, src_px {opts.src_px}; PCK@0.1 x100")


if __name__ == "__main__":
    main()
