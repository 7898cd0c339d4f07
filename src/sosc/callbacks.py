"""Lightning callbacks that write what a run produced: checkpoints, PCK reports, predictions
and example figures.

:class:`~sosc.module.CorrespondenceModule` computes and logs PCK; these callbacks turn its
results into files. The ``sosc`` CLI always adds :class:`PCKReport` (``--report.*``),
:class:`PredictionWriter` (``--predictions.*``), :class:`ExampleFigures` (``--examples.*``) and a
step :class:`RunCheckpoint` (``--checkpoint.*``); with a plain ``Trainer`` add them to
``callbacks=[...]``.

Every process calls their hooks (reading ``trainer.log_dir`` and checking an output path are
collective under DDP: rank 0 decides and tells the others); only the global-zero process writes.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint

from sosc.errors import ConfigError
from sosc.outputs import check_output_file, check_output_folder
from sosc.report import markdown, write_report

#: The run's checkpoint folder, under the logger's root: ``<save_dir>/<name>/checkpoints``.
CHECKPOINT_FOLDER = "checkpoints"


def run_folder(trainer: L.Trainer) -> Path:
    """The folder of a run, the same for each of its versions: the first logger's ``root_dir``
    (``<save_dir>/<name>`` for the CSV and TensorBoard loggers), else ``<save_dir>/<name>``
    (W&B: the project), else ``trainer.default_root_dir``."""
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is not None:
        if logger.root_dir:
            return Path(logger.root_dir)
        if logger.save_dir:
            return Path(logger.save_dir) / str(logger.name or "")
    return Path(trainer.default_root_dir)


def find_last_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint in ``folder`` (``*.ckpt``, the most recently written), or
    None when there is none. ``last.ckpt`` links to the newest step checkpoint; when it is
    missing or dangling (a run killed between the two writes) the step checkpoint is found all
    the same. A file cut short (a run killed while it was being copied into place) is passed
    over with a warning: a checkpoint is a zip archive, complete only with its end record."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob("*.ckpt"):
        try:
            found.append((path.stat().st_mtime_ns, path.name != "last.ckpt", path))
        except OSError:  # a link whose checkpoint was just replaced
            continue
    for _, _, path in sorted(found, reverse=True):
        if zipfile.is_zipfile(path):
            return path
        warnings.warn(f"{path} is incomplete (cut short while being written): resuming from an older one",
                      stacklevel=2)
    return None


def broadcast_check(trainer: L.Trainer, check) -> None:
    """Run ``check()`` (raising :class:`ConfigError`) on rank 0 and raise the same error on every
    process: every rank stops before any work, and only rank 0's file system is asked."""
    message = None
    if trainer.is_global_zero:
        try:
            check()
        except ConfigError as err:
            message = str(err)
    message = trainer.strategy.broadcast(message, src=0)
    if message is not None:
        raise ConfigError(message)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's :class:`~lightning.pytorch.callbacks.ModelCheckpoint`, in the run's folder.

    Every argument is ModelCheckpoint's. Three differences:

    - ``dirpath`` defaults to ``<run folder>/checkpoints`` (:func:`run_folder`:
      ``<save_dir>/<name>/checkpoints`` with the CSV logger), the same folder for every version
      the logger opens, so that ``sosc fit --ckpt_path last`` finds the run's newest checkpoint
      (:func:`find_last_checkpoint`) instead of looking in a new ``version_N``;
    - with ``every_n_train_steps`` and no ``monitor``, the end of training is saved too (as
      another step checkpoint), so that a run whose length is not a multiple of N keeps its
      final weights;
    - ``save_on_exception`` saves only in a single-process run: under DDP a rank that fails
      alone would wait for the others at the save's barrier.

    The ``sosc`` CLI always adds one as ``checkpoint``: every 100 training steps, keeping the
    newest (``save_top_k=1``), ``last.ckpt`` linked to it, and one more on an exception.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(run_folder(trainer) / CHECKPOINT_FOLDER)
        super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is None and self._every_n_train_steps >= 1 and not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.world_size == 1:
            super().on_exception(trainer, pl_module, exception)


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

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check ``--report.folder`` before any work (the logger's folder is the logger's)."""
        if stage == "test" and self.folder:
            broadcast_check(trainer, lambda: check_output_folder(self.folder, "--report.folder"))

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
        """Check the output file on rank 0 before any batch; every process stops on a bad one."""
        if stage != "predict":
            return
        self._target = target = self.target(trainer)
        broadcast_check(trainer, lambda: check_output_file(target, self.overwrite, "--predictions.path"))

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


def write_predictions(path: Path, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write the predictions JSON atomically, one line per pair so that large files stay readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps(header, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(r) for r in rows)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f'{head},\n "pairs": [\n{body}\n ]\n}}\n')
    tmp.replace(path)


class ExampleFigures(Callback):
    """Draw a few pairs of each ``sosc test`` run with :mod:`sosc.viz`: the first ``n`` and the
    worst ``n`` (lowest PCK@``alpha`` of the KBC result, or of the plain one without KBC; ties
    broken by the larger mean error), as PNG files beside the report, and log them.

    Args:
        enabled: draw the figures (``--examples.enabled false`` turns it off).
        n: how many first and how many worst pairs (``0``: none).
        alpha: the PCK threshold that marks keypoints correct or wrong and ranks the pairs.
        folder: where to write (default ``<log_dir>/examples``, beside the report).
        log: also hand the figures to the loggers that take images: W&B
            (``WandbLogger.log_image``, key ``test_examples/first`` and ``test_examples/worst``)
            and TensorBoard (``add_image``); a CSV logger's record is the files in its folder.

    Files: ``first_<k>_<pair id>.png`` and ``worst_<k>_<pair id>.png`` (``k`` from 1). A KBC run
    draws both passes (without and with KBC, the windows and a zoom on each); a plain run, the
    plain prediction. The callback reads what the module's ``test_step`` returns (the
    ``outputs`` of ``on_test_batch_end``: a :class:`~sosc.kbc.KBCOutput` or the plain
    prediction), so nothing is computed twice; it needs the batch's original images
    (``src_orig``, ``trg_orig``, which evaluation splits have). Under DDP, the global-zero process draws from its own share of the
    pairs.
    """

    def __init__(self, enabled: bool = True, n: int = 3, alpha: float = 0.1, folder: str | None = None,
                 log: bool = True) -> None:
        super().__init__()
        if n < 0 or not 0 < alpha <= 1:
            raise ConfigError(f"examples: n must be >= 0 and 0 < alpha <= 1, got n={n}, alpha={alpha}")
        self.enabled, self.n, self.alpha, self.folder, self.log = enabled, n, alpha, folder, log
        self.written: list[Path] = []
        self._first: list[dict[str, Any]] = []
        self._worst: list[dict[str, Any]] = []
        self._seen = 0

    @property
    def active(self) -> bool:
        return self.enabled and self.n > 0

    def examples_folder(self, trainer: L.Trainer) -> Path:
        """Where the figures go (call it on every process: ``log_dir`` is collective)."""
        return Path(self.folder) if self.folder else Path(trainer.log_dir or ".") / "examples"

    # -- capture -----------------------------------------------------------------------------
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first, self._worst, self._seen, self.written = [], [], 0, []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        out = outputs
        if not self.active or out is None or isinstance(out, dict) or "src_orig" not in batch:
            return
        for pair in example_rows(batch, out, self.alpha):
            pair["order"] = self._seen
            self._seen += 1
            if len(self._first) < self.n:
                self._first.append(pair)
            self._worst.append(pair)
            self._worst.sort(key=lambda p: (p["pck"], -p["error"], p["order"]))
            del self._worst[self.n:]

    # -- draw --------------------------------------------------------------------------------
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active:
            return
        folder = self.examples_folder(trainer)
        if not trainer.is_global_zero or not self._first:
            return
        from sosc.viz import figure_array, plot_match, save_figure

        logged: dict[str, list[tuple[str, Any]]] = {}
        for kind, pairs in (("first", self._first), ("worst", self._worst)):
            for k, pair in enumerate(pairs, start=1):
                title = (f"{kind} {k}: {pair['pair_id']} ({pair['category']}, {pair['size_class']}), "
                         f"PCK@{self.alpha:g} {pair['pck']:.2f}")
                fig = plot_match(pair["src_img"], pair["trg_img"], pair["src_kps"], pair["kps"],
                                 plain_kps=pair.get("plain_kps"), gt_kps=pair["gt_kps"], valid=pair["valid"],
                                 pck_bound=pair["bound"], alpha=self.alpha, src_window=pair.get("src_window"),
                                 trg_window=pair.get("trg_window"), from_pass2=pair.get("from_pass2"),
                                 reason=pair.get("reason"), title=title)
                path = save_figure(fig, folder / f"{kind}_{k}_{_safe_name(pair['pair_id'])}.png")
                if self.log:
                    logged.setdefault(kind, []).append((title, figure_array(fig)))
                fig.clear()
                self.written.append(path)
        if self.log:
            log_images(trainer.loggers, logged, step=trainer.global_step)
        print(f"example figures ({len(self._first)} first, {len(self._worst)} worst) written to {folder}")


def example_rows(batch: dict[str, Any], out: Any, alpha: float) -> list[dict[str, Any]]:
    """One dict per pair of ``batch`` with what :func:`sosc.viz.plot_match` draws (CPU tensors,
    original pixels) and its score: ``pck`` (PCK@``alpha``, a fraction) and ``error`` (mean
    error over ``L``). ``out`` is what the module's ``test_step`` returned: a
    :class:`~sosc.kbc.KBCOutput`, or the plain ``(B, N, 2)`` prediction."""
    from sosc.batch import original_keypoints
    from sosc.kbc.plan import REASONS

    src_kps, gt = original_keypoints(batch, "src"), original_keypoints(batch, "trg")
    kbc = not isinstance(out, torch.Tensor)
    pred = out.kps if kbc else out
    rows = []
    for i in range(len(pred)):
        valid = batch["valid"][i].cpu()
        bound = float(batch["pck_bound"][i])
        err = (pred[i].detach().float().cpu() - gt[i].float().cpu()).norm(dim=-1)[valid] / max(bound, 1e-6)
        row = {
            "pair_id": str(batch["pair_id"][i]) if "pair_id" in batch else str(i),
            "category": batch["category"][i] if "category" in batch else "",
            "size_class": batch["size_class"][i] if "size_class" in batch else "",
            "src_img": batch["src_orig"][i].detach().cpu(), "trg_img": batch["trg_orig"][i].detach().cpu(),
            "src_kps": src_kps[i].detach().cpu(), "gt_kps": gt[i].detach().cpu(), "valid": valid, "bound": bound,
            "kps": pred[i].detach().cpu(),
            "pck": float((err <= alpha).float().mean()) if len(err) else 1.0,
            "error": float(err.mean()) if len(err) else 0.0,
        }
        if kbc:
            row.update(plain_kps=out.plain_kps[i].detach().cpu(), src_window=out.src_window[i].detach().cpu(),
                       trg_window=out.trg_window[i].detach().cpu(), from_pass2=out.from_pass2[i].detach().cpu(),
                       reason=REASONS[int(out.reason[i])])
        else:
            row["reason"] = "kbc off"
        rows.append(row)
    return rows


def log_images(loggers: list[Any], images: dict[str, list[tuple[str, Any]]], step: int = 0) -> list[str]:
    """Hand ``images`` (``{kind: [(caption, (H, W, 3) uint8 array), ...]}``) to the loggers that
    take images: W&B's ``log_image`` (key ``test_examples/<kind>``) and TensorBoard's
    ``add_image``. Returns the names of the loggers used."""
    used = []
    for logger in loggers:
        experiment_add = getattr(getattr(logger, "experiment", None), "add_image", None)
        if hasattr(logger, "log_image"):
            for kind, items in images.items():
                captions, arrays = zip(*items)
                logger.log_image(key=f"test_examples/{kind}", images=list(arrays), caption=list(captions), step=step)
            used.append(type(logger).__name__)
        elif type(logger).__name__ == "TensorBoardLogger" and callable(experiment_add):
            for kind, items in images.items():
                for k, (_, array) in enumerate(items, start=1):
                    experiment_add(f"test_examples/{kind}_{k}", array, global_step=step, dataformats="HWC")
            used.append(type(logger).__name__)
    return used


def _safe_name(text: str) -> str:
    """``text`` with every character but letters, digits, ``-`` and ``_`` replaced by ``_`` (60 at most)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60]
