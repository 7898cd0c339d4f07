"""The data pipeline's benchmark: a full-size SPair-71k tree, its set-up time and items/s per worker.

``sosc-bench --data-tree PATH`` (or :func:`main`) writes, when ``PATH`` holds none yet, a tree in
SPair-71k's official layout at full size (:func:`write_spair_tree`: 70,958 pair files, 53,340 /
5,384 / 12,234 in the large layout, 1,800 JPEGs of 300-500 px cut from photographs that
scikit-image bundles, so that decoding costs what a photograph costs), then measures, at
each input size:

- ``setup("fit")`` of :class:`~sosc.data.SPair71kDataModule` in a fresh interpreter: without the
  index cache, the first time with it (read, then written) and once it is written;
- one worker's training items per second (``dataset[(index, epoch)]``, photometric augmentation
  and train-time KBC windows as ``configs/spair.yaml`` has them, 1 thread), for each way of
  resampling a window (``resample="torch"``, the reference; ``"pil"``; ``"device"``, where the
  worker only decodes), interleaved in rounds;
- for ``"device"``, what the finishing step (:func:`sosc.data.dataset.finish_batch`: resampling
  and augmentation) costs a pair when the "device" is this CPU (on a GPU it runs there);
- the JPEG decoding alone (:func:`sosc.data.images.read_image` of the same files).

The tree is data: it is never committed (write it outside the repository, or under the ignored
``data/`` folder). Benchmarks are not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: SPair-71k's pairs per split in the large layout, and its images.
SPAIR_COUNTS = {"trn": 53_340, "val": 5_384, "test": 12_234}
SPAIR_IMAGES = 1_800
#: Marker written last: a tree without it is written again.
COMPLETE = "sosc_bench_tree.json"


def _photos() -> list[np.ndarray]:
    """RGB uint8 photographs that scikit-image bundles (read from its package, offline)."""
    from skimage import data as skdata

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
    out = []
    for name in names:
        img = getattr(skdata, name)()
        if img.ndim == 3 and img.shape[-1] == 3:
            out.append(np.ascontiguousarray(img))
    return out


def write_spair_tree(root: str | Path, seed: int = 0, images: int = SPAIR_IMAGES,
                     counts: dict[str, int] | None = None) -> Path:
    """Write a full-size SPair-71k tree (official layout) under ``root/SPair-71k``; return it.

    ``images`` JPEGs of 300 to 500 px a side (crops of bundled photographs, resized, quality 90),
    spread over the 18 categories, and ``counts`` pair files per split (SPair-71k's by default),
    each with 3 to 20 keypoints inside its two object boxes and the four difficulty flags. Same
    seed, same files. A tree whose completion marker is there is left as it is.
    """
    from PIL import Image

    from sosc.data.spair import SPAIR_CATEGORIES

    counts = dict(counts or SPAIR_COUNTS)
    base = Path(root).expanduser() / "SPair-71k"
    marker = base / COMPLETE
    wanted = {"seed": seed, "images": images, "counts": counts}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return base
    rng = random.Random(seed)
    photos = _photos()
    per_cat: dict[str, list[tuple[str, int, int]]] = {c: [] for c in SPAIR_CATEGORIES}
    for i in range(images):
        cat = SPAIR_CATEGORIES[i % len(SPAIR_CATEGORIES)]
        photo = photos[rng.randrange(len(photos))]
        ph, pw = photo.shape[:2]
        w, h = rng.randint(300, 500), rng.randint(300, 500)
        cw, ch = min(pw, rng.randint(w // 2, 2 * w)), min(ph, rng.randint(h // 2, 2 * h))
        x, y = rng.randint(0, pw - cw), rng.randint(0, ph - ch)
        im = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR)
        folder = base / "JPEGImages" / cat
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{i:06d}.jpg"
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        (folder / name).write_bytes(buf.getvalue())
        per_cat[cat].append((name, w, h))
    (base / "ImageAnnotation").mkdir(parents=True, exist_ok=True)
    flags = ("viewpoint_variation", "scale_variation", "truncation", "occlusion")
    for split, count in counts.items():
        folder = base / "PairAnnotation" / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for k in range(count):
            cat = SPAIR_CATEGORIES[k % len(SPAIR_CATEGORIES)]
            (sname, sw, sh), (tname, tw, th) = rng.sample(per_cat[cat], 2)
            n = rng.randint(3, 20)

            def box_and_points(w: int, h: int, n: int = n) -> tuple[list[int], list[list[float]]]:
                bw, bh = rng.randint(w // 8, w - 2), rng.randint(h // 8, h - 2)
                x0, y0 = rng.randint(0, w - bw - 1), rng.randint(0, h - bh - 1)
                pts = [[round(rng.uniform(x0, x0 + bw), 1), round(rng.uniform(y0, y0 + bh), 1)] for _ in range(n)]
                return [x0, y0, x0 + bw, y0 + bh], pts

            sbox, skps = box_and_points(sw, sh)
            tbox, tkps = box_and_points(tw, th)
            line = f"{k:06d}-{sname[:-4]}-{tname[:-4]}:{cat}"
            pair = {
                "pair_id": k, "filename": line, "category": cat,
                "src_imname": sname, "trg_imname": tname,
                "src_imsize": [sw, sh, 3], "trg_imsize": [tw, th, 3],
                "src_bndbox": sbox, "trg_bndbox": tbox,
                "src_kps": skps, "trg_kps": tkps,
                "kps_ids": [str(i) for i in range(n)],
                **{f: rng.randint(0, 1) for f in flags},
            }
            (folder / f"{line}.json").write_text(json.dumps(pair))
            lines.append(line)
        layout = base / "Layout" / "large"
        layout.mkdir(parents=True, exist_ok=True)
        (layout / f"{split}.txt").write_text("\n".join(lines) + "\n")
    marker.write_text(json.dumps(wanted))
    return base


_SETUP_SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(1)
from sosc.data import SPair71kDataModule
start = time.perf_counter()
dm = SPair71kDataModule(root=sys.argv[1], download=False, index_cache=json.loads(sys.argv[2]))
dm.setup("fit")
print(json.dumps({"seconds": time.perf_counter() - start, "train": len(dm.datasets["train"]),
                  "val": len(dm.datasets["val"])}))
"""


def setup_seconds(root: str | Path, cache_dir: str | Path) -> dict[str, dict]:
    """``setup("fit")`` in fresh interpreters: without the index cache, with it empty, with it written."""
    out = {}
    cache = Path(cache_dir)
    for label, arg in (("no cache", False), ("cache empty (read + write)", str(cache)), ("cache written", str(cache))):
        if label.startswith("cache empty") and cache.exists():
            for f in cache.glob("*"):
                f.unlink()
        proc = subprocess.run([sys.executable, "-c", _SETUP_SCRIPT, str(root), json.dumps(arg)],
                              capture_output=True, text=True, check=True)
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"setup('fit'): {label:<28} {out[label]['seconds']:7.2f} s  "
              f"({out[label]['train']} train / {out[label]['val']} val pairs)", flush=True)
    return out


def items_per_second(root: str | Path, sizes, items: int = 200, rounds: int = 3, seed: int = 0,
                     index_cache: str | Path | bool = False) -> list[dict]:
    """One worker's training items/s (1 thread) per input size and resampling, interleaved rounds."""
    import torch

    from sosc.data import SPair71kDataModule, collate_pairs
    from sosc.data.dataset import finish_batch
    from sosc.data.images import read_image
    from sosc.kbc import KBCConfig

    torch.set_num_threads(1)
    rows = []
    for size in sizes:
        dm = SPair71kDataModule(root=root, input_size=size, download=False, kbc=KBCConfig(train_p=0.5),
                                index_cache=index_cache, max_pairs=None)
        dm.setup("fit")
        train = dm.datasets["train"]
        rng = random.Random(seed)
        keys = [(rng.randrange(len(train)), 0) for _ in range(items)]
        paths = [p for i, _ in keys[: items // 2] for p in (train.records[i].src_path, train.records[i].trg_path)]
        modes = {"decode only (2 images)": None, "resample=torch": "torch", "resample=pil": "pil",
                 "resample=device (worker)": "device", "device finish on this CPU": "finish"}
        if torch.cuda.is_available():
            modes["device finish on the GPU"] = "finish-cuda"
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(rounds):
            for label, mode in modes.items():
                start = time.perf_counter()
                if mode is None:
                    for p in paths:
                        read_image(p)
                    n = len(paths) // 2
                elif mode.startswith("finish"):
                    train.resample = "device"
                    device = torch.device("cuda" if mode == "finish-cuda" else "cpu")
                    batches = [_to(collate_pairs([train[k] for k in keys[i:i + 8]]), device)
                               for i in range(0, min(len(keys), 64), 8)]
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    for batch in batches:
                        finish_batch(batch)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    n = sum(len(b["pair_id"]) for b in batches)
                else:
                    train.resample = mode
                    for key in keys:
                        train[key]
                    n = len(keys)
                times[label].append(n / (time.perf_counter() - start))
        for label in modes:
            rate = statistics.median(times[label])
            rows.append({"size": size, "what": label, "pairs_per_s": rate, "ms_per_pair": 1000.0 / rate})
            print(f"worker, {size:>4} px, {label:<24} {rate:8.1f} pairs/s  ({1000.0 / rate:6.1f} ms a pair)",
                  flush=True)
    return rows


def _to(batch: dict, device) -> dict:
    """A collated batch with its tensors (and lists of tensors) on ``device``, as Lightning moves it."""
    import torch

    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device)
        elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
            out[k] = [t.to(device) for t in v]
        else:
            out[k] = v
    return out


def main(tree: str | Path, sizes=(256, 512), items: int = 200, out: str | Path | None = None) -> dict:
    """Write the tree if needed, then measure set-up and items/s; JSON to ``out``."""
    start = time.perf_counter()
    base = write_spair_tree(tree)
    written = time.perf_counter() - start
    print(f"tree: {base} ({written:.1f} s to check or write); load {os.getloadavg()}", flush=True)
    cache_dir = Path(tree).expanduser() / "_index_cache"
    result = {
        "tree": str(base),
        "load_average_start": list(os.getloadavg()),
        "setup": setup_seconds(tree, cache_dir),
        "items": items_per_second(tree, sizes, items, index_cache=cache_dir),
        "load_average_end": list(os.getloadavg()),
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"written to {out}")
    return result
