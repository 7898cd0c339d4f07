"""Score the zoom settings and per-keypoint selection rules cached by ``kbc_sweep.py``.

    python scripts/kbc_sweep_report.py runs/sweep/real_val_feature.pt [--alpha 0.1]

Prints, per setting and rule, PCK@alpha (per pair, averaged) overall and per target
keypoint-box bin (real-semantic: the 24/48/96/160 px bins; synthetic: the object size class),
with pair counts, and the share of pairs that zoomed.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from sosc.kbc import KBCConfig
from sosc.kbc.choice import choose_pass2

SHAPE = KBCConfig(choice="shape")  # the default choice: sosc.kbc.choice (--margin replaces its shape_margin)


def bin_of(pair: dict) -> str:
    if pair.get("trg_kp_bin") is not None:
        return f"trg{pair['trg_kp_bin']}"
    return pair["size_class"]


def rules(pair: dict, s: dict) -> dict[str, torch.Tensor]:
    """Predictions ``(n, 2)`` of each selection rule for one pair and one setting."""
    p1, p2 = pair["plain"], s["kps"]
    out = {"plain": p1, "zoom": p2}
    if not s["zoomed"]:
        for name in ("cycle", "conf", "best", "shape", *(f"cycle{k}_t{t:g}" for k in ("", "2") for t in (0.05, 0.1, 0.2, 0.3))):
            out[name] = p1
        return out
    err1 = torch.linalg.vector_norm(p1 - pair["gt"], dim=-1)
    err2 = torch.linalg.vector_norm(p2 - pair["gt"], dim=-1)
    out["best"] = torch.where((err2 <= err1)[:, None], p2, p1)
    keep2 = choose_pass2(SHAPE, torch.ones(1, len(p1), dtype=torch.bool), first=p1[None], second=p2[None],
                         src_kps=pair["src"][None])[0]
    out["shape"] = torch.where(keep2[:, None], p2, p1)
    if pair.get("back1") is not None and s.get("back") is not None:
        src_side = max(pair["src_kp_side"], 1.0)
        c1 = torch.linalg.vector_norm(pair["back1"] - pair["src"], dim=-1) / src_side
        c2 = torch.linalg.vector_norm(s["back"] - pair["src"], dim=-1) / src_side
        out["cycle"] = torch.where((c2 <= c1)[:, None], p2, p1)
        for t in (0.05, 0.1, 0.2, 0.3):
            out[f"cycle_t{t:g}"] = torch.where(((c2 <= c1) | (c2 < t))[:, None], p2, p1)
            out[f"cycle2_t{t:g}"] = torch.where((c2 < t)[:, None], p2, p1)
    if pair.get("conf1") is not None and s.get("conf") is not None:
        out["conf"] = torch.where((s["conf"] >= pair["conf1"])[:, None], p2, p1)
    return out


def score(data: dict, alpha: float) -> dict:
    table = defaultdict(lambda: defaultdict(list))  # (setting, rule) -> bin -> [pck per pair]
    zoomed = defaultdict(int)
    for pair in data["pairs"]:
        b = bin_of(pair)
        for name, s in pair["settings"].items():
            zoomed[name] += int(s["zoomed"])
            for rule, pred in rules(pair, s).items():
                err = torch.linalg.vector_norm(pred - pair["gt"], dim=-1)
                pck = float((err <= alpha * pair["bound"]).float().mean())
                table[(name, rule)][b].append(pck)
                table[(name, rule)]["all"].append(pck)
    return {"table": table, "zoomed": zoomed, "pairs": len(data["pairs"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--margin", type=float, default=None,
                        help=f"the shape choice's shape_margin (default {KBCConfig.shape_margin}, KBCConfig's)")
    parser.add_argument("--rules", nargs="+", default=["plain", "zoom", "shape", "cycle", "cycle_t0.1", "cycle2_t0.1", "conf", "best"])
    opts = parser.parse_args()
    if opts.margin is not None:
        global SHAPE
        SHAPE = KBCConfig(choice="shape", shape_margin=opts.margin)
    data = torch.load(opts.cache, weights_only=False)
    result = score(data, opts.alpha)
    bins = sorted({b for cells in result["table"].values() for b in cells if b != "all"},
                  key=lambda b: (len(b), b))
    head = ["setting", "rule", "zoomed", "all"] + bins
    print(f"{data['args']['data']} {data['args']['split']}, {result['pairs']} pairs, PCK@{opts.alpha:g} x100 "
          f"(pairs per bin: " + ", ".join(f"{b} {len(next(iter(result['table'].values()))[b])}" for b in bins) + ")")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (name, rule), cells in result["table"].items():
        if rule not in opts.rules or (rule == "plain" and name != next(iter(data["settings"]))):
            continue
        row = [name, rule, f"{result['zoomed'][name]}/{result['pairs']}"]
        row += [f"{100 * sum(cells[b]) / len(cells[b]):.1f}" if cells[b] else "-" for b in ["all", *bins]]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
