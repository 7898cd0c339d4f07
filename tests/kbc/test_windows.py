"""Tests of sosc.kbc.windows: steps 1-3 (box, trigger, window), one box one window, train-time windows."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stand_ins import METHOD, Recorder, images, small_kps

from sosc.errors import ConfigError
from sosc.geometry import (
    box_usable,
    clip_box,
    full_windows,
    points_box,
    points_from_window,
    points_to_window,
    relative_size,
    resample_window,
)
from sosc.kbc import (
    KBCConfig,
    KBCWrapper,
    grow_box,
    kbc_box,
    kbc_train_windows,
    kbc_trigger,
    kbc_window,
    kbc_windows,
    kbc_windows_for_points,
)

torch.set_num_threads(1)
SETTINGS = settings(max_examples=40, deadline=None)


# --------------------------------------------------------------------------- functional core


class TestGrowBox:
    def test_margin_per_axis_and_min_margin(self):
        box = grow_box(torch.tensor([10.0, 10.0, 110.0, 20.0]), margin=0.25, min_margin=8.0)
        assert box.tolist() == [-15.0, 2.0, 135.0, 28.0]

    def test_nan_stays_nan(self):
        assert torch.isnan(grow_box(torch.full((4,), float("nan")))).all()

    def test_bad_margin(self):
        with pytest.raises(ConfigError, match="margin"):
            grow_box(torch.zeros(4), margin=-1.0)


class TestKbcBox:
    def test_single_keypoint_has_min_margin_box(self):
        box = kbc_box(torch.tensor([[30.0, 40.0]]), None, margin=0.15, min_margin=8.0)
        assert box.tolist() == [22.0, 32.0, 38.0, 48.0]

    def test_all_equal_keypoints(self):
        box = kbc_box(torch.full((5, 2), 7.0), None, min_margin=3.0)
        assert box.tolist() == [4.0, 4.0, 10.0, 10.0]

    def test_padding_never_enters(self):
        kps = torch.tensor([[[10.0, 10.0], [20.0, 30.0], [-1.0, -1.0]]])
        valid = torch.tensor([[True, True, False]])
        moved = kps.clone()
        moved[0, 2] = torch.tensor([1e6, -1e6])
        assert torch.equal(kbc_box(kps, valid), kbc_box(moved, valid))

    def test_no_valid_gives_nan(self):
        box = kbc_box(torch.zeros(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool))
        assert torch.isnan(box).all()


class TestKbcTrigger:
    def test_threshold(self):
        boxes = torch.tensor([[0.0, 0.0, 49.0, 10.0], [0.0, 0.0, 50.0, 10.0], [0.0, 0.0, 10.0, 80.0]])
        assert kbc_trigger(boxes, (100, 100), tau=0.5).tolist() == [True, False, False]

    def test_uses_longer_image_side(self):
        assert kbc_trigger(torch.tensor([0.0, 0.0, 40.0, 40.0]), (50, 100), 0.5).item()

    def test_tau_zero_never_triggers(self):
        assert not kbc_trigger(torch.tensor([0.0, 0.0, 1.0, 1.0]), (100, 100), tau=0.0).item()

    def test_nan_inverted_outside_never_trigger(self):
        boxes = torch.tensor(
            [[float("nan")] * 4, [20.0, 20.0, 10.0, 30.0], [120.0, 10.0, 130.0, 20.0], [-30.0, -30.0, -5.0, -5.0]]
        )
        assert kbc_trigger(boxes, (100, 100)).tolist() == [False] * 4
        assert box_usable(boxes, (100, 100)).tolist() == [False] * 4

    def test_size_measured_inside_image(self):
        # 60 px wide but only 30 px of it inside the image: triggers.
        box = torch.tensor([-30.0, 10.0, 30.0, 20.0])
        assert clip_box(box, (100, 100)).tolist() == [0.0, 10.0, 30.0, 20.0]
        assert relative_size(box, (100, 100)).item() == pytest.approx(0.3)
        assert kbc_trigger(box, (100, 100)).item()


class TestKbcWindow:
    def test_square_side_and_centre(self):
        win = kbc_window(torch.tensor([60.0, 60.0, 116.0, 116.0]), (200, 200), 64, rho=0.7, s_max=4.0)
        assert win.tolist() == [48.0, 48.0, 128.0, 128.0]

    def test_min_side_is_image_over_s_max(self):
        win = kbc_window(torch.tensor([100.0, 100.0, 101.0, 101.0]), (300, 400), 64, s_max=4.0)
        assert (win[2] - win[0]).item() == pytest.approx(100.0)
        assert (win[3] - win[1]).item() == pytest.approx(100.0)

    def test_shifted_inside_where_it_fits(self):
        win = kbc_window(torch.tensor([0.0, 190.0, 20.0, 200.0]), (200, 200), 64)
        assert win.tolist() == [0.0, 150.0, 50.0, 200.0]

    def test_padded_where_it_cannot_fit(self):
        # 300 x 100 image, square window of side 300 > H: it covers the whole height, centred on
        # the box as far as that allows (y0 in [H - L, 0]), and the rest is zero padding.
        win = kbc_window(torch.tensor([0.0, 0.0, 300.0, 10.0]), (100, 300), 64, rho=1.0)
        assert win.tolist() == [0.0, -145.0, 300.0, 155.0]
        crop = resample_window(torch.ones(3, 100, 300), win, 64)
        assert crop[:, :30].abs().max() == 0 and crop[:, 53:].abs().max() == 0
        assert crop[:, 32:52].min() > 0.999

    def test_wholly_outside_box_gives_full_window(self):
        wins, trig = kbc_windows(torch.tensor([[500.0, 500.0, 520.0, 520.0]]), torch.tensor([[100.0, 200.0]]), 64)
        assert not trig.item()
        assert wins.tolist() == [[0.0, 0.0, 200.0, 100.0]]

    def test_nan_box_gives_full_window(self):
        wins, trig = kbc_windows(torch.full((2, 4), float("nan")), torch.tensor([80.0, 60.0]), 32)
        assert trig.tolist() == [False, False]
        assert wins.tolist() == [[0.0, 0.0, 60.0, 80.0]] * 2

    def test_non_square_input_has_input_aspect(self):
        win = kbc_window(torch.tensor([100.0, 100.0, 120.0, 160.0]), (400, 400), (60, 120), rho=0.5, s_max=100.0)
        w, h = (win[2] - win[0]).item(), (win[3] - win[1]).item()
        assert w / h == pytest.approx(2.0)
        assert h == pytest.approx(120.0)  # the tall box sets the height: 60 / 0.5
        assert w == pytest.approx(240.0)

    def test_image_smaller_than_input_upsamples(self):
        img = images(1, 40, 30)[0]
        box = kbc_box(torch.tensor([[10.0, 20.0]]), None, min_margin=2.0)
        wins, trig = kbc_windows(box, (40, 30), 64)
        assert trig.item()
        side = (wins[2] - wins[0]).item()
        assert side == pytest.approx(10.0)  # 40 / s_max
        crop = resample_window(img, wins, 64)
        assert crop.shape == (3, 64, 64) and torch.isfinite(crop).all()

    @SETTINGS
    @given(
        h=st.integers(20, 600), w=st.integers(20, 600),
        bx=st.floats(-0.2, 1.0), by=st.floats(-0.2, 1.0), bw=st.floats(0.0, 0.8), bh=st.floats(0.0, 0.8),
        s_h=st.integers(8, 64), s_w=st.integers(8, 64),
        rho=st.floats(0.2, 1.0), s_max=st.floats(1.0, 8.0),
    )
    def test_window_properties(self, h, w, bx, by, bw, bh, s_h, s_w, rho, s_max):
        box = torch.tensor([bx * w, by * h, (bx + bw) * w, (by + bh) * h], dtype=torch.float64)
        if not box_usable(box, (h, w)):
            return
        win = kbc_window(box, (h, w), (s_h, s_w), rho=rho, s_max=s_max)
        ww, wh = (win[2] - win[0]).item(), (win[3] - win[1]).item()
        assert ww / wh == pytest.approx(s_w / s_h, rel=1e-9)
        w_full = max(w, h * s_w / s_h)
        assert w_full / s_max - 1e-6 <= ww <= w_full + 1e-6
        clipped = clip_box(box, (h, w))
        tol = 1e-6
        assert win[0] <= clipped[0] + tol and win[1] <= clipped[1] + tol  # holds the clipped box
        assert win[2] >= clipped[2] - tol and win[3] >= clipped[3] - tol
        for lo, hi, extent in ((win[0], win[2], w), (win[1], win[3], h)):
            if hi - lo <= extent + tol:  # fits: inside the image
                assert lo >= -tol and hi <= extent + tol
            else:  # cannot fit: covers the whole axis
                assert lo <= tol and hi >= extent - tol
        assert torch.equal(win, kbc_window(box.clone(), (h, w), (s_h, s_w), rho=rho, s_max=s_max))

    @SETTINGS
    @given(
        h=st.integers(16, 1000), w=st.integers(16, 1000), s=st.integers(8, 512),
        cx=st.floats(0.0, 1.0), cy=st.floats(0.0, 1.0), side=st.floats(0.0, 0.5),
        px=st.lists(st.floats(-0.5, 1.5), min_size=3, max_size=3),
        py=st.lists(st.floats(-0.5, 1.5), min_size=3, max_size=3),
    )
    def test_window_maps_round_trip(self, h, w, s, cx, cy, side, px, py):
        box = torch.tensor([cx * w, cy * h, cx * w + side * w, cy * h + side * h], dtype=torch.float64)
        wins, _ = kbc_windows(box[None], torch.tensor([[h, w]], dtype=torch.float64), s)
        pts = torch.tensor([[x * w, y * h] for x, y in zip(px, py, strict=True)], dtype=torch.float64)[None]
        back = points_from_window(points_to_window(pts, wins, s), wins, s)
        assert (back - pts).abs().max().item() < 1e-4
        # float32: a few ulps of the largest coordinate (1e-4 px below 1024 px)
        pts32, wins32 = pts.float(), wins.float()
        back32 = points_from_window(points_to_window(pts32, wins32, s), wins32, s)
        scale = max(pts32.abs().max().item(), wins32.abs().max().item(), 1.0)
        assert (back32 - pts32).abs().max().item() <= 4 * torch.finfo(torch.float32).eps * scale


class TestSameBoxSameWindow:
    def test_keypoints_and_object_box_agree(self):
        kps = torch.tensor([[30.0, 40.0], [50.0, 45.0], [42.0, 70.0]])
        from_kps = kbc_windows(kbc_box(kps), (200, 300), 64)[0]
        from_obj = kbc_windows(grow_box(points_box(kps)), (200, 300), 64)[0]
        from_fn = kbc_windows_for_points(kps, None, (200, 300), 64)[0]
        assert torch.equal(from_kps, from_obj) and torch.equal(from_kps, from_fn)

    def test_every_target_mode_agrees(self):
        src = images(2, 120, 160)
        kps = small_kps(2, 4, 40.0, 70.0)
        valid = torch.ones(2, 4, dtype=torch.bool)
        wins = []
        for target, extra in (
            ("pred-box", {}),
            ("object-bbox", {"trg_bbox": points_box(kps, valid)}),
            ("oracle", {"trg_kps": kps}),
        ):
            wrapped = KBCWrapper(Recorder(), input_size=32, target=target, **METHOD)
            info = wrapped.forward_with_info(src, src, kps, valid, **extra)
            assert info.trg_triggered.all()
            wins.append(info.trg_window)
        torch.testing.assert_close(wins[0], wins[1], atol=1e-4, rtol=0)
        assert torch.equal(wins[1], wins[2])


class TestTrainWindows:
    def test_always_and_never(self):
        src = small_kps(3, 4, 10.0, 30.0)
        trg = small_kps(3, 4, 50.0, 60.0, seed=2)
        valid = torch.ones(3, 4, dtype=torch.bool)
        sizes = torch.tensor([[100.0, 120.0]] * 3)
        s, t = kbc_train_windows(src, trg, valid, sizes, sizes, 32, KBCConfig(train_p=1.0, **METHOD))
        assert torch.equal(s, kbc_windows(kbc_box(src, valid), sizes, 32)[0])
        assert torch.equal(t, kbc_windows(kbc_box(trg, valid), sizes, 32)[0])
        s, t = kbc_train_windows(src, trg, valid, sizes, sizes, 32, KBCConfig(train_p=0.0, **METHOD))
        assert torch.equal(s, full_windows(sizes)) and torch.equal(t, full_windows(sizes))
        # `enabled` is about evaluation: train-time KBC is train_p alone
        s2, _ = kbc_train_windows(src, trg, valid, sizes, sizes, 32, KBCConfig(train_p=1.0, enabled=False, **METHOD))
        assert torch.equal(s2, kbc_windows(kbc_box(src, valid), sizes, 32)[0])

    def test_single_item(self):
        src, trg = small_kps(1, 4, 10.0, 30.0)[0], small_kps(1, 4, 50.0, 60.0, seed=2)[0]
        s, t = kbc_train_windows(src, trg, None, (100, 120), torch.tensor([90.0, 80.0]), 32, KBCConfig(train_p=1.0, **METHOD))
        assert s.shape == (4,) and t.shape == (4,)
        assert torch.equal(s, kbc_windows(kbc_box(src), (100, 120), 32)[0])

    def test_probability_and_generator(self):
        n = 400
        src = small_kps(n, 3, 10.0, 20.0)
        sizes = torch.tensor([[100.0, 100.0]] * n)
        g = torch.Generator().manual_seed(0)
        s1, t1 = kbc_train_windows(src, src, None, sizes, sizes, 32, KBCConfig(train_p=0.3, **METHOD), g)
        zoomed = (s1[:, 2] < 100).float()
        assert 0.2 < zoomed.mean().item() < 0.4
        assert torch.equal(zoomed, (t1[:, 2] < 100).float())  # both images of a pair together
        s2, _ = kbc_train_windows(src, src, None, sizes, sizes, 32, KBCConfig(train_p=0.3, **METHOD),
                                  torch.Generator().manual_seed(0))
        assert torch.equal(s1, s2)
