"""Probe (issue #11): pass 1 on the full source, pass 1 on the shrunk source, or pick per pair?

For every pair of a split this runs KBC twice, with the default options and with
``pass1_src_px = P`` (``forward_with_info(with_plain=True)``), and pass 1 on the whole and on the
shrunk source alone, and caches per pair the results' PCK@0.1 and, for both pass-1
predictions, training-free measures of how coherent they are against the source keypoints'
layout: the spread of the log ratios of pairwise distances (predicted over source), the
median ratio itself (the predicted scale), the robust similarity fit's median residual over the
fitted target box side, and the mean and median confidence. Per-pair rules that pick one
pass 1 (and so one target box) from these measures are then scored from the cache, per bin
(``--report`` scores a saved cache again); a pair whose pick is the shrunk pass 1 gets exactly
what ``pass1_src_px = P`` gives it, the others the default's. Nothing is chosen on test pairs:

    python scripts/probes/kbc_pass1_pick.py --data real_semantic --split val --out runs/probe/pick_real_val.pt
    python scripts/probes/kbc_pass1_pick.py --report runs/probe/pick_real_val.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kbc_results import bin_of, build_matcher, pair_batches, pck_per_pair, records  # noqa: E402

from sosc.kbc.choice import fit_similarity  # noqa: E402


def coherence(src_kps: torch.Tensor, pred: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per pair: ``spread`` (MAD of log pairwise distance ratios), ``scale`` (their median),
    ``resid`` (median similarity-fit residual over the fitted box side)."""
    dq = torch.cdist(src_kps.float(), src_kps.float())
    dp = torch.cdist(pred.float(), pred.float())
    n = src_kps.shape[1]
    upper = torch.ones(n, n, dtype=torch.bool).triu(1)
    both = valid[:, :, None] & valid[:, None, :] & upper & (dq > 1.0)
    logr = torch.where(both, (dp.clamp_min(0.5) / dq.clamp_min(1.0)).log(), torch.full_like(dp, float("nan")))
    flat = logr.flatten(1)
    med = flat.nanmedian(-1).values
    spread = (flat - med[:, None]).abs().nanmedian(-1).values
    fitted = fit_similarity(src_kps, pred, valid)
    res = torch.linalg.vector_norm(pred - fitted, dim=-1)
    res = torch.where(valid, res, torch.full_like(res, float("nan"))).nanmedian(-1).values
    big = torch.where(valid[..., None], src_kps, torch.full_like(src_kps, float("nan")))
    side = (big.nan_to_num(-1e9).amax(1) - big.nan_to_num(1e9).amin(1)).amax(-1).clamp_min(1.0)
    return {"spread": spread, "scale": med.exp(), "resid": res / (med.exp() * side)}


@torch.no_grad()
def collect(data: str, split: str, ckpt: str | None, span: float, input_size: int, batch: int,
            max_pairs: int | None) -> dict:
    from sosc.data.dataset import PairDataset
    from sosc.geometry import full_windows, image_sizes
    from sosc.kbc import KBCWrapper, kbc_box
    from sosc.kbc.passes import confidence_of, run_in_windows
    from sosc.kbc.windows import pass1_source_windows

    recs = records(data, split)[:max_pairs]
    dataset = PairDataset(recs, input_size, keep_original=True)
    matcher = build_matcher(ckpt)
    default = KBCWrapper(matcher, input_size=input_size)
    shrink = KBCWrapper(matcher, input_size=input_size, pass1_src_px=span)
    rows: dict[str, list] = {}
    for first, n, b, src_kps, gt in pair_batches(dataset, batch, input_size):
        valid = b["valid"]
        out_d = default.forward_with_info(b["src_orig"], b["trg_orig"], src_kps, valid)
        out_s = shrink.forward_with_info(b["src_orig"], b["trg_orig"], src_kps, valid)
        src_box = kbc_box(src_kps, valid, default.config.margin, default.config.min_margin)
        win, shrunk = pass1_source_windows(src_box, image_sizes(b["src_orig"]).float(), input_size, span)
        p1s, o1s = run_in_windows(matcher, b["src_orig"], b["trg_orig"], src_kps, valid, win,
                                  full_windows(image_sizes(b["trg_orig"]).float()), input_size)
        p1f, o1f = run_in_windows(matcher, b["src_orig"], b["trg_orig"], src_kps, valid,
                                  full_windows(image_sizes(b["src_orig"]).float()),
                                  full_windows(image_sizes(b["trg_orig"]).float()), input_size)
        bound = b["pck_bound"].float()
        cols = {"plain": out_d.plain_kps, "kbc": out_d.kps, "kbc_s": out_s.kps, "p1s": p1s}
        for name, pred in cols.items():
            rows.setdefault(f"pck_{name}", []).append(pck_per_pair(pred, gt, valid, bound))
        for tag, pred in (("f", p1f), ("s", p1s)):
            for k, v in coherence(src_kps, pred, valid).items():
                rows.setdefault(f"{k}_{tag}", []).append(v)
        for tag, out in (("f", o1f), ("s", o1s)):
            conf = confidence_of(out)
            conf = torch.full(valid.shape, float("nan")) if conf is None else conf.float()
            rows.setdefault(f"conf_{tag}", []).append((conf * valid).sum(-1) / valid.sum(-1))
            rows.setdefault(f"confmed_{tag}", []).append(
                torch.where(valid, conf, torch.full_like(conf, float("nan"))).nanmedian(-1).values)
        rows.setdefault("shrunk", []).append(shrunk)
        rows.setdefault("zoom_d", []).append(out_d.refined)
        rows.setdefault("zoom_s", []).append(out_s.refined)
        rows.setdefault("bin", []).extend(bin_of(recs[first + i], data) for i in range(n))
        print(f"{first + n}/{len(dataset)}", flush=True)
    return {k: (v if k == "bin" else torch.cat(v)) for k, v in rows.items()}


def report(cache: dict) -> None:
    bins = sorted(set(cache["bin"]), key=lambda s: (len(s), s))
    masks = {b: torch.tensor([x == b for x in cache["bin"]]) for b in bins}

    def line(name: str, pick_s: torch.Tensor, passes: torch.Tensor | None = None) -> None:
        pck = torch.where(pick_s, cache["pck_kbc_s"], cache["pck_kbc"]) * 100
        diff = pck - cache["pck_kbc"] * 100
        se = diff.std() / len(diff) ** 0.5
        per = " ".join(f"{b} {pck[m].mean():.1f}" for b, m in masks.items())
        if passes is None:  # a rule run as one pass: both passes 1 on the shrunk pairs, then the kept one's zoom
            passes = 1 + sh.long() + torch.where(pick_s, cache["zoom_s"], cache["zoom_d"]).long()
        print(f"{name:34s} all {pck.mean():.1f} ({diff.mean():+.2f} +- {se:.2f}) | {per} | shrunk picked "
              f"{int(pick_s.sum())} | passes per pair {passes.float().mean():.2f}")

    n = len(cache["bin"])
    print(f"{n} pairs; plain {cache['pck_plain'].mean() * 100:.1f}; p1 shrunk alone "
          f"{cache['pck_p1s'].mean() * 100:.1f}")
    sh = cache["shrunk"]
    line("default", torch.zeros(n, dtype=torch.bool), 1 + cache["zoom_d"].long())
    line("pass1_src_px", torch.ones(n, dtype=torch.bool), 1 + (cache["zoom_s"] | sh).long())
    line("oracle pick", cache["pck_kbc_s"] > cache["pck_kbc"])
    for key in ("spread", "resid"):
        line(f"lower {key}", sh & (cache[f"{key}_s"] < cache[f"{key}_f"]))
        for m in (0.5, 0.75):
            line(f"lower {key} x{m}", sh & (cache[f"{key}_s"] < m * cache[f"{key}_f"]))
    for key in ("conf", "confmed"):
        if key + "_f" in cache:
            for m in (1.0, 1.25, 1.5, 2.0):
                line(f"higher {key} x{m}", sh & (cache[f"{key}_s"] > m * cache[f"{key}_f"]))
    ratio = cache["scale_f"]
    for t in (0.2, 0.3, 0.4, 0.5):
        line(f"full scale < {t}", sh & (ratio < t))
        line(f"full scale < {t} & lower spread", sh & (ratio < t) & (cache["spread_s"] < cache["spread_f"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="real_semantic")
    parser.add_argument("--split", default="val")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--span", type=float, default=48.0)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--out")
    parser.add_argument("--report")
    opts = parser.parse_args()
    if opts.report:
        report(torch.load(opts.report))
        return
    cache = collect(opts.data, opts.split, opts.ckpt, opts.span, opts.input_size, opts.batch, opts.max_pairs)
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, opts.out)
    report(cache)


if __name__ == "__main__":
    main()
