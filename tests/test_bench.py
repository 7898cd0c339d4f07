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
