"""Tests of sosc.data.datamodule.PairDataModule: input size, train-time KBC, stages and loaders."""

from __future__ import annotations

import pytest
import torch

from sosc.data import PairDataModule, SPair71kDataModule, SyntheticDataModule
from sosc.data.datamodule import STAGE_SPLITS
from sosc.kbc import KBCConfig


class TestInputSize:
    def test_each_benchmark_has_its_usual_input_size(self, tmp_path):
        assert SPair71kDataModule(tmp_path).input_size == (512, 512)
        assert SyntheticDataModule(tmp_path).input_size == (256, 256)

    def test_an_int_or_a_pair(self, tmp_path):
        assert SPair71kDataModule(tmp_path, input_size=64).input_size == (64, 64)
        assert SPair71kDataModule(tmp_path, input_size=(64, 96)).input_size == (64, 96)

    def test_items_are_at_the_input_size(self, spair_tree):
        root, _ = spair_tree
        dm = SPair71kDataModule(root, input_size=(32, 48), num_workers=0)
        dm.setup("test")
        item = dm.datasets["test"][0]
        assert item["src_img"].shape == (3, 32, 48) and item["trg_img"].shape == (3, 32, 48)


class TestTrainTimeKBC:
    def test_no_config_or_train_p_zero_means_full_images(self, tmp_path):
        assert SPair71kDataModule(tmp_path).train_window_fn() is None
        assert SPair71kDataModule(tmp_path, kbc=KBCConfig(train_p=0.0)).train_window_fn() is None

    def test_train_p_one_crops_every_training_pair_around_its_keypoints(self, spair_tree):
        root, _ = spair_tree
        dm = SPair71kDataModule(root, input_size=64, num_workers=0, augment=False,
                                kbc=KBCConfig(enabled=False, train_p=1.0, tau=1.0))
        dm.setup("fit")
        item = dm.datasets["train"][0]
        full = torch.tensor([0.0, 0.0, *item["src_size"].flip(0).tolist()])
        assert not torch.equal(item["src_window"], full)  # `enabled` is evaluation-only
        val = dm.datasets["val"][0]
        assert torch.equal(val["src_window"], torch.tensor([0.0, 0.0, *val["src_size"].flip(0).tolist()]))


class TestStagesAndLoaders:
    def test_each_stage_loads_only_its_splits(self, spair_tree):
        root, _ = spair_tree
        dm = SPair71kDataModule(root, input_size=32, num_workers=0)
        dm.setup("validate")
        assert set(dm.datasets) == {"val"}
        dm.setup("test")
        assert set(dm.datasets) == {"val", "test"}
        assert STAGE_SPLITS["fit"] == ("train", "val")

    def test_evaluation_loaders_keep_the_last_partial_batch_and_do_not_shuffle(self, spair_tree):
        root, written = spair_tree
        dm = SPair71kDataModule(root, input_size=32, num_workers=0, batch_size=2)
        indices = [int(i) for batch in dm.test_dataloader() for i in batch["index"]]
        assert indices == list(range(len(written["test"])))  # 3 pairs in batches of 2: nothing dropped

    def test_the_base_class_says_what_a_subclass_provides(self, tmp_path):
        with pytest.raises(NotImplementedError):
            PairDataModule(tmp_path).read_split("test")
