"""Tests of sosc.data.datamodule.PairDataModule: input size, train-time KBC, stages and loaders."""

from __future__ import annotations

import pytest
import torch
from conftest import truncate_image

from sosc.data import PairDataModule, SPair71kDataModule, SyntheticDataModule
from sosc.data.datamodule import STAGE_SPLITS
from sosc.errors import DatasetError
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
                                kbc=KBCConfig(enabled=False, train_p=1.0, zoom_px=None, tau=1.0))
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


class TestTrainSampler:
    def test_the_order_is_a_function_of_seed_and_epoch_and_the_shards_cover_every_pair(self):
        from sosc.data import TrainSampler

        one = TrainSampler(range(7), seed=0)
        assert list(one) == list(TrainSampler(range(7), seed=0)) and all(e == 0 for _, e in one)
        one.set_epoch(1)
        assert [i for i, _ in one] != [i for i, _ in TrainSampler(range(7), seed=0)]
        assert {e for _, e in one} == {1}
        shards = [list(TrainSampler(range(7), seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == 4 and {i for s in shards for i, _ in s} == set(range(7))

    def test_a_resumed_sampler_skips_only_in_its_first_epoch(self):
        from sosc.data import TrainSampler

        full = TrainSampler(range(7), seed=3)
        full.set_epoch(2)
        resumed = TrainSampler(range(7), seed=3, epoch=2, skip=4)
        assert list(resumed) == list(full)[4:] and len(resumed) == 7  # Lightning counts the whole epoch
        resumed.set_epoch(3)
        full.set_epoch(3)
        assert list(resumed) == list(full)


class TestResume:
    def images(self, dm):
        return [batch["src_img"] for batch in dm.train_dataloader()]

    def test_a_checkpoint_record_resumes_the_epoch_at_its_next_batch_with_the_same_draws(self, spair_tree):
        root, _ = spair_tree
        kwargs = dict(input_size=32, num_workers=0, batch_size=1, kbc=KBCConfig(train_p=0.5), train_seed=5)
        dm = SPair71kDataModule(root, **kwargs)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        epoch1 = [batch["src_img"] for batch in loader]
        resumed = SPair71kDataModule(root, **kwargs)
        resumed.load_state_dict({"train": {"seed": 5, "epoch": 1, "batches": 2}})
        again = self.images(resumed)
        assert len(again) == len(epoch1) - 2 and all(torch.equal(a, b) for a, b in zip(again, epoch1[2:]))

    def test_the_seed_comes_from_the_checkpoint_then_train_seed_then_seed_everything(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PL_GLOBAL_SEED", "7")
        assert SPair71kDataModule(tmp_path).training_seed() == 7
        dm = SPair71kDataModule(tmp_path, train_seed=3)
        assert dm.training_seed() == 3
        dm.load_state_dict({"train": {"seed": 11, "epoch": 0, "batches": 0}})
        assert dm.training_seed() == 11
        assert SPair71kDataModule(tmp_path).state_dict() == {}  # nothing to record outside training
        assert SyntheticDataModule(tmp_path, seed=4).training_seed() == 7  # its `seed` is the generator's


class TestVerifyImages:
    def test_a_truncated_training_image_is_named_at_set_up_or_its_pair_skipped(self, spair_tree):
        root, written = spair_tree
        pair = written["trn"][2]
        truncate_image(root / "JPEGImages" / pair["category"] / pair["trg_imname"])
        SPair71kDataModule(root, input_size=32, num_workers=0).setup("fit")  # headers only: passes
        with pytest.raises(DatasetError, match=pair["trg_imname"]):
            SPair71kDataModule(root, input_size=32, num_workers=0, verify_images=True).setup("fit")
        dm = SPair71kDataModule(root, input_size=32, num_workers=0, verify_images=True, strict=False)
        with pytest.warns(UserWarning, match="1 pairs \\(image does not decode"):
            dm.setup("fit")
        assert len(dm.datasets["train"]) == len(written["trn"]) - 1


def test_train_time_windows_zoom_to_the_trained_matchers_scale(spair_tree):
    """``kbc.zoom_px="auto"``: the LightningModule hands its matcher to the data module in
    ``setup`` (:meth:`PairDataModule.use_matcher`), so that a KBCNet trains on windows of its
    own zoom (160 input px), not the default's (96), even when the split is already set up."""

    class Wide:
        kbc_zoom_px = 160.0

    root, _ = spair_tree
    sides = {}
    for name, matcher in (("default", None), ("wide", Wide())):
        dm = SPair71kDataModule(root, input_size=128, num_workers=0, augment=False,
                                kbc=KBCConfig(enabled=False, train_p=1.0, rho=1.0, min_zoom=1.0, s_max=64.0))
        dm.setup("fit")
        if matcher is not None:
            dm.use_matcher(matcher)
            assert dm.kbc.zoom_px == 160.0
        item = dm.datasets["train"][0]
        sides[name] = float(item["src_window"][2] - item["src_window"][0])
    # at input 128 the default's box spans 96 input px (a 0.75 fill: here the full image), the
    # wide matcher's 128 (a fill of 1.0): a smaller window
    assert sides["wide"] < 0.9 * sides["default"], sides


def test_a_data_module_reused_for_another_matcher_resolves_its_zoom_again(spair_tree):
    """``use_matcher`` resolves the configuration asked for, not one resolved for an earlier
    matcher (found by a review: a KBCNet fitted after a FeatureMatcher on one data module
    trained at 96 px while its checkpoint said 160)."""

    class Wide:
        kbc_zoom_px = 160.0

    root, _ = spair_tree
    dm = SPair71kDataModule(root, input_size=64, num_workers=0, kbc=KBCConfig(train_p=1.0))
    dm.use_matcher(lambda *a: None)
    assert dm.kbc.zoom_px == 96.0
    dm.use_matcher(Wide())
    assert dm.kbc.zoom_px == 160.0
    dm.kbc = KBCConfig(train_p=1.0, zoom_px=64.0)  # set by hand: kept
    dm.use_matcher(Wide())
    assert dm.kbc.zoom_px == 64.0
