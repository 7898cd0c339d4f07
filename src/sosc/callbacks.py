"""Lightning callbacks that write what a run produced: PCK reports and predictions.

:class:`~sosc.module.CorrespondenceModule` computes and logs PCK; these callbacks turn its
results into files. The ``sosc`` CLI always adds both (options ``--report.*`` and
``--predictions.*``); with a plain ``Trainer`` add them to ``callbacks=[...]``.

Every process calls their hooks (reading ``trainer.log_dir`` is a collective call under
DDP); only the global-zero process writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from sosc.errors import ConfigError
from sosc.report import markdown, write_report


class PCKReport(Callback):
    """Write each test result of the module as ``<stem>.csv`` and ``<stem>.md`` and print it.

    Args:
        folder: where to write (default: the logger's folder, ``trainer.log_dir``).
        quiet: do not print the tables (the files are written either way).

    The module leaves its results in ``pl_module.test_reports`` (a list of
    :class:`~sosc.module.EvalReport`): a KBC run gives the plain result of its pass 1
    (``pck_plain``) and the KBC result (``pck_kbc_<target>``).
    """

    def __init__(self, folder: str | None = None, quiet: bool = False) -> None:
        super().__init__()
        self.folder = folder
        self.quiet = quiet
        self.written: list[Path] = []

    def report_folder(self, trainer: L.Trainer) -> Path:
        """The folder reports go to (call it on every process: ``log_dir`` is collective)."""
        return Path(self.folder) if self.folder else Path(trainer.log_dir or ".")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = self.report_folder(trainer)
        if not trainer.is_global_zero:
            return
        self.written = []
        for report in getattr(pl_module, "test_reports", []):
            csv_path, md_path = write_report(report.result, report.title, folder, stem=report.stem, note=report.note)
            self.written += [csv_path, md_path]
            if not self.quiet:
                print("\n" + markdown(report.result, report.title, note=report.note))
                print(f"report written to {csv_path} and {md_path}")


class PredictionWriter(BasePredictionWriter):
    """Write the predicted target keypoints of ``sosc predict`` to one JSON file.

    Args:
        path: the JSON file (default ``<log_dir>/predictions.json``). Checked before any
            prediction runs: its folder must be writable, and an existing file is an error
            unless ``overwrite``.
        overwrite: replace an existing file.

    The file holds ``units``, ``kbc``, ``kbc_target`` and ``pairs``: one row per pair
    (``pair_id``, ``category``, ``index``, ``trg_kps`` as ``[[x, y], ...]`` in original target
    pixels), in dataset order. Under DDP the rows of every process are gathered, pairs that a
    distributed sampler repeated are written once, and one file is written.
    """

    def __init__(self, path: str | None = None, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.path = path
        self.overwrite = overwrite
        self._rows: list[dict[str, Any]] = []
        self._target: Path | None = None

    def target(self, trainer: L.Trainer) -> Path:
        """The output file (call it on every process: ``log_dir`` is collective)."""
        return Path(self.path) if self.path else Path(trainer.log_dir or ".") / "predictions.json"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        self._target = self.target(trainer)
        if trainer.is_global_zero:
            check_output_file(self._target, self.overwrite, "--predictions.path")

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self._rows.extend(prediction)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = gather_objects(self._rows)
        target = self._target or self.target(trainer)
        if not trainer.is_global_zero:
            return
        seen: set[int] = set()
        unique = []
        for row in sorted(rows, key=lambda r: r["index"]):
            if row["index"] not in seen:
                seen.add(row["index"])
                unique.append(row)
        kbc = getattr(pl_module, "kbc_config", None)
        header = {
            "units": "original target-image pixels, (x, y); image spans [0, W] x [0, H]",
            "kbc": bool(kbc is not None and kbc.enabled),
            "kbc_target": kbc.target if kbc is not None and kbc.enabled else None,
        }
        write_predictions(target, header, unique)
        print(f"predictions for {len(unique)} pairs written to {target}")


def gather_objects(rows: list[Any]) -> list[Any]:
    """Every process's ``rows`` concatenated (the rows themselves when not distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return list(rows)
    parts: list[list[Any] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, list(rows))
    return [row for part in parts for row in (part or [])]


def check_output_file(path: Path, overwrite: bool, option: str) -> None:
    """Raise :class:`ConfigError` before any work when ``path`` cannot be written: it exists and
    ``overwrite`` is false, or its folder cannot be created or written. ``option`` names the
    setting to change."""
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists: give another {option}, or allow overwriting it")
    if path.exists() and path.is_dir():
        raise ConfigError(f"{path} is a folder: give a file name as {option}")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the folder {folder} for {option} ({err}): choose another path") from err
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"the folder {folder} cannot be written ({option}): choose another path")


def write_predictions(path: Path, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write the predictions JSON atomically, one line per pair so that large files stay readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps(header, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(r) for r in rows)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f'{head},\n "pairs": [\n{body}\n ]\n}}\n')
    tmp.replace(path)
