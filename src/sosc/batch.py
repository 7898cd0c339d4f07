"""Reading a :class:`~sosc.types.PairBatch`: its input size, its points in original pixels.

A batch holds both images resampled through their windows and keypoints in **input**
pixels; the metric and every output work in **original** target pixels. These functions are
the only place that maps a batch's points back (through :func:`sosc.geometry.points_from_window`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sosc.errors import ConfigError
from sosc.geometry import Size, as_size, points_from_window
from sosc.types import PairBatch


def batch_input_size(batch: PairBatch, expected: Sequence[int] | None = None) -> Size:
    """The network input size ``(S_h, S_w)`` of a batch (its images' size).

    Args:
        batch: a :class:`~sosc.types.PairBatch`.
        expected: a size the caller was configured with (``model.input_size``), or ``None``.

    Raises:
        ConfigError: naming both sizes when ``expected`` differs from the batch's.
    """
    size = (int(batch["src_img"].shape[-2]), int(batch["src_img"].shape[-1]))
    if expected is not None and tuple(as_size(expected)) != size:
        raise ConfigError(
            f"model.input_size is {tuple(as_size(expected))} but the batch's images are {size} "
            "(data.init_args.input_size): set the input size once, on the data module, and leave "
            "model.input_size unset (the model reads it from the batch)"
        )
    return size


def to_original(batch: PairBatch, points: torch.Tensor, side: str = "trg") -> torch.Tensor:
    """Input-pixel points ``(B, N, 2)`` of the ``side`` (``"src"`` or ``"trg"``) image mapped back
    to its original pixels through the batch's window."""
    return points_from_window(points, batch[f"{side}_window"], batch_input_size(batch))


def original_keypoints(batch: PairBatch, side: str) -> torch.Tensor:
    """The batch's ``side`` keypoints ``(B, N, 2)`` in original pixels (``"src"`` or ``"trg"``)."""
    return to_original(batch, batch[f"{side}_kps"], side)


def size_indices(batch: PairBatch, labels: Sequence[str]) -> torch.Tensor:
    """``(B,)`` index of each pair's ``size_class`` in ``labels``, on the batch's device."""
    index = {name: i for i, name in enumerate(labels)}
    return torch.tensor([index[s] for s in batch["size_class"]], device=batch["valid"].device)


def prediction_rows(batch: PairBatch, pred: torch.Tensor, digits: int = 3) -> list[dict[str, Any]]:
    """JSON-ready rows, one per pair: ``pair_id``, ``category``, ``index`` and ``trg_kps`` (the
    valid predictions, ``[x, y]`` original target pixels, rounded to ``digits``)."""
    rows = []
    for i, pair_id in enumerate(batch["pair_id"]):
        kps = pred[i][batch["valid"][i]].float().cpu()
        rows.append({
            "pair_id": pair_id,
            "category": batch["category"][i],
            "index": int(batch["index"][i]) if "index" in batch else i,
            "trg_kps": [[round(float(x), digits), round(float(y), digits)] for x, y in kps],
        })
    return rows
