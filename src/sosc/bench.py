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
- ``train``: one KBCNet training step (forward, loss, backward, AdamW step);
- ``kbc-zoom``: KBCNet inside :class:`~sosc.kbc.KBCWrapper` with ``target="object-bbox"`` on a
  batch whose every pair has a small source and target object (52 input px at any size), so
  that pass 2 runs on every pair (checked, as for ``kbcnet+kbc``): the cost of KBC's extra pass
  is this row's seconds minus ``kbcnet``'s.

Each figure is the median of ``--repeats`` timed runs after ``--warmup`` untimed ones, with
device synchronisation; pairs/s = batch / median seconds. The measurements of one input size,
batch and precision are **interleaved** (one call of each per round: floor, variant A, B, ...,
floor, A, B, ...), so that a busy moment of a shared machine hits all alike and the ratios to
the floor, measured in the same rounds, stay stable when absolute figures do not.
``--variant NAME KEY=VALUE ...`` adds a KBCNet built with other arguments (``cp4d=conv3d``
or ``cp4d=dilated-conv2d`` picks the center-pivot source branch instead); ``--cats PATH``
adds CATs (Cho et al. 2021) from a checkout of its public code, random weights, as a row.
Peak memory: on a GPU ``torch.cuda.max_memory_allocated``; on the CPU the growth of the
resident set during the call (``VmHWM`` after ``clear_refs`` and ``malloc_trim``, minus the
resident size before it; glibc, Linux only), measured on one more call after the timed rounds.
It prints a table with each figure's ratio to the floor and writes JSON (``--out``).
``--data-tree`` measures the data pipeline instead (:mod:`sosc.data_bench`). Benchmarks are not
tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
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


def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> int | None:
    """Return freed memory to the system, reset the peak resident size; the resident KiB now
    (None when the kernel does not let this process reset its peak)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    return _proc_status_kib("VmRSS")


def call_peak_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Run ``fn`` once; its peak memory in MiB: on CUDA the allocator's peak, on the CPU the growth
    of the resident set (``VmHWM`` after the call minus ``VmRSS`` before it), else None."""
    if device.type == "cuda":
        _sync(device)
        _peak_reset(device)
        fn()
        _sync(device)
        return _peak(device)
    before = _reset_cpu_peak() if device.type == "cpu" else None
    fn()
    after = _proc_status_kib("VmHWM") if before is not None else None
    return (after - before) / 1024 if after is not None and before is not None else None


def time_interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[str, tuple[float, float | None]]:
    """Median seconds and peak memory (MiB, :func:`call_peak_mib`) of each of ``fns``, timed in
    interleaved rounds: ``warmup`` untimed calls of each, then ``repeats`` rounds of one timed
    call of each in turn (the peak is measured on one more call, outside the timed ones)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), call_peak_mib(fn, device)) for name, fn in fns.items()}


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
    """``(B,)`` bool: whether KBC (``config``, default :class:`~sosc.kbc.KBCConfig`'s defaults
    for a KBCNet, the matcher this harness measures: ``zoom_px`` its ``kbc_zoom_px``) zooms the
    source image of each pair, ``kps`` ``(B, N, 2)`` in an ``S x S`` image at input size ``S``.
    A pair whose source zooms runs KBC's pass 2."""
    config = config or KBCConfig().for_matcher(KBCNet)
    hw = torch.tensor([size, size]).expand(len(kps), 2)
    _, triggered = kbc_windows_for_points(kps.cpu(), None, hw, size, config)
    return triggered


@contextmanager
def source_conv_kind(kind: str | None, device: torch.device):
    """While inside, the center-pivot source branch on ``device`` is ``kind`` (None: unchanged)."""
    from sosc.matchers import cp4d

    if kind is None:
        yield
        return
    saved = dict(cp4d.SOURCE_CONV)
    cp4d.SOURCE_CONV[device.type] = kind
    try:
        yield
    finally:
        cp4d.SOURCE_CONV.clear()
        cp4d.SOURCE_CONV.update(saved)


#: Variant keys the harness reads itself instead of passing them to KBCNet: ``cp4d`` the source
#: branch (:func:`source_conv_kind`), ``channels_last`` the variant's memory format (net and inputs).
HARNESS_KEYS = ("cp4d", "channels_last")


def load_cats(path: str | Path) -> torch.nn.Module:
    """CATs (Cho et al. 2021, ``SunghwanHong/Cost-Aggregation-transformers``) from a checkout at
    ``path``, with random weights (its ResNet-101 built with ``pretrained=False``); its
    ``.cuda()`` calls are made no-ops while it runs on the CPU. Nothing of it is copied here."""
    root = str(Path(path).expanduser().resolve())
    if not Path(root, "models", "cats.py").is_file():
        raise SystemExit(f"--cats: {root} is not a checkout of CATs (no models/cats.py)")
    if root not in sys.path:
        sys.path.insert(0, root)
    from models.feature_backbones import resnet  # CATs' package

    original = resnet.resnet101
    resnet.resnet101 = lambda pretrained=False, **kw: original(False, **kw)
    from models.cats import CATs

    torch.manual_seed(0)
    return CATs()


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
            f"bench batch at {size} px: with KBCConfig's defaults ({KBCConfig().for_matcher(KBCNet)}), {int(zooms[small].sum())} of the "
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
    variants: dict[str, dict] | None = None,
    cats: str | None = None,
) -> list[Row]:
    """Measure every combination; see the module docstring. Returns the rows.

    ``variants``: name -> KBCNet arguments on top of ``kbcnet_kwargs`` (a ``cp4d`` key picks the
    source branch, :func:`source_conv_kind`); every KBCNet measurement of ``what`` is made for
    each, named ``what:name`` (plain ``what`` without variants). ``cats``: a CATs checkout, for a
    ``cats`` row (inference, CATs' own fixed 16 x 16 grid)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    floor_net = Backbone(backbone, pretrained=False, strides=(8, 16, 32)).to(dev).eval()
    floor_net = floor_net.to(memory_format=memory_format)
    nets = {}
    for vname, vargs in (variants or {"": {}}).items():
        vargs = dict(vargs)
        kind = vargs.pop("cp4d", None)
        fmt = memory_format
        if "channels_last" in vargs:
            fmt = torch.channels_last if vargs.pop("channels_last") else torch.contiguous_format
        kwargs = {"backbone": backbone, "pretrained": False, "check_inputs": False, **(kbcnet_kwargs or {}), **vargs}
        torch.manual_seed(0)
        net = KBCNet(**kwargs).to(dev).to(memory_format=fmt)
        infer = torch.compile(net) if compile else net
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
        nets[vname] = (net, infer, optimizer, kind, fmt)
    cats_net = load_cats(cats).to(dev).eval() if cats else None
    rows: list[Row] = []
    for size in sizes:
        for batch in batches:
            data = make_batch(batch, size, 16, trigger_share, dev)
            src = data[0].contiguous(memory_format=memory_format)
            trg = data[1].contiguous(memory_format=memory_format)
            data = (src, trg, data[2], data[3])
            for precision in precisions:
                fns: dict[str, Callable[[], object]] = {}
                notes: dict[str, str] = {}
                if "backbone" in what:
                    fns["backbone"], notes["backbone"] = workload("backbone", floor_net, None, None, None, data, dev, precision)
                for vname, (net, infer, optimizer, kind, fmt) in nets.items():
                    vdata = data if fmt == memory_format else (
                        data[0].contiguous(memory_format=fmt), data[1].contiguous(memory_format=fmt), data[2], data[3])
                    for name in what:
                        if name == "backbone":
                            continue
                        label = f"{name}:{vname}" if vname else name
                        with source_conv_kind(kind, dev):
                            fn, notes[label] = workload(name, floor_net, net, infer, optimizer, vdata, dev, precision)
                        fns[label] = _with_kind(fn, kind, dev)
                if cats_net is not None:
                    fns["cats"], notes["cats"] = _cats_workload(cats_net, src, trg, dev, precision), "CATs, random weights"
                results = time_interleaved(fns, dev, warmup, repeats)
                floor = batch / results["backbone"][0] if "backbone" in results else None
                for label, (seconds, peak) in results.items():
                    row = Row(label.split(":")[0] if not variants else label, size, batch, precision,
                              batch / seconds, seconds, peak, note=notes.get(label, ""))
                    if floor:
                        row.ratio_to_floor = row.pairs_per_s / floor
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def _with_kind(fn: Callable[[], object], kind: str | None, dev: torch.device) -> Callable[[], object]:
    if kind is None:
        return fn

    def wrapped():
        with source_conv_kind(kind, dev):
            return fn()
    return wrapped


def _cats_workload(net: torch.nn.Module, src: torch.Tensor, trg: torch.Tensor, dev: torch.device, precision: str):
    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    src, trg = src.contiguous(), trg.contiguous()

    def fn():
        if dev.type == "cpu":
            torch.Tensor.cuda = lambda self, *a, **k: self
            torch.nn.Module.cuda = lambda self, *a, **k: self
        try:
            with torch.no_grad(), autocast(dev, precision):
                net(src, trg)  # CATs' forward(target, source): a flow on the first argument's grid
        finally:
            torch.Tensor.cuda, torch.nn.Module.cuda = saved
    return fn


def workload(
    name: str,
    floor_net: torch.nn.Module,
    net: KBCNet | None,
    infer: Callable | None,
    optimizer: torch.optim.Optimizer | None,
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
        meant = source_zooms(kps, size, wrapper.config)
        if not bool(info.refined.cpu()[meant].all()):
            raise RuntimeError(
                f"kbcnet+kbc at {size} px: pass 2 ran on {int(info.refined.sum())} of {len(src)} pairs, but "
                f"{int(meant.sum())} were made to zoom (KBCConfig's defaults); the row would not measure KBC"
            )

        def fn():
            with torch.no_grad(), autocast(dev, precision):
                wrapper(src_list, trg_list, kps, valid)
        return fn, f"pass 2 on {int(info.refined.sum())}/{len(src)} pairs ({int(meant.sum())} made to zoom)"
    if name == "kbc-zoom":
        net.eval()
        wrapper = KBCWrapper(infer, input_size=size, target="object-bbox")
        b = len(src)
        centre = size / 2
        # an object of 52 input px with its keypoints over 40 px, whatever the input size: under
        # KBC's zoom target (KBCNet's 160 input px), so every pair zooms
        small = centre + (torch.rand(b, kps.shape[1], 2, generator=torch.Generator().manual_seed(1)) - 0.5) * 40.0
        small = small.to(dev)
        box = torch.tensor([[centre - 26.0, centre - 26.0, centre + 26.0, centre + 26.0]] * b, device=dev)
        src_list, trg_list = list(src), list(trg)
        with torch.no_grad(), autocast(dev, precision):
            info = wrapper.forward_with_info(src_list, trg_list, small, valid, trg_bbox=box)
        if not bool(info.refined.all()):
            raise RuntimeError(
                f"kbc-zoom at {size} px: pass 2 ran on {int(info.refined.sum())} of {b} pairs, not on every pair "
                "(KBCConfig's defaults); the row would not measure KBC's extra pass"
            )

        def fn():
            with torch.no_grad(), autocast(dev, precision):
                wrapper(src_list, trg_list, small, valid, trg_bbox=box)
        return fn, f"pass 2 on {int(info.refined.sum())}/{b} pairs"
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
    raise ValueError(f"unknown measurement {name!r}; choose from backbone, kbcnet, kbcnet+kbc, kbc-zoom, train")


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


HEADER = f"{'what':<22} {'size':>5} {'batch':>5} {'prec':>5} {'pairs/s':>10} {'x floor':>8} {'peak MiB':>9}  note"


def format_row(row: Row) -> str:
    ratio = f"{row.ratio_to_floor:.2f}" if row.ratio_to_floor is not None else "-"
    peak = f"{row.peak_mem_mib:.0f}" if row.peak_mem_mib is not None else "-"
    return (f"{row.what:<22} {row.size:>5} {row.batch:>5} {row.precision:>5} {row.pairs_per_s:>10.2f} "
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


def parse_variants(items: Sequence[Sequence[str]] | None) -> dict[str, dict] | None:
    """``[["capped", "max_cells=16"], ["legacy", "max_cells=None", "cp4d=conv3d"]]`` -> ``{name: kwargs}``.

    >>> parse_variants([["capped", "max_cells=16"], ["plain"]])
    {'capped': {'max_cells': 16}, 'plain': {}}
    """
    if not items:
        return None
    out: dict[str, dict] = {}
    for item in items:
        name, *args = item
        if "=" in name:
            raise SystemExit(f"--variant: give a name first, then KEY=VALUE arguments; got {' '.join(item)!r}")
        if name in out:
            raise SystemExit(f"--variant: the name {name!r} is given twice")
        out[name] = parse_kwargs(args)
    return out


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options this module's functions added after the first harness (threads, variants,
    CATs, the data pipeline), each with its help; :func:`build_parser` adds them."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's own)")
    parser.add_argument("--variant", nargs="+", action="append", default=None, metavar="NAME [KEY=VALUE]",
                        help="a KBCNet variant measured in the same interleaved rounds: a name, then KBCNet "
                             "arguments (or cp4d=conv3d|dilated-conv2d); repeat for more")
    parser.add_argument("--cats", default=None, metavar="PATH",
                        help="a checkout of CATs' public code (SunghwanHong/Cost-Aggregation-transformers): "
                             "adds its inference, random weights, as a row")
    parser.add_argument("--data-tree", default=None, metavar="PATH",
                        help="measure the data pipeline on a full-size SPair-71k tree at PATH (written there "
                             "first when missing: 70,958 pair files, 1,800 JPEGs; see sosc.data_bench)")
    parser.add_argument("--data-items", type=int, default=200, help="items read per data-pipeline measurement (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``sosc-bench`` (every one with its help and default)."""
    parser = argparse.ArgumentParser(prog="sosc-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="timm backbone (default resnet101 on GPU, resnet18 on CPU)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="input sides (default 256 512 on GPU, 128 on CPU; 256 512 with --data-tree)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="pairs per batch (default 32 on GPU, 2 on CPU)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                        help="fp32 and/or bf16 autocast (default both on GPU, fp32 on CPU)")
    parser.add_argument("--what", nargs="*", default=["backbone", "kbcnet", "kbcnet+kbc", "train"],
                        help="measurements, any of backbone kbcnet kbcnet+kbc kbc-zoom train (default all but kbc-zoom; "
                             "none: only --startup)")
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
    add_options(parser)
    parser.add_argument("--out", default=".bench/bench.json", help="JSON output file (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """``sosc-bench``: see the module docstring and ``sosc-bench --help``. Returns the rows."""
    opts = build_parser().parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.data_tree:
        from sosc.data_bench import main as data_main

        data_main(opts.data_tree, sizes=opts.sizes or [256, 512], items=opts.data_items, out=opts.out)
        return []
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
        "variants": parse_variants(opts.variant),
        "cats": opts.cats,
    }
    name = device_name(opts.device)
    print(f"device: {name}; torch {torch.__version__}; settings: {settings}")
    print(HEADER)
    startup = {}
    if opts.startup:
        startup = startup_times(opts.startup)
        base = startup["import torch"]
        for command_name, seconds in startup.items():
            print(f"start-up: {command_name:<28} {seconds:6.2f} s  ({seconds - base:+.2f} s vs import torch)")
    with quiet():
        rows = run(**settings) if opts.what else []
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "device": name,
        "torch": torch.__version__,
        "settings": settings,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "threads": torch.get_num_threads(),
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
