"""Tests of the offline real-semantic set (:mod:`sosc.data.real_semantic`).

Small sets (one pasted pair per size cell in ``val``, only the photo pairs in ``test``) are
generated into temporary folders; everything is offline.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sosc.data import RealSemanticDataModule
from sosc.data import real_semantic as rs
from sosc.data.real_semantic import annotations as ann_mod
from sosc.data.real_semantic import photos as photos_mod
from sosc.data.real_semantic import write as write_mod
from sosc.data.real_semantic.compose import (
    Paste,
    composite,
    instance_keep,
    mask_alpha,
    paste_region,
)
from sosc.data.real_semantic.pairs import JITTER, SIZE_BINS, plan_split
from sosc.data.spair import read_spair
from sosc.errors import ConfigError, DatasetError

#: shared/data/portrait_pair.json, copied (the package and its tests never read shared/).
PORTRAIT = {
    "astronaut": [[195.0, 101.7], [204.2, 101.3], [245.8, 103.3], [255.0, 102.5], [225.0, 128.3], [202.5, 139.2], [243.3, 141.3], [225.0, 178.3]],
    "grace_hopper": [[207.5, 190.0], [221.3, 187.5], [301.3, 186.3], [315.0, 188.8], [265.0, 243.0], [230.0, 277.5], [303.8, 277.5], [268.0, 322.0]],
}
PORTRAIT_NAMES = ["image-left eye outer corner", "image-left pupil", "image-right pupil", "image-right eye outer corner",
                  "nose tip", "image-left mouth corner", "image-right mouth corner", "chin"]
SMALL = {"seed": 0, "val_repeats": 1, "test_repeats": 0}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pairs(root: Path, split: str) -> list[tuple[str, dict]]:
    lines = (root / "Layout" / "large" / f"{split}.txt").read_text().splitlines()
    return [(line, json.loads((root / "PairAnnotation" / split / f"{line}.json").read_text())) for line in lines]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rs.generate_real_semantic(tmp_path_factory.mktemp("rs") / "real_semantic", **SMALL)


@pytest.fixture(scope="module")
def ann() -> rs.Annotations:
    return rs.load_annotations()


class TestAnnotations:
    def test_portrait_keypoints_are_the_shared_ones(self, ann: rs.Annotations) -> None:
        assert list(ann.keypoint_names["face"]) == PORTRAIT_NAMES
        for name, kps in PORTRAIT.items():
            np.testing.assert_array_equal(ann.instances[name].kps, np.array(kps))

    def test_categories_and_instances(self, ann: rs.Annotations) -> None:
        assert ann.categories == ("face", "bird", "car", "dog")
        for category in ann.categories:
            assert sum(i.category == category for i in ann.instances.values()) >= 2, category

    def test_every_annotated_photo_loads_and_matches(self, ann: rs.Annotations) -> None:
        for inst in ann.instances.values():
            arr = photos_mod.load_photo(ann.photos[inst.photo])
            h, w = arr.shape[:2]
            vis = inst.kps[inst.visible]
            assert np.all(vis >= 0) and np.all(vis[:, 0] < w) and np.all(vis[:, 1] < h), inst.name
            assert 0 <= inst.box[0] < inst.box[2] <= w and 0 <= inst.box[1] < inst.box[3] <= h, inst.name

    def test_every_background_loads(self, ann: rs.Annotations) -> None:
        for split in rs.annotations.EVAL_SPLITS:
            for name in ann.splits[split].backgrounds:
                arr = photos_mod.load_photo(ann.photos[name])
                assert arr.dtype == np.uint8 and arr.ndim == 3 and min(arr.shape[:2]) >= 256, name

    def test_bad_annotations_name_the_key(self) -> None:
        text = ann_mod.resources.files(ann_mod.__package__).joinpath(ann_mod.ANNOTATIONS_FILE).read_text()
        data = json.loads(text)
        data["instances"]["luispedro"]["keypoints"] = data["instances"]["luispedro"]["keypoints"][:5]
        with pytest.raises(DatasetError, match=r"instances\.luispedro\.keypoints has 5 entries"):
            ann_mod.parse_annotations(json.dumps(data))
        data = json.loads(text)
        data["splits"]["val"]["instance_pairs"].append(["grace_hopper", "astronaut"])
        with pytest.raises(DatasetError, match="in both test and val|in both val and test"):
            ann_mod.parse_annotations(json.dumps(data))

    def test_changed_photo_file_is_refused(self, ann: rs.Annotations) -> None:
        photo = ann.photos["astronaut"]
        other = ann_mod.Photo(**{**photo.__dict__, "sha256": "0" * 64})
        with pytest.raises(DatasetError, match="scikit-image==0.26.0"):
            photos_mod.load_photo(other)

    def test_missing_package_says_what_to_install(self, ann: rs.Annotations) -> None:
        photo = ann_mod.Photo(name="x", package="no-such-package-sosc", path="x.jpg", licence="", version="1.0")
        with pytest.raises(DatasetError, match="pip install 'no-such-package-sosc==1.0'"):
            photos_mod.photo_path(photo)


class TestLayout:
    def test_read_by_the_spair_reader(self, small: Path, ann: rs.Annotations) -> None:
        counts = {}
        for split in ("train", "val", "test"):
            records, report = read_spair(small, split, ann.categories)
            counts[split] = len(records)
            assert all(r.num_kps >= 3 for r in records)
        assert counts["train"] == 0 and counts["val"] > 40 and counts["test"] == 18

    def test_portrait_pair_both_directions(self, small: Path) -> None:
        seen = set()
        for _, pair in _pairs(small, "test"):
            if pair["kind"] == "photo" and {pair["src_instance"], pair["trg_instance"]} == {"astronaut", "grace_hopper"}:
                assert pair["kps_ids"] == [str(k) for k in range(8)]
                assert pair["src_kps"] == PORTRAIT[pair["src_instance"]]
                assert pair["trg_kps"] == PORTRAIT[pair["trg_instance"]]
                assert pair["kps_names"] == PORTRAIT_NAMES
                seen.add(pair["src_instance"])
        assert seen == {"astronaut", "grace_hopper"}

    @pytest.mark.parametrize("split", ["val", "test"])
    def test_keypoints_and_boxes_inside_images(self, small: Path, split: str) -> None:
        for line, pair in _pairs(small, split):
            for side in ("src", "trg"):
                with Image.open(small / "JPEGImages" / pair["category"] / pair[f"{side}_imname"]) as im:
                    w, h = im.size
                    assert im.mode == "RGB"
                assert pair[f"{side}_imsize"] == [w, h, 3]
                if pair["kind"] == "pasted":
                    assert max(w, h) == rs.IMAGE_SIDE
                kps = np.array(pair[f"{side}_kps"])
                assert np.all(kps >= 0) and np.all(kps[:, 0] < w) and np.all(kps[:, 1] < h), line
                x0, y0, x1, y1 = pair[f"{side}_bndbox"]
                assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, line
            for flag in ("viewpoint_variation", "scale_variation"):
                assert pair[flag] in (0, 1, 2)
            assert pair["truncation"] in (0, 1, 2, 3) and pair["occlusion"] in (0, 1, 2, 3)

    def test_val_and_test_share_no_instance_pair_nor_background(self, small: Path, ann: rs.Annotations) -> None:
        used: dict[str, set] = {}
        for split in ("val", "test"):
            used[split] = {frozenset((p["src_instance"], p["trg_instance"])) for _, p in _pairs(small, split)}
        assert used["val"] and used["test"] and not used["val"] & used["test"]
        assert not set(ann.splits["val"].backgrounds) & set(ann.splits["test"].backgrounds)
        for _, pair in _pairs(small, "val"):
            if pair["kind"] == "photo":
                continue
            for side in ("src", "trg"):
                stem = Path(pair[f"{side}_imname"]).stem
                image = json.loads((small / "ImageAnnotation" / pair["category"] / f"{stem}.json").read_text())
                assert image["background_photo"] in ann.splits["val"].backgrounds

    def test_every_size_cell_is_covered(self, small: Path) -> None:
        cells = {(p["src_kp_bin"], p["trg_kp_bin"]) for _, p in _pairs(small, "val") if p["kind"] == "pasted"}
        assert cells == {(a, b) for a in SIZE_BINS for b in SIZE_BINS}
        for _, p in _pairs(small, "val"):
            if p["kind"] == "pasted":
                for side in ("src", "trg"):
                    ratio = p[f"{side}_kp_size"] / p[f"{side}_kp_bin"]
                    assert math.exp(-JITTER) - 0.01 <= ratio <= math.exp(JITTER) + 0.01


class TestPaste:
    def test_pasted_keypoints_follow_the_paste_transform(self, small: Path, ann: rs.Annotations) -> None:
        sizes = {name: photos_mod.load_photo(p).shape[1::-1] for name, p in ann.photos.items() if p.sha256}
        keeps = {name: instance_keep(ann, name, sizes[inst.photo]) for name, inst in ann.instances.items()}
        plans = list(plan_split(ann, "val", SMALL["seed"], SMALL["val_repeats"], sizes))
        pairs = _pairs(small, "val")
        assert len(plans) == len(pairs)
        checked = 0
        for plan, (line, pair) in zip(plans, pairs):
            assert pair["pair_id"] == plan.index
            if plan.kind != "pasted":
                continue
            ids = np.array(plan.kps_ids)
            for side, view in (("src", plan.src_view), ("trg", plan.trg_view)):
                inst = ann.instances[view.instance]
                s, (rx, ry), (ox, oy) = view.paste.scale, view.paste.origin, view.paste.offset
                expected = np.array([ox, oy]) + s * (inst.kps[ids] - np.array([rx, ry]))
                np.testing.assert_allclose(pair[f"{side}_kps"], expected, atol=0.0051, err_msg=line)
                stem = Path(pair[f"{side}_imname"]).stem
                image = json.loads((small / "ImageAnnotation" / pair["category"] / f"{stem}.json").read_text())
                assert image["paste"]["scale"] == s and image["paste"]["offset"] == [ox, oy]
                # the object is opaque where its keypoints are (other instances cut out or not)
                alpha = mask_alpha(view.paste, sizes[inst.photo], inst.kps[ids], keeps[inst.name])
                assert alpha.min() > 0.9, (line, alpha)
                checked += 1
        assert checked >= 2 * len(SIZE_BINS) ** 2

    def test_pixels_around_pasted_keypoints_come_from_the_photo(self, small: Path, ann: rs.Annotations) -> None:
        """Sample the photo through the inverse paste map around each keypoint and compare
        with the written JPEG: the object was pasted where the keypoints say (only pixels the
        mask keeps opaque: a neighbour cut out next to a keypoint shows the background)."""
        sizes = {name: photos_mod.load_photo(p).shape[1::-1] for name, p in ann.photos.items() if p.sha256}
        keeps = {name: instance_keep(ann, name, sizes[inst.photo]) for name, inst in ann.instances.items()}
        checked = 0
        for plan, (line, pair) in zip(plan_split(ann, "val", 0, 1, sizes), _pairs(small, "val")):
            if plan.kind != "pasted" or plan.src_view.bin < 96:
                continue
            view = plan.src_view
            inst = ann.instances[view.instance]
            photo = photos_mod.load_photo(ann.photos[inst.photo]).astype(np.float32)
            with Image.open(small / "JPEGImages" / pair["category"] / pair["src_imname"]) as im:
                out = np.asarray(im, dtype=np.float32)
            s, (rx, ry), (ox, oy) = view.paste.scale, view.paste.origin, view.paste.offset
            for x, y in pair["src_kps"]:
                j, i = np.meshgrid(np.arange(int(x) - 4, int(x) + 5), np.arange(int(y) - 4, int(y) + 5))
                j, i = np.clip(j, 0, out.shape[1] - 1), np.clip(i, 0, out.shape[0] - 1)
                px, py = rx + (j + 0.5 - ox) / s, ry + (i + 0.5 - oy) / s
                sampled = np.stack([ndimage.map_coordinates(photo[..., c], [py - 0.5, px - 0.5], order=1) for c in range(3)], -1)
                opaque = mask_alpha(view.paste, sizes[inst.photo], np.stack([px, py], -1), keeps[inst.name]) > 0.99
                assert opaque.sum() >= 30, (line, x, y)
                diff = np.abs(sampled - out[i, j])[opaque].mean()
                si, sj = np.clip(i + 6, 0, out.shape[0] - 1), np.clip(j + 6, 0, out.shape[1] - 1)
                shifted = np.abs(sampled - out[si, sj])[opaque].mean()
                assert diff < 14 or diff < shifted - 6, (line, x, y, diff, shifted)  # (textured, shrunk: grass)
                assert diff < shifted + 2, (line, x, y, diff, shifted)
                checked += 1
        assert checked >= 20


def _same_photo_instances(ann: rs.Annotations) -> list[tuple[rs.Instance, list[rs.Instance]]]:
    out = []
    for inst in ann.instances.values():
        others = [o for o in ann.instances.values() if o.photo == inst.photo and o.name != inst.name]
        if others:
            out.append((inst, others))
    return out


class TestSamePhotoInstances:
    """A pasted instance carries none of the other annotated instances of its photo (the
    three geese of one photograph): they are cut out of its mask."""

    def test_there_are_same_photo_instances(self, ann: rs.Annotations) -> None:
        names = {inst.name for inst, _ in _same_photo_instances(ann)}
        assert {"goose_left", "goose_back", "goose_front"} <= names

    def test_mask_is_zero_around_other_instances_keypoints(self, ann: rs.Annotations) -> None:
        """The mask at, and within 1 photo px of, every visible keypoint of every other
        instance is 0; at the instance's own keypoints it is 1 (keep map alone, and with
        the super-ellipse of its paste)."""
        offsets = np.stack(np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)), -1).reshape(-1, 2)
        offsets = offsets[np.linalg.norm(offsets, axis=1) <= 1.0]
        for inst, others in _same_photo_instances(ann):
            photo = ann.photos[inst.photo]
            wh = photos_mod.load_photo(photo).shape[1::-1]
            keep = instance_keep(ann, inst.name, wh)
            assert keep is not None and set(keep.removed) == {o.name for o in others}
            assert keep.sample(inst.kps[inst.visible]).min() == 1.0, inst.name
            region, ellipse = paste_region(inst.box, wh)
            paste = Paste(scale=1.0, origin=region[:2], offset=(0, 0), region=region, ellipse=ellipse)
            for other in others:
                around = (other.kps[other.visible][:, None, :] + offsets[None]).reshape(-1, 2)
                assert keep.sample(around).max() == 0.0, (inst.name, other.name)
                assert mask_alpha(paste, wh, around, keep).max() == 0.0, (inst.name, other.name)

    @pytest.mark.parametrize("scale", [0.3, 1.6])
    def test_pasted_pixels_at_other_instances_are_background(self, ann: rs.Annotations, scale: float) -> None:
        """Paste each instance over a flat background: every output pixel whose centre
        shows the photo within 1 px of another instance's visible keypoint, or anywhere
        well inside another instance's outline (3 px from its edge, away from the
        instance's own outline), is exactly the background; and some pixels of the
        instance itself are not."""
        checked = 0
        for inst, others in _same_photo_instances(ann):
            photo = photos_mod.load_photo(ann.photos[inst.photo])
            wh = photo.shape[1::-1]
            keep = instance_keep(ann, inst.name, wh)
            region, ellipse = paste_region(inst.box, wh)
            size = (int((region[2] - region[0]) * scale) + 1, int((region[3] - region[1]) * scale) + 1)
            paste = Paste(scale=scale, origin=region[:2], offset=(0, 0), region=region, ellipse=ellipse)
            bg = np.full((size[1], size[0], 3), 7, np.uint8)
            out = composite(bg, photo, paste, keep)
            gx, gy = np.meshgrid(np.arange(size[0]) + 0.5, np.arange(size[1]) + 0.5)
            src = np.stack([region[0] + gx / scale, region[1] + gy / scale], -1).reshape(-1, 2)
            changed = (out != 7).any(-1).reshape(-1)
            own_box = _in_box(src, inst.outline)
            own = own_box.copy()
            own[own_box] = ann_mod.outline_distance(inst.outline, src[own_box][::1]) <= 0.0
            for occ in inst.occluders:  # the visible part only
                occ_box = own & _in_box(src, ann.instances[occ].outline, ann_mod.OUTLINE_SLACK + 1.0)
                own[occ_box] = ann_mod.outline_distance(ann.instances[occ].outline, src[occ_box]) > ann_mod.OUTLINE_SLACK + 1.0
            assert changed[own].mean() > 0.9, inst.name
            for other in others:
                near_kp = np.zeros(len(src), bool)
                for kp in other.kps[other.visible]:
                    near_kp |= np.linalg.norm(src - kp, axis=1) <= 1.0
                deep = np.zeros(len(src), bool)
                if inst.name not in other.occluders:  # (where other lies behind inst, inst's own region wins)
                    box = _in_box(src, other.outline)
                    deep[box] = _depth_inside(other.outline, src[box]) >= 3.0
                    box = deep & _in_box(src, inst.outline, ann_mod.OUTLINE_SLACK + 1.0)
                    deep[box] = ann_mod.outline_distance(inst.outline, src[box]) > ann_mod.OUTLINE_SLACK + 1.0
                checked += int(deep.sum() + near_kp.sum())
                hit = (near_kp | deep) & changed
                assert not hit.any(), (inst.name, other.name, scale, src[hit][:5])
        assert checked > 1000 * scale**2
    def test_outline_checks_name_the_instance(self) -> None:
        text = ann_mod.resources.files(ann_mod.__package__).joinpath(ann_mod.ANNOTATIONS_FILE).read_text()
        data = json.loads(text)
        del data["instances"]["goose_back"]["outline"]
        with pytest.raises(DatasetError, match=r"instances\.goose_back needs an outline"):
            ann_mod.parse_annotations(json.dumps(data))
        data = json.loads(text)
        data["instances"]["goose_back"]["occluders"] = []
        with pytest.raises(DatasetError, match=r"instances\.goose_front: a visible keypoint lies on or near the outline of 'goose_back'"):
            ann_mod.parse_annotations(json.dumps(data))


def _in_box(pts: np.ndarray, poly: np.ndarray, grow: float = 0.0) -> np.ndarray:
    lo, hi = poly.min(0) - grow, poly.max(0) + grow
    return ((pts >= lo) & (pts <= hi)).all(1)


def _depth_inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance from points inside the polygon to its edge (0 outside)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    ap = pts[:, None, :] - a[None]
    t = np.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    edge = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(1)
    return np.where(ann_mod.outline_distance(poly, pts) <= 0.0, edge, 0.0)


class TestDeterminism:
    def test_same_seed_same_bytes(self, small: Path, tmp_path: Path) -> None:
        again = rs.generate_real_semantic(tmp_path / "again", **SMALL)
        a, b = _files(small), _files(again)
        assert a.keys() == b.keys()
        assert [k for k in a if a[k] != b[k]] == []

    def test_other_seed_other_pastes(self, small: Path, tmp_path: Path) -> None:
        other = rs.generate_real_semantic(tmp_path / "other", seed=1, val_repeats=1, test_repeats=0)
        a, b = _files(small), _files(other)
        assert a.keys() == b.keys()
        assert sum(a[k] != b[k] for k in a if k.startswith("JPEGImages/face/face_val")) > 10


class TestCompletionMarker:
    def test_complete_set_is_not_regenerated(self, small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*args, **kwargs):
            raise AssertionError("regenerated a complete set")

        monkeypatch.setattr(write_mod, "write_all", fail)
        assert rs.is_complete(small)
        assert rs.generate_real_semantic(small, **SMALL) == small

    def test_other_parameters_raise(self, small: Path) -> None:
        with pytest.raises(DatasetError, match="other parameters.*val_repeats: 1 on disk, 2 asked"):
            rs.generate_real_semantic(small, seed=0, val_repeats=2, test_repeats=0)

    def test_interrupted_run_is_redone(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write_pair = write_mod._write_pair
        calls = []

        def crash_after_three(*args, **kwargs):
            calls.append(1)
            if len(calls) > 3:
                raise KeyboardInterrupt
            return write_pair(*args, **kwargs)

        monkeypatch.setattr(write_mod, "_write_pair", crash_after_three)
        with pytest.raises(KeyboardInterrupt):
            rs.generate_real_semantic(tmp_path / "set", seed=0, val_repeats=0, test_repeats=0)
        assert list(tmp_path.iterdir()) == []
        monkeypatch.setattr(write_mod, "_write_pair", write_pair)
        (tmp_path / "set.partial-deadbeef").mkdir()
        root = rs.generate_real_semantic(tmp_path / "set", seed=0, val_repeats=0, test_repeats=0)
        assert rs.is_complete(root) and sorted(p.name for p in tmp_path.iterdir()) == ["set"]

    def test_a_damaged_set_is_put_back(self, tmp_path: Path) -> None:
        """#12: Layout/ deleted and a JPEG missing, the marker says complete: the files are put
        back (before: "re-extract", or a prepare_data that saw the marker and did nothing)."""
        params = {"seed": 0, "val_repeats": 0, "test_repeats": 0}
        root = rs.generate_real_semantic(tmp_path / "set", **params)
        files = _files(root)
        marker = json.loads((root / write_mod.MARKER_NAME).read_text())
        assert marker["files"] == {k: len(v) for k, v in files.items() if k != write_mod.MARKER_NAME}
        shutil.rmtree(root / "Layout")
        sorted((root / "JPEGImages").rglob("*.jpg"))[0].unlink()
        dm = RealSemanticDataModule(root=root, input_size=64, num_workers=0, **params)
        with pytest.raises(DatasetError, match=r"real-semantic set .* is damaged \(4 files missing .*prepare_data puts"):
            dm.setup("test")
        with pytest.warns(UserWarning, match=r"was damaged \(4 files missing.*put back 4 file\(s\)"):
            dm.prepare_data()
        assert _files(root) == files
        # a set marked before markers recorded files: named, with what to delete
        del marker["files"]
        (root / write_mod.MARKER_NAME).write_text(json.dumps(marker))
        assert rs.generate_real_semantic(root, **params) == root
        shutil.rmtree(root / "Layout")
        with pytest.raises(DatasetError, match=r"written before sets recorded their files.*delete the folder"):
            rs.generate_real_semantic(root, **params)

    def test_unmarked_folder_is_never_overwritten(self, tmp_path: Path) -> None:
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "thesis.txt").write_text("precious")
        with pytest.raises(DatasetError, match="not be overwritten"):
            rs.generate_real_semantic(tmp_path / "mine")
        assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.txt"]

    def test_bad_parameters(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="val_repeats"):
            rs.generate_real_semantic(tmp_path / "x", val_repeats=-1)
        assert not (tmp_path / "x").exists()


def test_data_module_prepares_and_gives_items(tmp_path: Path) -> None:
    dm = RealSemanticDataModule(root=tmp_path / "rs", val_repeats=0, test_repeats=0, num_workers=0, batch_size=2)
    assert dm.input_size == (256, 256) and dm.archive is None
    dm.prepare_data()
    dm.setup("test")
    ds = dm.datasets["test"]
    assert len(ds) == 18
    item = ds[0]
    assert tuple(item["src_img"].shape) == (3, 256, 256)
    assert item["category"] in ("face", "bird", "car", "dog") and int(item["valid"].sum()) >= 3
    assert {"viewpoint_variation", "scale_variation", "truncation", "occlusion"} <= set(item)
    batch = next(iter(dm.test_dataloader()))
    assert batch["src_img"].shape[0] == 2
