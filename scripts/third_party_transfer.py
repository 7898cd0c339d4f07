"""Check sosc's adapters against CATs' and CHM's own keypoint transfer (issue #14).

Runs the networks' public code from local checkouts *beside* the project (nothing of it is
copied into sosc), with random weights, on the CPU, offline, in about a minute:

    git clone https://github.com/SunghwanHong/Cost-Aggregation-transformers /tmp/cats
    git clone https://github.com/juhongm999/chm /tmp/chm
    PYTHONPATH=src python scripts/third_party_transfer.py --cats /tmp/cats --chm /tmp/chm

What it changes in their code, only in this process, so that it runs here: ``Tensor.cuda``
and ``Module.cuda`` do nothing (CPU), their ResNet-101 backbones are built with
``pretrained=False`` (random weights, no download), and CHM's logger gets a stand-in for
``tensorboardX``. Prints, for each check, the largest distance in pixels between the
network's own transfer and sosc's adapter (the numbers of ``results/third_party_transfer.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
torch.set_num_threads(2)


@contextlib.contextmanager
def on_cpu():
    """``.cuda()`` is a no-op while inside (their code calls it unconditionally)."""
    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved


def photo_pair(size: int, shift: tuple[int, int] = (24, 16)) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, 3, size, size)`` in ``[0, 1]``: a photograph, and the same one cropped by ``shift``."""
    from skimage import data as skdata

    img = torch.from_numpy(np.ascontiguousarray(skdata.chelsea())).permute(2, 0, 1).float()[None] / 255
    dx, dy = shift
    src = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    trg = F.interpolate(img[..., dy:, dx:], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return src.clamp(0, 1), trg.clamp(0, 1)


def normalise(img: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1), torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    return (img - mean) / std


def worst(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm(dim=-1).max())


def check_cats(root: Path) -> dict[str, float]:
    """CATs: its own ``flow2kps`` of ``net(src, trg)`` (the flow on the source grid) against FlowMatcher."""
    from sosc.matchers import FlowMatcher

    sys.path.insert(0, str(root))
    from models.feature_backbones import resnet  # CATs' package

    original = resnet.resnet101
    resnet.resnet101 = lambda pretrained=False, **kw: original(False, **kw)
    from models.cats import CATs
    from utils_training.utils import flow2kps

    torch.manual_seed(0)
    net = CATs().eval()
    size = 256
    src, trg = photo_pair(size)
    g = torch.Generator().manual_seed(1)
    n = 30
    kps_index = torch.randint(8, size - 8, (1, n, 2), generator=g).float()  # interior: 8 px = half a cell
    border = torch.tensor([[[0.0, 0.0], [255.0, 3.0], [2.0, 250.0], [255.0, 255.0]]])
    out = {}
    with torch.no_grad(), on_cpu():
        flow = net(normalise(src), normalise(trg))  # CATs' forward(target, source): a flow on src's grid into trg
        for name, kps in (("interior", kps_index), ("border", border)):
            own = flow2kps(kps.transpose(1, 2), flow, torch.tensor([kps.shape[1]]), upsample_size=(size, size))
            own = own.transpose(1, 2)  # (1, N, 2) integer-index pixels
            # sosc's pixels are continuous: pixel index i is the point i + 0.5
            fixed = FlowMatcher(net, flow_format="displacement", flow_units="grid", flow_on="first", **IMAGENET)
            out[f"CATs, FlowMatcher(flow_on='first', displacement, grid, ImageNet mean/std), {name} keypoints"] = worst(
                fixed(src, trg, kps + 0.5).kps - 0.5, own)
            if name == "interior":
                wrong_way = FlowMatcher(net, flow_format="displacement", flow_units="grid", flow_on="second", **IMAGENET)
                out["CATs, the old README advice (target_first=True: net(trg, src) read at source keypoints)"] = worst(
                    wrong_way(src, trg, kps + 0.5).kps - 0.5, own)
                out["CATs, the old defaults (absolute, no mean/std)"] = worst(FlowMatcher(net)(src, trg, kps + 0.5).kps - 0.5, own)
    sys.path.remove(str(root))
    return out


def check_chm(root: Path, network: bool = True) -> dict[str, float]:
    """CHM: its own ``Geometry.transfer_kps`` on fixed volumes against ScoreVolumeMatcher(readout="chm")."""
    from sosc.matchers import ScoreVolumeMatcher

    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
    sys.path.insert(0, str(root))
    out = {}
    with on_cpu():
        from model.base.geometry import Geometry  # CHM's package

        size, side = 240, 30
        Geometry.initialize(img_size=size)
        g = torch.Generator().manual_seed(2)
        volumes = {"random volume, scores in [0, 10]": torch.rand(2, side * side, side * side, generator=g) * 10.0}
        if network:
            from model import chmnet
            from model.base import backbone

            original = backbone.resnet101
            backbone.resnet101 = lambda pretrained=False, **kw: original(False, **kw)
            torch.manual_seed(0)
            net = chmnet.CHMNet("psi").eval()
            src, trg = photo_pair(size)
            with torch.no_grad():
                volumes["CHM's own network (random weights) on a photo pair"] = net(normalise(src), normalise(trg))
        for name, corr in volumes.items():
            b, n = corr.shape[0], 25
            kps = torch.rand(b, n, 2, generator=g) * (size - 1)
            n_pts = torch.tensor([n, n - 7])[:b]
            padded = kps.transpose(1, 2).clone()
            for i, k in enumerate(n_pts):
                padded[i, :, k:] = -2.0  # CHM's padding
            with torch.no_grad():
                own = Geometry.unnormalize_kps(Geometry.transfer_kps(corr, padded, n_pts, normalized=False)).transpose(1, 2)
                img = torch.zeros(b, 3, size, size)
                valid = torch.arange(n)[None] < n_pts[:, None]
                chm = ScoreVolumeMatcher(lambda s, t, c=corr: c, src_grid=(side, side), readout="chm")(img, img, kps, valid)
                bilinear = ScoreVolumeMatcher(lambda s, t, c=corr: c, src_grid=(side, side), temperature=1.0)(img, img, kps, valid)
            out[f"CHM, ScoreVolumeMatcher(readout='chm'), {name}, {corr.shape[0]} pairs"] = worst(chm.kps[valid], own[valid])
            out[f"CHM, ScoreVolumeMatcher(readout='bilinear', temperature=1), {name}"] = worst(bilinear.kps[valid], own[valid])
    sys.path.remove(str(root))
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cats", type=Path, help="a checkout of SunghwanHong/Cost-Aggregation-transformers")
    parser.add_argument("--chm", type=Path, help="a checkout of juhongm999/chm")
    parser.add_argument("--no-chm-network", action="store_true", help="fixed random volumes only (skips CHMNet)")
    opts = parser.parse_args(argv)
    results = {}
    if opts.cats:
        results.update(check_cats(opts.cats))
    if opts.chm:
        results.update(check_chm(opts.chm, network=not opts.no_chm_network))
    print(f"torch {torch.__version__}")
    for name, value in results.items():
        print(f"{value:12.6f} px  {name}")
    return results


if __name__ == "__main__":
    main()
