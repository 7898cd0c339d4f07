"""Test set-up: offline, CPU, quiet; fixtures that write tiny benchmarks in their real formats."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def write_spair_tree(root, pairs_per_split=None, size_range=(96, 160), seed=0, categories=("cat", "dog")):
    """Write a tiny SPair-71k tree (JPEG images, JSON annotations, layout files) under ``root``.

    Returns a dict split -> list of the pair dicts written (with their JSON fields).
    """
    import json

    import numpy as np
    from PIL import Image

    pairs_per_split = pairs_per_split or {"trn": 4, "val": 2, "test": 3}
    rng = np.random.default_rng(seed)
    written = {}
    image_id = 0
    for split, n in pairs_per_split.items():
        (root / "PairAnnotation" / split).mkdir(parents=True, exist_ok=True)
        (root / "Layout" / "large").mkdir(parents=True, exist_ok=True)
        lines, pairs = [], []
        for i in range(n):
            cat = categories[i % len(categories)]
            (root / "JPEGImages" / cat).mkdir(parents=True, exist_ok=True)
            names, sizes, boxes, kps = [], [], [], []
            nk = int(rng.integers(3, 8))
            for _ in range(2):
                w, h = (int(v) for v in rng.integers(*size_range, size=2))
                arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
                name = f"{image_id:06d}"
                image_id += 1
                Image.fromarray(arr).save(root / "JPEGImages" / cat / f"{name}.jpg", quality=90)
                x0, y0 = rng.uniform(0, w / 3), rng.uniform(0, h / 3)
                x1, y1 = rng.uniform(w / 2, w), rng.uniform(h / 2, h)
                pts = np.stack([rng.uniform(x0, x1, nk), rng.uniform(y0, y1, nk)], axis=1)
                names.append(name)
                sizes.append([w, h, 3])
                boxes.append([int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))])
                kps.append(np.round(pts, 2).tolist())
            line = f"{i}-{names[0]}-{names[1]}:{cat}"
            pair = {
                "pair_id": i, "src_imname": f"{names[0]}.jpg", "trg_imname": f"{names[1]}.jpg",
                "src_imsize": sizes[0], "trg_imsize": sizes[1], "src_bndbox": boxes[0], "trg_bndbox": boxes[1],
                "src_pose": 0, "trg_pose": 0, "src_kps": kps[0], "trg_kps": kps[1],
                "kps_ids": [str(k) for k in range(nk)], "category": cat, "mirror": 0,
                "viewpoint_variation": int(rng.integers(0, 3)), "scale_variation": int(rng.integers(0, 3)),
                "truncation": int(rng.integers(0, 4)), "occlusion": int(rng.integers(0, 4)),
            }
            (root / "PairAnnotation" / split / f"{line}.json").write_text(json.dumps(pair))
            lines.append(line)
            pairs.append(pair)
        (root / "Layout" / "large" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        written[split] = pairs
    return written


@pytest.fixture
def spair_tree(tmp_path):
    """A tiny SPair-71k tree at ``tmp_path/SPair-71k``; yields (root, pairs written per split)."""
    root = tmp_path / "SPair-71k"
    pairs = write_spair_tree(root)
    return root, pairs
