"""CorrespondenceModule: the LightningModule that trains and evaluates any matcher.

The flow of one pair (README, "How it fits together"): the batch (:class:`~sosc.types.PairBatch`)
holds both images resampled through their windows, keypoints in input pixels, and what the
metric needs in original pixels.

- Training: ``matcher(src_img, trg_img, src_kps, valid)`` -> keypoint loss in input pixels.
- Validation and test: predictions (through :class:`sosc.kbc.KBCWrapper` when ``kbc.enabled``)
  are mapped back through the target window (:mod:`sosc.batch`) and scored by
  :class:`sosc.metrics.PCK` in original target pixels.
- Predict: one JSON-ready row per pair (written by :class:`sosc.callbacks.PredictionWriter`).

This module holds the steps, the loss, the metrics and the optimiser. Reports are written by
:class:`sosc.callbacks.PCKReport`; the checkpoint's matcher record is :mod:`sosc.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch

from sosc.batch import (
    batch_input_size,
    original_keypoints,
    prediction_rows,
    size_indices,
    to_original,
)
from sosc.checkpoint import (
    RECORD_KEY,
    check_state_dict,
    instantiate,
    make_record,
    matcher_config_of,
)
from sosc.data.datamodule import PairDataModule
from sosc.data.dataset import finish_batch
from sosc.data.records import DIFFICULTY_FLAGS, SIZE_CLASSES
from sosc.errors import ConfigError
from sosc.geometry import Size, as_size
from sosc.kbc import KBCConfig, KBCOutput, KBCWrapper
from sosc.losses import keypoint_epe
from sosc.matchers.base import Matcher, check_input_size, keypoints_of, matcher_input_multiple
from sosc.metrics import PCK, KBCDecisions, decisions_line
from sosc.types import PairBatch

#: Labels of the ``size`` breakdown of reports (SPair-71k's classes, plus pairs without a box).
SIZE_LABELS = (*SIZE_CLASSES, "unknown")


@dataclass
class EvalReport:
    """One result of a test run: logged under ``prefix/``, written as ``<stem>.csv/.md``."""

    prefix: str
    stem: str
    title: str
    result: dict[str, float]
    note: str = ""


def as_kbc_config(kbc: KBCConfig | Mapping[str, Any] | None) -> KBCConfig:
    """``model.kbc`` as a :class:`KBCConfig`; ``None`` is KBC off at evaluation, no train-time KBC.

    Raises:
        ConfigError: naming ``model.kbc`` and the fix, for a value of another type.
    """
    if kbc is None:
        return KBCConfig(enabled=False, train_p=0.0)
    if isinstance(kbc, KBCConfig):
        return kbc
    if isinstance(kbc, Mapping):
        try:
            return KBCConfig(**kbc)
        except TypeError as err:
            raise ConfigError(f"model.kbc: {err}; the options are the fields of sosc.KBCConfig") from err
    raise ConfigError(
        f"model.kbc must be a KBCConfig (e.g. --model.kbc.enabled true), got {kbc!r}; "
        "the options are the fields of sosc.KBCConfig"
    )


class CorrespondenceModule(L.LightningModule):
    """Train and evaluate a matcher on keypoint pairs.

    Args:
        matcher: a :class:`~sosc.matchers.base.Matcher`: ``sosc.KBCNet``,
            ``sosc.matchers.FeatureMatcher``, or an adapter (``FlowMatcher``,
            ``ScoreVolumeMatcher``, ``FeatureFnMatcher``, ``CallableMatcher``) around a network
            of your own given by class path in its ``init_args``; a ``Matcher`` subclass of your
            package by its class path. In Python, any ``nn.Module`` that follows the contract;
            also the configuration ``{"class_path": ..., "init_args": ...}`` (how Lightning's
            ``load_from_checkpoint`` passes it).
        input_size: ``None`` (default) reads the network input size from each batch; a value
            ``(S_h, S_w)`` or an int is checked against the data module and every batch
            (:class:`~sosc.errors.ConfigError` naming both when they differ).
        lr: AdamW learning rate of everything but the backbone.
        backbone_lr: learning rate of parameters under a ``backbone`` submodule.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the cosine decay (``scheduler="cosine"``).
        scheduler: ``cosine`` (warm-up then cosine to 0 over the run) or ``none``.
        kbc: the KBC options (:class:`~sosc.kbc.KBCConfig`; ``None``: no KBC at evaluation and
            no train-time KBC). ``kbc.enabled`` turns KBC on at test and predict time;
            ``kbc.train_p`` is applied by the data module (the CLI links ``model.kbc`` to
            ``data.init_args.kbc``). Under ``target="oracle"`` metrics are logged as
            ``test_oracle_leak/``.
        alphas: PCK thresholds.
    """

    def __init__(
        self,
        matcher: Matcher,
        input_size: int | Sequence[int] | None = None,
        lr: float = 3e-4,
        backbone_lr: float = 3e-5,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        scheduler: Literal["cosine", "none"] = "cosine",
        kbc: KBCConfig | None = None,
        alphas: Sequence[float] = (0.05, 0.1, 0.15),
    ) -> None:
        super().__init__()
        if isinstance(matcher, Mapping) and "class_path" in matcher:  # Lightning's load_from_checkpoint
            matcher_config, matcher = dict(matcher), instantiate(matcher)
        else:
            matcher_config = matcher_config_of(matcher)
        self.kbc_config = as_kbc_config(kbc).for_matcher(matcher)  # zoom_px "auto": the matcher's
        self.save_hyperparameters(ignore=["matcher", "kbc"])
        self.hparams["kbc"] = dataclasses.asdict(self.kbc_config)
        self.matcher = matcher
        self.input_size: Size | None = as_size(input_size) if input_size is not None else None
        self.alphas = tuple(alphas)
        #: ``{"class_path", "init_args"}`` of the matcher, for the checkpoint record: set by the
        #: ``sosc`` CLI, else derived from the matcher's recorded arguments (:mod:`sosc.checkpoint`).
        self.matcher_config: dict[str, Any] | None = matcher_config
        self.categories: list[str] | None = None
        self.groups: tuple[str, ...] = ("size",)
        self.test_reports: list[EvalReport] = []
        self._seen_input_size: Size | None = None

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        flags: tuple[str, ...] = ()
        self.categories = None
        if isinstance(datamodule, PairDataModule):
            self.check_input_size(datamodule.input_size)
            datamodule.use_matcher(self.matcher)  # kbc.zoom_px "auto": this matcher's zoom
            self.categories = list(datamodule.categories) if datamodule.categories is not None else None
            flags = tuple(datamodule.difficulty_flags)
        self.groups = (*flags, "size")
        self.val_pck, self.test_pck, self.test_pck_plain = (
            PCK(self.alphas, categories=self.categories, groups=self.groups, group_labels={"size": SIZE_LABELS})
            for _ in range(3)
        )
        self.kbc_decisions = KBCDecisions()

    def check_input_size(self, data_input_size: int | Sequence[int]) -> None:
        """Raise :class:`ConfigError` before any work when the data module's input size differs from
        ``model.input_size`` or is not a multiple the matcher needs."""
        data_size = as_size(data_input_size)
        if self.input_size is not None and tuple(self.input_size) != tuple(data_size):
            raise ConfigError(
                f"model.input_size is {tuple(self.input_size)} but data.init_args.input_size is {data_size}: "
                "set the input size once, on the data module, and leave model.input_size unset "
                "(the model reads it from the batch)"
            )
        check_input_size(data_size, matcher_input_multiple(self.matcher), "data.init_args.input_size")

    def kbc_wrapper(self, input_size: Sequence[int]) -> KBCWrapper:
        """KBC around this module's matcher (built per call: it holds no weights of its own,
        and as an attribute it would store the matcher's weights twice in checkpoints)."""
        return KBCWrapper(self.matcher, input_size=input_size, config=self.kbc_config)

    def configure_optimizers(self):
        hp = self.hparams
        backbone, rest = [], []
        for name, p in self.matcher.named_parameters():
            if p.requires_grad:
                (backbone if "backbone." in name else rest).append(p)
        groups = [{"params": rest, "lr": hp.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": hp.backbone_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(hp.warmup_steps, max(total - 1, 0))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- one pair, both ways ----------------------------------------------------------------------
    def forward(self, src_img, trg_img, src_kps, valid) -> torch.Tensor:
        """Target keypoints ``(B, N, 2)`` in input pixels (the matcher contract)."""
        return keypoints_of(self.matcher(src_img, trg_img, src_kps, valid))

    def input_size_of(self, batch: PairBatch) -> Size:
        """The batch's input size, checked against ``model.input_size`` (and remembered for the
        checkpoint record)."""
        size = batch_input_size(batch, self.input_size)
        self._seen_input_size = size
        return size

    def predict_plain(self, batch: PairBatch) -> torch.Tensor:
        """Predicted target keypoints ``(B, N, 2)`` in original target pixels, no KBC."""
        self.input_size_of(batch)
        pred = self(batch["src_img"], batch["trg_img"], batch["src_kps"], batch["valid"])
        return to_original(batch, pred, "trg")

    def predict_kbc(self, batch: PairBatch) -> KBCOutput:
        """KBC predictions (and the plain ones of pass 1), original target pixels."""
        size = self.input_size_of(batch)
        if "src_orig" not in batch:
            raise ConfigError("model.kbc.enabled=true needs the original images in the batch (src_orig/trg_orig)")
        oracle = self.kbc_config.target == "oracle"
        return self.kbc_wrapper(size).forward_with_info(
            batch["src_orig"], batch["trg_orig"], original_keypoints(batch, "src"), batch["valid"],
            trg_bbox=batch["trg_bbox"], trg_kps=original_keypoints(batch, "trg") if oracle else None,
        )

    def _update(self, metric: PCK, batch: PairBatch, pred_orig: torch.Tensor) -> None:
        category = batch["category"] if self.categories is not None else batch["category_id"]
        groups = {flag: batch[flag] for flag in self.groups if flag in DIFFICULTY_FLAGS}
        groups["size"] = size_indices(batch, SIZE_LABELS)
        metric.update(
            pred_orig, original_keypoints(batch, "trg"), batch["valid"], batch["pck_bound"], category, groups,
            ids=batch.get("index"),
        )

    def on_after_batch_transfer(self, batch: PairBatch, dataloader_idx: int) -> PairBatch:
        """Finish a batch whose windows are resampled on the device (``resample="device"``:
        :func:`sosc.data.dataset.finish_batch`); other batches pass unchanged."""
        return finish_batch(batch) if isinstance(batch, dict) else batch

    # -- Lightning steps -----------------------------------------------------------------------
    def training_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        size = self.input_size_of(batch)
        pred = self(batch["src_img"], batch["trg_img"], batch["src_kps"], batch["valid"])
        loss = keypoint_epe(pred, batch["trg_kps"], batch["valid"], size)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(pred))
        return loss

    def validation_step(self, batch: PairBatch, batch_idx: int) -> None:
        size = self.input_size_of(batch)
        pred = self(batch["src_img"], batch["trg_img"], batch["src_kps"], batch["valid"])
        loss = keypoint_epe(pred, batch["trg_kps"], batch["valid"], size)
        self.log("val/loss", loss, batch_size=len(pred), sync_dist=True)
        self._update(self.val_pck, batch, to_original(batch, pred, "trg"))

    def on_validation_epoch_end(self) -> None:
        # compute() gathers every process's pairs (a collective: it runs on every rank) and gives
        # each rank the same value; the max over ranks of equal values is that value, exactly (a
        # mean need not be), and every rank keeps it for checkpoint monitors.
        result = self.val_pck.compute()
        for a in self.alphas:
            key = f"pck@{a:g}"
            if key in result:
                self.log(f"val/{key}", result[key], prog_bar=a == 0.1, sync_dist=True, reduce_fx="max")
        self.val_pck.reset()

    def test_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor | KBCOutput:
        """Update the test metrics; return the prediction (``(B, N, 2)`` original target pixels, or
        the :class:`~sosc.kbc.KBCOutput` of a KBC run), which Lightning hands to callbacks'
        ``on_test_batch_end`` as ``outputs`` (:class:`sosc.callbacks.ExampleFigures` draws it)."""
        if not self.kbc_config.enabled:
            pred = self.predict_plain(batch)
            self._update(self.test_pck, batch, pred)
            return pred
        info = self.predict_kbc(batch)
        self._update(self.test_pck, batch, info.kps)
        self._update(self.test_pck_plain, batch, info.plain_kps)
        self.kbc_decisions.update(info, batch["valid"], batch.get("index"))
        return info

    @property
    def headline_keys(self) -> list[str]:
        """``pck@A`` and ``pck_kp@A`` for every alpha: the names logged (full report in files)."""
        return [f"{kind}@{a:g}" for kind in ("pck", "pck_kp") for a in self.alphas]

    @property
    def test_prefix(self) -> str:
        return "test_oracle_leak" if (self.kbc_config.enabled and self.kbc_config.leaks_answer) else "test"

    @property
    def test_title(self) -> str:
        if not self.kbc_config.enabled:
            return "PCK without KBC"
        title = f"PCK with KBC (target: {self.kbc_config.target})"
        if self.kbc_config.leaks_answer:
            title += " - ORACLE: uses ground-truth target keypoints, leaks the answer"
        return title

    @property
    def report_stem(self) -> str:
        return "pck_" + ("kbc_" + self.kbc_config.target if self.kbc_config.enabled else "plain")

    def on_test_epoch_start(self) -> None:
        self.test_reports = []

    def on_test_epoch_end(self) -> None:
        reports = []
        if self.kbc_config.enabled:
            reports.append(EvalReport("test_plain", "pck_plain", "PCK without KBC (the plain pass of the same run)",
                                      self.test_pck_plain.compute()))
        note = ""
        if self.kbc_config.enabled:
            counts = self.kbc_decisions.compute()
            note = decisions_line(counts)
            for key in ("pairs zoomed", "keypoints zoomed, pass 2 kept", "keypoints zoomed, pass 1 kept",
                        "matcher passes"):
                if key == "matcher passes" and key not in counts:
                    continue  # not known (an output without passes): no figure rather than a 0
                self.log(f"{self.test_prefix}_kbc/{key.replace(' ', '_').replace(',', '')}", float(counts.get(key, 0)),
                         sync_dist=True, reduce_fx="max")  # gathered by compute(), as the PCK below
        reports.append(EvalReport(self.test_prefix, self.report_stem, self.test_title, self.test_pck.compute(), note))
        self.test_pck.reset()
        self.test_pck_plain.reset()
        self.kbc_decisions.reset()
        for report in reports:
            for key in (*self.headline_keys, "pairs", "keypoints"):
                if key in report.result:
                    # equal on every rank (compute() gathered them): see on_validation_epoch_end
                    self.log(f"{report.prefix}/{key}", report.result[key], sync_dist=True, reduce_fx="max")
        self.test_reports = reports

    def predict_step(self, batch: PairBatch, batch_idx: int) -> list[dict[str, Any]]:
        pred = self.predict_kbc(batch).kps if self.kbc_config.enabled else self.predict_plain(batch)
        return prediction_rows(batch, pred)

    # -- checkpoints --------------------------------------------------------------------------
    def record_input_size(self) -> Size | None:
        """The input size the checkpoint record states: ``model.input_size``, else the data
        module's, else the last batch's."""
        if self.input_size is not None:
            return self.input_size
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(datamodule, PairDataModule):
            return as_size(datamodule.input_size)
        return self._seen_input_size

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write the record (:mod:`sosc.checkpoint`), and the matcher's configuration into the
        hyperparameters too, so that Lightning's ``load_from_checkpoint`` can rebuild it."""
        checkpoint[RECORD_KEY] = make_record(self.matcher_config, self.record_input_size())
        if self.matcher_config is not None:
            checkpoint.setdefault("hyper_parameters", {})["matcher"] = self.matcher_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_state_dict(checkpoint, self.state_dict(), self.matcher_config)
