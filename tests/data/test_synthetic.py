"""Tests of the offline synthetic benchmark generator (:mod:`sosc.data.synthetic`).

Every set is tiny and generated into ``tmp_path`` in this process (``num_workers=1``)
except where the test is about the worker pool.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sosc.data import synthetic as syn
from sosc.data.synthetic import generate as syn_generate
from sosc.data.synthetic import write as syn_write
from sosc.data.synthetic.photos import PHOTO_SOURCES, photo_pyramid
from sosc.data.synthetic.plan import plan_pair
from sosc.data.synthetic.render import render_object
from sosc.data.synthetic.shapes import sample_sdf, template, template_sdf
from sosc.data.synthetic.warps import ViewWarp, axis_angle, plane_homography, sample_field
from sosc.data.synthetic.write import Chunk, run_chunk, start_method
from sosc.errors import ConfigError, DatasetError

PAIR_KEYS = {
    "pair_id", "src_imname", "trg_imname", "src_imsize", "trg_imsize", "src_bndbox", "trg_bndbox",
    "src_pose", "trg_pose", "src_kps", "trg_kps", "kps_ids", "category", "mirror",
    "viewpoint_variation", "scale_variation", "truncation", "occlusion",
}
IMAGE_KEYS = {
    "filename", "category", "image_width", "image_height", "image_depth", "bndbox", "kps",
    "truncated", "occluded", "source_photo", "background_photo", "occluder_photo",
}
LINE = re.compile(r"^(\d+)-([a-z]+_(trn|val|test)_\d{5}_0)-([a-z]+_(trn|val|test)_\d{5}_1):([a-z]+)$")


def _generate(root: Path, **kwargs) -> Path:
    params = {"seed": 0, "n_train": 12, "n_val": 4, "n_test": 4, "num_workers": 1, "progress": False}
    params.update(kwargs)
    return syn.generate_synthetic(root, **params)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pairs(root: Path, split: str) -> list[tuple[str, dict]]:
    lines = (root / "Layout" / "large" / f"{split}.txt").read_text().splitlines()
    return [(line, json.loads((root / "PairAnnotation" / split / f"{line}.json").read_text())) for line in lines]


def _image_annotation(root: Path, category: str, imname: str) -> dict:
    return json.loads((root / "ImageAnnotation" / category / f"{Path(imname).stem}.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 / 4 / 4 pairs, seed 0."""
    return _generate(tmp_path_factory.mktemp("tiny") / "synthetic")


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 training pairs, seed 1: enough for every size and difficulty to occur."""
    return _generate(tmp_path_factory.mktemp("medium") / "synthetic", seed=1, n_train=64, n_val=0, n_test=0)


class TestTemplates:
    def test_categories(self) -> None:
        assert len(syn.CATEGORIES) >= 6
        assert len(set(syn.CATEGORIES)) == len(syn.CATEGORIES)
        assert all(re.fullmatch(r"[a-z]+", c) for c in syn.CATEGORIES)

    @pytest.mark.parametrize("category", syn.CATEGORIES)
    def test_keypoints_on_or_inside_outline(self, category: str) -> None:
        names = syn.keypoint_names(category)
        assert 6 <= len(names) <= 20
        assert len(set(names)) == len(names)
        tmpl = template(category)
        dist = sample_sdf(template_sdf(category), tmpl.kps.astype(np.float32))
        assert dist.max() < 0.03, f"{category}: a keypoint lies outside the shape"
        assert (dist < -0.05).sum() >= 2, f"{category}: needs interior keypoints"
        assert (np.abs(dist) < 0.03).sum() >= 4, f"{category}: needs outline keypoints"

    def test_unknown_category(self) -> None:
        with pytest.raises(ConfigError, match="categories are"):
            syn.keypoint_names("dragon")


class TestDeterminism:
    def test_same_parameters_same_bytes(self, tiny: Path, tmp_path: Path) -> None:
        again = _generate(tmp_path / "again")
        a, b = _files(tiny), _files(again)
        assert a.keys() == b.keys()
        different = [name for name in a if a[name] != b[name]]
        assert not different, f"files differ: {different[:5]}"

    def test_other_seed_other_images(self, tiny: Path, tmp_path: Path) -> None:
        other = _generate(tmp_path / "other", seed=5, n_train=2, n_val=0, n_test=0)
        name = "JPEGImages/arrow/arrow_trn_00000_0.jpg"
        assert (other / name).read_bytes() != (tiny / name).read_bytes()

    def test_workers_do_not_change_the_files(self, tiny: Path, tmp_path: Path) -> None:
        pooled = _generate(tmp_path / "pooled", num_workers=2)
        assert _files(pooled) == _files(tiny)

    def test_pool_tasks_are_spawn_safe(self, tmp_path: Path) -> None:
        """What a spawned worker receives must pickle by reference to module-level names."""
        chunk = Chunk(0, "trn", 0, 2, str(tmp_path))
        assert pickle.loads(pickle.dumps(chunk)) == chunk
        assert pickle.loads(pickle.dumps(run_chunk)) is run_chunk
        assert start_method() in ("fork", "spawn")


class TestLayout:
    def test_tree(self, tiny: Path) -> None:
        for sub in ("JPEGImages", "ImageAnnotation", "PairAnnotation/trn", "PairAnnotation/val", "PairAnnotation/test"):
            assert (tiny / sub).is_dir(), sub
        counts = {split: len(_pairs(tiny, split)) for split in syn.SPLITS}
        assert counts == {"trn": 12, "val": 4, "test": 4}
        marker = json.loads((tiny / syn.MARKER_NAME).read_text())
        assert marker["version"] == syn.GENERATOR_VERSION
        assert (marker["seed"], marker["n_train"], marker["n_val"], marker["n_test"]) == (0, 12, 4, 4)

    @pytest.mark.parametrize("split", syn.SPLITS)
    def test_lines_files_and_ids(self, tiny: Path, split: str) -> None:
        ids = []
        for line, pair in _pairs(tiny, split):
            match = LINE.match(line)
            assert match, line
            pair_id, src, src_split, trg, trg_split, category = match.groups()
            assert src_split == trg_split == split
            assert pair["pair_id"] == int(pair_id)
            assert (pair["src_imname"], pair["trg_imname"]) == (f"{src}.jpg", f"{trg}.jpg")
            assert pair["category"] == category and category in syn.CATEGORIES
            assert src.startswith(f"{category}_{split}_{int(pair_id):05d}")
            for stem in (src, trg):
                assert (tiny / "JPEGImages" / category / f"{stem}.jpg").is_file()
                assert (tiny / "ImageAnnotation" / category / f"{stem}.json").is_file()
            ids.append(pair["pair_id"])
        assert len(set(ids)) == len(ids)

    def test_read_by_the_spair_reader(self, tiny: Path) -> None:
        from sosc.data.spair import read_spair

        for split, n in (("train", 12), ("val", 4), ("test", 4)):
            records, _ = read_spair(tiny, split, syn.CATEGORIES)
            assert len(records) == n
            assert all(r.num_kps >= 3 for r in records)


class TestAnnotations:
    @pytest.mark.parametrize("split", syn.SPLITS)
    def test_pair_fields(self, tiny: Path, split: str) -> None:
        for _, pair in _pairs(tiny, split):
            assert set(pair) == PAIR_KEYS
            n = len(pair["kps_ids"])
            assert n >= 3 and len(pair["src_kps"]) == len(pair["trg_kps"]) == n
            assert len(set(pair["kps_ids"])) == n
            assert all(isinstance(k, str) for k in pair["kps_ids"])
            assert pair["mirror"] == pair["src_pose"] == pair["trg_pose"] == 0
            assert pair["viewpoint_variation"] in (0, 1, 2) and pair["scale_variation"] in (0, 1, 2)
            assert pair["truncation"] in (0, 1, 2, 3) and pair["occlusion"] in (0, 1, 2, 3)
            for side in ("src", "trg"):
                with Image.open(tiny / "JPEGImages" / pair["category"] / pair[f"{side}_imname"]) as im:
                    w, h = im.size
                    assert im.mode == "RGB"
                assert pair[f"{side}_imsize"] == [w, h, 3]
                assert 192 <= w <= 384 and 192 <= h <= 384
                x1, y1, x2, y2 = box = pair[f"{side}_bndbox"]
                assert all(isinstance(v, int) for v in box)
                assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
                kps = np.array(pair[f"{side}_kps"])
                assert np.all(kps >= 0) and np.all(kps[:, 0] <= w) and np.all(kps[:, 1] <= h)
                assert np.all(kps[:, 0] >= x1 - 2) and np.all(kps[:, 0] <= x2 + 2)
                assert np.all(kps[:, 1] >= y1 - 2) and np.all(kps[:, 1] <= y2 + 2)
                assert np.all(np.round(kps, 2) == kps)

    @pytest.mark.parametrize("split", syn.SPLITS)
    def test_image_annotations_agree_with_pairs(self, tiny: Path, split: str) -> None:
        for _, pair in _pairs(tiny, split):
            category = pair["category"]
            image_flags = {}
            for side in ("src", "trg"):
                ann = _image_annotation(tiny, category, pair[f"{side}_imname"])
                assert set(ann) == IMAGE_KEYS
                assert ann["filename"] == pair[f"{side}_imname"] and ann["category"] == category
                assert [ann["image_width"], ann["image_height"], ann["image_depth"]] == pair[f"{side}_imsize"]
                assert ann["bndbox"] == pair[f"{side}_bndbox"]
                assert sorted(ann["kps"], key=int) == [str(k) for k in range(len(syn.keypoint_names(category)))]
                for kid, xy in zip(pair["kps_ids"], pair[f"{side}_kps"], strict=True):
                    assert ann["kps"][kid] == xy
                image_flags[side] = (ann["truncated"], ann["occluded"])
            # the pair keeps exactly the keypoints visible in both images
            both = [
                k for k in _image_annotation(tiny, category, pair["src_imname"])["kps"]
                if _image_annotation(tiny, category, pair["src_imname"])["kps"][k] is not None
                and _image_annotation(tiny, category, pair["trg_imname"])["kps"][k] is not None
            ]
            assert sorted(both, key=int) == pair["kps_ids"]
            assert pair["truncation"] == image_flags["src"][0] + 2 * image_flags["trg"][0]
            assert pair["occlusion"] == image_flags["src"][1] + 2 * image_flags["trg"][1]

    def test_truncated_boxes_touch_the_border(self, medium: Path) -> None:
        seen = 0
        for _, pair in _pairs(medium, "trn"):
            for bit, side in ((1, "src"), (2, "trg")):
                w, h, _ = pair[f"{side}_imsize"]
                x1, y1, x2, y2 = pair[f"{side}_bndbox"]
                touches = x1 == 0 or y1 == 0 or x2 == w or y2 == h
                if pair["truncation"] & bit:
                    seen += 1
                    assert touches
        assert seen > 0

    def test_every_difficulty_occurs(self, medium: Path) -> None:
        pairs = [p for _, p in _pairs(medium, "trn")]
        for flag in ("viewpoint_variation", "scale_variation"):
            assert {p[flag] for p in pairs} == {0, 1, 2}, flag
        assert any(p["truncation"] for p in pairs) and any(p["occlusion"] for p in pairs)
        assert len({p["category"] for p in pairs}) == len(syn.CATEGORIES)

    def test_small_and_large_objects(self, medium: Path) -> None:
        rel = []
        for _, pair in _pairs(medium, "trn"):
            for side in ("src", "trg"):
                x1, y1, x2, y2 = pair[f"{side}_bndbox"]
                rel.append(max(x2 - x1, y2 - y1) / max(pair[f"{side}_imsize"][:2]))
        rel = np.array(rel)
        assert (rel < 0.1).sum() >= 5, np.sort(rel)[:10]
        assert (rel > 0.5).sum() >= 5, np.sort(rel)[-10:]

    def test_scale_flag_matches_the_boxes(self, medium: Path) -> None:
        """Untruncated objects: the box ratio and the flag agree (the flag uses the outline)."""
        for _, pair in _pairs(medium, "trn"):
            if pair["truncation"]:
                continue
            rel = []
            for side in ("src", "trg"):
                x1, y1, x2, y2 = pair[f"{side}_bndbox"]
                rel.append(max(x2 - x1, y2 - y1) / max(pair[f"{side}_imsize"][:2]))
            ratio = max(rel) / min(rel)
            if pair["scale_variation"] == 0:
                assert ratio < 1.5 * 1.25
            if pair["scale_variation"] == 2:
                assert ratio > 2.25 / 1.25


class TestHeldOutPhotos:
    def test_pools(self) -> None:
        held_out = set(syn.TEST_TEXTURE_PHOTOS) | set(syn.TEST_BACKGROUND_PHOTOS)
        assert len(syn.TEST_TEXTURE_PHOTOS) >= 2 and len(syn.TEST_BACKGROUND_PHOTOS) >= 1
        assert not held_out & (set(syn.TRAIN_TEXTURE_PHOTOS) | set(syn.TRAIN_BACKGROUND_PHOTOS))

    def test_photos_named_in_the_annotations(self, tiny: Path, medium: Path) -> None:
        held_out = set(syn.TEST_TEXTURE_PHOTOS) | set(syn.TEST_BACKGROUND_PHOTOS)
        train_side = set(syn.TRAIN_TEXTURE_PHOTOS) | set(syn.TRAIN_BACKGROUND_PHOTOS)
        for root, split in ((tiny, "trn"), (tiny, "val"), (medium, "trn"), (tiny, "test")):
            for _, pair in _pairs(root, split):
                for side in ("src", "trg"):
                    ann = _image_annotation(root, pair["category"], pair[f"{side}_imname"])
                    used = {ann["source_photo"], ann["background_photo"], ann["occluder_photo"]} - {None}
                    assert ann["source_photo"] != ann["background_photo"]
                    if split == "test":
                        assert ann["source_photo"] in syn.TEST_TEXTURE_PHOTOS
                        assert ann["background_photo"] in syn.TEST_BACKGROUND_PHOTOS
                        assert used <= held_out
                    else:
                        assert ann["source_photo"] in syn.TRAIN_TEXTURE_PHOTOS
                        assert ann["background_photo"] in syn.TRAIN_BACKGROUND_PHOTOS
                        assert used <= train_side and not used & held_out

    def test_two_different_backgrounds_one_texture(self, tiny: Path) -> None:
        for split in syn.SPLITS:
            for _, pair in _pairs(tiny, split):
                src = _image_annotation(tiny, pair["category"], pair["src_imname"])
                trg = _image_annotation(tiny, pair["category"], pair["trg_imname"])
                assert src["source_photo"] == trg["source_photo"]
                assert src["background_photo"] != trg["background_photo"]

    def test_every_photo_loads_offline(self) -> None:
        for name in sorted(PHOTO_SOURCES):
            level0 = photo_pyramid(name)[0]
            assert level0.dtype == np.uint8 and level0.ndim == 3 and level0.shape[2] == 3, name
            assert min(level0.shape[:2]) >= 256, name


class TestCompletionMarker:
    def test_complete_set_is_not_regenerated(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        root = _generate(tmp_path / "set", n_train=2, n_val=1, n_test=1)
        assert syn.is_complete(root)
        before = _files(root)

        def fail(*args, **kwargs):
            raise AssertionError("regenerated a complete set")

        monkeypatch.setattr(syn_generate, "write_all", fail)
        assert _generate(tmp_path / "set", n_train=2, n_val=1, n_test=1) == root
        assert _files(root) == before

    def test_other_parameters_raise(self, tmp_path: Path) -> None:
        root = _generate(tmp_path / "set", n_train=2, n_val=1, n_test=1)
        with pytest.raises(DatasetError) as info:
            _generate(root, seed=3, n_train=5, n_val=1, n_test=1)
        message = str(info.value)
        assert str(root) in message and "other parameters" in message
        assert "seed: 0 on disk, 3 asked" in message and "n_train: 2 on disk, 5 asked" in message
        assert "n_val" not in message
        assert "delete" in message and "another root" in message

    def test_unmarked_folder_is_never_overwritten(self, tmp_path: Path) -> None:
        root = tmp_path / "mine"
        root.mkdir()
        (root / "thesis.txt").write_text("precious")
        with pytest.raises(DatasetError, match="not be overwritten"):
            _generate(root, n_train=2, n_val=1, n_test=1)
        assert [p.name for p in root.iterdir()] == ["thesis.txt"]
        assert not syn.is_complete(root)

    def test_empty_folder_is_used(self, tmp_path: Path) -> None:
        root = tmp_path / "empty"
        root.mkdir()
        assert syn.is_complete(_generate(root, n_train=2, n_val=1, n_test=1))

    def test_leftover_partial_is_removed(self, tmp_path: Path) -> None:
        partial = tmp_path / "set.partial-deadbeef"
        (partial / "JPEGImages").mkdir(parents=True)
        (partial / "JPEGImages" / "half.jpg").write_bytes(b"\xff\xd8")
        root = _generate(tmp_path / "set", n_train=2, n_val=1, n_test=1)
        assert syn.is_complete(root)
        assert not partial.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]

    def test_interrupted_run_leaves_nothing_that_looks_complete(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_pair = syn_write.write_pair
        calls = []

        def crash_after_three(out: Path, seed: int, split: str, index: int) -> str:
            calls.append(index)
            if len(calls) > 3:
                raise KeyboardInterrupt
            return write_pair(out, seed, split, index)

        monkeypatch.setattr(syn_write, "write_pair", crash_after_three)
        with pytest.raises(KeyboardInterrupt):
            _generate(tmp_path / "set", n_train=6, n_val=0, n_test=0)
        assert list(tmp_path.iterdir()) == []
        assert not syn.is_complete(tmp_path / "set")
        monkeypatch.setattr(syn_write, "write_pair", write_pair)
        assert syn.is_complete(_generate(tmp_path / "set", n_train=6, n_val=0, n_test=0))

    def test_bad_parameters(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="n_train"):
            _generate(tmp_path / "x", n_train=-1)
        with pytest.raises(ConfigError, match="num_workers"):
            _generate(tmp_path / "x", num_workers=-2)
        assert not (tmp_path / "x").exists()


class TestDamagedSet:
    """A set whose marker says complete but whose tree was damaged afterwards (#12).

    Before: with ``Layout/`` deleted the advice was to run prepare_data, which saw the marker
    and did nothing (a loop); with a JPEG missing it was "re-extract the dataset".
    """

    PARAMS = {"n_train": 3, "n_val": 1, "n_test": 1}

    @pytest.fixture
    def fresh(self, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
        root = _generate(tmp_path / "set", **self.PARAMS)
        return root, _files(root)

    def test_the_marker_records_every_file_and_keeps_its_identity(self, fresh) -> None:
        root, files = fresh
        marker = json.loads((root / syn.MARKER_NAME).read_text())
        assert marker["files"] == {k: len(v) for k, v in files.items() if k != syn.MARKER_NAME}
        assert {k: v for k, v in marker.items() if k != "files"} == syn.SyntheticSpec(0, 3, 1, 1).marker()
        assert marker["version"] == "1"  # the written images and annotations are the same bytes

    def test_deleted_layout_and_missing_jpeg_are_written_again(self, fresh) -> None:
        root, files = fresh
        shutil.rmtree(root / "Layout")
        jpeg = sorted((root / "JPEGImages").rglob("*_val_00000_1.jpg"))[0]
        jpeg.unlink()
        cut = sorted((root / "JPEGImages").rglob("*_trn_00002_0.jpg"))[0]
        cut.write_bytes(cut.read_bytes()[:500])
        with pytest.warns(UserWarning, match=r"was damaged \(4 files missing \(JPEGImages/.*Layout/large/test.txt.*1 file "
                                             r"changed size .*wrote 2 pair\(s\) and the layout of test, trn, val again"):
            assert _generate(root, **self.PARAMS) == root
        assert _files(root) == files

    def test_a_deleted_category_folder_is_written_again(self, fresh) -> None:
        root, files = fresh
        category = sorted((root / "JPEGImages").rglob("*.jpg"))[0].parent
        shutil.rmtree(category)
        with pytest.warns(UserWarning, match="was damaged"):
            _generate(root, **self.PARAMS)
        assert _files(root) == files

    def test_setup_before_prepare_data_names_the_damage_and_the_fix(self, fresh) -> None:
        from sosc.data import SyntheticDataModule

        root, _ = fresh
        shutil.rmtree(root / "Layout")
        dm = SyntheticDataModule(root=root, input_size=64, num_workers=0, **self.PARAMS)
        with pytest.raises(DatasetError, match=r"synthetic set .* is damaged \(3 files missing \(Layout/large/test.txt.*"
                                               r"prepare_data writes the damaged pairs again"):
            dm.setup("fit")
        with pytest.warns(UserWarning, match="was damaged"):
            dm.prepare_data()
        dm.setup("fit")
        assert len(dm.datasets["train"]) == 3

    def test_an_unknown_recorded_file_cannot_be_repaired_and_says_what_to_delete(self, fresh) -> None:
        root, _ = fresh
        marker = json.loads((root / syn.MARKER_NAME).read_text())
        marker["files"]["notes.txt"] = 5
        (root / syn.MARKER_NAME).write_text(json.dumps(marker))
        with pytest.raises(DatasetError, match=rf"notes.txt is not a file the generator can write again: delete the folder {re.escape(str(root))}"):
            _generate(root, **self.PARAMS)

    def test_a_set_marked_before_markers_recorded_files(self, fresh) -> None:
        root, files = fresh
        marker = json.loads((root / syn.MARKER_NAME).read_text())
        del marker["files"]
        (root / syn.MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")
        assert _generate(root, **self.PARAMS) == root  # intact: accepted as it is
        sorted((root / "ImageAnnotation").rglob("*_test_00000_0.json"))[0].unlink()
        with pytest.raises(DatasetError, match=r"1 file missing \(ImageAnnotation/.*_test_00000_0.json\).*written before "
                                               r"sets recorded their files.*delete the folder"):
            _generate(root, **self.PARAMS)
        shutil.rmtree(root / "Layout")
        with pytest.raises(DatasetError, match=r"Layout/large/test.txt, Layout/large/trn.txt, Layout/large/val.txt"):
            _generate(root, **self.PARAMS)


def _strong_warp(seed: int, scale: float, centre: tuple[float, float]) -> ViewWarp:
    """A view warp with 35 deg tilt, 25 deg in-plane rotation, aspect and both smooth fields."""
    rng = np.random.default_rng(seed)
    tilt_axis = rng.uniform(-np.pi, np.pi)
    rotation = axis_angle(np.array([0.0, 0.0, 1.0]), math.radians(25)) @ axis_angle(
        np.array([math.cos(tilt_axis), math.sin(tilt_axis), 0.0]), math.radians(35)
    )
    warp = ViewWarp(
        plane_homography(rotation), 1.2, sample_field(rng, 0.25, 0.06), sample_field(rng, 0.12, 0.03)
    )
    return warp.moved(scale, np.array(centre))


class TestWarpConsistency:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_forward_inverts_backward(self, seed: int) -> None:
        warp = _strong_warp(seed, 100.0, (160.0, 150.0))
        u = template("star").outline
        p = warp.forward(u)
        np.testing.assert_allclose(warp.backward(p), u, atol=1e-8)
        # the float32 rendering path agrees with the float64 point path
        np.testing.assert_allclose(warp.backward(p.astype(np.float32)), u, atol=2e-4)

    @pytest.mark.parametrize(("seed", "category"), [(0, "star"), (1, "house"), (2, "fish"), (3, "heart")])
    def test_rendered_marker_lands_on_the_moved_keypoint(self, seed: int, category: str) -> None:
        """Put a dot in the texture at a keypoint, render the object through the view warp,
        and find the dot where the forward map sends the keypoint."""
        plan = plan_pair(0, "trn", syn.CATEGORIES.index(category))
        tmpl = template(category)
        warp = _strong_warp(seed, 110.0, (170.0, 160.0))
        view = dataclasses.replace(plan.views[0], warp=warp, window=(0, 0, 340, 320), size_wh=(340, 320), px_per_unit=110.0)
        tex_px_per_unit, side = 120.0, 400
        affine = np.array([[tex_px_per_unit, 0.0, side / 2], [0.0, tex_px_per_unit, side / 2]])
        interior = np.flatnonzero(sample_sdf(template_sdf(category), tmpl.kps.astype(np.float32)) < -0.1)
        assert len(interior) >= 1
        for k in interior:
            centre = affine[:, :2] @ tmpl.kps[k] + affine[:, 2]
            xs = np.arange(side) + 0.5  # pixel centres, continuous coordinates
            blob = np.exp(-((xs[None, :] - centre[0]) ** 2 + (xs[:, None] - centre[1]) ** 2) / (2 * 3.0**2))
            texture = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)
            instance = dataclasses.replace(plan.instance, tex_affine=affine, tex_scale=tex_px_per_unit, rim=None)
            rgb, alpha = render_object(view, instance, (texture,), template_sdf(category))
            weight = rgb[..., 0] * alpha
            weight = np.where(weight > 0.05 * weight.max(), weight, 0.0)
            ys, xs_ = np.mgrid[0 : weight.shape[0], 0 : weight.shape[1]] + 0.5
            found = np.array([(weight * xs_).sum(), (weight * ys).sum()]) / weight.sum()
            expected = warp.forward(tmpl.kps[k][None])[0]
            assert np.linalg.norm(found - expected) < 0.3, (category, k, found, expected)

    def test_box_agrees_with_the_rendered_alpha(self) -> None:
        checked = 0
        for index in range(16):
            plan = plan_pair(4, "trn", index)
            for view in plan.views:
                if view.truncated:
                    continue
                _, alpha = render_object(
                    view, plan.instance, photo_pyramid(plan.instance.texture_photo), template_sdf(plan.category)
                )
                ys, xs = np.nonzero(alpha >= 0.5)
                x0, y0 = view.window[:2]
                rendered = np.array([xs.min() + x0, ys.min() + y0, xs.max() + 1 + x0, ys.max() + 1 + y0])
                # floor/ceil of the exact outline vs pixel centres covered: sharp tips cost up to 2 px
                assert np.abs(rendered - np.array(view.bbox)).max() <= 2, (index, rendered, view.bbox)
                checked += 1
        assert checked >= 10

    def test_annotated_keypoints_are_the_moved_template_keypoints(self, tiny: Path) -> None:
        for line, pair in _pairs(tiny, "val"):
            plan = plan_pair(0, "val", pair["pair_id"])
            for view, side in zip(plan.views, ("src", "trg"), strict=True):
                ids = [int(k) for k in pair["kps_ids"]]
                np.testing.assert_allclose(pair[f"{side}_kps"], view.kps_px[ids], atol=0.0051, err_msg=line)
                u = view.warp.backward(np.array(pair[f"{side}_kps"], dtype=np.float64))
                np.testing.assert_allclose(u, template(plan.category).kps[ids], atol=1e-3)
