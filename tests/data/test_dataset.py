"""From files to items: the loader round trip, padding, originals, collate, errors."""

import json

import numpy as np
import pytest
import torch
from conftest import truncate_image

from sosc.data import SPair71kDataModule, collate_pairs, read_spair
from sosc.data.dataset import PairDataset, validate_records
from sosc.errors import DatasetError
from sosc.geometry import points_from_window


class TestRoundTrip:
    def test_keypoints_written_equal_keypoints_read_through_windows(self, spair_tree):
        root, written = spair_tree
        records, report = read_spair(root, "test")
        assert not report and len(records) == len(written["test"])
        ds = PairDataset(records, (48, 80), keep_original=True)
        for item, pair in zip(ds, written["test"]):
            n = len(pair["src_kps"])
            assert item["valid"].sum() == n
            src = points_from_window(item["src_kps"], item["src_window"], (48, 80))[:n]
            trg = points_from_window(item["trg_kps"], item["trg_window"], (48, 80))[:n]
            assert torch.allclose(src, torch.tensor(pair["src_kps"]), atol=1e-3)
            assert torch.allclose(trg, torch.tensor(pair["trg_kps"]), atol=1e-3)
            w, h = pair["trg_imsize"][:2]
            assert item["trg_size"].tolist() == [h, w]
            assert item["trg_orig"].shape == (3, h, w)
            x0, y0, x1, y1 = pair["trg_bndbox"]
            assert item["pck_bound"].item() == max(x1 - x0, y1 - y0)
            assert item["src_img"].shape == (3, 48, 80) and 0 <= item["src_img"].min() <= item["src_img"].max() <= 1

    def test_padding_entries_are_zero_and_invalid(self, spair_tree):
        root, _ = spair_tree
        records, _ = read_spair(root, "train")
        ds = PairDataset(records, 32, max_kps=12)
        item = ds[0]
        n = records[0].num_kps
        assert item["valid"][:n].all() and not item["valid"][n:].any()
        assert (item["src_kps"][n:] == 0).all() and (item["trg_kps"][n:] == 0).all()

    def test_flags_in_items(self, spair_tree):
        root, written = spair_tree
        ds = PairDataset(read_spair(root, "val")[0], 32)
        assert ds[0]["occlusion"] == written["val"][0]["occlusion"]


class TestCollate:
    def test_originals_stay_lists(self, spair_tree):
        root, _ = spair_tree
        ds = PairDataset(read_spair(root, "test")[0], 32, keep_original=True)
        batch = collate_pairs([ds[0], ds[1]])
        assert isinstance(batch["src_orig"], list) and len(batch["src_orig"]) == 2
        assert batch["src_img"].shape == (2, 3, 32, 32) and batch["category"] == [ds[0]["category"], ds[1]["category"]]


class TestDataModule:
    def test_splits_and_loaders(self, spair_tree):
        root, written = spair_tree
        dm = SPair71kDataModule(root.parent, input_size=32, batch_size=3, num_workers=0)
        dm.setup("fit")
        assert len(dm.datasets["train"]) == len(written["trn"]) and len(dm.datasets["val"]) == len(written["val"])
        batches = list(dm.val_dataloader())
        assert sum(len(b["pair_id"]) for b in batches) == len(written["val"])  # no drop_last
        dm.setup("test")
        assert "src_orig" in next(iter(dm.test_dataloader()))

    def test_missing_root_names_the_path(self, tmp_path):
        dm = SPair71kDataModule(tmp_path / "nowhere", num_workers=0)
        with pytest.raises(DatasetError, match="nowhere"):
            dm.setup("test")


class TestBadInput:
    def test_keypoint_outside_image(self, spair_tree):
        root, written = spair_tree
        pair = written["test"][0]
        line = f"{pair['pair_id']}-{pair['src_imname'][:-4]}-{pair['trg_imname'][:-4]}:{pair['category']}"
        path = root / "PairAnnotation" / "test" / f"{line}.json"
        pair = dict(pair, src_kps=[[5000.0, 1.0]] + pair["src_kps"][1:])
        path.write_text(json.dumps(pair))
        records, _ = read_spair(root, "test")
        with pytest.raises(DatasetError, match="outside") as err:
            validate_records(records)
        assert str(path) in str(err.value)
        kept, report = validate_records(records, strict=False)
        assert report.keypoints["outside the image"] == 1 and len(kept) == len(records)

    def test_malformed_json_names_the_file(self, spair_tree):
        root, _ = spair_tree
        path = next((root / "PairAnnotation" / "val").glob("*.json"))
        path.write_text("{not json")
        with pytest.raises(DatasetError, match="malformed JSON") as err:
            read_spair(root, "val")
        assert path.name in str(err.value)

    def test_missing_key_names_the_key(self, spair_tree):
        root, _ = spair_tree
        path = next((root / "PairAnnotation" / "val").glob("*.json"))
        data = json.loads(path.read_text())
        del data["trg_kps"]
        path.write_text(json.dumps(data))
        with pytest.raises(DatasetError, match="'trg_kps'"):
            read_spair(root, "val")

    def test_corrupt_image_names_the_file(self, spair_tree):
        root, written = spair_tree
        pair = written["test"][0]
        img = root / "JPEGImages" / pair["category"] / pair["trg_imname"]
        img.write_bytes(b"not a jpeg")
        from sosc.data.images import image_size

        image_size.cache_clear()
        with pytest.raises(DatasetError, match="corrupt") as err:
            read_spair(root, "test")
        assert pair["trg_imname"] in str(err.value)

    def test_imsize_disagreeing_with_image(self, spair_tree):
        root, _ = spair_tree
        path = next((root / "PairAnnotation" / "trn").glob("*.json"))
        data = json.loads(path.read_text())
        data["src_imsize"] = [1, 2, 3]
        path.write_text(json.dumps(data))
        with pytest.raises(DatasetError, match="src_imsize"):
            read_spair(root, "train")

    def test_pair_without_keypoints_is_counted(self, spair_tree):
        root, _ = spair_tree
        path = next((root / "PairAnnotation" / "trn").glob("*.json"))
        data = json.loads(path.read_text())
        data["src_kps"], data["trg_kps"] = [], []
        path.write_text(json.dumps(data))
        records, report = read_spair(root, "train")
        assert report.pairs["no keypoint in common"] == 1
        with pytest.warns(UserWarning, match="no keypoint in common"):
            SPair71kDataModule(root, input_size=32, num_workers=0).setup("fit")


def test_size_class_rule():
    from sosc.data.records import size_class

    assert size_class(np.array([0, 0, 10, 10.0]), (200, 100)) == "small"
    assert size_class(np.array([0, 0, 60, 10.0]), (200, 100)) == "medium"
    assert size_class(np.array([0, 0, 10, 150.0]), (200, 100)) == "large"


class TestValidateRecordsBoxes:
    """validate_records, which every benchmark goes through, checks boxes as the readers do."""

    def test_box_far_outside_raises_or_skips(self, spair_tree):
        from dataclasses import replace

        from sosc.data.images import image_size
        from sosc.data.records import BOX_OUTSIDE

        root, _ = spair_tree
        records, _ = read_spair(root, "test")
        h, w = image_size(records[1].trg_path)
        bad = [records[0], replace(records[1], trg_bbox=np.array([0, 0, 5000, 5000], np.float32)), records[2]]
        with pytest.raises(DatasetError) as err:
            validate_records(bad)
        msg = str(err.value)
        assert f"{records[1].source}: target object box [0.0, 0.0, 5000.0, 5000.0]" in msg
        assert f"W={w}, H={h}" in msg and "strict=False" in msg
        kept, report = validate_records(bad, strict=False)
        assert [r.pair_id for r in kept] == [records[0].pair_id, records[2].pair_id]
        assert report.pairs[BOX_OUTSIDE] == 1 and records[1].source in report.summary()

    def test_box_within_tolerance_is_clipped_unknown_box_kept(self, spair_tree):
        from dataclasses import replace

        from sosc.data.images import image_size

        root, _ = spair_tree
        rec = read_spair(root, "test")[0][0]
        h, w = image_size(rec.src_path)
        nan = np.full(4, np.nan, np.float32)
        near = replace(rec, src_bbox=np.array([-2, -0.5, w + 2, h + 1], np.float32), trg_bbox=nan)
        (kept,), report = validate_records([near])
        assert not report
        assert kept.src_bbox.tolist() == [0, 0, w, h] and np.isnan(kept.trg_bbox).all()


class TestPerItemRandomness:
    """An item's random draws depend on (seed, epoch, index) alone, in any process or order."""

    def dataset(self, spair_tree, seed=0):
        from sosc.data.augment import Photometric
        from sosc.kbc import KBCConfig, kbc_train_windows

        root, _ = spair_tree
        config = KBCConfig(train_p=0.5)

        def window_fn(src_kps, trg_kps, valid, src_hw, trg_hw, generator):
            return kbc_train_windows(src_kps, trg_kps, valid, src_hw, trg_hw, (32, 32), config, generator)

        return PairDataset(read_spair(root, "train")[0], 32, augment=Photometric(), window_fn=window_fn, seed=seed)

    def test_the_same_key_draws_the_same_item_whatever_came_before(self, spair_tree):
        a, b = self.dataset(spair_tree), self.dataset(spair_tree)
        torch.manual_seed(123)
        first = a[(2, 5)]
        torch.rand(100)  # the global random state no longer matters
        _ = b[(1, 5)], b[(3, 0)]
        again = b[(2, 5)]
        assert torch.equal(first["src_img"], again["src_img"]) and torch.equal(first["trg_window"], again["trg_window"])

    def test_another_epoch_or_seed_draws_anew_and_a_bare_index_is_epoch_zero(self, spair_tree):
        ds = self.dataset(spair_tree)
        assert not torch.equal(ds[(2, 0)]["src_img"], ds[(2, 1)]["src_img"])
        assert not torch.equal(ds[(2, 0)]["src_img"], self.dataset(spair_tree, seed=1)[(2, 0)]["src_img"])
        assert torch.equal(ds[2]["src_img"], ds[(2, 0)]["src_img"]) and ds[(2, 1)]["index"] == 2


class TestVerifyImages:
    def test_a_truncated_image_passes_the_header_checks_but_not_verification(self, spair_tree):
        from sosc.data.dataset import verify_images

        root, written = spair_tree
        pair = written["trn"][1]
        truncate_image(root / "JPEGImages" / pair["category"] / pair["src_imname"])
        records, _ = read_spair(root, "train")  # headers only: nothing noticed
        with pytest.raises(DatasetError, match=rf"1 image\(s\) do not decode: .*{pair['src_imname']}.*strict=False"):
            verify_images(records)
        kept, report = verify_images(records, strict=False)
        assert len(kept) == len(records) - 1 and report.pairs == {"image does not decode": 1}
