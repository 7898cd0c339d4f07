"""Benchmark harness: throughput and peak memory of KBCNet against its backbone floor.

``python -m sosc.bench`` (or ``sosc-bench``, ``make bench``) measures, on the current device,
for each input size, batch size and precision (fp32, bf16 autocast):

- ``backbone``: the backbone alone at strides 8/16/32, two images per pair: the floor any
  matcher with that backbone sits under;
- ``kbcnet``: KBCNet inference (``torch.no_grad``);
- ``kbcnet+kbc``: KBCNet inside :class:`sosc.kbc.KBCWrapper` in ``pred-box`` mode, on a batch
  in which ``--trigger-share`` of the pairs have a source object small enough that KBC zooms it
  with :class:`sosc.kbc.KBCConfig`'s current defaults (:func:`make_batch` checks it, and the
  measurement fails when those pairs do not run pass 2); the share of pairs that really ran
  pass 2 is printed;
- ``train``: one KBCNet training step (forward, loss, backward, AdamW step).

Each figure is the median of ``--repeats`` timed runs after ``--warmup`` untimed ones, with
device synchronisation; pairs/s = batch / median seconds. It prints a table with each
figure's ratio to the floor and writes JSON (``--out``). Benchmarks are not tests: nothing
here asserts a speed.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sosc.console import quiet
from sosc.kbc import KBCConfig, KBCWrapper
from sosc.kbc.windows import kbc_windows_for_points
from sosc.losses import keypoint_epe
from sosc.matchers.backbone import Backbone
from sosc.matchers.kbcnet import KBCNet


@dataclass
class Row:
    """One measurement."""

    what: str
    size: int
    batch: int
    precision: str
    pairs_per_s: float
    seconds: float
    peak_mem_mib: float | None
    ratio_to_floor: float | None = None
    note: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def time_it(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> tuple[float, float | None]:
    """Median seconds of ``fn`` over ``repeats`` after ``warmup`` runs, and peak memory (MiB, GPU only)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    _peak_reset(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), _peak(device)


#: Keypoint spreads (fractions of the image side) tried for the pairs that must zoom, largest first.
SMALL_SPREADS = (0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01)
#: The keypoint spread of the pairs that must not zoom on the source side.
LARGE_SPREAD = 0.8


def source_zooms(kps: torch.Tensor, size: int, config: KBCConfig | None = None) -> torch.Tensor:
    """``(B,)`` bool: whether KBC (``config``, default :class:`~sosc.kbc.KBCConfig`'s defaults)
    zooms the source image of each pair, ``kps`` ``(B, N, 2)`` in an ``S x S`` image at input
    size ``S``. A pair whose source zooms runs KBC's pass 2."""
    config = config or KBCConfig()
    hw = torch.tensor([size, size]).expand(len(kps), 2)
    _, triggered = kbc_windows_for_points(kps.cpu(), None, hw, size, config)
    return triggered


def make_batch(batch: int, size: int, n_kps: int, trigger_share: float, device: torch.device, seed: int = 0):
    """Images ``(B, 3, S, S)`` in [0, 1] and keypoints; the first ``ceil(trigger_share * B)``
    pairs have their source keypoints in a box small enough that KBC zooms them with the
    current defaults of :class:`~sosc.kbc.KBCConfig` (the largest of :data:`SMALL_SPREADS` of
    the side that does, checked with :func:`source_zooms`), so that they run pass 2; the rest
    spread over :data:`LARGE_SPREAD` of it, and their source does not zoom.

    Raises:
        RuntimeError: when no spread makes the first pairs zoom, or the others zoom (KBC's
            defaults changed so that the stated share cannot be made): the ``kbcnet+kbc``
            figure would not measure what it says.
    """
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(batch, 3, size, size, generator=g)
    trg = torch.rand(batch, 3, size, size, generator=g)
    small = torch.arange(batch) < math.ceil(trigger_share * batch - 1e-9)
    offsets = torch.rand(batch, n_kps, 2, generator=g) - 0.5
    centre = size / 2
    for fraction in SMALL_SPREADS:
        spread = torch.where(small, fraction, LARGE_SPREAD)[:, None, None] * size
        kps = centre + offsets * spread
        zooms = source_zooms(kps, size)
        if bool((zooms[small]).all()):
            break
    if not bool(zooms[small].all()) or bool(zooms[~small].any()):
        raise RuntimeError(
            f"bench batch at {size} px: with KBCConfig's defaults ({KBCConfig()}), {int(zooms[small].sum())} of the "
            f"{int(small.sum())} pairs meant to zoom do (keypoint spreads down to {SMALL_SPREADS[-1]} of the side "
            f"tried) and {int(zooms[~small].sum())} of the {int((~small).sum())} others do too: the kbcnet+kbc row "
            "would not measure the stated share of zoomed pairs; adjust SMALL_SPREADS / LARGE_SPREAD in sosc.bench"
        )
    valid = torch.ones(batch, n_kps, dtype=torch.bool)
    return src.to(device), trg.to(device), kps.to(device), valid.to(device)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def run(
    backbone: str = "resnet101",
    sizes: Sequence[int] = (256, 512),
    batches: Sequence[int] = (8,),
    precisions: Sequence[str] = ("fp32", "bf16"),
    what: Sequence[str] = ("backbone", "kbcnet", "kbcnet+kbc", "train"),
    warmup: int = 3,
    repeats: int = 10,
    trigger_share: float = 0.5,
    channels_last: bool = True,
    compile: bool = False,
    device: str | None = None,
    kbcnet_kwargs: dict | None = None,
) -> list[Row]:
    """Measure every combination; see the module docstring. Returns the rows."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    kwargs = {"backbone": backbone, "pretrained": False, "check_inputs": False, **(kbcnet_kwargs or {})}
    floor_net = Backbone(backbone, pretrained=False, strides=(8, 16, 32)).to(dev).eval()
    net = KBCNet(**kwargs).to(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    floor_net = floor_net.to(memory_format=memory_format)
    net = net.to(memory_format=memory_format)
    infer = torch.compile(net) if compile else net
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    rows: list[Row] = []
    for size in sizes:
        for batch in batches:
            src, trg, kps, valid = make_batch(batch, size, 16, trigger_share, dev)
            src = src.contiguous(memory_format=memory_format)
            trg = trg.contiguous(memory_format=memory_format)
            for precision in precisions:
                floor = None
                for name in what:
                    fn, note = workload(name, floor_net, net, infer, optimizer, (src, trg, kps, valid), dev, precision)
                    seconds, peak = time_it(fn, dev, warmup, repeats)
                    row = Row(name, size, batch, precision, batch / seconds, seconds, peak, note=note)
                    if name == "backbone":
                        floor = row.pairs_per_s
                    if floor:
                        row.ratio_to_floor = row.pairs_per_s / floor
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def workload(
    name: str,
    floor_net: torch.nn.Module,
    net: KBCNet,
    infer: Callable,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    dev: torch.device,
    precision: str,
) -> tuple[Callable[[], object], str]:
    """The callable that one measurement times, and a note for its row."""
    src, trg, kps, valid = batch
    size = src.shape[-1]
    if name == "backbone":
        def fn():
            with torch.no_grad(), autocast(dev, precision):
                floor_net(torch.cat([src, trg]))
        return fn, ""
    if name == "kbcnet":
        net.eval()

        def fn():
            with torch.no_grad(), autocast(dev, precision):
                infer(src, trg, kps, valid)
        return fn, ""
    if name == "kbcnet+kbc":
        net.eval()
        wrapper = KBCWrapper(infer, input_size=size, target="pred-box")
        src_list, trg_list = list(src), list(trg)
        with torch.no_grad(), autocast(dev, precision):
            info = wrapper.forward_with_info(src_list, trg_list, kps, valid)
        meant = source_zooms(kps, size)
        if not bool(info.refined.cpu()[meant].all()):
            raise RuntimeError(
                f"kbcnet+kbc at {size} px: pass 2 ran on {int(info.refined.sum())} of {len(src)} pairs, but "
                f"{int(meant.sum())} were made to zoom (KBCConfig's defaults); the row would not measure KBC"
            )

        def fn():
            with torch.no_grad(), autocast(dev, precision):
                wrapper(src_list, trg_list, kps, valid)
        return fn, f"pass 2 on {int(info.refined.sum())}/{len(src)} pairs ({int(meant.sum())} made to zoom)"
    if name == "train":
        net.train()

        def fn():
            optimizer.zero_grad(set_to_none=True)
            with autocast(dev, precision):
                out = infer(src, trg, kps, valid)
            loss = keypoint_epe(out.kps.float(), kps, valid, size)
            loss.backward()
            optimizer.step()
        return fn, ""
    raise ValueError(f"unknown measurement {name!r}; choose from backbone, kbcnet, kbcnet+kbc, train")


#: Start-up commands timed by :func:`startup_times`: what a user waits for before any work.
STARTUP_COMMANDS = {
    "import torch": ["-c", "import torch"],
    "from sosc import KBCWrapper": ["-c", "from sosc import KBCWrapper"],
    "sosc --help": ["-m", "sosc.cli", "--help"],
}


def startup_times(repeats: int = 3) -> dict[str, float]:
    """Median wall seconds of each :data:`STARTUP_COMMANDS` entry in a fresh interpreter
    (``sys.executable``), over ``repeats`` runs, interleaved so that a busy moment hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in STARTUP_COMMANDS}
    for _ in range(repeats):
        for name, args in STARTUP_COMMANDS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def device_name(device: str | None = None) -> str:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


HEADER = f"{'what':<12} {'size':>5} {'batch':>5} {'prec':>5} {'pairs/s':>10} {'x floor':>8} {'peak MiB':>9}  note"


def format_row(row: Row) -> str:
    ratio = f"{row.ratio_to_floor:.2f}" if row.ratio_to_floor is not None else "-"
    peak = f"{row.peak_mem_mib:.0f}" if row.peak_mem_mib is not None else "-"
    return (f"{row.what:<12} {row.size:>5} {row.batch:>5} {row.precision:>5} {row.pairs_per_s:>10.2f} "
            f"{ratio:>8} {peak:>9}  {row.note}")


def parse_kwargs(items: Sequence[str]) -> dict[str, object]:
    """``["a=1", "b=(2, 1)"]`` -> ``{"a": 1, "b": (2, 1)}``; values are Python literals,
    ``true`` / ``false`` / ``none`` in any case are the Python constants, and any other bare
    word stays a string. ``backbone`` is refused: it is ``--backbone``, shared with the floor.

    >>> parse_kwargs(["decoder_strides=(2, 1, 1)", "refine=false", "kernel_sigma=None", "decoder=full"])
    {'decoder_strides': (2, 1, 1), 'refine': False, 'kernel_sigma': None, 'decoder': 'full'}
    """
    constants = {"true": True, "false": False, "none": None}
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--kbcnet: expected KEY=VALUE, got {item!r}")
        if key == "backbone":
            raise SystemExit("--kbcnet: give the backbone as --backbone, so that the floor uses the same one")
        if value.strip().lower() in constants:
            out[key] = constants[value.strip().lower()]
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    """The options of ``sosc-bench`` (every one with its help and default)."""
    parser = argparse.ArgumentParser(prog="sosc-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="timm backbone (default resnet101 on GPU, resnet18 on CPU)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="input sides (default 256 512 on GPU, 128 on CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="pairs per batch (default 32 on GPU, 2 on CPU)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                        help="fp32 and/or bf16 autocast (default both on GPU, fp32 on CPU)")
    parser.add_argument("--what", nargs="*", default=["backbone", "kbcnet", "kbcnet+kbc", "train"],
                        help="measurements, any of backbone kbcnet kbcnet+kbc train (default all; none: only --startup)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs before each figure (default 5 on GPU, 1 on CPU)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per figure, the median is reported (default 20 on GPU, 3 on CPU)")
    parser.add_argument("--trigger-share", type=float, default=0.5,
                        help="kbcnet+kbc: the share of pairs made small enough that KBC zooms them with sosc.KBCConfig's "
                             "current defaults and runs pass 2 (rounded up to whole pairs; checked, an error otherwise; "
                             "default 0.5)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="keep images and networks in the default memory format (default: channels-last)")
    parser.add_argument("--compile", action="store_true", help="torch.compile KBCNet")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default cuda when available, else cpu)")
    parser.add_argument("--kbcnet", nargs="*", default=[], metavar="KEY=VALUE",
                        help="KBCNet constructor arguments, Python literals, e.g. decoder_strides='(2, 1, 1)' refine=False")
    parser.add_argument("--startup", type=int, default=0, metavar="REPEATS",
                        help="also time start-up (import torch, from sosc import KBCWrapper, sosc --help) in fresh "
                             "interpreters, median of REPEATS runs")
    parser.add_argument("--out", default=".bench/bench.json", help="JSON output file (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """``sosc-bench``: see the module docstring and ``sosc-bench --help``. Returns the rows."""
    opts = build_parser().parse_args(argv)
    gpu = (opts.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    settings = {
        "backbone": opts.backbone or ("resnet101" if gpu else "resnet18"),
        "sizes": opts.sizes or ([256, 512] if gpu else [128]),
        "batches": opts.batches or ([32] if gpu else [2]),
        "precisions": opts.precisions or (["fp32", "bf16"] if gpu else ["fp32"]),
        "what": opts.what,
        "warmup": opts.warmup if opts.warmup is not None else (5 if gpu else 1),
        "repeats": opts.repeats if opts.repeats is not None else (20 if gpu else 3),
        "trigger_share": opts.trigger_share,
        "channels_last": not opts.no_channels_last,
        "compile": opts.compile,
        "device": opts.device,
        "kbcnet_kwargs": parse_kwargs(opts.kbcnet),
    }
    name = device_name(opts.device)
    print(f"device: {name}; torch {torch.__version__}; settings: {settings}")
    print(HEADER)
    startup = {}
    if opts.startup:
        startup = startup_times(opts.startup)
        base = startup["import torch"]
        for name, seconds in startup.items():
            print(f"start-up: {name:<28} {seconds:6.2f} s  ({seconds - base:+.2f} s vs import torch)")
    with quiet():
        rows = run(**settings) if opts.what else []
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "device": name,
        "torch": torch.__version__,
        "settings": settings,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "startup_seconds": startup,
        "rows": [asdict(r) for r in rows],
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"written to {out}")
    return rows


def command() -> None:
    """The installed ``sosc-bench`` script: :func:`main` on ``sys.argv``, exit status 0 on success."""
    main()


if __name__ == "__main__":
    command()
