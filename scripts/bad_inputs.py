"""Feed ``sosc`` the bad inputs of issue #12 and print what each one gets (the "now" column of
``results/bad_inputs.md``).

Runs on the CPU, offline, in about a minute; every case builds its own files in a temporary
folder. Run it against another checkout (e.g. the commit before #12) with ``PYTHONPATH``:

    PYTHONPATH=src python scripts/bad_inputs.py
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)
CASES: list[tuple[str, Callable[[Path], str]]] = []
SHIFT = (40, 30)  # the target is the source cropped by (dx, dy)
KPS = "150,100; 300,150; 200,200; 120,220; 330,90; 250,250"


def case(name: str):
    def register(fn):
        CASES.append((name, fn))
        return fn

    return register


def brief(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:220]}"


def match_error(tmp: Path, src: Path, trg: Path, *extra: str) -> float:
    """Mean distance of sosc-match's predictions (FeatureMatcher, with KBC) to the truth, px."""
    from sosc.inference import main

    with redirect_stdout(io.StringIO()):
        out = main(["--matcher", "feature", "--src", str(src), "--trg", str(trg), "--kps", KPS,
                    "--out", str(tmp / "p.json"), *extra])
    truth = torch.tensor(out["src_kps"]) - torch.tensor(SHIFT, dtype=torch.float32)
    return float((torch.tensor(out["kps"]) - truth).norm(dim=-1).mean())


def shifted_pair(tmp: Path) -> tuple[np.ndarray, Path]:
    from skimage import data as skdata

    grey = np.asarray(Image.fromarray(skdata.chelsea()).convert("L"))
    Image.fromarray(grey[SHIFT[1]:, SHIFT[0]:]).save(tmp / "trg.png")
    return grey, tmp / "trg.png"


@case("16-bit greyscale PNG (I;16) in sosc-match")
def _(tmp: Path) -> str:
    grey, trg = shifted_pair(tmp)
    Image.fromarray(grey).save(tmp / "src8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp / "src16.png")
    e8, e16 = match_error(tmp, tmp / "src8.png", trg), match_error(tmp, tmp / "src16.png", trg)
    return f"mean error 8-bit {e8:.1f} px, 16-bit {e16:.1f} px (chelsea, 6 keypoints, FeatureMatcher + KBC)"


@case("16-bit ramp x * 257, read back")
def _(tmp: Path) -> str:
    from sosc.inference import load_image

    Image.fromarray(np.tile(np.arange(256, dtype=np.uint16) * 257, (8, 1))).save(tmp / "r.png")
    row = load_image(tmp / "r.png")[0, 0]
    return f"columns 0, 1, 128, 255: {[round(float(row[i]), 4) for i in (0, 1, 128, 255)]}"


@case("JPEG 80x40 tagged 'rotate 90', keypoint (30, 70) read off the image as shown")
def _(tmp: Path) -> str:
    from sosc.inference import load_image, match_pair

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp / "rot.jpg", exif=exif)
    img = load_image(tmp / "rot.jpg")
    try:
        out = match_pair(lambda s, t, k, v: k, img, img, torch.tensor([[30.0, 70.0]]), 32)
        return f"read as {img.shape[2]}x{img.shape[1]} (W x H); identity matcher returns {out['plain_kps'][0]}"
    except Exception as err:  # noqa: BLE001
        return f"read as {img.shape[2]}x{img.shape[1]} (W x H); {brief(err)}"


@case("RGBA PNG, a transparent pixel whose hidden colour is red 200")
def _(tmp: Path) -> str:
    from sosc.inference import load_image

    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., 0], arr[..., 3] = 200, 255
    arr[0, 1, 3] = 0
    Image.fromarray(arr).save(tmp / "a.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = load_image(tmp / "a.png")
    said = f"; warns: {str(caught[0].message)[:90]}..." if caught else "; no warning"
    return f"transparent pixel reads {[round(float(v), 3) for v in img[:, 0, 1]]}{said}"


@case("truncated JPEG in sosc-match")
def _(tmp: Path) -> str:
    from sosc.inference import load_image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp / "c.jpg")
    (tmp / "c.jpg").write_bytes((tmp / "c.jpg").read_bytes()[:700])
    try:
        load_image(tmp / "c.jpg")
        return "read without error"
    except Exception as err:  # noqa: BLE001
        return brief(err).replace(str(tmp), "<tmp>")


def feature_wrapper(size: int = 256):
    from sosc.kbc import KBCWrapper
    from sosc.matchers.feature import FeatureMatcher

    return KBCWrapper(FeatureMatcher(pretrained="package").eval(), input_size=size)


def photo_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from skimage import data as skdata

    img = torch.from_numpy(skdata.chelsea().copy()).permute(2, 0, 1).float() / 255
    return img, img[:, SHIFT[1]:, SHIFT[0]:].contiguous(), torch.tensor([[[150.0, 100.0], [300.0, 150.0]]])


@case("uint8 image tensors to KBCWrapper(FeatureMatcher)")
def _(tmp: Path) -> str:
    src, trg, kps = photo_pair()
    try:
        with torch.no_grad():
            out = feature_wrapper()([(src * 255).byte()], [(trg * 255).byte()], kps)
        return f"returns {int(torch.isnan(out).sum())} NaN of {out.numel()} coordinates"
    except Exception as err:  # noqa: BLE001
        return brief(err)


@case("float images in [0, 255] to KBCWrapper(FeatureMatcher)")
def _(tmp: Path) -> str:
    src, trg, kps = photo_pair()
    try:
        with torch.no_grad():
            out = feature_wrapper()([src * 255], [trg * 255], kps)
        truth = kps - torch.tensor(SHIFT, dtype=torch.float32)
        return f"accepted; mean error {float((out - truth).norm(dim=-1).mean()):.1f} px"
    except Exception as err:  # noqa: BLE001
        return brief(err)


@case("soft_argmax under bf16 autocast, peaks at 200 and 216 px weighted 7:3")
def _(tmp: Path) -> str:
    from sosc.matchers.grid import soft_argmax

    scores = torch.full((1, 1, 16), -1e4)
    scores[0, 0, 12:14] = torch.tensor([0.7, 0.3]).log()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pos, _ = soft_argmax(scores, (16, 256), temperature=1.0)
    return f"x = {float(pos[0, 0]):.2f} ({pos.dtype})"


@case("FlowMatcher, absolute identity flow on a 4x4 grid of a 64 px image, keypoints (1, 1) and (63, 32)")
def _(tmp: Path) -> str:
    from sosc.matchers.adapters import FlowMatcher
    from sosc.matchers.grid import cell_centers

    flow = cell_centers(4, 4, 64).permute(2, 0, 1)[None]
    out = FlowMatcher(lambda a, b: flow, flow_units="input")(
        torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.tensor([[[1.0, 1.0], [63.0, 32.0]]]), None)
    return f"-> {[[round(v, 3) for v in p] for p in out.kps[0].tolist()]}"


@case("KBCWrapper, source keypoint (5000, 5000) in a 451x300 image")
def _(tmp: Path) -> str:
    from sosc.kbc import KBCWrapper

    src, trg, _ = photo_pair()
    try:
        out = KBCWrapper(lambda s, t, k, v: k, 64)([src], [trg], torch.tensor([[[5000.0, 5000.0]]]))
        return f"returns {out[0, 0].tolist()}"
    except Exception as err:  # noqa: BLE001
        return brief(err)


@case("KBCWrapper, an HWC image (300, 451, 3) in a list")
def _(tmp: Path) -> str:
    from sosc.kbc import KBCWrapper
    from sosc.matchers.adapters import CallableMatcher

    src, trg, kps = photo_pair()
    try:
        KBCWrapper(CallableMatcher(lambda s, t, k, v: k), 64)([src.permute(1, 2, 0)], [trg], kps)
        return "accepted"
    except Exception as err:  # noqa: BLE001
        return brief(err)


@case("KBCWrapper, an empty batch")
def _(tmp: Path) -> str:
    from sosc.kbc import KBCWrapper

    try:
        KBCWrapper(lambda s, t, k, v: k, 64)([], [], torch.zeros(0, 3, 2))
        return "accepted"
    except Exception as err:  # noqa: BLE001
        return brief(err)


@case("KBCWrapper(FeatureMatcher, input_size=250) (the matcher needs multiples of 16)")
def _(tmp: Path) -> str:
    src, trg, kps = photo_pair()
    try:
        wrapper = feature_wrapper(250)
    except Exception as err:  # noqa: BLE001
        return f"at construction: {brief(err)}"
    try:
        with torch.no_grad():
            wrapper([src], [trg], kps)
        return "constructed and ran"
    except Exception as err:  # noqa: BLE001
        return f"constructed; at the first call: {brief(err)}"


def damaged_synthetic(tmp: Path, damage: Callable[[Path], None]) -> str:
    from sosc.data import SyntheticDataModule

    params = {"n_train": 3, "n_val": 1, "n_test": 1}
    dm = SyntheticDataModule(root=tmp / "syn", input_size=64, num_workers=0, gen_workers=1, **params)
    dm.prepare_data()
    damage(tmp / "syn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dm.prepare_data()
            dm.setup("fit")
        except Exception as err:  # noqa: BLE001
            return f"prepare_data + setup: {brief(err)}".replace(str(tmp), "<tmp>")
    said = [str(w.message) for w in caught if "damaged" in str(w.message)]
    return "prepare_data repairs it, setup reads it" + (f"; warns: {said[0][:160]}..." if said else "")


@case("synthetic set marked complete, Layout/ deleted")
def _(tmp: Path) -> str:
    return damaged_synthetic(tmp, lambda root: shutil.rmtree(root / "Layout")).replace(str(tmp), "<tmp>")


@case("synthetic set marked complete, one JPEG deleted")
def _(tmp: Path) -> str:
    return damaged_synthetic(tmp, lambda root: sorted(root.rglob("*_trn_00000_0.jpg"))[0].unlink()).replace(str(tmp), "<tmp>")


@case("sosc-match with a missing image (a user mistake)")
def _(tmp: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "sosc.inference", "--matcher", "feature", "--src", str(tmp / "no.png"),
                           "--trg", str(tmp / "no.png"), "--kps", "1,1"], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    return (f"exit {proc.returncode}, {proc.stderr.count('Traceback')} traceback(s), {len(lines)} line(s) on stderr; "
            f"last: {lines[-1][:120] if lines else ''}").replace(str(tmp), "<tmp>")


def main() -> None:
    rows = {}
    for name, fn in CASES:
        with tempfile.TemporaryDirectory() as folder:
            try:
                rows[name] = fn(Path(folder))
            except Exception as err:  # noqa: BLE001
                rows[name] = f"(case failed: {brief(err)})"
        print(f"- {name}: {rows[name]}", flush=True)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
