"""PF-WILLOW: both trees, the 42-column pair list, the bbox-kp bound and padding, errors, CLI."""

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_test_args, write_pfwillow_tree

from sosc.data.dataset import PairDataset
from sosc.data.pfwillow import (
    PFWILLOW_CATEGORIES,
    PFWillowDataModule,
    find_pfwillow_root,
    missing_keypoints,
    read_pfwillow,
)
from sosc.errors import ConfigError, DatasetError
from sosc.geometry import points_from_window
from sosc.metrics import PCK

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pfwillow.yaml"


def _extent(kps):
    return float((kps.max(0) - kps.min(0)).max())


class TestLayouts:
    @pytest.mark.parametrize(
        ("layout", "kwargs"),
        [
            ("official", {}),
            ("official", {"csv_in_root": True}),
            ("official", {"csv_name": "test_pairs_pf.csv", "header": False}),
            ("cats", {}),
        ],
    )
    @pytest.mark.parametrize("as_parent", [True, False])
    def test_counts_keypoints_categories_bound(self, tmp_path, layout, kwargs, as_parent):
        pairs = write_pfwillow_tree(tmp_path, layout=layout, **kwargs)
        base = tmp_path / ("PF-dataset" if layout == "official" else "PF-WILLOW")
        root = tmp_path if as_parent or kwargs.get("csv_in_root") else base
        assert find_pfwillow_root(root) == base
        records, report = read_pfwillow(root)
        assert not report and len(records) == len(pairs)
        for rec, pair in zip(records, pairs, strict=True):
            assert rec.src_path.relative_to(base).as_posix() == pair["src"].split("/", 1)[1]
            assert rec.trg_path.relative_to(base).as_posix() == pair["trg"].split("/", 1)[1]
            np.testing.assert_allclose(rec.src_kps, pair["src_kps"], atol=1e-3)
            np.testing.assert_allclose(rec.trg_kps, pair["trg_kps"], atol=1e-3)
            assert rec.num_kps == 10 and rec.category == pair["category"]
            assert rec.category_id == PFWILLOW_CATEGORIES.index(pair["category"])
            assert rec.bound == "bbox-kp" and np.isnan(rec.trg_bbox).all() and np.isnan(rec.src_bbox).all()

    def test_bound_through_the_dataset(self, tmp_path):
        pairs = write_pfwillow_tree(tmp_path)
        records, _ = read_pfwillow(tmp_path)
        ds = PairDataset(records, 32)
        for i, pair in enumerate(pairs):
            assert ds[i]["pck_bound"].item() == pytest.approx(_extent(pair["trg_kps"]), abs=1e-3)
            assert torch.isnan(ds[i]["trg_bbox"]).all()

    def test_hand_computed_bound(self, tmp_path):
        write_pfwillow_tree(tmp_path, n_pairs=1, header=False, size_range=(120, 121))
        csv = tmp_path / "PF-dataset" / "test_pairs.csv"
        cells = csv.read_text().strip().split(",")
        xs = [10, 15, 20, 25, 30, 35, 40, 45, 50, 55]
        ys = [20, 30, 40, 50, 60, 70, 80, 90, 100, 100]
        cells[22:42] = [str(v) for v in xs + ys]  # target: x extent 45, y extent 80
        csv.write_text(",".join(cells) + "\n")
        records, _ = read_pfwillow(tmp_path)
        assert PairDataset(records, 32)[0]["pck_bound"].item() == 80.0


class TestPadding:
    def test_missing_keypoints(self):
        kps = np.array([[1.0, 2.0], [-1.0, -1.0], [np.nan, 3.0], [-2.0, -2.0]])
        assert missing_keypoints(kps).tolist() == [False, True, True, True]

    def test_padding_entries_change_neither_bound_nor_pck(self, tmp_path):
        pairs = write_pfwillow_tree(tmp_path, n_pairs=2, pad_last=2)
        records, report = read_pfwillow(tmp_path)
        assert report.keypoints["missing in the pair list"] == 2 and not report.pairs
        assert records[0].num_kps == 8
        valid_trg = pairs[0]["trg_kps"][:8]
        expected = _extent(valid_trg)
        with_padding = _extent(pairs[0]["trg_kps"])  # what codebases that let -1 in report
        assert with_padding > expected
        tight, padded = PairDataset(records, 32)[0], PairDataset(records, 32, max_kps=20)[0]
        assert tight["pck_bound"].item() == pytest.approx(expected, abs=1e-3)
        assert padded["pck_bound"].item() == tight["pck_bound"].item()
        assert padded["valid"].sum() == 8 and padded["valid"].shape == (20,)

        def score(item, garbage):
            gt = points_from_window(item["trg_kps"], item["trg_window"], 32)[None]
            pred = gt.clone()
            pred[0, :3] += 3.0
            pred[0, ~item["valid"]] = garbage  # padded entries hold anything
            metric = PCK(alphas=(0.05, 0.1))
            metric.update(pred, gt, item["valid"][None], item["pck_bound"][None])
            return metric.compute()

        ref = score(tight, 0.0)
        assert score(padded, 0.0) == ref and score(padded, -1e6) == ref and score(padded, float("nan")) == ref


class TestErrors:
    def test_no_tree_lists_paths_searched(self, tmp_path):
        with pytest.raises(DatasetError) as err:
            read_pfwillow(tmp_path)
        msg = str(err.value)
        assert all(str(p) in msg for p in (tmp_path, tmp_path / "PF-dataset", tmp_path / "PF-WILLOW"))
        assert "PF-dataset.zip" in msg and "SOSC_PFWILLOW_URL" in msg and "car(G)" in msg

    def test_missing_pair_list_says_where_it_comes_from(self, tmp_path):
        write_pfwillow_tree(tmp_path)
        (tmp_path / "PF-dataset" / "test_pairs.csv").unlink()
        with pytest.raises(DatasetError) as err:
            read_pfwillow(tmp_path)
        msg = str(err.value)
        assert str(tmp_path / "PF-dataset" / "test_pairs_pf.csv") in msg and "CNNGeometric" in msg
        assert "beside the sub-class folders" in msg

    def test_missing_image(self, tmp_path):
        pairs = write_pfwillow_tree(tmp_path)
        (tmp_path / pairs[2]["trg"]).unlink()
        with pytest.raises(DatasetError, match=r"test_pairs\.csv:4: image .*Img_002b\.png.* is missing"):
            read_pfwillow(tmp_path)

    @pytest.mark.parametrize(
        ("edit", "pattern"),
        [
            (lambda cells: cells[:30], r"test_pairs\.csv:3: expected 42 columns .* got 30"),
            (lambda cells: cells[:5] + ["abc"] + cells[6:], r"test_pairs\.csv:3: column 6 must be a number, got 'abc'"),
            (lambda cells: ["PF-dataset/bus(X)/a.png"] + cells[1:], r"test_pairs\.csv:3: image path 'PF-dataset/bus\(X\)/a\.png'"),
        ],
    )
    def test_malformed_rows(self, tmp_path, edit, pattern):
        write_pfwillow_tree(tmp_path)
        csv = tmp_path / "PF-dataset" / "test_pairs.csv"
        lines = csv.read_text().splitlines()
        lines[2] = ",".join(edit(lines[2].split(",")))
        csv.write_text("\n".join(lines) + "\n")
        with pytest.raises(DatasetError, match=pattern):
            read_pfwillow(tmp_path)

    def test_undecodable_csv(self, tmp_path):
        write_pfwillow_tree(tmp_path)
        (tmp_path / "PF-dataset" / "test_pairs.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
        with pytest.raises(DatasetError, match=r"test_pairs\.csv cannot be read"):
            read_pfwillow(tmp_path)

    def test_pair_with_no_keypoint_is_counted_and_warned(self, tmp_path):
        write_pfwillow_tree(tmp_path, n_pairs=3, pad_last=10)
        records, report = read_pfwillow(tmp_path)
        assert len(records) == 2 and report.pairs["no keypoint in common"] == 1
        dm = PFWillowDataModule(tmp_path, input_size=32, num_workers=0)
        with pytest.warns(UserWarning, match=r"PF-WILLOW test: skipped 1 pairs \(no keypoint in common; e\.g\. .*test_pairs\.csv:2\)"):
            dm.setup("test")
        assert len(dm.datasets["test"]) == 2


class TestDataModule:
    def test_fit_is_refused_pointing_at_pfpascal(self, tmp_path):
        write_pfwillow_tree(tmp_path)
        dm = PFWillowDataModule(tmp_path)
        with pytest.raises(ConfigError, match=r"test set only.*configs/pfpascal\.yaml"):
            dm.setup("fit")
        with pytest.raises(ConfigError, match="PF-PASCAL"):
            read_pfwillow(tmp_path, "val")

    def test_validate_runs_on_the_test_split(self, tmp_path):
        write_pfwillow_tree(tmp_path)
        dm = PFWillowDataModule(tmp_path, input_size=32, num_workers=0)
        dm.setup("validate")
        assert len(next(iter(dm.val_dataloader()))["pair_id"]) == 4

    def test_download_url_argument_beats_environment(self, loopback_server, tmp_path, monkeypatch):
        src = tmp_path / "src"
        write_pfwillow_tree(src)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for path in sorted((src / "PF-dataset").rglob("*")):
                zf.write(path, path.relative_to(src).as_posix())
        loopback_server.files["/PF-dataset.zip"] = buf.getvalue()
        monkeypatch.setenv("SOSC_PFWILLOW_URL", "http://127.0.0.1:9/unreachable.zip")
        dm = PFWillowDataModule(tmp_path / "data", input_size=32, num_workers=0, url=loopback_server.url("/PF-dataset.zip"))
        before = {k: id(v) for k, v in vars(dm).items()}
        dm.prepare_data()
        assert {k: id(v) for k, v in vars(dm).items()} == before  # prepare_data sets no attributes
        assert [path for path, _ in loopback_server.requests] == ["/PF-dataset.zip"]
        dm.setup("test")
        assert len(dm.datasets["test"]) == 4

    def test_offline_cli_fails_with_instructions(self, tmp_path, monkeypatch):
        from sosc.cli import main

        monkeypatch.setenv("SOSC_PFWILLOW_URL", "http://127.0.0.1:9/PF-dataset.zip")
        with pytest.raises(DatasetError) as err:
            main(cli_test_args(CONFIG, tmp_path / "nothing", tmp_path / "logs"))
        msg = str(err.value)
        assert "PF-dataset.zip" in msg and f"extract it into {tmp_path / 'nothing'}" in msg and "test_pairs.csv" in msg

    def test_cli_fit_is_refused_before_any_download(self, tmp_path, monkeypatch):
        from sosc.cli import main

        monkeypatch.setenv("SOSC_PFWILLOW_URL", "http://127.0.0.1:9/PF-dataset.zip")
        args = cli_test_args(CONFIG, tmp_path / "nothing", tmp_path / "logs")
        args[0] = "fit"
        args += ["--trainer.max_epochs", "1"]
        with pytest.raises(ConfigError, match="PF-PASCAL"):
            main(args)

    def test_cli_test_writes_reports(self, tmp_path):
        from sosc.cli import main

        write_pfwillow_tree(tmp_path / "data", layout="cats")
        out = tmp_path / "logs"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main(cli_test_args(CONFIG, tmp_path / "data", out))
        csv = next(out.rglob("pck_plain.csv"))
        assert csv.with_suffix(".md").exists() and "car(G)" in csv.read_text()

    def test_config_parses(self):
        from sosc.cli import main

        cli = main(["--config", str(CONFIG), "--model.matcher.backbone", "resnet18", "--model.matcher.pretrained", "false"],
                   run=False)
        assert isinstance(cli.datamodule, PFWillowDataModule)
        assert cli.datamodule.input_size == (256, 256) and cli.datamodule.download is True


def test_a_first_pair_with_a_missing_coordinate_is_not_a_header(tmp_path):
    """Without a header, an empty first coordinate is a missing keypoint of pair 1, not a header."""
    write_pfwillow_tree(tmp_path, n_pairs=3, header=False)
    csv_path = tmp_path / "PF-dataset" / "test_pairs.csv"
    lines = csv_path.read_text().splitlines()
    cells = lines[0].split(",")
    cells[2] = cells[12] = ""  # source keypoint 1 of the first pair: missing
    lines[0] = ",".join(cells)
    csv_path.write_text("\n".join(lines) + "\n")
    records, _ = read_pfwillow(tmp_path)
    assert len(records) == 3


class TestEmptySplit:
    def test_empty_csv_is_an_error_naming_the_file(self, tmp_path):
        write_pfwillow_tree(tmp_path)
        csv = tmp_path / "PF-dataset" / "test_pairs.csv"
        csv.write_text("")
        records, report = read_pfwillow(tmp_path)
        assert records == [] and report.split_file == csv
        with pytest.raises(DatasetError) as err:
            PFWillowDataModule(tmp_path, input_size=32, num_workers=0).setup("test")
        msg = str(err.value)
        assert f"PF-WILLOW test split has no pair: {csv} lists none" in msg and "test_pairs_pf.csv" in msg

    def test_every_pair_padded_is_an_error_with_the_summary(self, tmp_path):
        write_pfwillow_tree(tmp_path, n_pairs=1, pad_last=10)
        with pytest.raises(DatasetError, match=r"every pair listed in .*test_pairs\.csv was left out: 1 pairs \(no keypoint in common"):
            PFWillowDataModule(tmp_path, input_size=32, num_workers=0).setup("test")
