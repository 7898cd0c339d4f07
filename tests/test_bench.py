"""The benchmark harness runs and reports sane numbers at a tiny size (no timing asserted)."""

import json
import math

import pytest

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
    assert rows[2].note == "pass 2 on 1/2 pairs (1 made to zoom)" or rows[2].note == "pass 2 on 2/2 pairs (1 made to zoom)"


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


def test_every_option_has_help_text():
    import argparse

    from sosc.bench import build_parser

    options = [a for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)]
    assert options and all(a.help and a.help.strip() for a in options), [a.dest for a in options if not a.help]


@pytest.mark.parametrize("size", [64, 128, 256, 512, 1024])
@pytest.mark.parametrize(("batch", "share"), [(1, 0.5), (2, 0.5), (8, 0.25), (8, 1.0), (32, 0.5)])
def test_the_stated_share_of_pairs_zooms_with_the_current_kbc_defaults(size, batch, share):
    """At 512 px the old batch (keypoints over 15% of the side) zoomed none: its box already
    spans KBCConfig.zoom_px input pixels."""
    import math

    import torch

    from sosc.bench import make_batch, source_zooms

    _, _, kps, _ = make_batch(batch, size, 16, share, torch.device("cpu"))
    zooms = source_zooms(kps, size)
    wanted = math.ceil(share * batch)
    assert zooms[:wanted].all() and not zooms[wanted:].any()


def test_a_batch_that_cannot_zoom_fails_loudly(monkeypatch):
    import torch

    import sosc.bench as bench
    from sosc.kbc import KBCConfig

    monkeypatch.setattr(bench, "KBCConfig", lambda: KBCConfig(zoom_px=None, tau=0.0))  # KBC that never triggers
    with pytest.raises(RuntimeError, match="would not measure the stated share"):
        bench.make_batch(2, 128, 16, 0.5, torch.device("cpu"))


def test_the_kbc_row_fails_when_pass_2_does_not_run(monkeypatch, tmp_path):
    import sosc.bench as bench
    from sosc.kbc import KBCWrapper

    class NoZoom(KBCWrapper):
        def forward_with_info(self, *args, **kwargs):
            info = super().forward_with_info(*args, **kwargs)
            info.refined[:] = False
            return info

    monkeypatch.setattr(bench, "KBCWrapper", NoZoom)
    with pytest.raises(RuntimeError, match="pass 2 ran on 0 of 2 pairs, but 1 were made to zoom"):
        main(["--backbone", "resnet18", "--sizes", "64", "--batches", "2", "--warmup", "0", "--repeats", "1",
              "--device", "cpu", "--what", "kbcnet+kbc", "--out", str(tmp_path / "b.json")])
    with pytest.raises(RuntimeError, match="kbc-zoom at 64 px: pass 2 ran on 0 of 2 pairs"):
        main(["--backbone", "resnet18", "--sizes", "64", "--batches", "2", "--warmup", "0", "--repeats", "1",
              "--device", "cpu", "--what", "kbc-zoom", "--out", str(tmp_path / "z.json")])


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
