"""The data path that keeps a GPU fed (#15): PIL resampling, resampling on the device, the index cache.

No timing here: speed is measured by ``sosc-bench --data-tree`` (``results/bench.md``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from sosc.data import SPair71kDataModule, collate_pairs, read_spair
from sosc.data import index_cache as ic
from sosc.data.augment import Photometric, apply_photometric
from sosc.data.dataset import PairDataset, finish_batch
from sosc.errors import DatasetError
from sosc.geometry import resample_window, resample_window_8bit


def photo(w: int = 120, h: int = 90) -> Image.Image:
    """A photograph (textured, edges everywhere), 8-bit RGB."""
    from skimage import data as skdata

    return Image.fromarray(skdata.astronaut()).resize((w, h), Image.BILINEAR)


def as_float(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255


class TestResampleWindow8bit:
    """``resample_window_8bit`` against ``resample_window``: within 1/255 (plus rounding) wherever
    the window does not shrink the image, edges and zero padding included."""

    @pytest.mark.parametrize("window,size", [
        ((0.0, 0.0, 120.0, 90.0), (180, 240)),        # the full image, upscaled
        ((0.0, 0.0, 120.0, 90.0), (90, 120)),         # the full image at its own size
        ((10.3, 20.7, 70.1, 60.2), (128, 128)),       # a fractional crop, upscaled
        ((-30.0, -10.0, 60.0, 50.0), (96, 96)),       # past the top-left corner: zero padding
        ((80.5, 40.25, 150.0, 120.0), (112, 96)),     # past the bottom-right corner
        ((-5.0, -5.0, 125.0, 95.0), (100, 130)),      # around the whole image, a thin zero frame
    ])
    def test_equals_the_reference_within_one_level(self, window, size):
        im = photo()
        ref = resample_window(as_float(im), torch.tensor(window), size)
        got = resample_window_8bit(im, torch.tensor(window), size)
        assert got.dtype == torch.uint8 and got.shape == (3, *size)
        diff = (got.float() / 255 - ref).abs()
        assert float(diff.max()) <= 1.01 / 255
        zero = ref.amax(0) == 0  # zero padding where the sample centres lie outside the image
        assert bool((got.amax(0)[zero] == 0).all())

    def test_a_shrinking_window_samples_the_same_places(self):
        """On a linear ramp every symmetric filter gives the value at the sample centre, so a
        shrinking window must agree with the reference within rounding: the geometry is exact."""
        x = torch.arange(240.0)[None, :].expand(180, 240)
        y = torch.arange(180.0)[:, None].expand(180, 240)
        ramp = torch.stack([x / 240, y / 180, (x + y) / 420]).mul(255).round().div(255)
        im = Image.fromarray((ramp * 255).round().byte().permute(1, 2, 0).numpy())
        window, size = torch.tensor([10.3, 20.7, 230.1, 150.2]), (64, 80)  # shrinks 2.75 x 2.0
        ref = resample_window(ramp, window, size)
        got = resample_window_8bit(im, window, size).float() / 255
        assert float((got - ref)[:, 2:-2, 2:-2].abs().max()) <= 1.01 / 255

    def test_a_shrinking_window_of_a_photograph_differs_only_by_the_filter(self):
        im = photo(240, 180)
        window, size = torch.tensor([10.3, 20.7, 230.1, 150.2]), (64, 80)
        ref = resample_window(as_float(im), window, size)
        got = resample_window_8bit(im, window, size).float() / 255
        # one triangle filter over the window (PIL) against a pre-shrink of the whole image then
        # bilinear sampling (the reference, which blurs twice): 4.2/255 apart on average here
        assert float((got - ref).abs().mean()) < 6 / 255
        assert abs(float(got.mean() - ref.mean())) < 1 / 255

    def test_bad_inputs_are_named(self):
        from sosc.errors import ShapeError

        with pytest.raises(ShapeError, match="x1 > x0"):
            resample_window_8bit(photo(), (5.0, 0.0, 5.0, 10.0), 8)
        with pytest.raises(ShapeError, match="RGB"):
            resample_window_8bit(photo().convert("L"), (0.0, 0.0, 10.0, 10.0), 8)


class TestPhotometric:
    def test_the_call_is_unchanged_draw_for_draw(self):
        """``Photometric()(image, g)`` equals the implementation before the split, bit for bit."""

        def before(aug, image, generator):
            def draw(s, n=1):
                return 1.0 + s * (2.0 * torch.rand(n, generator=generator) - 1.0)

            out = image * draw(aug.brightness)
            mean = out.mean()
            out = (out - mean) * draw(aug.contrast) + mean
            gray = out.mean(dim=0, keepdim=True)
            out = (out - gray) * draw(aug.saturation) + gray
            out = out * draw(aug.color, 3).view(3, 1, 1)
            out = out + aug.noise * torch.randn(out.shape, generator=generator)
            return out.clamp_(0.0, 1.0)

        image = torch.rand(3, 17, 23)
        aug = Photometric()
        a = aug(image, torch.Generator().manual_seed(5))
        b = before(aug, image, torch.Generator().manual_seed(5))
        assert torch.equal(a, b)


class TestDevicePath:
    def test_a_finished_batch_equals_the_worker_path_bit_for_bit(self, spair_tree):
        root, _ = spair_tree
        records = read_spair(root, "train")[0][:3]
        worker = PairDataset(records, (48, 64), resample="torch")
        device = PairDataset(records, (48, 64), resample="device")
        item = device[0]
        assert "src_img" not in item and item["src_raw"].dtype == torch.uint8
        batch = finish_batch(collate_pairs([device[i] for i in range(3)]))
        ref = collate_pairs([worker[i] for i in range(3)])
        assert "src_raw" not in batch and "resample_size" not in batch
        for key in ("src_img", "trg_img", "src_kps", "trg_kps", "src_window", "trg_window"):
            assert torch.equal(batch[key], ref[key]), key

    def test_train_time_windows_and_the_deferred_augmentation(self, spair_tree):
        from sosc.data.datamodule import PairDataModule
        from sosc.kbc import KBCConfig

        root, _ = spair_tree
        dm = SPair71kDataModule(root=root, input_size=48, kbc=KBCConfig(train_p=1.0), download=False,
                                resample="device")
        dm.setup("fit")
        train = dm.datasets["train"]
        assert isinstance(dm, PairDataModule) and train.resample == "device"
        keys = [(0, 0), (1, 0)]
        batch = finish_batch(collate_pairs([train[k] for k in keys]))
        again = finish_batch(collate_pairs([train[k] for k in keys]))
        assert torch.equal(batch["src_img"], again["src_img"])  # a function of (seed, epoch, index)
        assert batch["src_img"].shape == (2, 3, 48, 48) and 0 <= float(batch["src_img"].min())
        # the same windows as the worker path, and the augmentation is the item's own factors
        train.resample = "torch"
        ref = collate_pairs([train[k] for k in keys])
        assert torch.equal(batch["src_window"], ref["src_window"])
        train.resample = "device"
        item = train[keys[0]]
        plain = resample_window(item["src_raw"].float() / 255, item["src_window"], 48)
        g = torch.Generator().manual_seed(int(item["augment_seed"][0]))
        expected = apply_photometric(plain, item["augment"][0], torch.randn(plain.shape, generator=g))
        assert torch.allclose(batch["src_img"][0], expected, atol=1e-6)

    def test_pil_items_are_close_to_torch_items(self, spair_tree):
        root, _ = spair_tree
        records = read_spair(root, "test")[0][:2]
        a = PairDataset(records, 256, resample="pil", keep_original=True)[0]  # every fixture image is upscaled
        b = PairDataset(records, 256, resample="torch", keep_original=True)[0]
        assert float((a["src_img"] - b["src_img"]).abs().max()) <= 1.01 / 255
        assert torch.equal(a["src_orig"], b["src_orig"]) and torch.equal(a["src_kps"], b["src_kps"])

    def test_a_module_finishes_device_batches_after_the_transfer(self, spair_tree):
        from sosc.matchers import FeatureMatcher
        from sosc.module import CorrespondenceModule

        root, _ = spair_tree
        ds = PairDataset(read_spair(root, "train")[0][:2], 32, resample="device")
        module = CorrespondenceModule(FeatureMatcher("resnet18", pretrained=False, strides=(8, 16)))
        batch = module.on_after_batch_transfer(collate_pairs([ds[0], ds[1]]), 0)
        assert batch["src_img"].shape == (2, 3, 32, 32) and batch["src_img"].dtype == torch.float32

    def test_auto_resamples_in_the_workers_without_an_accelerator_and_unknown_values_are_named(self, spair_tree):
        root, _ = spair_tree
        dm = SPair71kDataModule(root=root, input_size=32, download=False)
        dm.setup("fit")
        assert dm.training_resample() == "torch" and dm.datasets["train"].resample == "torch"
        with pytest.raises(ValueError, match="resample"):
            SPair71kDataModule(root=root, resample="gpu")
        with pytest.raises(DatasetError, match="resample"):
            PairDataset([], 32, resample="cuda")


class TestIndexCache:
    def setup_count(self, root, monkeypatch, **kwargs):
        import sosc.data.spair as spair

        calls = []
        monkeypatch.setattr(spair, "read_spair", lambda *a, **k: calls.append(a[1]) or read_spair(*a, **k))
        dm = SPair71kDataModule(root=root, input_size=32, download=False, **kwargs)
        dm.setup("fit")
        return calls, dm

    def test_a_second_set_up_reads_the_cache_and_gives_the_same_records(self, spair_tree, tmp_path, monkeypatch):
        root, _ = spair_tree
        first, dm1 = self.setup_count(root, monkeypatch, index_cache=tmp_path / "cache")
        second, dm2 = self.setup_count(root, monkeypatch, index_cache=tmp_path / "cache")
        assert sorted(first) == ["train", "val"] and second == []
        a, b = dm1.datasets["train"].records, dm2.datasets["train"].records
        assert [r.pair_id for r in a] == [r.pair_id for r in b]
        assert all(np.array_equal(x.src_kps, y.src_kps) and x.src_path == y.src_path for x, y in zip(a, b))
        assert dm2.skipped["train"].summary() == dm1.skipped["train"].summary()

    @pytest.mark.parametrize("change", ["touch a pair file", "rewrite an image", "remove a pair file"])
    def test_a_changed_file_invalidates_the_split(self, spair_tree, tmp_path, monkeypatch, change):
        root, _ = spair_tree
        cache = tmp_path / "cache"
        self.setup_count(root, monkeypatch, index_cache=cache)
        pair = sorted((root / "PairAnnotation" / "trn").glob("*.json"))[0]
        if change == "touch a pair file":
            st = pair.stat()
            os.utime(pair, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        elif change == "rewrite an image":
            image = sorted((root / "JPEGImages").rglob("*.jpg"))[0]
            image.write_bytes(image.read_bytes() + b"\0")
        else:
            layout = root / "Layout" / "large" / "trn.txt"
            lines = [line for line in layout.read_text().splitlines() if line and line != pair.stem]
            layout.write_text("\n".join(lines) + "\n")
            pair.unlink()
        again, dm = self.setup_count(root, monkeypatch, index_cache=cache)
        assert "train" in again
        if change == "remove a pair file":
            assert pair.stem not in {r.pair_id for r in dm.datasets["train"].records}

    def test_off_or_unwritable_means_reading_every_time(self, spair_tree, tmp_path, monkeypatch):
        root, _ = spair_tree
        calls, _ = self.setup_count(root, monkeypatch, index_cache=False)
        calls2, _ = self.setup_count(root, monkeypatch, index_cache=False)
        assert sorted(calls) == sorted(calls2) == ["train", "val"]
        blocker = tmp_path / "a file"
        blocker.write_text("")
        ic._warned.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            calls3, dm = self.setup_count(root, monkeypatch, index_cache=blocker / "cache")
        assert sorted(calls3) == ["train", "val"] and len(dm.datasets["train"]) > 0
        assert any("cannot be cached" in str(w.message) for w in caught)

    def test_the_default_folder_follows_the_environment(self, monkeypatch, tmp_path):
        monkeypatch.setenv("SOSC_CACHE_DIR", str(tmp_path / "x"))
        assert ic.cache_dir(True) == tmp_path / "x"
        monkeypatch.delenv("SOSC_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert ic.cache_dir(True) == tmp_path / "xdg" / "sosc" / "index"
        assert ic.cache_dir(False) is None and ic.cache_dir(str(tmp_path)) == tmp_path
