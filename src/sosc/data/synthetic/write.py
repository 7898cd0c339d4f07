"""Writing a whole set's files into a folder, pair by pair, in this process or a worker pool.

The pairs are cut into chunks (:class:`Chunk`) that a pool of worker processes writes
(:func:`run_chunk`); every pair depends only on ``(seed, split, index)``, so the files are
the same whatever the number of workers, and the layout files are written last in index
order. What a worker receives must pickle by reference to module-level names (``spawn``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sosc.data.synthetic.annotations import (
    image_annotation,
    image_stem,
    layout_line,
    pair_annotation,
)
from sosc.data.synthetic.plan import plan_pair
from sosc.data.synthetic.render import render_view
from sosc.data.synthetic.shapes import CATEGORIES
from sosc.data.synthetic.spec import SPLITS, SyntheticSpec


def write_pair(out: Path, seed: int, split: str, index: int) -> str:
    """Render and write pair ``index`` of ``split`` under ``out`` (its two JPEG images, their
    image annotations and the pair annotation, into the existing tree of :func:`write_all`);
    return its layout line."""
    plan = plan_pair(seed, split, index)
    cat, inst = plan.category, plan.instance
    stems = (image_stem(cat, split, index, 0), image_stem(cat, split, index, 1))
    occluded = []
    for stem, view in zip(stems, plan.views, strict=True):
        jpeg, occ = render_view(view, inst)
        occluded.append(occ)
        (out / "JPEGImages" / cat / f"{stem}.jpg").write_bytes(jpeg)
        annotation = image_annotation(stem, view, inst, occ)
        (out / "ImageAnnotation" / cat / f"{stem}.json").write_text(json.dumps(annotation, indent=1) + "\n")
    line = layout_line(index, stems, cat)
    pair = pair_annotation(index, stems, plan, (occluded[0], occluded[1]))
    (out / "PairAnnotation" / split / f"{line}.json").write_text(json.dumps(pair, indent=1) + "\n")
    return line


@dataclass(frozen=True)
class Chunk:
    """Pairs ``start <= index < stop`` of one split, written under ``out_dir``."""

    seed: int
    split: str
    start: int
    stop: int
    out_dir: str


def run_chunk(chunk: Chunk) -> tuple[str, int, list[str]]:
    """Write the pairs of a chunk; return ``(split, start, layout lines)`` (what a worker
    sends back)."""
    out = Path(chunk.out_dir)
    lines = [write_pair(out, chunk.seed, chunk.split, i) for i in range(chunk.start, chunk.stop)]
    return chunk.split, chunk.start, lines


def start_method() -> str:
    """``fork`` on Linux (workers inherit the imported modules: importing ``sosc`` again in
    every worker would cost seconds), ``spawn`` elsewhere; the workers need no inherited
    state, so both give the same files."""
    import multiprocessing
    import sys

    return "fork" if sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _make_chunks(spec: SyntheticSpec, out: Path, num_workers: int) -> list[Chunk]:
    """The set's pairs cut into chunks of at most 50 pairs, about 8 per worker, split by
    split in :data:`~.spec.SPLITS` order."""
    total = sum(spec.counts().values())
    size = max(1, min(50, math.ceil(total / (max(num_workers, 1) * 8))))
    return [
        Chunk(spec.seed, split, start, min(start + size, n), str(out))
        for split, n in spec.counts().items()
        for start in range(0, n, size)
    ]


def make_tree(out: Path) -> None:
    """The empty SPair-71k folders under ``out``."""
    for split in SPLITS:
        (out / "PairAnnotation" / split).mkdir(parents=True)
    for category in CATEGORIES:
        (out / "JPEGImages" / category).mkdir(parents=True)
        (out / "ImageAnnotation" / category).mkdir(parents=True)
    (out / "Layout" / "large").mkdir(parents=True)


def _run_chunks(chunks: list[Chunk], num_workers: int, progress: bool) -> dict[tuple[str, int], list[str]]:
    """Write every chunk (in this process when ``num_workers <= 1`` or there is one chunk,
    else in a pool); return the layout lines by ``(split, start)``."""
    from tqdm.auto import tqdm

    results: dict[tuple[str, int], list[str]] = {}
    total = sum(c.stop - c.start for c in chunks)
    with tqdm(total=total, disable=not progress, unit="pair", desc="synthetic SOSC") as bar:
        if num_workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                split, start, lines = run_chunk(chunk)
                results[split, start] = lines
                bar.update(len(lines))
        else:
            import multiprocessing

            with multiprocessing.get_context(start_method()).Pool(num_workers) as pool:
                for split, start, lines in pool.imap_unordered(run_chunk, chunks):
                    results[split, start] = lines
                    bar.update(len(lines))
    return results


def write_all(out: Path, spec: SyntheticSpec, num_workers: int, progress: bool) -> None:
    """Write the whole set of ``spec`` into the empty folder ``out`` (all but the marker):
    the tree, every pair (``num_workers`` processes, a tqdm bar when ``progress``), then
    ``Layout/large/<split>.txt`` in index order."""
    make_tree(out)
    results = _run_chunks(_make_chunks(spec, out, num_workers), num_workers, progress)
    for split in SPLITS:
        lines = [line for (s, _), part in sorted(results.items()) if s == split for line in part]
        (out / "Layout" / "large" / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))
