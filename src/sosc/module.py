"""CorrespondenceModule: the LightningModule that trains and evaluates any matcher.

The flow of one pair (ARCHITECTURE.md): the batch holds both images resampled through
their windows, keypoints in input pixels, and what the metric needs in original pixels.
Training: ``matcher(src_img, trg_img, src_kps, valid)`` -> keypoint loss in input pixels.
Evaluation: predictions (through :class:`sosc.kbc.KBCWrapper` when ``kbc`` is on) are
mapped back through the target window and scored by :class:`sosc.metrics.PCK` in original
target pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from sosc.data.records import DIFFICULTY_FLAGS, SIZE_CLASSES
from sosc.errors import ConfigError
from sosc.geometry import as_size, points_from_window
from sosc.kbc import KBCConfig, KBCOutput, KBCWrapper
from sosc.losses import keypoint_epe
from sosc.matchers.base import keypoints_of
from sosc.metrics import PCK
from sosc.report import markdown, write_report

KBCTarget = Literal["pred-box", "object-bbox", "oracle"]
SIZE_LABELS = (*SIZE_CLASSES, "unknown")
SIZE_INDEX = {name: i for i, name in enumerate(SIZE_LABELS)}


class CorrespondenceModule(L.LightningModule):
    """Train and evaluate a matcher on keypoint pairs.

    Args:
        matcher: any ``nn.Module`` following the matcher contract (``sosc.KBCNet``,
            ``sosc.FeatureMatcher``, an adapter around a third-party net).
        input_size: network input ``(S_h, S_w)`` or an int (linked to ``data.img_size`` by the CLI).
        lr: AdamW learning rate of everything but the backbone.
        backbone_lr: learning rate of parameters under a ``backbone`` submodule.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the cosine decay (``scheduler="cosine"``).
        scheduler: ``cosine`` (warm-up then cosine to 0 over the run) or ``none``.
        kbc: use KBC at test and predict time.
        kbc_target: how the target window is chosen: ``pred-box`` (leak-free, default),
            ``object-bbox`` (annotated target box), ``oracle`` (ground truth; leaks the answer,
            logged under ``test_oracle_leak/``).
        kbc_tau, kbc_rho, kbc_margin, kbc_s_max: KBC settings (METHOD.md).
        kbc_guard: in ``pred-box`` mode, a more generous target window and a fall-back to
            pass 1 where pass 1 looks unreliable (:class:`sosc.kbc.KBCConfig`).
        kbc_train_p: probability of train-time KBC (applied by the data module, to which the
            CLI links it with the other KBC settings).
        alphas: PCK thresholds.
        predictions_file: where ``predict`` writes its JSON (default ``<log_dir>/predictions.json``).
    """

    def __init__(
        self,
        matcher: nn.Module,
        input_size: int | Sequence[int] = 256,
        lr: float = 3e-4,
        backbone_lr: float = 3e-5,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        scheduler: Literal["cosine", "none"] = "cosine",
        kbc: bool = False,
        kbc_target: KBCTarget = "pred-box",
        kbc_tau: float = 0.5,
        kbc_rho: float = 0.7,
        kbc_margin: float = 0.15,
        kbc_s_max: float = 4.0,
        kbc_guard: bool = True,
        kbc_train_p: float = 0.5,
        alphas: Sequence[float] = (0.05, 0.1, 0.15),
        predictions_file: str | None = None,
    ) -> None:
        super().__init__()
        try:
            self.kbc_config = KBCConfig(
                enabled=True, tau=kbc_tau, rho=kbc_rho, margin=kbc_margin, s_max=kbc_s_max,
                target=kbc_target, train_p=kbc_train_p, guard=kbc_guard,
            )
        except ConfigError as err:
            raise ConfigError(f"model.kbc_*: {err}") from err
        self.save_hyperparameters(ignore=["matcher"])
        self.matcher = matcher
        self.input_size = as_size(input_size)
        self.alphas = tuple(alphas)
        self._predictions: list[dict[str, Any]] = []
        self.categories: list[str] | None = None
        self.groups: tuple[str, ...] = ("size",)

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        cats = getattr(dm, "categories", None)
        self.categories = list(cats) if cats is not None else None
        flags = tuple(getattr(dm, "difficulty_flags", ()))
        self.groups = (*flags, "size")
        self.val_pck, self.test_pck, self.test_pck_plain = (
            PCK(self.alphas, categories=self.categories, groups=self.groups, group_labels={"size": SIZE_LABELS})
            for _ in range(3)
        )

    def kbc_wrapper(self) -> KBCWrapper:
        """KBC around this module's matcher (built per call: it holds no weights of its own,
        and as an attribute it would store the matcher's weights twice in checkpoints)."""
        return KBCWrapper.from_config(self.matcher, self.kbc_config, input_size=self.input_size)

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

    def predict_plain(self, batch: dict[str, Any]) -> torch.Tensor:
        """Predicted target keypoints ``(B, N, 2)`` in original target pixels, no KBC."""
        pred = self(batch["src_img"], batch["trg_img"], batch["src_kps"], batch["valid"])
        return points_from_window(pred, batch["trg_window"], self.input_size)

    def predict_kbc(self, batch: dict[str, Any]) -> KBCOutput:
        """KBC predictions (and the plain ones of pass 1), original target pixels."""
        if "src_orig" not in batch:
            raise ConfigError("model.kbc=true needs the original images in the batch (src_orig/trg_orig)")
        src_kps = points_from_window(batch["src_kps"], batch["src_window"], self.input_size)
        oracle = self.kbc_config.target == "oracle"
        trg_kps = points_from_window(batch["trg_kps"], batch["trg_window"], self.input_size) if oracle else None
        return self.kbc_wrapper().forward_with_info(
            batch["src_orig"], batch["trg_orig"], src_kps, batch["valid"], trg_bbox=batch["trg_bbox"], trg_kps=trg_kps
        )

    def _groups(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {flag: batch[flag] for flag in self.groups if flag in DIFFICULTY_FLAGS}
        out["size"] = torch.tensor([SIZE_INDEX[s] for s in batch["size_class"]], device=self.device)
        return out

    def _update(self, metric: PCK, batch: dict[str, Any], pred_orig: torch.Tensor) -> None:
        gt = points_from_window(batch["trg_kps"], batch["trg_window"], self.input_size)
        category = batch["category"] if self.categories is not None else batch["category_id"]
        metric.update(
            pred_orig, gt, batch["valid"], batch["pck_bound"], category, self._groups(batch), ids=batch.get("index")
        )

    # -- Lightning steps -----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        pred = self(batch["src_img"], batch["trg_img"], batch["src_kps"], batch["valid"])
        loss = keypoint_epe(pred, batch["trg_kps"], batch["valid"], self.input_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(pred))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = self(batch["src_img"], batch["trg_img"], batch["src_kps"], batch["valid"])
        loss = keypoint_epe(pred, batch["trg_kps"], batch["valid"], self.input_size)
        self.log("val/loss", loss, batch_size=len(pred), sync_dist=True)
        self._update(self.val_pck, batch, points_from_window(pred, batch["trg_window"], self.input_size))

    def on_validation_epoch_end(self) -> None:
        result = self.val_pck.compute()
        for a in self.alphas:
            key = f"pck@{a:g}"
            if key in result:
                self.log(f"val/{key}", result[key], prog_bar=a == 0.1)
        self.val_pck.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not self.hparams.kbc:
            self._update(self.test_pck, batch, self.predict_plain(batch))
            return
        info = self.predict_kbc(batch)
        self._update(self.test_pck, batch, info.kps)
        self._update(self.test_pck_plain, batch, info.plain_kps)

    @property
    def headline_keys(self) -> list[str]:
        """``pck@A`` and ``pck_kp@A`` for every alpha: the names logged (full report in files)."""
        return [f"{kind}@{a:g}" for kind in ("pck", "pck_kp") for a in self.alphas]

    @property
    def test_prefix(self) -> str:
        return "test_oracle_leak" if (self.hparams.kbc and self.hparams.kbc_target == "oracle") else "test"

    @property
    def test_title(self) -> str:
        if not self.hparams.kbc:
            return "PCK without KBC"
        title = f"PCK with KBC (target: {self.hparams.kbc_target})"
        if self.hparams.kbc_target == "oracle":
            title += " - ORACLE: uses ground-truth target keypoints, leaks the answer"
        return title

    def on_test_epoch_end(self) -> None:
        reports = []
        if self.hparams.kbc:
            plain = self.test_pck_plain.compute()
            reports.append(("test_plain", "pck_plain", "PCK without KBC (pass 1 of the same run)", plain))
        reports.append((self.test_prefix, self._report_stem, self.test_title, self.test_pck.compute()))
        self.test_pck.reset()
        self.test_pck_plain.reset()
        for prefix, stem, title, result in reports:
            for key in (*self.headline_keys, "pairs", "keypoints"):
                if key in result:
                    self.log(f"{prefix}/{key}", result[key], rank_zero_only=True)
            if self.trainer.is_global_zero:
                folder = Path(self.trainer.log_dir or ".")
                write_report(result, title, folder, stem=stem)
                print("\n" + markdown(result, title))
                print(f"report written to {folder / (stem + '.csv')} and {folder / (stem + '.md')}")

    @property
    def _report_stem(self) -> str:
        return "pck_" + ("kbc_" + self.hparams.kbc_target if self.hparams.kbc else "plain")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        pred = self.predict_kbc(batch).kps if self.hparams.kbc else self.predict_plain(batch)
        out = []
        for i, pair_id in enumerate(batch["pair_id"]):
            n = int(batch["valid"][i].sum())
            out.append({
                "pair_id": pair_id,
                "category": batch["category"][i],
                "trg_kps": [[round(float(x), 3), round(float(y), 3)] for x, y in pred[i][batch["valid"][i]][:n]],
            })
        self._predictions.extend(out)
        return out

    def on_predict_epoch_start(self) -> None:
        self._predictions = []

    def on_predict_epoch_end(self) -> None:
        path = self.hparams.predictions_file
        target = Path(path) if path else Path(self.trainer.log_dir or ".") / "predictions.json"
        if self.trainer.world_size > 1:
            target = target.with_name(f"{target.stem}.rank{self.trainer.global_rank}{target.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "units": "original target-image pixels, (x, y); image spans [0, W] x [0, H]",
            "kbc": bool(self.hparams.kbc),
            "kbc_target": self.hparams.kbc_target if self.hparams.kbc else None,
            "pairs": self._predictions,
        }
        tmp = target.with_suffix(target.suffix + ".tmp")
        pairs = payload.pop("pairs")
        head = json.dumps(payload, indent=1)[:-2]  # one line per pair keeps large files readable
        body = ",\n".join("  " + json.dumps(p) for p in pairs)
        tmp.write_text(f'{head},\n "pairs": [\n{body}\n ]\n}}\n')
        tmp.replace(target)
        print(f"predictions for {len(self._predictions)} pairs written to {target}")
