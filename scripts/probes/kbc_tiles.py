"""Probe (issue #11): can a tiled search find small targets that pass 1 misses?

The target image is searched with ``T x T`` windows of ``frac`` of its longer side (default 3 x 3
windows of half the side, zoom 2: nine matcher passes per pair); the window whose predictions
have the highest mean confidence is kept. Real-semantic val, FeatureMatcher, input 256,
PCK@0.1 per pair on the 24/48/96-px targets, against plain and the tile that would be best
(known only with the answer):

    python scripts/probes/kbc_tiles.py 3 0.5

Measured (74/75/76 pairs): most confident tile 12.4 / 18.7 / 16.2, best tile 21.3 / 32.2 /
37.5, plain 5.1 / 17.7 / 26.3; the most confident tile holds the object 57% / 56% / 45% of the
time. KBC as now (one zoomed pass): 15.0 / 31.2 / 39.3. Not adopted.
"""

import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kbc_sweep import build_data, build_matcher  # noqa: E402

from sosc.data.dataset import collate_pairs  # noqa: E402
from sosc.geometry import full_windows, image_sizes, points_from_window  # noqa: E402
from sosc.kbc import match_in_windows, match_plain  # noqa: E402
from sosc.kbc.passes import confidence_of  # noqa: E402

T = int(sys.argv[1]) if len(sys.argv) > 1 else 3
frac = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
ds, meta = build_data("real_semantic", "val", 256, None)
m = build_matcher(None, "tf_efficientnet_lite0", [8, 16])
st = defaultdict(lambda: defaultdict(list))


def pck(pred: torch.Tensor, gt: torch.Tensor, limit: float) -> float:
    return float(((pred - gt).norm(dim=-1) <= limit).float().mean())


for start in range(0, len(ds), 8):
    idx = [i for i in range(start, min(start + 8, len(ds))) if meta[i]["trg_kp_bin"] in (24, 48, 96)]
    if not idx:
        continue
    items = [ds[i] for i in idx]
    b = collate_pairs(items)
    src, trg, valid = b["src_orig"], b["trg_orig"], b["valid"]
    src_kps = points_from_window(b["src_kps"], b["src_window"], 256)
    gt = points_from_window(b["trg_kps"], b["trg_window"], 256)
    bound = b["pck_bound"]
    B = len(idx)
    hw = image_sizes(trg).float()
    with torch.no_grad():
        plain, o1 = match_plain(m, src, trg, src_kps, valid, 256)
    c1 = confidence_of(o1)
    side = hw.max(-1).values * frac
    res = []
    for ty in range(T):
        for tx in range(T):
            x0 = (hw[:, 1] - side) * tx / (T - 1)
            y0 = (hw[:, 0] - side) * ty / (T - 1)
            win = torch.stack([x0, y0, x0 + side, y0 + side], -1)
            with torch.no_grad():
                k, o = match_in_windows(m, src, trg, src_kps, valid, full_windows(image_sizes(src).float()), win, 256)
            res.append((win, k, confidence_of(o)))
    for i in range(B):
        v = valid[i]
        g = gt[i][v]
        gc = g.mean(0)
        limit = 0.1 * float(bound[i])
        confs = torch.stack([r[2][i][v].mean() for r in res])
        best = int(confs.argmax())
        contains = [
            bool((r[0][i][0] <= gc[0]) & (gc[0] <= r[0][i][2]) & (r[0][i][1] <= gc[1]) & (gc[1] <= r[0][i][3]))
            for r in res
        ]
        pcks = [pck(r[1][i][v], g, limit) for r in res]
        bn = f"trg{meta[idx[i]]['trg_kp_bin']}"
        st[bn]["plain"].append(pck(plain[i][v], g, limit))
        st[bn]["best_conf_tile"].append(pcks[best])
        st[bn]["oracle_tile"].append(max(pcks))
        st[bn]["conf_tile_contains"].append(float(contains[best]))
        st[bn]["plain_conf"].append(float(c1[i][v].mean()))
        st[bn]["best_conf"].append(float(confs[best]))
    print(start, flush=True)
for bn, d in sorted(st.items()):
    print(bn, len(d["plain"]), {k: round(100 * sum(v) / len(v), 1) for k, v in d.items()})
