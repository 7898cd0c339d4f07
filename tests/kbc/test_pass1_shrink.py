"""KBC's optional pass 1 on a shrunk source (``KBCConfig.pass1_src_px``,
:func:`sosc.kbc.windows.pass1_source_windows`): the window, the passes it costs, and the plain
result it still reports."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from stand_ins import Recorder, images, large_kps, small_kps

from sosc.errors import ConfigError
from sosc.geometry import points_to_window
from sosc.kbc import KBCConfig, KBCWrapper, pass1_source_windows

torch.set_num_threads(1)


def test_the_window_puts_the_box_at_span_px_centred():
    box = torch.tensor([[100.0, 100.0, 300.0, 200.0]])
    win, shrunk = pass1_source_windows(box, torch.tensor([400.0, 400.0]), 256, 64.0)
    assert shrunk.tolist() == [True]
    corners = points_to_window(box.view(1, 2, 2), win, 256)[0]
    assert float((corners[1] - corners[0]).amax()) == pytest.approx(64.0)
    assert ((corners[0] + corners[1]) / 2).tolist() == pytest.approx([128.0, 128.0])
    # a non-square input keeps square pixels: the window has the input's aspect
    win2, shrunk2 = pass1_source_windows(box, torch.tensor([400.0, 400.0]), (128, 256), 32.0)
    assert shrunk2.tolist() == [True]
    assert float((win2[0, 2] - win2[0, 0]) / (win2[0, 3] - win2[0, 1])) == pytest.approx(2.0)


@pytest.mark.parametrize("box, span", [([0.0, 0.0, 40.0, 40.0], 64.0),   # already under 64 input px
                                       ([0.0, 0.0, 400.0, 400.0], 1e6),
                                       ([math.nan] * 4, 8.0)])
def test_no_shrink_gives_the_full_image(box, span):
    win, shrunk = pass1_source_windows(torch.tensor([box]), torch.tensor([400.0, 400.0]), 256, span)
    assert shrunk.tolist() == [False] and win.tolist() == [[0.0, 0.0, 400.0, 400.0]]


def test_none_never_shrinks():
    win, shrunk = pass1_source_windows(torch.tensor([[0.0, 0.0, 300.0, 300.0]]), (400.0, 400.0), 256, None)
    assert shrunk.tolist() == [False] and win.tolist() == [[0.0, 0.0, 400.0, 400.0]]


@pytest.mark.parametrize("value", [0.0, -5.0, math.inf, math.nan])
def test_out_of_range_values_are_refused_by_name(value):
    with pytest.raises(ConfigError, match="pass1_src_px"):
        KBCConfig(pass1_src_px=value)


def batch():
    """Four 80x80 pairs: 0 and 2 with large keypoint boxes (shrunk in pass 1), 1 and 3 small."""
    kps = large_kps(4, 3, 5.0, 75.0)
    kps[[1, 3]] = small_kps(2, 3, 30.0, 40.0)
    return images(4, 80, 80), kps


def test_shrunk_pairs_cost_at_most_one_extra_pass_and_keep_the_plain_result():
    img, kps = batch()
    rec = Recorder()
    wrapper = KBCWrapper(rec, 32, pass1_src_px=16.0)
    out = wrapper.forward_with_info(img, img, kps, None, with_plain=False)
    assert out.pass1_shrunk.tolist() == [True, False, True, False]
    first_src = rec.calls[0][0]
    assert first_src.shape[0] == 4 and float(first_src[0, :, 0, 0].abs().sum()) == 0.0  # zero padding
    # every pair: pass 1, then pass 2 (zoomed) or the plain pass (shrunk, not zoomed): at most 2
    assert sum(c[0].shape[0] for c in rec.calls) <= 2 * 4
    assert int((out.refined | out.pass1_shrunk).sum()) == sum(c[0].shape[0] for c in rec.calls[1:])
    unknown = out.pass1_shrunk & out.refined
    assert torch.isnan(out.plain_kps[unknown]).all() and torch.isfinite(out.plain_kps[~unknown]).all()
    assert out.counts()["pairs source shrunk in pass 1"] == 2

    plain = KBCWrapper(Recorder(), 32, enabled=False)(img, img, kps)
    full = KBCWrapper(Recorder(), 32, pass1_src_px=16.0).forward_with_info(img, img, kps, None)
    assert torch.equal(full.plain_kps, plain)  # with_plain=True (the default): every pair's plain result
    assert torch.equal(full.kps, out.kps)
    assert torch.equal(KBCWrapper(Recorder(), 32, pass1_src_px=16.0)(img, img, kps), out.kps)
    # the pairs that were not shrunk get exactly what they get without the option
    base = KBCWrapper(Recorder(), 32).forward_with_info(img, img, kps, None)
    assert torch.equal(out.kps[[1, 3]], base.kps[[1, 3]])


def test_only_pred_box_shrinks():
    img, kps = batch()
    box = torch.tensor([[30.0, 30.0, 50.0, 50.0]] * 4)
    out = KBCWrapper(Recorder(), 32, pass1_src_px=16.0, target="object-bbox").forward_with_info(
        img, img, kps, None, trg_bbox=box)
    assert not out.pass1_shrunk.any()


def test_sosc_match_takes_the_option():
    from sosc.match_cli import build_parser, kbc_config_from

    base = ["--matcher", "feature", "--src", "a.jpg", "--trg", "b.jpg", "--kps", "1,1"]
    parse = build_parser().parse_args
    assert kbc_config_from(parse(base)).pass1_src_px is None
    assert kbc_config_from(parse([*base, "--kbc.pass1_src_px", "48"])).pass1_src_px == 48.0
    assert kbc_config_from(parse([*base, "--kbc.pass1_src_px", "none"])).pass1_src_px is None
    with pytest.raises(ConfigError, match="pass1_src_px"):
        kbc_config_from(parse([*base, "--kbc.pass1_src_px", "big"]))


def test_an_evaluation_counts_the_shrunk_pairs_once_each():
    from sosc.metrics import KBCDecisions, decisions_line

    img, kps = batch()
    out = KBCWrapper(Recorder(), 32, pass1_src_px=16.0).forward_with_info(img, img, kps, None)
    valid = torch.ones(kps.shape[:2], dtype=torch.bool)
    metric = KBCDecisions()
    metric.update(out, valid, torch.arange(4))
    metric.update(out, valid, torch.arange(4))  # a distributed sampler's padding: the same pairs again
    counts = metric.compute()
    assert counts["pairs"] == 4 and counts["pairs source shrunk in pass 1"] == 2
    assert counts == out.counts()
    assert decisions_line(counts).startswith("pass 1 shrank the source of 2 pairs (pass1_src_px); KBC zoomed")
    # what KBC cost: every pair's passes once, however often a pair was seen
    assert counts["matcher passes"] == int(out.passes.sum())
    assert decisions_line(counts).endswith(f"; {int(out.passes.sum())} matcher passes in all "
                                           f"({int(out.passes.sum()) / 4:.2f} per pair)")
    # an output that does not say its passes (built by older code): no total rather than a wrong one
    mixed = KBCDecisions()
    mixed.update(out, valid, torch.arange(4))
    mixed.update(dataclasses.replace(out, passes=None), valid, torch.arange(4, 8))
    assert "matcher passes" not in mixed.compute() and mixed.compute()["pairs"] == 8
    plain = KBCDecisions()
    plain.update(KBCWrapper(Recorder(), 32).forward_with_info(img, img, kps, None), valid, torch.arange(4))
    assert plain.compute()["pairs source shrunk in pass 1"] == 0
    assert "shrank" not in decisions_line(plain.compute())
