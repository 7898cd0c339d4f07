"""Probe (issue #11): does pass 1 locate small targets better with more source points?

Pass 1 is queried with the keypoints plus a ``G x G`` grid over the source keypoint box (one
matcher pass, more query points), and the target box is estimated by the similarity box
(``sosc.kbc.similarity_box``) of the keypoints alone or of all points, or by a RANSAC
similarity over them. Reported per target bin of the real-semantic val split (FeatureMatcher,
input 256): the log2 error of the box's scale, and the centre's offset in ground-truth box
sides, against the grown ground-truth keypoint box:

    python scripts/probes/kbc_dense_query.py 8

Measured on the 24-px targets (74 pairs): the scale is overestimated 4-7 times by every
estimator (median log2 error +2.1 keypoints' similarity box, +2.6 with the grid, +2.8 RANSAC
over the grid, +2.5 RANSAC over the keypoints) and the centre is off by 2.1-2.6 box sides:
pass 1 does not see an object under one stride-16 feature cell, however it is queried. Not
adopted.
"""

import math
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kbc_sweep import build_data, build_matcher  # noqa: E402

from sosc.data.dataset import collate_pairs  # noqa: E402
from sosc.geometry import points_from_window  # noqa: E402
from sosc.kbc import kbc_box, match_plain  # noqa: E402
from sosc.kbc.windows import similarity_box  # noqa: E402

torch.manual_seed(0)
G = int(sys.argv[1]) if len(sys.argv) > 1 else 8
ds, meta = build_data("real_semantic", "val", 256, None)
m = build_matcher(None, "tf_efficientnet_lite0", [8, 16])


def sim_fit(q, p, w):
    qc = torch.complex(q[:, 0].double(), q[:, 1].double())
    pc = torch.complex(p[:, 0].double(), p[:, 1].double())
    w = w.double()
    qm = (w * qc).sum() / w.sum()
    pm = (w * pc).sum() / w.sum()
    a = (w * (pc - pm) * (qc - qm).conj()).sum() / (w * (qc - qm).abs() ** 2).sum().clamp_min(1e-9)
    return a, qm, pm


def ransac_box(q, p, src_box, iters=300, eps=0.15, gen=None):
    n = len(q)
    side = float((src_box[2:] - src_box[:2]).max())
    qc = torch.complex(q[:, 0].double(), q[:, 1].double())
    pc = torch.complex(p[:, 0].double(), p[:, 1].double())
    i = torch.randint(n, (iters,), generator=gen)
    j = torch.randint(n, (iters,), generator=gen)
    ok = i != j
    i, j = i[ok], j[ok]
    dq = qc[j] - qc[i]
    good = dq.abs() > 1e-3
    i, j, dq = i[good], j[good], dq[good]
    a = (pc[j] - pc[i]) / dq
    t = pc[i] - a * qc[i]
    pred = a[:, None] * qc[None] + t[:, None]
    thr = eps * a.abs()[:, None] * side
    inl = (pred - pc[None]).abs() < thr.clamp_min(2.0)
    score = inl.sum(1)
    k = int(score.argmax())
    w = inl[k].float()
    a, qm, pm = sim_fit(q, p, w)
    for _ in range(2):
        res = ((a * (qc - qm) + pm) - pc).abs()
        w = (res < (eps * a.abs() * side).clamp_min(2.0)).float()
        if w.sum() < 3:
            break
        a, qm, pm = sim_fit(q, p, w)
    corners = torch.complex(src_box[[0, 2]].double(), src_box[[1, 3]].double())
    c = a * (corners - qm) + pm
    s = a.abs()
    cx = (c[0] + c[1]) / 2
    half = (src_box[2:] - src_box[:2]).double() / 2 * s
    return (
        torch.stack([cx.real - half[0], cx.imag - half[1], cx.real + half[0], cx.imag + half[1]]).float(),
        int(score[k]),
        float(s),
    )


def err(box, gt):
    s = float((box[2:] - box[:2]).max() / (gt[2:] - gt[:2]).max())
    c = float(((box[:2] + box[2:]) / 2 - (gt[:2] + gt[2:]) / 2).norm() / (gt[2:] - gt[:2]).max())
    return math.log2(max(s, 1e-6)), c


st = defaultdict(lambda: defaultdict(list))
gen = torch.Generator().manual_seed(0)
for start in range(0, len(ds), 8):
    items = [ds[i] for i in range(start, min(start + 8, len(ds)))]
    b = collate_pairs(items)
    src, trg, valid = b["src_orig"], b["trg_orig"], b["valid"]
    src_kps = points_from_window(b["src_kps"], b["src_window"], 256)
    gt = points_from_window(b["trg_kps"], b["trg_window"], 256)
    B, N = valid.shape
    sbox = kbc_box(src_kps, valid, 0.0, 0.0)  # raw keypoint box
    u = (torch.arange(G) + 0.5) / G
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten()], -1)  # (G*G, 2)
    gpts = sbox[:, None, :2] + grid[None] * (sbox[:, None, 2:] - sbox[:, None, :2])
    allq = torch.cat([src_kps, gpts], 1)
    allv = torch.cat([valid, torch.ones(B, G * G, dtype=torch.bool)], 1)
    with torch.no_grad():
        pred, _ = match_plain(m, src, trg, allq, allv, 256)
    grown = kbc_box(src_kps, valid, 0.15, 8.0)
    simb = similarity_box(src_kps, pred[:, :N], valid, grown)
    simg = similarity_box(allq, pred, allv, grown)
    gtb = kbc_box(gt, valid, 0.15, 8.0)
    for i in range(B):
        bn = f"trg{meta[start + i]['trg_kp_bin']}" if meta[start + i]["trg_kp_bin"] else "photo"
        rb, sc, s = ransac_box(allq[i][allv[i]], pred[i][allv[i]], grown[i], gen=gen)
        rk, _, _ = ransac_box(src_kps[i][valid[i]], pred[i, :N][valid[i]], grown[i], gen=gen)
        for name, box in (("sim_kps", simb[i]), ("sim_grid", simg[i]), ("ransac_grid", rb), ("ransac_kps", rk)):
            st[bn][name].append(err(box, gtb[i]))
    print(start, flush=True)
for bn, d in sorted(st.items()):
    print(bn, len(d["sim_kps"]))
    for name, v in d.items():
        t = torch.tensor(v)
        print(
            f"   {name:12s} log2 scale err median {t[:, 0].median():+.2f} mean|.| {t[:, 0].abs().mean():.2f}  centre off/gt side median {t[:, 1].median():.2f}  frac(centre<0.5 & |ls|<1) {((t[:, 1] < 0.5) & (t[:, 0].abs() < 1)).float().mean():.2f}"
        )
