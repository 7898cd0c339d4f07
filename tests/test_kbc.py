"""Tests of sosc.kbc: the functional core (box, trigger, window), KBCWrapper, train-time KBC."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sosc.errors import ConfigError, ShapeError
from sosc.geometry import (
    box_usable,
    clip_box,
    full_windows,
    points_box,
    points_from_window,
    points_to_window,
    relative_size,
    resample_window,
    resample_windows,
)
from sosc.kbc import (
    KBCConfig,
    KBCOutput,
    KBCWrapper,
    grow_box,
    kbc_box,
    kbc_train_windows,
    kbc_trigger,
    kbc_window,
    kbc_windows,
    kbc_windows_for_points,
    match_in_windows,
    match_plain,
    pred_box_fallback,
)
from sosc.matchers.base import MatchOutput

torch.set_num_threads(1)
SETTINGS = settings(max_examples=40, deadline=None)


# --------------------------------------------------------------------------- stand-in matchers


class Recorder(nn.Module):
    """Identity matcher (returns the source keypoints in input pixels) that records its calls."""

    def __init__(self, confidence: float | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.confidence = confidence

    def forward(self, src, trg, kps, valid):
        self.calls.append((src.clone(), trg.clone(), kps.clone(), valid.clone()))
        if self.confidence is None:
            return kps.clone()
        return MatchOutput(kps=kps.clone(), confidence=torch.full(kps.shape[:2], self.confidence))


class Collapse(nn.Module):
    """Maps every keypoint to one target point (a pass 1 that missed the object)."""

    def forward(self, src, trg, kps, valid):
        return torch.full_like(kps, 0.5 * src.shape[-1])


class ConvMatcher(nn.Module):
    """A small real computation: features by a fixed random conv, soft-argmax over cells.

    The prediction is ``kps + blend * (soft_argmax - kps)``: ``blend < 1`` keeps the
    predictions near the source keypoints (so that their box has a known size).
    """

    def __init__(self, blend: float = 1.0) -> None:
        super().__init__()
        self.blend = blend
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()

    def forward(self, src, trg, kps, valid):
        from sosc.matchers.grid import sample_at, soft_argmax

        fs, ft = self.conv(src), self.conv(trg)
        size = src.shape[-2:]
        q = sample_at(fs, kps, size)  # (B, N, C)
        scores = torch.einsum("bnc,bchw->bnhw", q, ft) / 8.0
        pos, conf = soft_argmax(scores, size, temperature=1.0)
        return MatchOutput(kps=kps + self.blend * (pos - kps), confidence=conf)


def images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def small_kps(b: int, n: int, lo: float, hi: float, seed: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, n, 2, generator=torch.Generator().manual_seed(seed))


def large_kps(b: int, n: int, lo: float, hi: float, seed: int = 1) -> torch.Tensor:
    """Random keypoints whose box spans ``[lo, hi]`` on both axes (KBC does not trigger)."""
    kps = small_kps(b, n, lo, hi, seed)
    kps[:, 0] = lo
    kps[:, 1] = hi
    return kps


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
            wrapped = KBCWrapper(Recorder(), input_size=32, target=target, guard=False)
            info = wrapped.forward_with_info(src, src, kps, valid, **extra)
            assert info.trg_triggered.all()
            wins.append(info.trg_window)
        torch.testing.assert_close(wins[0], wins[1], atol=1e-4, rtol=0)
        assert torch.equal(wins[1], wins[2])


# --------------------------------------------------------------------------- KBCWrapper


@pytest.mark.parametrize("target", ["pred-box", "object-bbox", "oracle"])
def test_identity_round_trip_every_mode(target):
    src = images(2, 96, 128)
    kps = small_kps(2, 5, 30.0, 60.0)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    extra = {"object-bbox": {"trg_bbox": points_box(kps, valid)}, "oracle": {"trg_kps": kps}}.get(target, {})
    rec = Recorder()
    wrapped = KBCWrapper(rec, input_size=32, target=target, guard=False)
    info = wrapped.forward_with_info(src, src, kps, valid, **extra)
    assert isinstance(info, KBCOutput)
    assert info.refined.all() and info.src_triggered.all() and info.trg_triggered.all()
    assert info.leaks_answer == (target == "oracle")
    err = (info.kps - kps)[valid].abs().max().item()
    assert err < 1e-3
    assert len(rec.calls) == 2
    src_in, trg_in, kps_in, _ = rec.calls[1]
    for win in (info.src_window, info.trg_window):
        assert ((win[:, 2] - win[:, 0]) < 128).all() and ((win[:, 3] - win[:, 1]) < 96).all()
    for i in range(2):
        assert torch.equal(src_in[i], resample_window(src[i], info.src_window[i], 32))
        assert torch.equal(trg_in[i], resample_window(src[i], info.trg_window[i], 32))
    torch.testing.assert_close(kps_in, points_to_window(kps, info.src_window, 32))


def test_non_triggering_pairs_are_bit_identical():
    src, trg = images(3, 64, 64, seed=3), images(3, 64, 64, seed=4)
    kps = large_kps(3, 4, 4.0, 60.0)
    kps[1] = small_kps(1, 4, 20.0, 28.0)[0]  # only pair 1 is small
    valid = torch.ones(3, 4, dtype=torch.bool)
    matcher = ConvMatcher(blend=0.05)
    with torch.no_grad():
        plain, _ = match_plain(matcher, src, trg, kps, valid, 32)
        for target, extra in (("pred-box", {}), ("object-bbox", {"trg_bbox": points_box(kps)}),
                              ("oracle", {"trg_kps": kps})):
            info = KBCWrapper(matcher, 32, target=target, guard=False).forward_with_info(src, trg, kps, valid, **extra)
            assert info.refined.tolist() == [False, True, False]
            assert torch.equal(info.kps[[0, 2]], plain[[0, 2]])
            assert torch.equal(info.plain_kps, plain)
            assert torch.equal(info.src_window[[0, 2]], full_windows(torch.full((2, 2), 64.0)))


def test_a_triggered_window_equal_to_the_image_keeps_pass_one():
    """With tau above rho, a triggered box can give back the full image: no pass 2 then."""
    rec = Recorder()
    img = images(1, 100, 100)
    kps = torch.tensor([[[10.0, 10.0], [70.0, 70.0]]])  # grown box 0.78 of the image side
    info = KBCWrapper(rec, 64, tau=0.9, rho=0.7, target="oracle").forward_with_info(img, img, kps, None, trg_kps=kps)
    assert info.src_triggered.tolist() == [True]
    assert info.refined.tolist() == [False] and len(rec.calls) == 1
    assert torch.equal(info.kps, info.plain_kps)


def test_pass_two_runs_only_on_changed_pairs():
    src = images(4, 80, 80)
    kps = large_kps(4, 3, 5.0, 75.0)
    kps[[1, 3]] = small_kps(2, 3, 30.0, 40.0)
    rec = Recorder()
    info = KBCWrapper(rec, 32, guard=False).forward_with_info(src, src, kps, None)
    assert [c[0].shape[0] for c in rec.calls] == [4, 2]
    assert info.refined.tolist() == [False, True, False, True]
    rec2 = Recorder()
    KBCWrapper(rec2, 32)(src[[0, 2]], src[[0, 2]], kps[[0, 2]])
    assert [c[0].shape[0] for c in rec2.calls] == [2]


def test_source_and_target_trigger_independently():
    src = images(1, 80, 80)
    kps = small_kps(1, 3, 30.0, 40.0)
    big = torch.tensor([[0.0, 0.0, 79.0, 79.0]])
    info = KBCWrapper(Recorder(), 32, target="object-bbox").forward_with_info(src, src, kps, None, trg_bbox=big)
    assert info.src_triggered.item() and not info.trg_triggered.item() and info.refined.item()
    assert info.trg_window.tolist() == [[0.0, 0.0, 80.0, 80.0]]


@pytest.mark.parametrize("kwargs", [{"enabled": False}, {"tau": 0.0}])
def test_disabled_is_plain_path(kwargs):
    src, trg = images(2, 64, 48), images(2, 64, 48, seed=5)
    kps = small_kps(2, 3, 20.0, 30.0)
    matcher = ConvMatcher()
    with torch.no_grad():
        plain, _ = match_plain(matcher, src, trg, kps, None, 32)
        rec = Recorder()
        out = KBCWrapper(matcher, 32, **kwargs)(src, trg, kps)
        KBCWrapper(rec, 32, **kwargs)(src, trg, kps)
    assert torch.equal(out, plain)
    assert len(rec.calls) == 1


def test_mixed_size_list_inputs():
    # the third image is smaller than the input: its window is upsampled
    srcs = [images(1, 90, 120, seed=1)[0], images(1, 50, 40, seed=2)[0], images(1, 20, 22, seed=3)[0],
            images(1, 200, 64, seed=4)[0]]
    kps = torch.stack([small_kps(1, 4, 20.0, 35.0)[0], small_kps(1, 4, 5.0, 35.0)[0],
                       small_kps(1, 4, 2.0, 5.0)[0], small_kps(1, 4, 30.0, 50.0)[0]])
    valid = torch.ones(4, 4, dtype=torch.bool)
    rec = Recorder()
    wrapped = KBCWrapper(rec, (24, 32), guard=False, min_margin=2.0)
    info = wrapped.forward_with_info(srcs, srcs, kps, valid)
    assert info.kps.shape == (4, 4, 2)
    assert (info.kps - kps).abs().max().item() < 1e-3
    idx = info.refined.nonzero().flatten().tolist()
    assert 2 in idx and len(rec.calls) == 2
    for j, i in enumerate(idx):
        assert torch.equal(rec.calls[1][0][j], resample_window(srcs[i], info.src_window[i], (24, 32)))
    plain, _ = match_plain(Recorder(), srcs, srcs, kps, valid, (24, 32))
    assert torch.equal(info.plain_kps, plain)


@pytest.mark.parametrize("target", ["pred-box", "object-bbox", "oracle"])
def test_padding_never_changes_valid_results(target):
    src, trg = images(2, 64, 64, seed=7), images(2, 64, 64, seed=8)
    kps = small_kps(2, 5, 20.0, 34.0)
    valid = torch.tensor([[True, True, True, False, False], [True, True, False, True, False]])
    moved = kps.clone()
    moved[~valid] = torch.tensor([-500.0, 900.0])
    bbox = points_box(kps, valid)
    trg_kps = kps + 2.0
    trg_moved = trg_kps.clone()
    trg_moved[~valid] = 1e4
    matcher = ConvMatcher()
    with torch.no_grad():
        wrapped = KBCWrapper(matcher, 32, target=target)
        a = wrapped.forward_with_info(src, trg, kps, valid, trg_bbox=bbox, trg_kps=trg_kps)
        b = wrapped.forward_with_info(src, trg, moved, valid, trg_bbox=bbox, trg_kps=trg_moved)
    assert torch.equal(a.src_window, b.src_window) and torch.equal(a.trg_window, b.trg_window)
    torch.testing.assert_close(a.kps[valid], b.kps[valid], atol=1e-5, rtol=0)


class TestTargetModes:
    def test_object_bbox_without_boxes_is_a_clear_error(self):
        with pytest.raises(ConfigError, match="trg_bbox"):
            KBCWrapper(Recorder(), 32, target="object-bbox")(images(1, 40, 40), images(1, 40, 40), torch.ones(1, 2, 2))

    def test_oracle_without_keypoints_is_a_clear_error(self):
        with pytest.raises(ConfigError, match="trg_kps"):
            KBCWrapper(Recorder(), 32, target="oracle")(images(1, 40, 40), images(1, 40, 40), torch.ones(1, 2, 2))

    def test_nan_object_box_does_not_trigger(self):
        src = images(2, 80, 80)
        kps = small_kps(2, 3, 30.0, 40.0)
        bbox = torch.tensor([[float("nan")] * 4, [30.0, 30.0, 40.0, 40.0]])
        info = KBCWrapper(Recorder(), 32, target="object-bbox").forward_with_info(src, src, kps, None, trg_bbox=bbox)
        assert info.trg_triggered.tolist() == [False, True]
        assert info.trg_window[0].tolist() == [0.0, 0.0, 80.0, 80.0]

    def test_unknown_target(self):
        with pytest.raises(ConfigError, match="target must be one of"):
            KBCWrapper(Recorder(), 32, target="gt")

    def test_wrong_batch(self):
        with pytest.raises(ShapeError, match="trg_img"):
            KBCWrapper(Recorder(), 32)(images(2, 40, 40), images(1, 40, 40), torch.ones(2, 2, 2))


class TestGuard:
    def setup_method(self):
        self.src = images(2, 80, 80)
        self.kps = small_kps(2, 4, 25.0, 45.0)

    def test_generous_target_window(self):
        info = KBCWrapper(Recorder(), 32, guard=True).forward_with_info(self.src, self.src, self.kps)
        src_side = info.src_window[:, 2] - info.src_window[:, 0]
        trg_side = info.trg_window[:, 2] - info.trg_window[:, 0]
        assert (trg_side > src_side).all() and info.refined.all() and not info.fallback.any()

    def test_low_confidence_falls_back(self):
        rec = Recorder(confidence=0.01)
        info = KBCWrapper(rec, 32, guard=True, guard_min_confidence=0.05).forward_with_info(
            self.src, self.src, self.kps)
        assert info.fallback.all() and not info.refined.any() and len(rec.calls) == 1
        assert torch.equal(info.kps, info.plain_kps)
        assert info.trg_window.tolist() == [[0.0, 0.0, 80.0, 80.0]] * 2
        info = KBCWrapper(Recorder(confidence=0.01), 32, guard=False).forward_with_info(self.src, self.src, self.kps)
        assert info.refined.all() and not info.fallback.any()

    def test_scale_mismatch_falls_back(self):
        kps = small_kps(2, 4, 5.0, 60.0)
        kps[:, 0] = torch.tensor([2.0, 2.0])
        kps[:, 1] = torch.tensor([70.0, 70.0])  # source box ~ the whole 160 px image... but the image is 160
        src = images(2, 160, 160)
        info = KBCWrapper(Collapse(), 32, guard=True).forward_with_info(src, src, kps)
        # the source box is large (no trigger), the predicted box is a point: target triggers, scales disagree
        assert info.trg_triggered.all() and info.fallback.all() and not info.refined.any()
        info = KBCWrapper(Collapse(), 32, guard=False).forward_with_info(src, src, kps)
        assert info.refined.all()

    def test_fallback_function(self):
        src_box = torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0], [float("nan")] * 4])
        pred = torch.tensor([[0.0, 0.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 5.0, 5.0]])
        size = torch.full((3, 2), 100.0)
        valid = torch.ones(3, 2, dtype=torch.bool)
        out = pred_box_fallback(src_box, size, pred, size, None, valid, 0.1, 3.0)
        assert out.tolist() == [False, True, False]
        conf = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.01, 0.5]])
        out = pred_box_fallback(src_box, size, pred, size, conf, torch.tensor([[1, 1], [1, 1], [1, 0]]).bool(), 0.1,
                                math.inf)
        assert out.tolist() == [False, False, True]


def test_stateless_match_in_windows_matches_wrapper_windows():
    src = images(2, 64, 80)
    kps = small_kps(2, 3, 20.0, 30.0)
    info = KBCWrapper(Recorder(), 32, guard=False).forward_with_info(src, src, kps)
    out, raw = match_in_windows(Recorder(), src, src, kps, None, info.src_window, info.trg_window, 32)
    assert torch.equal(out, info.kps)
    assert torch.is_tensor(raw)
    assert torch.equal(resample_windows(src, info.src_window, 32)[0], resample_window(src[0], info.src_window[0], 32))


def test_from_config_and_repr():
    cfg = KBCConfig(tau=0.3, target="oracle", train_p=0.9)
    wrapped = KBCWrapper.from_config(Recorder(), cfg, input_size=(24, 32))
    assert wrapped.config.tau == 0.3 and wrapped.config.target == "oracle" and wrapped.leaks_answer
    assert wrapped.input_size == (24, 32)
    assert "target='oracle'" in repr(wrapped)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"tau": -1.0}, "tau"), ({"rho": 0.0}, "rho"), ({"rho": 1.5}, "rho"), ({"s_max": 0.5}, "s_max"),
     ({"train_p": 2.0}, "train_p"), ({"guard_max_scale_ratio": 0.5}, "guard_max_scale_ratio"),
     ({"min_margin": -2.0}, "min_margin")],
)
def test_config_validation(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        KBCConfig(**kwargs)


# --------------------------------------------------------------------------- what the wrapper is given (#12)


class Strided(nn.Module):
    """An identity matcher whose inputs must be multiples of 32 (as KBCNet's)."""

    input_multiple = 32

    def forward(self, src, trg, kps, valid):
        return kps.clone()


class TestInputs:
    """KBCWrapper (through match_plain / match_in_windows) checks what it is given, for any
    callable matcher, naming the argument, what was given and what is expected."""

    def run(self, src, trg, kps, valid=None):
        return KBCWrapper(Recorder(), 32).forward_with_info(src, trg, kps, valid)

    def test_keypoints_far_outside_the_source_image(self):
        """Before: (5000, 5000) in a 64 x 80 image gave a prediction."""
        src = images(1, 64, 80)
        kps = torch.tensor([[[10.0, 10.0], [5000.0, 5000.0]]])
        with pytest.raises(ShapeError, match=r"src_kps: valid keypoints lie outside their source image .*"
                                             r"pair 0, keypoint 1 at \(5000, 5000\) in an image of 80x64"):
            self.run(src, src, kps)
        with pytest.raises(ShapeError, match="keypoint 1"):
            match_plain(Recorder(), src, src, kps, None, 32)
        with pytest.raises(ShapeError, match="keypoint 1"):
            match_in_windows(Recorder(), src, src, kps, None, full_windows(torch.tensor([[64.0, 80.0]])),
                             full_windows(torch.tensor([[64.0, 80.0]])), 32)
        # invalid keypoints may hold anything; up to 2 px outside is tolerated
        self.run(src, src, kps, torch.tensor([[True, False]]))
        self.run(src, src, torch.tensor([[[-1.9, 0.0], [81.9, 65.9]]]))
        with pytest.raises(ShapeError, match="keypoint 0 at"):
            self.run(src, src, torch.tensor([[[-2.5, 0.0]]]))

    def test_keypoints_outside_a_listed_image_of_another_size(self):
        srcs = [images(1, 64, 80)[0], images(1, 20, 30)[0]]
        kps = torch.tensor([[[70.0, 50.0]], [[70.0, 50.0]]])
        with pytest.raises(ShapeError, match=r"pair 1, keypoint 0 at \(70, 50\) in an image of 30x20"):
            self.run(srcs, srcs, kps)

    @pytest.mark.parametrize(
        "images_given, message",
        [
            ([torch.rand(40, 80, 3)], r"src_img\[0\]: expected shape \(3, H, W\) float RGB in \[0, 1\], got \(40, 80, 3\): "
                                      r"channels last\? pass img.permute\(2, 0, 1\)"),
            (torch.rand(1, 40, 80, 3), r"src_img: expected shape \(B, 3, H, W\) .*got \(1, 40, 80, 3\): channels last\?"),
            (torch.rand(3, 40, 80), r"images: expected a \(B, 3, H, W\) tensor or a list of \(3, H, W\) tensors, got a "
                                    r"tensor of shape \(3, 40, 80\) \(one image\? pass a list \[img\]\)"),
            ([torch.rand(3, 40, 80).numpy()], r"src_img\[0\]: expected a torch.Tensor \(3, H, W\)"),
            ([(torch.rand(3, 40, 80) * 255).byte()], r"src_img\[0\]: expected float RGB in \[0, 1\], got dtype torch.uint8; "
                                                     r"pass floats, e.g. img.float\(\) / 255"),
            ([torch.rand(3, 40, 80) * 255], r"src_img\[0\]: values in \[.*\] but images must be float RGB in \[0, 1\]"),
            ([torch.rand(3, 40, 80), torch.rand(3, 40, 80)], r"src_img:? holds 2 images but src_kps has 1 pairs"),
        ],
    )
    def test_bad_images_name_the_argument_and_the_shape_given(self, images_given, message):
        """Before: an HWC image failed with the resampled shape, uint8 gave NaN in a backbone,
        0-255 floats ran on."""
        with pytest.raises(ShapeError, match=message):
            self.run(images_given, [torch.rand(3, 40, 80)], torch.tensor([[[10.0, 10.0]]]))

    def test_empty_batch(self):
        """Before: "windows: expected shape (B, 4), got (0)"."""
        with pytest.raises(ShapeError, match=r"src_kps: the batch is empty, got shape \(0, 3, 2\); expected \(B, N, 2\) with B >= 1"):
            self.run([], [], torch.zeros(0, 3, 2))

    @pytest.mark.parametrize("dtype", [torch.int64, torch.bfloat16, torch.float16])
    def test_keypoints_must_be_float32_or_wider(self, dtype):
        src = images(1, 64, 80)
        with pytest.raises(ShapeError, match=f"src_kps: expected float32 .*got dtype {dtype}; pass src_kps.float"):
            self.run(src, src, torch.tensor([[[10.0, 10.0]]]).to(dtype))

    def test_float64_keypoints_give_float32(self):
        src = images(1, 64, 80)
        kps = torch.tensor([[[10.0, 12.0]]])
        out = self.run(src, src, kps.double())
        assert out.kps.dtype == torch.float32 and torch.equal(out.kps, self.run(src, src, kps).kps)

    def test_nan_image_and_nan_valid_keypoint(self):
        src = images(1, 64, 80)
        bad = src.clone()
        bad[0, 0, 3, 3] = float("nan")
        with pytest.raises(ShapeError, match="trg_img: contains NaN"):
            self.run(src, bad, torch.tensor([[[10.0, 10.0]]]))
        with pytest.raises(ShapeError, match="src_kps: contains NaN or Inf at a valid keypoint"):
            self.run(src, src, torch.tensor([[[float("nan"), 10.0]]]))

    def test_input_size_not_a_multiple_of_the_matcher_stride(self):
        """At construction, naming input_size and the nearest valid sizes (as the module does
        for data.init_args.input_size)."""
        with pytest.raises(ConfigError, match=r"input_size \(250, 256\) must be a multiple of 32 on both sides .*"
                                              r"the nearest valid sizes are 224 and 256"):
            KBCWrapper(Strided(), input_size=(250, 256))
        assert KBCWrapper(Strided(), input_size=(224, 256)).input_size == (224, 256)
        assert KBCWrapper(Recorder(), input_size=250).input_size == (250, 250)  # no input_multiple: any size


# --------------------------------------------------------------------------- train time


class TestTrainWindows:
    def test_always_and_never(self):
        src = small_kps(3, 4, 10.0, 30.0)
        trg = small_kps(3, 4, 50.0, 60.0, seed=2)
        valid = torch.ones(3, 4, dtype=torch.bool)
        sizes = torch.tensor([[100.0, 120.0]] * 3)
        s, t = kbc_train_windows(src, trg, valid, sizes, sizes, 32, KBCConfig(train_p=1.0))
        assert torch.equal(s, kbc_windows(kbc_box(src, valid), sizes, 32)[0])
        assert torch.equal(t, kbc_windows(kbc_box(trg, valid), sizes, 32)[0])
        s, t = kbc_train_windows(src, trg, valid, sizes, sizes, 32, KBCConfig(train_p=0.0))
        assert torch.equal(s, full_windows(sizes)) and torch.equal(t, full_windows(sizes))
        # `enabled` is about evaluation: train-time KBC is train_p alone
        s2, _ = kbc_train_windows(src, trg, valid, sizes, sizes, 32, KBCConfig(train_p=1.0, enabled=False))
        assert torch.equal(s2, kbc_windows(kbc_box(src, valid), sizes, 32)[0])

    def test_single_item(self):
        src, trg = small_kps(1, 4, 10.0, 30.0)[0], small_kps(1, 4, 50.0, 60.0, seed=2)[0]
        s, t = kbc_train_windows(src, trg, None, (100, 120), torch.tensor([90.0, 80.0]), 32, KBCConfig(train_p=1.0))
        assert s.shape == (4,) and t.shape == (4,)
        assert torch.equal(s, kbc_windows(kbc_box(src), (100, 120), 32)[0])

    def test_probability_and_generator(self):
        n = 400
        src = small_kps(n, 3, 10.0, 20.0)
        sizes = torch.tensor([[100.0, 100.0]] * n)
        g = torch.Generator().manual_seed(0)
        s1, t1 = kbc_train_windows(src, src, None, sizes, sizes, 32, KBCConfig(train_p=0.3), g)
        zoomed = (s1[:, 2] < 100).float()
        assert 0.2 < zoomed.mean().item() < 0.4
        assert torch.equal(zoomed, (t1[:, 2] < 100).float())  # both images of a pair together
        s2, _ = kbc_train_windows(src, src, None, sizes, sizes, 32, KBCConfig(train_p=0.3),
                                  torch.Generator().manual_seed(0))
        assert torch.equal(s1, s2)
