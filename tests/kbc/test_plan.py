"""Tests of sosc.kbc.plan and the pair-level window functions of sosc.kbc.windows."""

from __future__ import annotations

import pytest
import torch

from sosc.geometry import full_windows
from sosc.kbc import (
    REASONS,
    KBCConfig,
    fill_ratio,
    kbc_box,
    match_window_scales,
    pair_windows,
    plan_windows,
    robust_inliers,
    similarity_box,
    target_box,
    zoom_params,
)

SIZE = torch.tensor([[480.0, 480.0]])


def box(x0: float, y0: float, side: float) -> torch.Tensor:
    return torch.tensor([[x0, y0, x0 + side, y0 + side]])


class TestScaleAwareZoom:
    def test_the_grown_box_spans_zoom_px_input_pixels(self):
        cfg = KBCConfig(zoom_px=96.0, match_scales=False)
        for side in (60.0, 100.0):  # (a 40-px box would hit the cap: 480 / s_max = 120 px)
            src, _, trig, _ = pair_windows(box(100, 100, side), box(100, 100, side), SIZE, SIZE, 256, cfg)
            assert trig.item()
            span = side * 256 / (src[0, 2] - src[0, 0])
            assert abs(float(span) - 96.0) < 1e-3

    def test_the_same_fraction_of_the_image_zooms_at_one_input_size_and_not_at_another(self):
        """zoom_px is in input pixels: a 120-px box in a 480-px image is 64 input px at 256 (zoom)
        and 128 input px at 512 (already at the scale: no zoom)."""
        cfg = KBCConfig(zoom_px=96.0, match_scales=False)
        _, _, trig256, _ = pair_windows(box(100, 100, 120), box(100, 100, 120), SIZE, SIZE, 256, cfg)
        _, _, trig512, _ = pair_windows(box(100, 100, 120), box(100, 100, 120), SIZE, SIZE, 512, cfg)
        assert trig256.item() and not trig512.item()

    def test_min_zoom_and_the_cap(self):
        assert zoom_params(KBCConfig(zoom_px=128.0, min_zoom=2.0), 256) == (0.25, 0.5)
        cfg = KBCConfig(zoom_px=96.0, s_max=4.0, match_scales=False)
        src, _, _, _ = pair_windows(box(100, 100, 10), box(100, 100, 10), SIZE, SIZE, 256, cfg)
        assert float(src[0, 2] - src[0, 0]) == 120.0  # 480 / s_max: no more zoom than the cap


class TestMatchScales:
    def test_the_image_that_would_come_out_larger_is_zoomed_less(self):
        """Large source, small target (the case KBC exists for): the target is capped by s_max, so
        the source is zoomed only as far as the target can follow: both boxes at one scale."""
        cfg = KBCConfig(zoom_px=96.0, s_max=4.0, match_scales=True)
        src_box, trg_box = kbc_box(torch.tensor([[[100.0, 100.0], [140.0, 140.0]]])), box(200, 200, 20)
        src, trg, _, _ = pair_windows(src_box, trg_box, SIZE, SIZE, 256, cfg)
        s_fill = fill_ratio(src_box, src, SIZE, 256)
        t_fill = fill_ratio(trg_box, trg, SIZE, 256)
        assert torch.allclose(s_fill, t_fill, atol=1e-5)
        unmatched, _, _, _ = pair_windows(src_box, trg_box, SIZE, SIZE, 256, KBCConfig(zoom_px=96.0, match_scales=False))
        assert float(src[0, 2] - src[0, 0]) > float(unmatched[0, 2] - unmatched[0, 0])

    def test_windows_only_grow_and_nan_boxes_are_left_alone(self):
        nan = torch.full((1, 4), float("nan"))
        win = torch.tensor([[10.0, 10.0, 110.0, 110.0]])
        a, b = match_window_scales(nan, box(20, 20, 50), win, win, SIZE, SIZE, 256)
        assert torch.equal(a, win) and torch.equal(b, win)


class TestRobustPredBox:
    def test_a_stray_prediction_is_left_out(self):
        pts = torch.tensor([[[100.0, 100.0], [110.0, 105.0], [105.0, 115.0], [400.0, 30.0]]])
        valid = torch.ones(1, 4, dtype=torch.bool)
        assert robust_inliers(pts, valid).tolist() == [[True, True, True, False]]
        robust = target_box(KBCConfig(pred_box="robust"), pts, valid)
        every = target_box(KBCConfig(pred_box="all"), pts, valid)
        assert float(robust[0, 2]) < 150 < float(every[0, 2])

    def test_padding_and_few_points(self):
        pts = torch.tensor([[[0.0, 0.0], [500.0, 500.0], [1e5, 1e5]]])
        valid = torch.tensor([[True, True, False]])
        assert robust_inliers(pts, valid).tolist() == [[True, True, False]]


class TestSimilarityBox:
    def test_one_keypoint_moves_the_source_box_onto_its_prediction(self):
        # one keypoint has no distance to compare: scale 1, never NaN (a NaN target box left
        # the source zoomed 4x against the full target; the CATs recipe landed 41 px off)
        src = torch.tensor([[[150.0, 100.0], [0.0, 0.0]]])
        pred = torch.tensor([[[158.0, 100.0], [9.0, 9.0]]])
        valid = torch.tensor([[True, False]])
        out = similarity_box(src, pred, valid, kbc_box(src, valid))
        assert out.tolist() == [[150.0, 92.0, 166.0, 108.0]]

    def test_no_valid_keypoint_gives_no_box(self):
        src = torch.zeros(1, 2, 2)
        out = similarity_box(src, src, torch.zeros(1, 2, dtype=torch.bool), torch.full((1, 4), float("nan")))
        assert torch.isnan(out).all()

    def test_scale_and_place_follow_the_majority(self):
        src = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 5.0]]])
        pred = 3 * src + torch.tensor([200.0, 50.0])
        pred[0, 0] = torch.tensor([0.0, 400.0])
        out = similarity_box(src, pred, torch.ones(1, 5, dtype=torch.bool), torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
        side = out[0, 2:] - out[0, :2]
        centre = 0.5 * (out[0, 2:] + out[0, :2])
        torch.testing.assert_close(side, torch.tensor([30.0, 30.0]))  # the stray does not scale it
        assert (centre - torch.tensor([215.0, 65.0])).abs().max() <= 15.0  # nor carry it far


class TestPlanWindows:
    def test_a_pair_with_one_box_missing_does_not_zoom_the_other_image(self):
        # object-bbox without the target's box: the small source must not zoom alone
        nan = torch.full((1, 4), float("nan"))
        plan = plan_windows(KBCConfig(target="object-bbox"), box(100, 100, 30), nan, SIZE, SIZE, 256)
        assert REASONS[int(plan.reason[0])] == "no box" and not plan.refined.any()
        assert torch.equal(plan.src_window, full_windows(SIZE))

    def test_reasons(self):
        sizes = SIZE.expand(4, 2)
        src = torch.cat([box(100, 100, 30), box(0, 0, 470), box(0, 0, 470), torch.full((1, 4), float("nan"))])
        trg = torch.cat([box(100, 100, 30), box(0, 0, 470), box(10, 10, 20), torch.full((1, 4), float("nan"))])
        plan = plan_windows(KBCConfig(), src, trg, sizes, sizes, 256)
        assert [REASONS[int(r)] for r in plan.reason] == ["zoomed", "large enough", "zoomed", "no box"]
        assert plan.refined.tolist() == [True, False, True, False]
        assert torch.equal(plan.src_window[1], full_windows(SIZE)[0])
        off = plan_windows(KBCConfig(enabled=False), src, trg, sizes, sizes, 256)
        assert [REASONS[int(r)] for r in off.reason] == ["kbc off"] * 4 and not off.refined.any()

    def test_pred_box_context_widens_only_the_pred_box_target_window(self):
        b = box(100, 100, 80)
        narrow = plan_windows(KBCConfig(match_scales=False), b, b, SIZE, SIZE, 256)
        wide = plan_windows(KBCConfig(match_scales=False, pred_box_context=1.5), b, b, SIZE, SIZE, 256)
        oracle = plan_windows(KBCConfig(match_scales=False, pred_box_context=1.5, target="oracle"), b, b, SIZE, SIZE, 256)
        side = lambda w: float(w[0, 2] - w[0, 0])  # noqa: E731
        assert side(wide.trg_window) == pytest.approx(1.5 * side(narrow.trg_window))
        assert side(wide.src_window) == side(narrow.src_window) and side(oracle.trg_window) == side(narrow.trg_window)
