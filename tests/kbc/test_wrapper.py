"""Tests of sosc.kbc.wrapper.KBCWrapper (and sosc.kbc.passes): passes, windows, target modes, padding."""

from __future__ import annotations

import pytest
import torch
from stand_ins import METHOD, ConvMatcher, Recorder, images, large_kps, small_kps

from sosc.errors import ConfigError, ShapeError
from sosc.geometry import full_windows, points_box, points_to_window, resample_window
from sosc.kbc import KBCOutput, KBCWrapper, match_plain

torch.set_num_threads(1)


# --------------------------------------------------------------------------- KBCWrapper


@pytest.mark.parametrize("target", ["pred-box", "object-bbox", "oracle"])
def test_identity_round_trip_every_mode(target):
    src = images(2, 96, 128)
    kps = small_kps(2, 5, 30.0, 60.0)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    extra = {"object-bbox": {"trg_bbox": points_box(kps, valid)}, "oracle": {"trg_kps": kps}}.get(target, {})
    rec = Recorder()
    wrapped = KBCWrapper(rec, input_size=32, target=target, **METHOD)
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
            info = KBCWrapper(matcher, 32, target=target, **METHOD).forward_with_info(src, trg, kps, valid, **extra)
            assert info.refined.tolist() == [False, True, False]
            assert torch.equal(info.kps[[0, 2]], plain[[0, 2]])
            assert torch.equal(info.plain_kps, plain)
            assert torch.equal(info.src_window[[0, 2]], full_windows(torch.full((2, 2), 64.0)))


def test_a_triggered_window_equal_to_the_image_keeps_pass_one():
    """With tau above rho, a triggered box can give back the full image: no pass 2 then."""
    rec = Recorder()
    img = images(1, 100, 100)
    kps = torch.tensor([[[10.0, 10.0], [70.0, 70.0]]])  # grown box 0.78 of the image side
    info = KBCWrapper(rec, 64, tau=0.9, rho=0.7, target="oracle", **METHOD).forward_with_info(img, img, kps, None, trg_kps=kps)
    assert info.src_triggered.tolist() == [True]
    assert info.refined.tolist() == [False] and len(rec.calls) == 1
    assert torch.equal(info.kps, info.plain_kps)


def test_pass_two_runs_only_on_changed_pairs():
    src = images(4, 80, 80)
    kps = large_kps(4, 3, 5.0, 75.0)
    kps[[1, 3]] = small_kps(2, 3, 30.0, 40.0)
    rec = Recorder()
    info = KBCWrapper(rec, 32, **METHOD).forward_with_info(src, src, kps, None)
    assert [c[0].shape[0] for c in rec.calls] == [4, 2]
    assert info.refined.tolist() == [False, True, False, True]
    rec2 = Recorder()
    KBCWrapper(rec2, 32, **METHOD)(src[[0, 2]], src[[0, 2]], kps[[0, 2]])
    assert [c[0].shape[0] for c in rec2.calls] == [2]


def test_source_and_target_trigger_independently():
    src = images(1, 80, 80)
    kps = small_kps(1, 3, 30.0, 40.0)
    big = torch.tensor([[0.0, 0.0, 79.0, 79.0]])
    info = KBCWrapper(Recorder(), 32, target="object-bbox").forward_with_info(src, src, kps, None, trg_bbox=big)
    assert info.src_triggered.item() and not info.trg_triggered.item() and info.refined.item()
    assert info.trg_window.tolist() == [[0.0, 0.0, 80.0, 80.0]]


@pytest.mark.parametrize("kwargs", [{"enabled": False}, {"tau": 0.0, **METHOD}, {"min_zoom": 1e6}])
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
    wrapped = KBCWrapper(rec, (24, 32), **METHOD, min_margin=2.0)
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
        wrapped = KBCWrapper(matcher, 32, target=target, **METHOD)
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
        info = KBCWrapper(Recorder(), 32, target="object-bbox", **METHOD).forward_with_info(
            src, src, kps, None, trg_bbox=bbox)
        assert info.trg_triggered.tolist() == [False, True]
        assert info.trg_window[0].tolist() == [0.0, 0.0, 80.0, 80.0]

    def test_unknown_target(self):
        with pytest.raises(ConfigError, match="target must be one of"):
            KBCWrapper(Recorder(), 32, target="gt")

    def test_wrong_batch(self):
        with pytest.raises(ShapeError, match="trg_img"):
            KBCWrapper(Recorder(), 32)(images(2, 40, 40), images(1, 40, 40), torch.ones(2, 2, 2))


def test_the_wrapper_and_the_module_zoom_to_the_matchers_own_scale():
    """``zoom_px="auto"`` resolved where the matcher is known: :attr:`KBCWrapper.config` and the
    LightningModule's ``kbc_config`` (and so its checkpoint's hyperparameters) hold the number."""
    from sosc import CorrespondenceModule, KBCConfig
    from sosc.matchers import KBCNet

    class Wide(torch.nn.Module):
        kbc_zoom_px = 160.0

        def forward(self, src_img, trg_img, src_kps, valid=None):
            return src_kps

    assert KBCWrapper(Wide(), 64).config.zoom_px == 160.0
    assert KBCWrapper(lambda s, t, k, v=None: k, 64).config.zoom_px == 96.0
    assert KBCWrapper(Wide(), 64, zoom_px=80.0).config.zoom_px == 80.0
    module = CorrespondenceModule(KBCNet("resnet18", channels=16, heads=2, decoder_channels=(4,)), kbc=KBCConfig())
    assert module.kbc_config.zoom_px == 160.0 and module.hparams["kbc"]["zoom_px"] == 160.0


class Contract(torch.nn.Module):
    """Predicts each keypoint pulled towards the target input's centre (an object ``factor``
    times smaller than the source's, so every pass asks for a closer window); counts its rows."""

    def __init__(self, factor: float = 0.4) -> None:
        super().__init__()
        self.factor, self.rows = factor, 0

    def forward(self, src, trg, kps, valid):
        self.rows += src.shape[0]
        centre = torch.tensor([trg.shape[-1], trg.shape[-2]], dtype=kps.dtype) / 2
        return centre + self.factor * (kps - centre)


@pytest.mark.parametrize("options, factor", [({}, 0.4), ({"pass1_src_px": 16.0}, 0.4), ({"pass1_src_px": 16.0}, 3.0),
                                             ({"choice": "cycle"}, 0.4), ({"zoom_passes": 2}, 0.4),
                                             ({"zoom_passes": 2, "min_zoom": 1.0}, 1.0),  # pass 3 on the same window
                                             ({"zoom_passes": 2, "zoom_px": None}, 0.4),
                                             ({"enabled": False}, 0.4)])
def test_passes_counts_every_matcher_pass_of_each_pair(options, factor):
    img = images(4, 160, 160)
    kps = large_kps(4, 3, 5.0, 155.0)
    kps[[1, 3]] = small_kps(2, 3, 60.0, 90.0)
    matcher = Contract(factor)
    out = KBCWrapper(matcher, 32, **options).forward_with_info(img, img, kps, None, with_plain=False)
    if factor > 1:  # the shrunk sources' pass 1 predicts a large target: no zoom, so the plain pass runs
        assert (out.pass1_shrunk & ~out.refined).any()
    assert int(out.passes.sum()) == matcher.rows
    assert out.passes.shape == (4,) and out.passes.min() >= 1
    if options.get("zoom_passes") == 2:
        assert out.passes.max() == 3  # a pass 3 ran somewhere, and was counted
    if options == {"choice": "cycle"}:
        assert out.passes[out.refined].tolist() == [4] * int(out.refined.sum())
    if options == {"enabled": False}:
        assert out.passes.tolist() == [1, 1, 1, 1]
    # the comparison-only plain pass of with_plain=True is not KBC's and is not counted
    again = KBCWrapper(Contract(factor), 32, **options).forward_with_info(img, img, kps, None)
    assert torch.equal(again.passes, out.passes)
