"""Sweep KBC's zoom and its per-keypoint choice on a split's pairs, for one matcher.

For every pair of the split this runs, once, the plain pass (full images) and its reverse
(the predicted target keypoints matched back to the source), then, per zoom setting, the
zoomed pass on the pairs that zoom and its reverse, and caches every keypoint's prediction,
confidence and cycle (forward-backward) error. Selection rules (which pass each keypoint
keeps) are then scored from the cache, per target keypoint-box size bin, without running the
matcher again. This is how KBC's defaults were chosen (on ``val`` pairs only):

    python scripts/kbc_sweep.py --data real_semantic --split val --out runs/sweep/real_val_feature.pt
    python scripts/kbc_sweep.py --data synthetic --split val --ckpt <kbcnet.ckpt> --out runs/sweep/syn_val_kbcnet.pt

Zoom settings: ``fill:<rho>`` (METHOD.md's window: the grown box fills ``rho`` of the input
side; trigger ``tau = rho / min_zoom``), ``px:<P>`` (scale-aware: the grown box spans ``P``
input pixels; the same window maths with ``rho = P / S``), each with ``s_max`` and whether
the two windows are brought to one scale (``match``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from sosc.data.dataset import PairDataset, collate_pairs
from sosc.geometry import (
    full_windows,
    image_sizes,
    points_box,
    points_from_window,
    points_to_window,
)
from sosc.kbc import KBCConfig, kbc_box, kbc_windows, match_in_windows, match_plain
from sosc.kbc.passes import confidence_of, index_images


def build_data(name: str, split: str, input_size: int, max_pairs: int | None):
    """(dataset with originals, per-pair metadata list) for ``real_semantic`` or ``synthetic``."""
    if name == "real_semantic":
        from sosc.data import RealSemanticDataModule as Module
        dm = Module("data/real_semantic", input_size=input_size, num_workers=0)
    elif name == "synthetic":
        from sosc.data import SyntheticDataModule as Module
        dm = Module("data/synthetic", input_size=input_size, num_workers=0)
    else:
        raise SystemExit(f"--data: real_semantic or synthetic, got {name!r}")
    dm.prepare_data()
    records = dm.records(split)
    if max_pairs:
        records = records[:max_pairs]
    meta = []
    for rec in records:
        info = {}
        try:
            info = json.loads(Path(rec.source).read_text())
        except (OSError, ValueError):
            pass
        meta.append({k: info.get(k) for k in ("src_kp_bin", "trg_kp_bin", "kind", "category", "src_instance",
                                               "trg_instance")})
    return PairDataset(records, input_size, keep_original=True), meta


def build_matcher(ckpt: str | None, backbone: str, strides: Sequence[int], options: dict | None = None):
    if ckpt:
        from sosc.checkpoint import load_module
        return load_module(ckpt).matcher.eval()
    from sosc.matchers import FeatureMatcher
    return FeatureMatcher(backbone, pretrained="package", strides=tuple(strides), **(options or {})).eval()


def inliers(points: torch.Tensor, valid: torch.Tensor, k: float = 2.5) -> torch.Tensor:
    """``(B, N)`` bool: valid points within ``k`` times the median distance of the valid points
    from their median (a robust box of predictions that ignores stray keypoints)."""
    big = torch.where(valid[..., None], points, torch.full_like(points, float("nan")))
    centre = big.nanmedian(dim=1).values[:, None]
    dist = torch.linalg.vector_norm(points - centre, dim=-1)
    med = torch.where(valid, dist, torch.full_like(dist, float("nan"))).nanmedian(dim=1).values[:, None]
    return valid & (dist <= k * med.clamp_min(1.0))


def similarity_box(src_kps: torch.Tensor, pred: torch.Tensor, valid: torch.Tensor, src_box: torch.Tensor,
                   k: float | None = None) -> torch.Tensor:
    """The grown source box, scaled by the median ratio of pairwise distances (predicted over
    source keypoints) and placed at the predictions' median: a target box that a minority of
    stray predictions cannot move or blow up. ``(B, 4)``."""
    out = []
    for q, p, v, box in zip(src_kps, pred, valid, src_box):
        q, p = q[v], p[v]
        if len(q) < 2:
            out.append(torch.full((4,), float("nan")))
            continue
        dq = torch.cdist(q[None], q[None])[0]
        dp = torch.cdist(p[None], p[None])[0]
        iu = torch.triu_indices(len(q), len(q), 1)
        ratio = dp[iu[0], iu[1]] / dq[iu[0], iu[1]].clamp_min(1.0)
        s = ratio.median()
        qm, pm = q.median(0).values, p.median(0).values
        out.append(torch.cat([(box[:2] - qm) * s + pm, (box[2:] - qm) * s + pm]))
    return torch.stack(out)


def reverse(matcher, src_img, trg_img, pred, valid, src_win, trg_win, size):
    """Match predicted target keypoints (original px) back to the source (original px)."""
    back, _ = match_in_windows(matcher, trg_img, src_img, pred, valid, trg_win, src_win, size)
    return back


def windows_for(setting: dict, src_box, trg_box, src_size, trg_size, size: int):
    rho = setting["rho"] if "rho" in setting else setting["px"] / size
    tau = rho / setting["min_zoom"]
    src_win, src_trig = kbc_windows(src_box, src_size, size, tau, rho, setting["s_max"])
    rho_t = rho * setting.get("trg_context", 1.0)
    trg_win, trg_trig = kbc_windows(trg_box, trg_size, size, tau * setting.get("trg_context", 1.0), rho_t,
                                    setting["s_max"])
    if setting.get("match"):
        # one scale for both: the image whose box would come out larger in input pixels
        # is zoomed less, so that both boxes span the same input pixels
        def span(box, win):
            side = (box[:, 2:] - box[:, :2]).amax(-1)
            return side * size / (win[:, 2] - win[:, 0])
        s_span, t_span = span(src_box, src_win), span(trg_box, trg_win)
        target = torch.minimum(s_span, t_span)
        for which in ("src", "trg"):
            box = src_box if which == "src" else trg_box
            hw = src_size if which == "src" else trg_size
            sp = s_span if which == "src" else t_span
            r = target / size
            need = sp > target * 1.05
            if need.any():
                rr = torch.where(need, r, torch.full_like(r, rho))
                w = torch.stack([kbc_windows(box[i:i + 1], hw[i:i + 1], size, 1e9, float(rr[i]),
                                             setting["s_max"])[0][0] if need[i] else
                                 (src_win if which == "src" else trg_win)[i] for i in range(len(box))])
                if which == "src":
                    src_win = w
                else:
                    trg_win = w
    return src_win, trg_win, src_trig, trg_trig


@torch.no_grad()
def sweep(matcher, dataset, meta, settings: dict[str, dict], size: int, batch: int, cycle: bool) -> dict:
    cfg = KBCConfig()
    out = {"settings": settings, "pairs": []}
    for start in range(0, len(dataset), batch):
        items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        b = collate_pairs(items)
        src_img, trg_img = b["src_orig"], b["trg_orig"]
        valid = b["valid"]
        src_kps = points_from_window(b["src_kps"], b["src_window"], size)
        gt = points_from_window(b["trg_kps"], b["trg_window"], size)
        src_size, trg_size = image_sizes(src_img), image_sizes(trg_img)
        plain, out1 = match_plain(matcher, src_img, trg_img, src_kps, valid, size)
        conf1 = confidence_of(out1)
        full_s, full_t = full_windows(src_size), full_windows(trg_size)
        back1 = reverse(matcher, src_img, trg_img, plain, valid, full_s, full_t, size) if cycle else None
        src_box = kbc_box(src_kps, valid, cfg.margin, cfg.min_margin)
        pred_box = kbc_box(plain, valid, cfg.margin, cfg.min_margin)
        trimmed_box = kbc_box(plain, valid & inliers(plain, valid), cfg.margin, cfg.min_margin)
        trimmed4_box = kbc_box(plain, valid & inliers(plain, valid, 4.0), cfg.margin, cfg.min_margin)
        sim_box = similarity_box(src_kps, plain, valid, src_box)
        gt_box = kbc_box(gt, valid, cfg.margin, cfg.min_margin)
        per_setting = {}
        for name, setting in settings.items():
            trg_box = {"oracle": gt_box, "trim": trimmed_box, "trim4": trimmed4_box,
                       "sim": sim_box}.get(setting.get("target"), pred_box)
            src_win, trg_win, st, tt = windows_for(setting, src_box, trg_box, src_size, trg_size, size)
            changed = (src_win != full_s).any(-1) | (trg_win != full_t).any(-1)
            kps2, conf2, back2 = plain.clone(), None if conf1 is None else conf1.clone(), None
            if cycle:
                back2 = back1.clone()
            idx = changed.nonzero().flatten()
            if len(idx):
                k2, o2 = match_in_windows(matcher, index_images(src_img, idx), index_images(trg_img, idx),
                                          src_kps[idx], valid[idx], src_win[idx], trg_win[idx], size)
                kps2[idx] = k2
                c2 = confidence_of(o2)
                if conf2 is not None and c2 is not None:
                    conf2[idx] = c2
                if cycle:
                    back2[idx] = reverse(matcher, index_images(src_img, idx), index_images(trg_img, idx), k2,
                                         valid[idx], src_win[idx], trg_win[idx], size)
            # how far inside the target window each pass-1 prediction sits (1 = at the centre)
            per_setting[name] = {"kps": kps2, "conf": conf2, "back": back2, "zoomed": changed,
                                 "src_win": src_win, "trg_win": trg_win,
                                 "pass1_in_window": points_to_window(plain, trg_win, size)}
        for i in range(len(items)):
            v = valid[i]
            pair = {
                "index": int(b["index"][i]), "bound": float(b["pck_bound"][i]), "size_class": b["size_class"][i],
                "category": b["category"][i], **meta[start + i],
                "trg_size": trg_size[i].tolist(), "src_size": src_size[i].tolist(),
                "trg_kp_side": float((points_box(gt[i][v])[2:] - points_box(gt[i][v])[:2]).amax()),
                "src_kp_side": float((points_box(src_kps[i][v])[2:] - points_box(src_kps[i][v])[:2]).amax()),
                "src": src_kps[i][v], "gt": gt[i][v], "plain": plain[i][v],
                "conf1": None if conf1 is None else conf1[i][v], "back1": None if back1 is None else back1[i][v],
                "settings": {},
            }
            for name, r in per_setting.items():
                pair["settings"][name] = {
                    "kps": r["kps"][i][v], "conf": None if r["conf"] is None else r["conf"][i][v],
                    "back": None if r["back"] is None else r["back"][i][v], "zoomed": bool(r["zoomed"][i]),
                    "src_win": r["src_win"][i], "trg_win": r["trg_win"][i],
                }
            out["pairs"].append(pair)
        print(f"{min(start + batch, len(dataset))}/{len(dataset)} pairs", flush=True)
    return out


def default_settings() -> dict[str, dict]:
    s = {"fill0.7": {"rho": 0.7, "min_zoom": 1.4, "s_max": 4.0}}  # METHOD.md: tau 0.5, rho 0.7
    s["fill0.7_guard"] = {"rho": 0.7, "min_zoom": 1.4, "s_max": 4.0, "trg_context": 0.5 / 0.7}
    s["fill0.7_trim"] = {"rho": 0.7, "min_zoom": 1.4, "s_max": 4.0, "target": "trim"}
    for px in (64, 96, 128):
        s[f"px{px}"] = {"px": px, "min_zoom": 1.25, "s_max": 4.0}
    for px in (64, 96):
        s[f"px{px}_match"] = {"px": px, "min_zoom": 1.25, "s_max": 4.0, "match": True}
        s[f"px{px}_trim"] = {"px": px, "min_zoom": 1.25, "s_max": 4.0, "target": "trim"}
        s[f"px{px}_trim_match"] = {"px": px, "min_zoom": 1.25, "s_max": 4.0, "target": "trim", "match": True}
    s["px96_oracle"] = {"px": 96, "min_zoom": 1.25, "s_max": 4.0, "target": "oracle"}
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="real_semantic")
    parser.add_argument("--split", default="val")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--ckpt", default=None, help="a KBCNet checkpoint (default: the training-free FeatureMatcher)")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--strides", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--matcher-options", default="{}",
                        help='FeatureMatcher options as JSON; the figures measured before its kernel soft-argmax '
                             'became the default: \'{"kernel_sigma": null}\'')
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-cycle", action="store_true")
    parser.add_argument("--settings", default=None, help="JSON dict name -> setting (default: the built-in grid)")
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    if opts.split == "test":
        print("note: the test split is for reporting; choose settings on val")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dataset, meta = build_data(opts.data, opts.split, opts.input_size, opts.max_pairs)
    matcher = build_matcher(opts.ckpt, opts.backbone, opts.strides, json.loads(opts.matcher_options))
    settings = json.loads(opts.settings) if opts.settings else default_settings()
    start = time.perf_counter()
    result = sweep(matcher, dataset, meta, settings, opts.input_size, opts.batch, not opts.no_cycle)
    result["seconds"] = time.perf_counter() - start
    result["args"] = vars(opts)
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(result, opts.out)
    print(f"{len(result['pairs'])} pairs in {result['seconds']:.0f} s -> {opts.out}")


if __name__ == "__main__":
    main()
