"""Bytes that one KBCNet training forward saves for backward, per pair: the activation memory.

Runs on any device (the CPU here): it counts the storages that autograd keeps for the backward
pass (``torch.autograd.graph.saved_tensors_hooks``, each storage once), for the whole KBCNet,
and for its parts by freezing the rest. On a GPU the same tensors are allocated, so this is
the activation part of a training step's peak memory there; the allocator's rounding, cuDNN
workspaces and the temporaries of the backward pass come on top and are measured only by
``python -m sosc.bench`` on the GPU.

It also measures, in a fresh process per configuration, how much the resident memory grows
during one training step (forward, loss, backward) over what the built model and its inputs
already hold: the peak resident size (``VmHWM``) after the step minus the resident size before it. That includes
what checkpointing keeps and recomputes, the parameters' gradients (170 MiB for a trained
ResNet-101) and the backward's temporaries; it is
a CPU figure (glibc, no caching allocator), a prediction and not a measurement of a GPU.

    python scripts/activation_memory.py --backbone resnet101 --size 256 512 --out results/activation_memory.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from sosc.losses import keypoint_epe
from sosc.matchers.correlation import CorrelationDecoder
from sosc.matchers.kbcnet import KBCNet


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages saved for backward while ``fn()`` runs."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def kbcnet_step(net: KBCNet, size: int, precision: str, backward: bool = False):
    """A training step of ``net`` on one random pair (its inputs made now): forward and loss,
    and the backward pass when ``backward``."""
    src, trg = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
    kps = torch.rand(1, 16, 2) * size
    valid = torch.ones(1, 16, dtype=torch.bool)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def fn():
        with ctx:
            out = net(src, trg, kps, valid)
        loss = keypoint_epe(out.kps.float(), kps, valid, size)
        if backward:
            loss.backward()

    return fn


def decoder_step(size: int, strides, channels, precision: str, stride: int = 16):
    n = size // stride
    dec = CorrelationDecoder(4, channels, strides)
    corr = torch.rand(1, 4, n, n, n, n, requires_grad=True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def fn():
        with ctx:
            dec(corr).sum()

    return fn


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mib() -> float:
    """Peak resident size of this process (``VmHWM``; unlike ``ru_maxrss``, reset by exec)."""
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def step_growth(backbone: str, size: int, precision: str, frozen: bool, ckpt: bool) -> float:
    """MiB the peak resident size grows by during one training step of one pair (this process)."""
    torch.manual_seed(0)
    net = KBCNet(backbone=backbone, freeze_backbone=frozen, grad_checkpointing=ckpt, check_inputs=False).train()
    step = kbcnet_step(net, size, precision, backward=True)
    before = _rss_mib()
    step()
    return _peak_rss_mib() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--size", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one peak measurement
    opts = parser.parse_args()
    if opts.one:
        print(json.dumps(step_growth(opts.backbone, **json.loads(opts.one))))
        return
    mib = 2.0**20
    lines = ["| what | size | precision | saved for backward, MiB per pair | x 16 pairs, GiB |", "|---|---|---|---|---|"]

    def add(what: str, size: int, precision: str, nbytes: int) -> None:
        lines.append(f"| {what} | {size} | {precision} | {nbytes / mib:,.1f} | {16 * nbytes / 2**30:.2f} |")
        print(lines[-1], flush=True)

    torch.manual_seed(0)
    for size in opts.size:
        for precision in ("fp32", "bf16"):
            for frozen in (False, True):
                net = KBCNet(backbone=opts.backbone, freeze_backbone=frozen, check_inputs=False).train()
                name = f"KBCNet {opts.backbone}, backbone {'frozen' if frozen else 'trained'}"
                add(name, size, precision, saved_bytes(kbcnet_step(net, size, precision)))
            for strides in (None, (2, 1, 1)):
                name = "decoder alone, 3 x 16 channels" + (f", strides {strides}" if strides else "")
                add(name, size, precision, saved_bytes(decoder_step(size, strides, (16, 16, 16), precision)))
    lines += ["", "| KBCNet " + opts.backbone + " | size | precision | checkpointing | peak resident growth in one training step, MiB per pair |",
              "|---|---|---|---|---|"]
    # a fixed mmap threshold: every large tensor is its own mapping, returned when freed, so
    # the resident size follows the live tensors (glibc's adaptive threshold would keep freed
    # memory on the heap and inflate the peak)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    for size in opts.size:
        for precision in ("fp32", "bf16"):
            for frozen in (False, True):
                for ckpt in (False, True):
                    one = json.dumps({"size": size, "precision": precision, "frozen": frozen, "ckpt": ckpt})
                    done = subprocess.run([sys.executable, __file__, "--backbone", opts.backbone, "--one", one],
                                          capture_output=True, text=True, check=True, env=env)
                    growth = float(done.stdout.strip().splitlines()[-1])
                    lines.append(f"| backbone {'frozen' if frozen else 'trained'} | {size} | {precision} | "
                                 f"{'on' if ckpt else 'off'} | {growth:,.0f} |")
                    print(lines[-1], flush=True)
    if opts.out:
        Path(opts.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
