"""SPair-71k: layouts, the imsize order, difficulty flags, the bbox bound, errors, download, CLI."""

import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_test_args, write_spair_tree

from sosc.data.dataset import PairDataset
from sosc.data.records import BOX_OUTSIDE, DIFFICULTY_FLAGS
from sosc.data.spair import SPair71kDataModule, find_spair_root, read_spair
from sosc.errors import DatasetError

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "spair.yaml"


def _pair_file(root, split, i=0):
    line = (root / "Layout" / "large" / f"{split}.txt").read_text().splitlines()[i]
    return root / "PairAnnotation" / split / f"{line}.json"


def _edit(path, **fields):
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


class TestLayout:
    def test_root_is_the_folder_or_its_parent(self, spair_tree):
        root, written = spair_tree
        assert find_spair_root(root) == root and find_spair_root(root.parent) == root
        for split, name in (("train", "trn"), ("val", "val"), ("test", "test")):
            assert len(read_spair(root.parent, split)[0]) == len(written[name])

    def test_missing_tree_lists_paths_searched(self, tmp_path):
        with pytest.raises(DatasetError) as err:
            find_spair_root(tmp_path)
        msg = str(err.value)
        for path in (tmp_path / "Layout", tmp_path / "SPair-71k" / "Layout", tmp_path / "SPair-71k" / "JPEGImages"):
            assert str(path) in msg
        assert "SPair-71k.tar.gz" in msg and "SOSC_SPAIR_URL" in msg

    def test_imsize_order_w_h_and_h_w_are_accepted_wrong_is_not(self, spair_tree):
        root, written = spair_tree
        pair = written["test"][0]
        w, h = pair["trg_imsize"][:2]
        assert w != h  # the fixture writes [W, H, 3] for non-square images
        path = _pair_file(root, "test")
        _edit(path, trg_imsize=[h, w, 3])
        assert len(read_spair(root, "test")[0]) == 3
        _edit(path, trg_imsize=[w + 1, h, 3])
        with pytest.raises(DatasetError, match=rf"{path.name}: trg_imsize=\[{w + 1}, {h}, 3\] does not match image"):
            read_spair(root, "test")


class TestItems:
    def test_difficulty_flags_and_size_class_in_items(self, spair_tree):
        root, written = spair_tree
        records, _ = read_spair(root, "test")
        ds = PairDataset(records, 32)
        for i, pair in enumerate(written["test"]):
            item = ds[i]
            for flag in DIFFICULTY_FLAGS:
                assert item[flag] == pair[flag]
            assert item["size_class"] in ("small", "medium", "large")

    def test_hand_computed_bbox_bound(self, spair_tree):
        root, _ = spair_tree
        _edit(_pair_file(root, "test"), trg_bndbox=[10, 20, 60, 100])
        records, _ = read_spair(root, "test")
        item = PairDataset(records, 32)[0]
        assert item["pck_bound"].item() == 80.0
        assert item["trg_bbox"].tolist() == [10, 20, 60, 100]


class TestErrors:
    def test_malformed_json_names_the_file(self, spair_tree):
        root, _ = spair_tree
        path = _pair_file(root, "val", 1)
        path.write_text("{not json")
        with pytest.raises(DatasetError, match=rf"{path.name}: malformed JSON"):
            read_spair(root, "val")
        path.write_text("[1, 2]")
        with pytest.raises(DatasetError, match=rf"{path.name}: expected a JSON object"):
            read_spair(root, "val")

    def test_missing_key_and_bad_box(self, spair_tree):
        root, _ = spair_tree
        path = _pair_file(root, "val")
        data = json.loads(path.read_text())
        del data["occlusion"]
        path.write_text(json.dumps(data))
        with pytest.raises(DatasetError, match=rf"{path.name}: missing key 'occlusion'"):
            read_spair(root, "val")
        data["occlusion"] = 0
        data["src_bndbox"] = [5, 5, 1, 1]
        path.write_text(json.dumps(data))
        with pytest.raises(DatasetError, match=r"src_bndbox must be \[x1, y1, x2, y2\]"):
            read_spair(root, "val")

    def test_missing_image_names_pair_file_and_image(self, spair_tree):
        root, written = spair_tree
        pair = written["trn"][2]
        (root / "JPEGImages" / pair["category"] / pair["trg_imname"]).unlink()
        with pytest.raises(DatasetError, match=rf"{_pair_file(root, 'trn', 2).name}: image .*{pair['trg_imname']} is missing"):
            read_spair(root, "train")

    def test_missing_split_file_and_bad_layout_line(self, spair_tree):
        root, _ = spair_tree
        layout = root / "Layout" / "large" / "val.txt"
        layout.write_text(layout.read_text() + "garbage line\n")
        with pytest.raises(DatasetError, match=r"val\.txt:3: expected '<pair>-<src>-<trg>:<category>'"):
            read_spair(root, "val")
        layout.unlink()
        with pytest.raises(DatasetError, match=r"split file .*val\.txt is missing"):
            read_spair(root, "val")

    def test_pair_without_keypoints_is_counted_and_warned(self, spair_tree):
        root, _ = spair_tree
        _edit(_pair_file(root, "test", 1), src_kps=[], trg_kps=[])
        records, report = read_spair(root, "test")
        assert len(records) == 2 and report.pairs["no keypoint in common"] == 1
        dm = SPair71kDataModule(root, input_size=32, num_workers=0)
        with pytest.warns(UserWarning, match=r"SPair-71k test: skipped 1 pairs \(no keypoint in common; e\.g\. .*test\.txt:2\)"):
            dm.setup("test")


class TestDataModule:
    def test_download_from_environment_url(self, loopback_server, tmp_path, monkeypatch):
        src = tmp_path / "src" / "SPair-71k"
        write_spair_tree(src, pairs_per_split={"trn": 1, "val": 1, "test": 2})
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            tf.add(src, arcname="SPair-71k")
        loopback_server.files["/SPair-71k.tar.gz"] = buf.getvalue()
        monkeypatch.setenv("SOSC_SPAIR_URL", loopback_server.url("/SPair-71k.tar.gz"))
        dm = SPair71kDataModule(tmp_path / "data", input_size=32, num_workers=0)
        dm.prepare_data()
        dm.setup("test")
        assert len(dm.datasets["test"]) == 2
        assert (tmp_path / "data" / ".SPair-71k.tar.gz.complete").exists()
        assert not (tmp_path / "data" / "SPair-71k.tar.gz").exists()

    def test_download_false_explains(self, tmp_path):
        with pytest.raises(DatasetError, match=r"download=False.*SPair-71k\.tar\.gz.*extract it into"):
            SPair71kDataModule(tmp_path, download=False).prepare_data()

    def test_defaults(self):
        dm = SPair71kDataModule()
        assert dm.input_size == (512, 512) and dm.download and dm.root == Path("data")
        assert list(dm.difficulty_flags) == list(DIFFICULTY_FLAGS) and len(dm.categories) == 18

    def test_cli_test_writes_reports_with_breakdowns(self, spair_tree, tmp_path):
        from sosc.cli import main

        root, _ = spair_tree
        out = tmp_path / "logs"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main(cli_test_args(CONFIG, root, out))
        csv = next(out.rglob("pck_plain.csv"))
        text = csv.read_text()
        assert csv.with_suffix(".md").exists()
        assert "viewpoint_variation=" in text and "occlusion=" in text and "size=" in text and "cat" in text

    def test_config_parses(self):
        from sosc.cli import main

        cli = main(["--config", str(CONFIG), "--model.matcher.backbone", "resnet18", "--model.matcher.pretrained", "false"],
                   run=False)
        assert isinstance(cli.datamodule, SPair71kDataModule)
        assert cli.datamodule.input_size == (512, 512) and cli.model.input_size is None
        assert np.isclose(cli.model.hparams.lr, 3e-4)


def _target_206x205(root, split="test", i=0):
    """Pair ``i``'s target image replaced by a 206 x 205 (W x H) one, its ``trg_imsize`` to match
    (the fixture's keypoints and boxes lie within 160 px, so they stay inside); its pair file."""
    from PIL import Image

    from sosc.data.images import image_size

    path = _pair_file(root, split, i)
    data = json.loads(path.read_text())
    Image.new("RGB", (206, 205), (90, 120, 150)).save(root / "JPEGImages" / data["category"] / data["trg_imname"])
    image_size.cache_clear()
    _edit(path, trg_imsize=[206, 205, 3])
    return path


class TestBoxesAgainstTheImage:
    """The reported case: trg_bndbox [0, 0, 5000, 5000] on a 206 x 205 image made the PCK
    threshold 5000 px (every prediction correct). Such a box is an error, or a skipped pair."""

    def test_box_far_outside_raises_naming_file_box_size_and_fix(self, spair_tree):
        root, _ = spair_tree
        path = _target_206x205(root)
        _edit(path, trg_bndbox=[0, 0, 5000, 5000])
        with pytest.raises(DatasetError) as err:
            read_spair(root, "test")
        msg = str(err.value)
        assert f"{path}: trg_bndbox [0.0, 0.0, 5000.0, 5000.0]" in msg
        assert "W=206, H=205" in msg and "strict=False" in msg
        with pytest.raises(DatasetError, match=rf"{path.name}: trg_bndbox"):
            SPair71kDataModule(root, input_size=32, num_workers=0).setup("test")

    def test_non_strict_skips_and_reports_the_pair(self, spair_tree):
        root, written = spair_tree
        path = _target_206x205(root)
        _edit(path, trg_bndbox=[0, 0, 5000, 5000])
        records, report = read_spair(root, "test", strict=False)
        assert len(records) == len(written["test"]) - 1
        assert report.pairs[BOX_OUTSIDE] == 1 and str(path) in report.summary()
        dm = SPair71kDataModule(root, input_size=32, num_workers=0, strict=False)
        with pytest.warns(UserWarning, match=r"SPair-71k test: skipped 1 pairs \(object box outside the image; e\.g\. "):
            dm.setup("test")
        assert len(dm.datasets["test"]) == len(written["test"]) - 1
        assert path.stem not in {rec.pair_id for rec in dm.datasets["test"].records}

    def test_box_within_tolerance_is_clipped_to_the_image(self, spair_tree):
        root, _ = spair_tree
        _edit(_target_206x205(root), trg_bndbox=[-1, 0, 207, 206])  # 1 px beyond on three sides
        records, report = read_spair(root, "test")
        assert not report and records[0].trg_bbox.tolist() == [0, 0, 206, 205]
        assert PairDataset(records, 32)[0]["pck_bound"].item() == 206.0

    def test_source_box_is_checked_too(self, spair_tree):
        root, _ = spair_tree
        path = _pair_file(root, "val")
        _edit(path, src_bndbox=[0, 0, 10, 900])
        with pytest.raises(DatasetError, match=rf"{path.name}: src_bndbox \[0\.0, 0\.0, 10\.0, 900\.0\] does not lie within"):
            read_spair(root, "val")


class TestEmptySplits:
    """A split with no pair left is an error naming the split, its file and what was skipped
    (reported: an empty layout file gave 0 pairs silently; a split whose every pair lacks
    keypoints ran to exit 0 with no table)."""

    def test_empty_layout_file(self, spair_tree):
        root, _ = spair_tree
        layout = root / "Layout" / "large" / "test.txt"
        layout.write_text("")
        records, report = read_spair(root, "test")
        assert records == [] and report.split_file == layout
        with pytest.raises(DatasetError) as err:
            SPair71kDataModule(root, input_size=32, num_workers=0).setup("test")
        msg = str(err.value)
        assert f"SPair-71k test split has no pair: {layout} lists none" in msg and "published test split file" in msg

    def test_every_pair_without_keypoints(self, spair_tree):
        root, written = spair_tree
        for i in range(len(written["val"])):
            _edit(_pair_file(root, "val", i), src_kps=[], trg_kps=[])
        layout = root / "Layout" / "large" / "val.txt"
        dm = SPair71kDataModule(root, input_size=32, num_workers=0)
        with pytest.raises(DatasetError) as err:
            dm.setup("fit")  # train is fine; fit needs val too
        msg = str(err.value)
        assert f"SPair-71k val split has no pair: every pair listed in {layout} was left out" in msg
        assert f"2 pairs (no keypoint in common; e.g. {layout}:1, {layout}:2)" in msg and "Fix the annotations" in msg

    def test_predict_split_is_named(self, spair_tree):
        root, _ = spair_tree
        (root / "Layout" / "large" / "val.txt").write_text("\n\n")
        dm = SPair71kDataModule(root, input_size=32, num_workers=0, predict_split="val")
        with pytest.raises(DatasetError, match=r"SPair-71k val split has no pair: .*val\.txt lists none"):
            dm.setup("predict")
