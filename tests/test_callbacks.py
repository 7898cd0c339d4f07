"""Tests of sosc.callbacks: the run's checkpoint folder, the newest checkpoint, output paths
checked before any batch."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from sosc.callbacks import (
    PCKReport,
    PredictionWriter,
    RunCheckpoint,
    find_last_checkpoint,
    run_folder,
)
from sosc.data import SPair71kDataModule
from sosc.errors import ConfigError
from sosc.matchers import CallableMatcher
from sosc.module import CorrespondenceModule


def save(path: Path, step: int, age: float) -> Path:
    """A checkpoint-like zip file written ``age`` seconds ago."""
    torch.save({"global_step": step}, path)
    stamp = path.stat().st_mtime - age
    os.utime(path, (stamp, stamp))
    return path


class TestFindLastCheckpoint:
    def test_the_newest_checkpoint_wins_and_last_ckpt_may_be_missing_or_dangling(self, tmp_path):
        save(tmp_path / "epoch=0-step=2.ckpt", 2, age=20)
        newest = save(tmp_path / "epoch=0-step=4.ckpt", 4, age=10)
        (tmp_path / "last.ckpt").symlink_to(newest.name)
        assert find_last_checkpoint(tmp_path) == newest  # the step file the link points to
        (tmp_path / "last.ckpt").unlink()  # killed between the step checkpoint and the link
        assert find_last_checkpoint(tmp_path) == newest
        (tmp_path / "last.ckpt").symlink_to("epoch=0-step=6.ckpt")  # dangling: its target was replaced
        assert find_last_checkpoint(tmp_path) == newest

    def test_a_file_cut_short_is_passed_over_with_a_warning(self, tmp_path):
        older = save(tmp_path / "epoch=0-step=2.ckpt", 2, age=20)
        cut = save(tmp_path / "epoch=0-step=4.ckpt", 4, age=10)
        cut.write_bytes(cut.read_bytes()[:40])
        with pytest.warns(UserWarning, match="step=4.ckpt is incomplete"):
            assert find_last_checkpoint(tmp_path) == older

    def test_no_folder_or_no_checkpoint_is_none(self, tmp_path):
        assert find_last_checkpoint(tmp_path / "missing") is None
        assert find_last_checkpoint(tmp_path) is None


class TestRunFolder:
    def test_the_checkpoints_of_every_version_share_one_folder(self, tmp_path):
        trainer = L.Trainer(logger=CSVLogger(tmp_path, name="run"), default_root_dir=tmp_path / "root")
        assert run_folder(trainer) == tmp_path / "run"
        assert run_folder(L.Trainer(logger=False, default_root_dir=tmp_path / "root")) == tmp_path / "root"

    def test_run_checkpoint_writes_there_and_saves_the_end_of_training(self, spair_tree, tmp_path):
        from sosc.matchers import FeatureMatcher

        root, _ = spair_tree
        data = SPair71kDataModule(root, input_size=64, num_workers=0, batch_size=2)
        module = CorrespondenceModule(FeatureMatcher("resnet18", pretrained=False, strides=(8, 16)))
        callback = RunCheckpoint(every_n_train_steps=2, save_last="link")
        trainer = L.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=CSVLogger(tmp_path, name="run"),
                            callbacks=[callback], enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(module, datamodule=data)
        folder = tmp_path / "run" / "checkpoints"
        assert Path(callback.dirpath) == folder.resolve()
        assert (folder / "last.ckpt").resolve().name.endswith("-step=3.ckpt")  # the end of training, not a multiple of 2
        assert not (folder / "epoch=0-step=2.ckpt").exists()  # save_top_k=1 keeps the newest


class _Counting(CallableMatcher):
    """Identity matcher that counts its calls (a batch ran)."""

    calls = 0

    def __init__(self):
        def fn(src, trg, kps, valid):
            _Counting.calls += 1
            return kps

        super().__init__(fn)


@pytest.fixture
def data(spair_tree):
    root, _ = spair_tree
    return SPair71kDataModule(root, input_size=64, num_workers=0, batch_size=2)


def trainer(tmp_path, *callbacks) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, callbacks=list(callbacks))


class TestOutputsAreCheckedBeforeAnyBatch:
    def test_an_existing_predictions_file_or_a_file_as_folder(self, data, tmp_path):
        _Counting.calls = 0
        existing = tmp_path / "preds.json"
        existing.write_text("{}")
        with pytest.raises(ConfigError, match="--predictions.path .*preds.json already exists: give another path"):
            trainer(tmp_path, PredictionWriter(str(existing))).predict(CorrespondenceModule(_Counting()), datamodule=data)
        with pytest.raises(ConfigError, match="--predictions.path .*p.json cannot be written: .* is a file, not a folder"):
            trainer(tmp_path, PredictionWriter(str(existing / "p.json"))).predict(
                CorrespondenceModule(_Counting()), datamodule=data)
        assert _Counting.calls == 0 and existing.read_text() == "{}"

    def test_a_report_folder_that_cannot_be_made(self, data, tmp_path):
        _Counting.calls = 0
        (tmp_path / "file").write_text("")
        report = PCKReport(folder=str(tmp_path / "file" / "reports"), quiet=True)
        with pytest.raises(ConfigError, match="--report.folder"):
            trainer(tmp_path, report).test(CorrespondenceModule(_Counting()), datamodule=data, verbose=False)
        assert _Counting.calls == 0
