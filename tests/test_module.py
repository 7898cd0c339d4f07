"""Tests of sosc.module.CorrespondenceModule: one input size, KBC reports, checkpoint record."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from sosc.callbacks import PCKReport
from sosc.checkpoint import RECORD_KEY, read_record
from sosc.data import SPair71kDataModule
from sosc.errors import ConfigError
from sosc.kbc import KBCConfig
from sosc.matchers import CallableMatcher, FeatureMatcher
from sosc.module import CorrespondenceModule, as_kbc_config


def shift_matcher() -> CallableMatcher:
    """Moves every keypoint 2 input pixels right: a known, non-trivial prediction."""
    return CallableMatcher(lambda s, t, k, v: k + torch.tensor([2.0, 0.0]))


def trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


@pytest.fixture
def data(spair_tree):
    root, _ = spair_tree
    return SPair71kDataModule(root, input_size=64, num_workers=0, batch_size=2)


class TestInputSize:
    def test_the_input_size_is_read_from_the_batch(self, data, tmp_path):
        module = CorrespondenceModule(shift_matcher())
        result = trainer(tmp_path).test(module, datamodule=data, verbose=False)[0]
        explicit = CorrespondenceModule(shift_matcher(), input_size=64)
        assert trainer(tmp_path).test(explicit, datamodule=data, verbose=False)[0] == result

    def test_a_model_input_size_that_differs_from_the_data_is_refused(self, data, tmp_path):
        """The reported case: input_size=256 on 128-pixel batches silently scored PCK@0.1 0.245 (right: 0.184)."""
        module = CorrespondenceModule(shift_matcher(), input_size=128)
        with pytest.raises(ConfigError, match=r"model.input_size is \(128, 128\) but data.init_args.input_size is \(64, 64\)"):
            trainer(tmp_path).test(module, datamodule=data, verbose=False)

    def test_a_batch_of_another_size_is_refused_without_a_data_module(self, data):
        data.setup("test")
        batch = next(iter(data.test_dataloader()))
        module = CorrespondenceModule(shift_matcher(), input_size=32)
        with pytest.raises(ConfigError, match=r"\(32, 32\).*batch's images are \(64, 64\)"):
            module.predict_plain(batch)

    def test_an_input_size_the_backbone_cannot_take_is_named_before_any_work(self, spair_tree, tmp_path):
        root, _ = spair_tree
        dm = SPair71kDataModule(root, input_size=60, num_workers=0)
        module = CorrespondenceModule(FeatureMatcher("resnet18", pretrained=False, strides=(8, 16)))
        with pytest.raises(ConfigError, match=r"data.init_args.input_size \(60, 60\).*multiple of 16.*48 and 64"):
            trainer(tmp_path).test(module, datamodule=dm, verbose=False)


class TestKBCConfig:
    def test_none_means_no_kbc_at_all(self):
        config = as_kbc_config(None)
        assert not config.enabled and config.train_p == 0.0

    def test_a_dict_is_read_as_the_config_and_a_wrong_key_is_named(self):
        assert as_kbc_config({"enabled": True, "tau": 0.3}) == KBCConfig(enabled=True, tau=0.3)
        with pytest.raises(ConfigError, match="model.kbc"):
            as_kbc_config({"no_such": 1})
        with pytest.raises(ConfigError, match="--model.kbc.enabled true"):
            as_kbc_config(True)

    def test_the_hyperparameters_hold_the_config_as_plain_values(self):
        module = CorrespondenceModule(shift_matcher(), kbc=KBCConfig(tau=0.3))
        assert module.hparams["kbc"]["tau"] == 0.3 and isinstance(module.hparams["kbc"], dict)


class TestTest:
    def test_a_kbc_run_reports_both_passes_and_the_report_callback_writes_them(self, data, tmp_path):
        module = CorrespondenceModule(shift_matcher(), kbc=KBCConfig(enabled=True))
        report = PCKReport(folder=str(tmp_path / "reports"), quiet=True)
        trainer(tmp_path, callbacks=[report]).test(module, datamodule=data, verbose=False)
        assert [r.stem for r in module.test_reports] == ["pck_plain", "pck_kbc_pred-box"]
        assert {p.name for p in report.written} == {"pck_plain.csv", "pck_plain.md", "pck_kbc_pred-box.csv",
                                                    "pck_kbc_pred-box.md"}
        assert all(r.result["pairs"] == 3 for r in module.test_reports)

    def test_the_oracle_is_logged_as_a_leak(self, data, tmp_path):
        module = CorrespondenceModule(shift_matcher(), kbc=KBCConfig(enabled=True, target="oracle"))
        trainer(tmp_path).test(module, datamodule=data, verbose=False)
        assert module.test_reports[-1].prefix == "test_oracle_leak"
        assert "leaks the answer" in module.test_reports[-1].title

    def test_predict_rows_are_in_original_target_pixels(self, data, tmp_path, spair_tree):
        _, written = spair_tree
        module = CorrespondenceModule(CallableMatcher(lambda s, t, k, v: k))  # identity: source = target
        rows = [r for batch in trainer(tmp_path).predict(module, datamodule=data) for r in batch]
        assert [r["index"] for r in rows] == list(range(len(written["test"])))
        pair = written["test"][0]
        src_w, src_h = pair["src_imsize"][:2]
        trg_w, trg_h = pair["trg_imsize"][:2]
        expected = [[x * trg_w / src_w, y * trg_h / src_h] for x, y in pair["src_kps"]]
        assert torch.allclose(torch.tensor(rows[0]["trg_kps"]), torch.tensor(expected), atol=2e-3)


class TestCheckpointRecord:
    def test_the_record_holds_the_matcher_and_the_input_size(self, data, tmp_path):
        module = CorrespondenceModule(FeatureMatcher("resnet18", pretrained=False, strides=(8, 16)))
        t = trainer(tmp_path, max_steps=1, limit_val_batches=0, enable_checkpointing=False)
        t.fit(module, datamodule=data)
        t.save_checkpoint(tmp_path / "a.ckpt")
        ckpt = torch.load(tmp_path / "a.ckpt", weights_only=False)
        record = read_record(ckpt)
        assert record.matcher["class_path"] == "sosc.matchers.feature.FeatureMatcher"
        assert record.matcher["init_args"]["backbone"] == "resnet18"
        assert record.input_size == (64, 64) and ckpt[RECORD_KEY]["format"] == 1

    def test_a_checkpoint_of_another_matcher_is_refused_with_what_each_is(self, data, tmp_path):
        module = CorrespondenceModule(FeatureMatcher("resnet18", pretrained=False, strides=(8, 16)))
        t = trainer(tmp_path, max_steps=1, limit_val_batches=0, enable_checkpointing=False)
        t.fit(module, datamodule=data)
        t.save_checkpoint(tmp_path / "a.ckpt")
        other = CorrespondenceModule(FeatureMatcher("resnet34", pretrained=False, strides=(8, 16)))
        with pytest.raises(ConfigError) as err:
            trainer(tmp_path).test(other, datamodule=data, ckpt_path=str(tmp_path / "a.ckpt"), verbose=False)
        text = str(err.value)
        assert "trained with sosc.matchers.feature.FeatureMatcher" in text and "'resnet18' vs 'resnet34'" in text
        assert len(text.splitlines()) == 1 and len(text) < 1200


def test_fit_hands_the_matcher_to_the_data_for_the_train_time_zoom(spair_tree, tmp_path):
    """``kbc.zoom_px="auto"`` given to both (as the CLI links them): the module resolves it with
    its matcher, and in ``setup`` hands the matcher to the data module, so that the train-time
    windows zoom to the same scale as test-time KBC."""
    root, _ = spair_tree
    data = SPair71kDataModule(root, input_size=64, num_workers=0, batch_size=2, kbc=KBCConfig(train_p=1.0))
    matcher = FeatureMatcher("resnet18", pretrained=False, strides=(8, 16))
    matcher.kbc_zoom_px = 160.0  # a matcher that states its own zoom
    module = CorrespondenceModule(matcher, kbc=KBCConfig(train_p=1.0))
    assert module.kbc_config.zoom_px == 160.0 and data.kbc.zoom_px == "auto"
    trainer(tmp_path, max_steps=1, limit_val_batches=0, enable_checkpointing=False).fit(module, datamodule=data)
    assert data.kbc.zoom_px == 160.0
