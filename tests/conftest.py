"""Test set-up: offline, CPU, quiet; fixtures that write tiny benchmarks in their real formats."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("OMP_NUM_THREADS", "2")
# the data modules' split-index cache (sosc.data.index_cache) goes to a folder of this run, never ~/.cache
os.environ["SOSC_CACHE_DIR"] = __import__("tempfile").mkdtemp(prefix="sosc-test-index-")

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


def truncate_image(path, keep=0.5):
    """Cut an image file short, as an interrupted copy does: its header still reads (every
    set-up check passes), its pixels do not decode."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def spair_tree(tmp_path):
    """A tiny SPair-71k tree at ``tmp_path/SPair-71k``; yields (root, pairs written per split)."""
    root = tmp_path / "SPair-71k"
    pairs = write_spair_tree(root)
    return root, pairs


# -- PF-PASCAL, PF-WILLOW and a loopback HTTP server (appended for the benchmark readers) ------------
PFPASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
PFWILLOW_CLASSES = (
    "car(G)", "car(M)", "car(S)", "duck(S)", "motorbike(G)", "motorbike(M)", "motorbike(S)",
    "winebottle(M)", "winebottle(wC)", "winebottle(woC)",
)


def write_pfpascal_tree(root, layout="official", seed=0, n_images=8, pairs=None, size_range=(40, 72)):
    """Write a tiny PF-PASCAL tree in its real format under ``root``.

    ``layout="official"``: ``root/PF-dataset-PASCAL/{JPEGImages, Annotations}`` with NCNet's
    ``train_pairs.csv``, ``val_pairs.csv``, ``test_pairs.csv`` beside them; ``"cats"``:
    ``root/PF-PASCAL/`` with ``trn_pairs.csv``, ``val_pairs.csv``, ``test_pairs.csv``.
    Annotations are ``.mat`` files (``kps`` N x 2 with NaN rows, ``bbox`` 1 x 4). Images of
    class 1 (aeroplane) and 8 (cat); 5 keypoints each with some missing.

    ``pairs``: split -> list of ``(src index, trg index, flip)``; the default has a flipped
    train pair and one test pair that also is a train pair. Returns a dict with ``base``,
    ``images`` (name -> dict(size=(H, W), kps (N, 2) with NaN, bbox, cls)) and, per split,
    the rows written (dicts with src, trg, cls (1-based), flip, src_kps, trg_kps: the
    keypoints present in both, the line number).
    """
    import numpy as np
    import scipy.io
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = "PF-dataset-PASCAL" if layout == "official" else "PF-PASCAL"
    base = root / folder
    (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
    images = {}
    for i in range(n_images):
        cls = 1 if i < n_images // 2 else 8
        name = f"2009_{i:06d}"
        w, h = (int(v) for v in rng.integers(*size_range, size=2))
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(base / "JPEGImages" / f"{name}.jpg")
        kps = np.stack([rng.uniform(1, w - 1, 5), rng.uniform(1, h - 1, 5)], 1)
        kps[rng.permutation(5)[:1]] = np.nan
        bbox = np.array([[1, 2, w - 3, h - 1]], dtype=np.float64)
        cat = PFPASCAL_CLASSES[cls - 1]
        (base / "Annotations" / cat).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(base / "Annotations" / cat / f"{name}.mat", {"kps": kps, "bbox": bbox, "class": cat})
        images[name] = {"size": (h, w), "kps": kps, "bbox": bbox[0], "cls": cls}
    names = list(images)
    pairs = pairs or {
        "train": [(0, 1, 0), (1, 2, 1), (4, 5, 0), (5, 6, 1), (2, 3, 0)],
        "val": [(0, 2, 0), (4, 6, 0)],
        "test": [(0, 1, None), (1, 3, None), (5, 7, None)],
    }
    files = {"official": ("train_pairs.csv", "val_pairs.csv", "test_pairs.csv"),
             "cats": ("trn_pairs.csv", "val_pairs.csv", "test_pairs.csv")}[layout]
    out = {"base": base, "images": images}
    for split, fname in zip(("train", "val", "test"), files, strict=True):
        rows, lines = [], []
        if split == "test":
            lines.append("source_image,target_image,class,XA,YA,XB,YB")
        else:
            lines.append("source_image,target_image,class,flip")
        for a, b, flip in pairs[split]:
            src, trg = names[a], names[b]
            cls = images[src]["cls"]
            s, t = images[src]["kps"], images[trg]["kps"]
            both = np.isfinite(s).all(1) & np.isfinite(t).all(1)
            row = {"src": src, "trg": trg, "cls": cls, "flip": bool(flip), "src_kps": s[both], "trg_kps": t[both],
                   "line": len(lines) + 1}
            paths = f"PF-dataset-PASCAL/JPEGImages/{src}.jpg,PF-dataset-PASCAL/JPEGImages/{trg}.jpg,{cls}"
            if split == "test":
                def fmt(v):
                    return ";".join(f"{x:.12g}" for x in v)
                lines.append(f"{paths},{fmt(s[both][:, 0])},{fmt(s[both][:, 1])},{fmt(t[both][:, 0])},{fmt(t[both][:, 1])}")
            else:
                lines.append(f"{paths},{int(flip)}")
            rows.append(row)
        (base / fname).write_text("\n".join(lines) + "\n")
        out[split] = rows
    return out


def write_pfwillow_tree(root, layout="official", seed=0, n_pairs=4, header=True, csv_name=None, csv_in_root=False,
                        size_range=(40, 72), pad_last=0):
    """Write a tiny PF-WILLOW tree (PNG images, the 42-column pair list) under ``root``.

    ``layout="official"``: ``root/PF-dataset/<subclass>/*.png`` and ``PF-dataset/test_pairs.csv``
    (``csv_name`` and ``csv_in_root`` move it); ``"cats"``: ``root/PF-WILLOW/``. CSV paths read
    ``PF-dataset/<subclass>/<image>.png`` in both. ``pad_last`` sets the last that many
    keypoints of the first pair to -1 (the padding some published CSVs use).
    Returns the list of pair dicts (src, trg paths, category, src_kps, trg_kps (10, 2), sizes).
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / ("PF-dataset" if layout == "official" else "PF-WILLOW")
    pairs, lines = [], []
    if header:
        cols = [f"{s}{i}" for s in ("XA", "YA", "XB", "YB") for i in range(1, 11)]
        lines.append(",".join(["imageA", "imageB", *cols]))
    for i in range(n_pairs):
        cat = PFWILLOW_CLASSES[i % 3]
        (base / cat).mkdir(parents=True, exist_ok=True)
        item = {"category": cat}
        for side, suffix in (("src", "a"), ("trg", "b")):
            w, h = (int(v) for v in rng.integers(*size_range, size=2))
            name = f"Img_{i:03d}{suffix}.png"
            Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(base / cat / name)
            item[side] = f"PF-dataset/{cat}/{name}"
            item[f"{side}_size"] = (h, w)
            item[f"{side}_kps"] = np.round(np.stack([rng.uniform(1, w - 1, 10), rng.uniform(1, h - 1, 10)], 1), 3)
        if i == 0 and pad_last:
            item["src_kps"][-pad_last:] = -1
            item["trg_kps"][-pad_last:] = -1
        s, t = item["src_kps"], item["trg_kps"]
        values = [*s[:, 0], *s[:, 1], *t[:, 0], *t[:, 1]]
        lines.append(",".join([item["src"], item["trg"], *(f"{v:g}" for v in values)]))
        item["line"] = len(lines)
        pairs.append(item)
    target = (root if csv_in_root else base) / (csv_name or "test_pairs.csv")
    target.write_text("\n".join(lines) + "\n")
    return pairs


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a thread) serving ``files`` (path -> bytes) with Range support.

    ``requests`` records ``(path, Range header or None)``; ``ignore_range`` answers 200 with the
    whole file; ``drop_after``: for the first ``drop_times`` requests, send only that many bytes
    of the body (full Content-Length announced) and close the connection.
    """

    def __init__(self):
        import http.server
        import threading

        self.files = {}
        self.requests = []
        self.ignore_range = False
        self.drop_after = None
        self.drop_times = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.drop_after is not None and server.drop_times > 0:
                    server.drop_times -= 1
                    self.wfile.write(body[: server.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def loopback_server(monkeypatch):
    """A :class:`LoopbackServer` on 127.0.0.1 (proxies disabled so urllib talks to it directly)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = LoopbackServer()
    yield server
    server.close()


def cli_test_args(config, root, out, *extra):
    """Arguments for an in-process ``sosc test`` of ``config`` on a tiny fixture at ``root``:
    64 px input, resnet18 at random init, CPU, logs under ``out``."""
    return [
        "test", "--config", str(config), "--data.root", str(root), "--data.input_size", "64",
        "--data.num_workers", "0", "--data.batch_size", "2", "--model.matcher.backbone", "resnet18",
        "--model.matcher.pretrained", "false", "--model.matcher.channels", "32",
        "--trainer.logger.save_dir", str(out), "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", *extra,
    ]
