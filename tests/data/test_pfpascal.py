"""PF-PASCAL: both trees, .mat + CSV formats, flips, the img bound, overlaps, errors, CLI."""

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from conftest import cli_test_args, write_pfpascal_tree
from PIL import Image

from sosc.data.dataset import PairDataset
from sosc.data.images import read_image
from sosc.data.pfpascal import (
    PFPASCAL_CATEGORIES,
    PFPascalDataModule,
    count_overlaps,
    csv_mat_difference,
    find_pfpascal_root,
    pfpascal_layout,
    read_pfpascal,
    read_pfpascal_mat,
)
from sosc.data.records import BOX_OUTSIDE
from sosc.errors import DatasetError
from sosc.geometry import points_from_window

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pfpascal.yaml"


@pytest.fixture
def pf_tree(tmp_path):
    return tmp_path, write_pfpascal_tree(tmp_path)


class TestLayouts:
    @pytest.mark.parametrize("layout", ["official", "cats"])
    @pytest.mark.parametrize("as_parent", [True, False])
    def test_counts_keypoints_boxes_flips(self, tmp_path, layout, as_parent):
        info = write_pfpascal_tree(tmp_path, layout=layout)
        root = tmp_path if as_parent else info["base"]
        assert find_pfpascal_root(root) == info["base"]
        assert pfpascal_layout(info["base"]) == layout
        for split in ("train", "val", "test"):
            records, report = read_pfpascal(root, split)
            assert not report and len(records) == len(info[split])
            for rec, row in zip(records, info[split], strict=True):
                assert rec.src_path.name == f"{row['src']}.jpg" and rec.trg_path.name == f"{row['trg']}.jpg"
                np.testing.assert_allclose(rec.src_kps, row["src_kps"], atol=1e-4)
                np.testing.assert_allclose(rec.trg_kps, row["trg_kps"], atol=1e-4)
                assert rec.category == PFPASCAL_CATEGORIES[row["cls"] - 1] and rec.category_id == row["cls"] - 1
                assert rec.flip == (row["flip"] if split != "test" else False)
                np.testing.assert_allclose(rec.trg_bbox, info["images"][row["trg"]]["bbox"])
                assert rec.bound == "img" and rec.source.endswith(f":{row['line']}")
        assert [r.flip for r in read_pfpascal(root, "train")[0]] == [False, True, False, True, False]

    def test_pair_ids_are_unique_even_for_the_same_pair_flipped(self, tmp_path):
        info = write_pfpascal_tree(tmp_path, pairs={"train": [(0, 1, 0), (0, 1, 1)], "val": [], "test": []})
        ids = [r.pair_id for r in read_pfpascal(tmp_path, "train")[0]]
        assert len(set(ids)) == 2 and ids[1].endswith("-flip")
        assert info["base"].name == "PF-dataset-PASCAL"

    def test_ncnet_image_pairs_folder_and_cnngeometric_names(self, tmp_path):
        info = write_pfpascal_tree(tmp_path)
        (tmp_path / "image_pairs").mkdir()
        (info["base"] / "test_pairs.csv").rename(tmp_path / "image_pairs" / "test_pairs.csv")
        (info["base"] / "val_pairs.csv").rename(info["base"] / "val_pairs_pf_pascal.csv")
        assert len(read_pfpascal(tmp_path, "test")[0]) == 3
        assert len(read_pfpascal(tmp_path, "val")[0]) == 2


class TestTestSplit:
    def test_csv_coordinates_agree_with_mat_within_tolerance(self, pf_tree):
        root, info = pf_tree
        records, _ = read_pfpascal(root, "test")
        for rec, row in zip(records, info["test"], strict=True):
            s = info["images"][row["src"]]["kps"]
            t = info["images"][row["trg"]]["kps"]
            assert csv_mat_difference(rec.src_kps, rec.trg_kps, s, t) <= 1e-3

    def test_csv_coordinates_win_and_disagreement_is_warned(self, pf_tree):
        root, info = pf_tree
        csv = info["base"] / "test_pairs.csv"
        lines = csv.read_text().splitlines()
        cells = lines[2].split(",")
        xa = [float(v) + 5.0 for v in cells[3].split(";")]
        cells[3] = ";".join(f"{v:.6f}" for v in xa)
        lines[2] = ",".join(cells)
        csv.write_text("\n".join(lines) + "\n")
        with pytest.warns(UserWarning, match=r"1 of 3 pairs .* differ from the \.mat .* line 3 \(5\.00 px\)"):
            records, _ = read_pfpascal(root, "test")
        np.testing.assert_allclose(records[1].src_kps[:, 0], xa, atol=1e-4)

    def test_csv_only_without_annotations(self, pf_tree):
        root, info = pf_tree
        for mat in (info["base"] / "Annotations").rglob("*.mat"):
            mat.unlink()
        records, _ = read_pfpascal(root, "test")
        assert len(records) == 3 and np.isnan(records[0].trg_bbox).all()
        with pytest.raises(DatasetError, match=r"train_pairs\.csv:2: annotation .*2009_000000\.mat is missing"):
            read_pfpascal(root, "train")

    def test_test_csv_without_coordinates_falls_back_to_mat(self, pf_tree):
        root, info = pf_tree
        lines = ["source_image,target_image,class"] + [
            f"x/{r['src']}.jpg,x/{r['trg']}.jpg,{r['cls']}" for r in info["test"]
        ]
        (info["base"] / "test_pairs.csv").write_text("\n".join(lines) + "\n")
        records, _ = read_pfpascal(root, "test")
        np.testing.assert_allclose(records[0].src_kps, info["test"][0]["src_kps"], atol=1e-5)


class TestThroughTheDataset:
    def test_img_bound_is_max_side_of_target_image(self, tmp_path):
        info = write_pfpascal_tree(tmp_path, size_range=(40, 72))
        dm = PFPascalDataModule(tmp_path, input_size=32, num_workers=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dm.setup("test")
        for i, row in enumerate(info["test"]):
            h, w = info["images"][row["trg"]]["size"]
            assert dm.datasets["test"][i]["pck_bound"].item() == max(h, w)

    def test_hand_computed_img_bound(self, tmp_path):
        info = write_pfpascal_tree(tmp_path)
        trg = info["test"][0]["trg"]
        path = info["base"] / "JPEGImages" / f"{trg}.jpg"
        Image.fromarray(np.zeros((70, 50, 3), np.uint8)).save(path)  # H=70, W=50; keypoints stay inside
        mat = info["base"] / "Annotations" / "aeroplane" / f"{trg}.mat"  # its box must fit the new image too
        scipy.io.savemat(mat, {"kps": info["images"][trg]["kps"], "bbox": np.array([[1, 2, 48, 69.0]])})
        records, _ = read_pfpascal(tmp_path, "test")
        assert PairDataset(records, 32)[0]["pck_bound"].item() == 70.0

    def test_flip_mirrors_images_keypoints_and_boxes(self, pf_tree):
        root, info = pf_tree
        records, _ = read_pfpascal(root, "train")
        rec = records[1]
        assert rec.flip
        item = PairDataset([rec], 48, keep_original=True)[0]
        h, w = info["images"][info["train"][1]["trg"]]["size"]
        n = rec.num_kps
        trg = points_from_window(item["trg_kps"], item["trg_window"], 48)[:n]
        np.testing.assert_allclose(trg[:, 0].numpy(), w - rec.trg_kps[:, 0], atol=1e-3)
        np.testing.assert_allclose(trg[:, 1].numpy(), rec.trg_kps[:, 1], atol=1e-3)
        assert torch.equal(item["trg_orig"], read_image(rec.trg_path).flip(-1))
        x0, y0, x1, y1 = info["images"][info["train"][1]["trg"]]["bbox"]
        assert item["trg_bbox"].tolist() == [w - x1, y0, w - x0, y1]
        assert item["pck_bound"].item() == max(h, w)


class TestOverlaps:
    def test_count_overlaps(self):
        assert count_overlaps({"test": [("a", "b")], "train": [("a", "b"), ("b", "a")], "val": [("b", "a")]}) == {
            ("val", "train"): 1, ("test", "train"): 1, ("test", "val"): 0,
        }

    def test_test_in_train_is_warned_with_count(self, pf_tree):
        root, _ = pf_tree
        dm = PFPascalDataModule(root, input_size=32, num_workers=0)
        with pytest.warns(UserWarning, match="1 of 3 test pairs also appear in the train split"):
            dm.setup("test")

    def test_val_train_overlap(self, tmp_path):
        write_pfpascal_tree(tmp_path, pairs={"train": [(0, 1, 0), (2, 3, 1)], "val": [(2, 3, 0)], "test": [(4, 5, None)]})
        dm = PFPascalDataModule(tmp_path, input_size=32, num_workers=0)
        with pytest.warns(UserWarning, match="1 of 1 val pairs also appear in the train split"):
            dm.setup("fit")


def _replace_line(csv_path, lineno, text):
    lines = csv_path.read_text().splitlines()
    lines[lineno - 1] = text
    csv_path.write_text("\n".join(lines) + "\n")


class TestErrors:
    def test_no_tree_lists_paths_searched(self, tmp_path):
        with pytest.raises(DatasetError) as err:
            read_pfpascal(tmp_path, "train")
        msg = str(err.value)
        for path in (tmp_path / "JPEGImages", tmp_path / "PF-dataset-PASCAL" / "JPEGImages", tmp_path / "PF-PASCAL" / "JPEGImages"):
            assert str(path) in msg
        assert "PF-dataset-PASCAL.zip" in msg and "SOSC_PFPASCAL_URL" in msg

    def test_missing_split_file_says_where_it_comes_from(self, pf_tree):
        root, info = pf_tree
        (info["base"] / "train_pairs.csv").unlink()
        with pytest.raises(DatasetError) as err:
            read_pfpascal(root, "train")
        msg = str(err.value)
        assert str(info["base"] / "train_pairs.csv") in msg and str(info["base"] / "trn_pairs.csv") in msg
        assert "ncnet" in msg and "datasets/pf-pascal/image_pairs" in msg and "beside JPEGImages" in msg

    def test_missing_image_names_line_and_file(self, pf_tree):
        root, info = pf_tree
        (info["base"] / "JPEGImages" / f"{info['val'][1]['trg']}.jpg").unlink()
        with pytest.raises(DatasetError, match=r"val_pairs\.csv:3: image .*2009_000006\.jpg.* is missing"):
            read_pfpascal(root, "val")

    @pytest.mark.parametrize(
        ("line", "pattern"),
        [
            ("a.jpg,b.jpg", r"train_pairs\.csv:3: expected at least source,target,class"),
            ("PF/JPEGImages/2009_000001.jpg,PF/JPEGImages/2009_000002.jpg,21,0", r"train_pairs\.csv:3: class '21'"),
            ("PF/JPEGImages/2009_000001.jpg,PF/JPEGImages/2009_000002.jpg,cat,0", r"train_pairs\.csv:3: class 'cat'"),
            ("PF/JPEGImages/2009_000001.jpg,PF/JPEGImages/2009_000002.jpg,1,2", r"train_pairs\.csv:3: flip must be 0 or 1"),
        ],
    )
    def test_malformed_csv_rows(self, pf_tree, line, pattern):
        root, info = pf_tree
        _replace_line(info["base"] / "train_pairs.csv", 3, line)
        with pytest.raises(DatasetError, match=pattern):
            read_pfpascal(root, "train")

    def test_malformed_test_coordinates(self, pf_tree):
        root, info = pf_tree
        csv = info["base"] / "test_pairs.csv"
        cells = csv.read_text().splitlines()[1].split(",")
        _replace_line(csv, 2, ",".join(cells[:3] + ["1;2;x", *cells[4:]]))
        with pytest.raises(DatasetError, match=r"test_pairs\.csv:2: column XA must be ';'-separated numbers"):
            read_pfpascal(root, "test")
        _replace_line(csv, 2, ",".join(cells[:3] + ["1;2", *cells[4:]]))
        with pytest.raises(DatasetError, match=r"test_pairs\.csv:2: XA, YA, XB, YB must list as many values"):
            read_pfpascal(root, "test")

    def test_malformed_mat(self, pf_tree):
        root, info = pf_tree
        mat = info["base"] / "Annotations" / "aeroplane" / "2009_000001.mat"
        mat.write_bytes(b"garbage, not a MATLAB file")
        with pytest.raises(DatasetError, match=r"train_pairs\.csv:2: annotation .*2009_000001\.mat is not a readable"):
            read_pfpascal(root, "train")
        scipy.io.savemat(mat, {"points": np.zeros((3, 2))})
        with pytest.raises(DatasetError, match=r"2009_000001\.mat: no 'kps' variable"):
            read_pfpascal_mat(mat)
        scipy.io.savemat(mat, {"kps": np.zeros((3, 3)), "bbox": np.zeros((1, 4))})
        with pytest.raises(DatasetError, match=r"'kps' must be N x 2"):
            read_pfpascal_mat(mat)

    def test_pair_with_no_keypoint_in_common_is_counted_and_warned(self, pf_tree):
        root, info = pf_tree
        mat = info["base"] / "Annotations" / "aeroplane" / "2009_000002.mat"
        kps = info["images"]["2009_000002"]["kps"].copy()
        kps[:] = np.nan
        scipy.io.savemat(mat, {"kps": kps, "bbox": np.array([[1, 2, 30, 30.0]])})
        records, report = read_pfpascal(root, "train")
        assert len(records) == 3 and report.pairs["no keypoint in common"] == 2
        assert "train_pairs.csv:3" in report.summary()
        dm = PFPascalDataModule(root, input_size=32, num_workers=0)
        with pytest.warns(UserWarning) as record:
            dm.setup("fit")
        messages = [str(w.message) for w in record]
        assert any("PF-PASCAL train: skipped 2 pairs (no keypoint in common; e.g. " in m and "train_pairs.csv:3" in m
                   for m in messages)
        assert any("PF-PASCAL val: skipped 1 pairs" in m and "val_pairs.csv:2" in m for m in messages)


class TestDataModule:
    def test_download_from_a_mirror_then_split_files_are_asked_for(self, loopback_server, tmp_path, monkeypatch):
        src = tmp_path / "src"
        info = write_pfpascal_tree(src)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for path in sorted(info["base"].rglob("*")):
                if path.is_file() and path.suffix != ".csv":  # the official zip has no split files
                    zf.write(path, path.relative_to(src).as_posix())
        loopback_server.files["/mirror/PF-dataset-PASCAL.zip"] = buf.getvalue()
        monkeypatch.setenv("SOSC_PFPASCAL_URL", loopback_server.url("/mirror/PF-dataset-PASCAL.zip"))
        data = tmp_path / "data"
        dm = PFPascalDataModule(data, input_size=32, num_workers=0)
        assert loopback_server.requests == []  # never in the constructor
        dm.prepare_data()
        assert (data / "PF-dataset-PASCAL" / "JPEGImages").is_dir() and loopback_server.requests
        with pytest.raises(DatasetError, match=r"test split file not found.*ncnet"):
            dm.setup("test")
        (info["base"] / "test_pairs.csv").rename(data / "test_pairs.csv")  # "or in root"
        dm.setup("test")
        assert len(dm.datasets["test"]) == 3
        PFPascalDataModule(data, download=True).prepare_data()
        assert len(loopback_server.requests) == 1

    def test_download_false_explains(self, tmp_path, loopback_server):
        dm = PFPascalDataModule(tmp_path, download=False, url=loopback_server.url("/PF-dataset-PASCAL.zip"))
        with pytest.raises(DatasetError, match=r"download=False.*PF-dataset-PASCAL\.zip.*extract it into"):
            dm.prepare_data()
        assert loopback_server.requests == []

    def test_cli_test_writes_reports(self, pf_tree, tmp_path):
        from sosc.cli import main

        root, _ = pf_tree
        out = tmp_path / "logs"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main(cli_test_args(CONFIG, root, out))
        csv = next(out.rglob("pck_plain.csv"))
        assert csv.with_suffix(".md").exists()
        text = csv.read_text()
        assert "pck@0.1" in text and "aeroplane" in text and "cat" in text

    def test_config_parses(self):
        from sosc.cli import main

        cli = main(["--config", str(CONFIG), "--model.matcher.backbone", "resnet18", "--model.matcher.pretrained", "false"],
                   run=False)
        dm = cli.datamodule
        assert isinstance(dm, PFPascalDataModule)
        assert dm.input_size == (256, 256) and dm.download is True and cli.model.input_size is None


def test_flip_is_read_by_position_when_the_header_does_not_name_it(tmp_path):
    info = write_pfpascal_tree(tmp_path, layout="cats")
    split = info["base"] / "trn_pairs.csv"
    expected = [r.flip for r in read_pfpascal(tmp_path, "train")[0]]
    assert any(expected)
    lines = split.read_text().splitlines()
    lines[0] = "imageA,imageB,cls,flipped"
    split.write_text("\n".join(lines) + "\n")
    assert [r.flip for r in read_pfpascal(tmp_path, "train")[0]] == expected


class TestMatBoxesAgainstTheImage:
    """The .mat boxes are checked against their images: clipped within 2 px, else an error
    naming the .mat file (strict) or a skipped, counted pair (strict=False)."""

    def _set_bbox(self, info, name, bbox):
        mat = info["base"] / "Annotations" / "aeroplane" / f"{name}.mat"
        scipy.io.savemat(mat, {"kps": info["images"][name]["kps"], "bbox": np.array([bbox], dtype=np.float64)})
        return mat

    def test_box_far_outside(self, pf_tree):
        root, info = pf_tree
        h, w = info["images"]["2009_000001"]["size"]
        mat = self._set_bbox(info, "2009_000001", [0, 0, 5000, 5000])
        with pytest.raises(DatasetError) as err:
            read_pfpascal(root, "train")
        msg = str(err.value)
        assert "train_pairs.csv:2: 'bbox' of" in msg and str(mat) in msg and "[0.0, 0.0, 5000.0, 5000.0]" in msg
        assert f"W={w}, H={h}" in msg and "strict=False" in msg
        records, report = read_pfpascal(root, "train", strict=False)
        assert len(records) == len(info["train"]) - 2  # 2009_000001 is in train rows 1 and 2
        assert report.pairs[BOX_OUTSIDE] == 2 and "train_pairs.csv:2" in report.summary()

    def test_box_within_tolerance_is_clipped(self, pf_tree):
        root, info = pf_tree
        h, w = info["images"]["2009_000001"]["size"]
        self._set_bbox(info, "2009_000001", [-1, 0, w + 1.5, h + 2])
        records, report = read_pfpascal(root, "train")
        assert not report
        assert records[0].trg_bbox.tolist() == [0, 0, w, h] and records[1].src_bbox.tolist() == [0, 0, w, h]


class TestEmptySplits:
    def test_header_only_csv_is_an_error_naming_the_file(self, pf_tree):
        root, info = pf_tree
        csv = info["base"] / "test_pairs.csv"
        csv.write_text("source_image,target_image,class,XA,YA,XB,YB\n")
        records, report = read_pfpascal(root, "test")
        assert records == [] and report.split_file == csv
        with pytest.raises(DatasetError) as err:
            PFPascalDataModule(root, input_size=32, num_workers=0).setup("test")
        msg = str(err.value)
        assert f"PF-PASCAL test split has no pair: {csv} lists none" in msg and "NCNet" in msg

    def test_empty_val_csv_stops_fit(self, pf_tree):
        root, info = pf_tree
        (info["base"] / "val_pairs.csv").write_text("")
        with pytest.raises(DatasetError, match=r"PF-PASCAL val split has no pair: .*val_pairs\.csv lists none"):
            PFPascalDataModule(root, input_size=32, num_workers=0).setup("fit")
