"""The benchmark harness runs and reports sane numbers at a tiny size (no timing asserted)."""

import json
import math

from sosc.bench import main


def test_harness_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    rows = main(["--backbone", "resnet18", "--sizes", "64", "--batches", "2", "--warmup", "0",
                 "--repeats", "1", "--device", "cpu", "--out", str(out)])
    assert [r.what for r in rows] == ["backbone", "kbcnet", "kbcnet+kbc", "train"]
    for r in rows:
        assert r.pairs_per_s > 0 and math.isfinite(r.pairs_per_s) and r.ratio_to_floor > 0
    assert rows[0].ratio_to_floor == 1.0
    data = json.loads(out.read_text())
    assert data["device"].startswith("CPU") and len(data["rows"]) == 4
    assert "pass 2 on" in rows[2].note


def test_kbcnet_options_reach_the_network(tmp_path, monkeypatch):
    import sosc.bench as bench

    built = {}
    real = bench.KBCNet

    def spy(**kwargs):
        built.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(bench, "KBCNet", spy)
    out = tmp_path / "bench.json"
    main(["--backbone", "resnet18", "--sizes", "64", "--batches", "1", "--warmup", "0", "--repeats", "1",
          "--device", "cpu", "--what", "kbcnet", "--out", str(out),
          "--kbcnet", "decoder_strides=(2, 1, 1)", "refine=False"])
    assert built["decoder_strides"] == (2, 1, 1) and built["refine"] is False
    assert json.loads(out.read_text())["settings"]["kbcnet_kwargs"] == {"decoder_strides": [2, 1, 1], "refine": False}


def test_backbone_is_not_a_kbcnet_option():
    import pytest

    from sosc.bench import parse_kwargs

    with pytest.raises(SystemExit, match="--backbone"):
        parse_kwargs(["backbone=resnet50"])
    assert parse_kwargs(["refine=FALSE", "use_csfa=True"]) == {"refine": False, "use_csfa": True}


def test_variants_run_in_the_same_rounds_and_each_is_named(tmp_path):
    out = tmp_path / "bench.json"
    # 128 px: the kbc-zoom pair's 52-px object is under KBC's zoom target, so pass 2 runs
    rows = main(["--backbone", "resnet18", "--sizes", "128", "--batches", "1", "--warmup", "0", "--repeats", "1",
                 "--device", "cpu", "--threads", "1", "--what", "backbone", "kbcnet", "kbc-zoom", "--out", str(out),
                 "--variant", "capped", "max_cells=2", "--variant", "legacy", "max_cells=None", "cp4d=conv3d",
                 "channels_last=False"])
    assert [r.what for r in rows] == ["backbone", "kbcnet:capped", "kbc-zoom:capped", "kbcnet:legacy", "kbc-zoom:legacy"]
    assert rows[2].note == "pass 2 on 1/1 pairs"
    data = json.loads(out.read_text())
    assert data["threads"] == 1 and data["settings"]["variants"]["legacy"] == {"max_cells": None, "cp4d": "conv3d",
                                                                             "channels_last": False}
    from sosc.matchers import cp4d

    assert cp4d.SOURCE_CONV == {"cpu": "dilated-conv2d"}  # restored after the legacy variant


def test_a_variant_needs_a_name():
    import pytest

    from sosc.bench import parse_variants

    with pytest.raises(SystemExit, match="name first"):
        parse_variants([["max_cells=2"]])
    with pytest.raises(SystemExit, match="twice"):
        parse_variants([["a"], ["a", "refine=False"]])


def test_the_data_benchmark_tree_is_read_by_the_spair_reader(tmp_path):
    from sosc.data import read_spair
    from sosc.data_bench import write_spair_tree

    counts = {"trn": 12, "val": 3, "test": 4}
    base = write_spair_tree(tmp_path, images=36, counts=counts)
    stamp = (base / "Layout" / "large" / "trn.txt").stat().st_mtime_ns
    assert write_spair_tree(tmp_path, images=36, counts=counts) == base  # complete: left as it is
    assert (base / "Layout" / "large" / "trn.txt").stat().st_mtime_ns == stamp
    records, report = read_spair(tmp_path, "train")
    assert len(records) == 12 and not report
    assert all(3 <= r.num_kps <= 20 for r in records)
