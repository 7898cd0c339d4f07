"""KBCNet: the matcher contract, training behaviour, ablations, errors, and an overfitting run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sosc.errors import ConfigError, ShapeError
from sosc.losses import keypoint_epe
from sosc.matchers.base import MatchOutput
from sosc.matchers.correlation import correlation_volume, interpolation_matrix, upsample_target
from sosc.matchers.csfa import CSFA, sine_positions
from sosc.matchers.kbcnet import KBCNet

H, W = 64, 96  # non-square, multiples of 32


def make_net(**kwargs) -> KBCNet:
    torch.manual_seed(0)
    kwargs.setdefault("backbone", "tf_efficientnet_lite0")
    return KBCNet(**kwargs)


@pytest.fixture(scope="module")
def net() -> KBCNet:
    return make_net().eval()


def inputs(
    b: int = 2, n: int = 5, size: tuple[int, int] = (H, W), trg_size: tuple[int, int] | None = None
):
    trg_size = trg_size or size
    src, trg = torch.rand(b, 3, *size), torch.rand(b, 3, *trg_size)
    kps = torch.rand(b, n, 2) * torch.tensor([size[1], size[0]], dtype=torch.float32)
    return src, trg, kps, torch.ones(b, n, dtype=torch.bool)


class TestContract:
    def test_output_shapes_non_square(self, net):
        src, trg, kps, valid = inputs()
        with torch.no_grad():
            out = net(src, trg, kps, valid)
        assert isinstance(out, MatchOutput)
        assert out.kps.shape == (2, 5, 2) and out.kps.dtype == torch.float32
        assert out.flow.shape == (2, 2, H // 16, W // 16)
        assert out.confidence.shape == (2, 5)
        assert out.scores is None
        assert torch.isfinite(out.kps).all() and torch.isfinite(out.flow).all()
        assert ((out.confidence >= 0) & (out.confidence <= 1)).all()
        # flow is a soft-argmax: an expectation of target cell centres, inside the target grid
        assert (out.flow[:, 0] >= 0).all() and (out.flow[:, 0] <= W).all()
        assert (out.flow[:, 1] >= 0).all() and (out.flow[:, 1] <= H).all()

    def test_stride_8_and_scores(self):
        net = make_net(stride=8, return_scores=True).eval()
        src, trg, kps, valid = inputs(b=1, size=(96, 64))
        with torch.no_grad():
            out = net(src, trg, kps, valid)
        assert out.flow.shape == (1, 2, 12, 8)
        assert out.scores.shape == (1, 12, 8, 12, 8)

    def test_source_and_target_sizes_may_differ(self, net):
        src, trg, kps, valid = inputs(b=1, size=(H, W), trg_size=(W, H))
        with torch.no_grad():
            out = net(src, trg, kps, valid)
        assert out.flow.shape == (1, 2, H // 16, W // 16)
        assert (out.flow[:, 0] <= H).all() and (out.flow[:, 1] <= W).all()  # target is W x H

    def test_padded_keypoints_never_change_valid_results(self, net):
        src, trg, kps, valid = inputs(b=2, n=6)
        valid[0, 4:] = False
        valid[1, 1] = False
        with torch.no_grad():
            ref = net(src, trg, kps, valid)
            for fill in (float("nan"), 1e6, -3.0):
                other = kps.clone()
                other[~valid] = fill
                out = net(src, trg, other, valid)
                assert torch.equal(out.kps[valid], ref.kps[valid])
                assert torch.equal(out.confidence[valid], ref.confidence[valid])
                assert torch.isfinite(out.kps).all()

    def test_pair_without_valid_keypoint_is_defined(self, net):
        src, trg, kps, valid = inputs(b=2, n=3)
        valid[1] = False
        with torch.no_grad():
            out = net(src, trg, kps, valid)
            ref = net(src, trg, kps, torch.ones_like(valid))
        assert torch.equal(out.kps, ref.kps)  # the flow sampled at the given positions anyway
        loss = keypoint_epe(out.kps, kps, valid, (H, W))
        assert torch.isfinite(loss)

    def test_batch_items_are_independent_in_eval(self, net):
        src, trg, kps, valid = inputs(b=2)
        with torch.no_grad():
            both = net(src, trg, kps, valid)
            one = net(src[1:], trg[1:], kps[1:], valid[1:])
        assert torch.allclose(both.kps[1], one.kps[0], atol=1e-4)

    def test_bf16_autocast_keeps_flow_float32(self, net):
        src, trg, kps, valid = inputs(b=1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(src, trg, kps, valid)
        assert out.flow.dtype == torch.float32 and out.kps.dtype == torch.float32
        assert torch.isfinite(out.kps).all()


class TestErrors:
    @pytest.mark.parametrize("which", ["src_img", "trg_img"])
    def test_size_not_multiple_of_32(self, net, which):
        src, trg, kps, valid = inputs(b=1)
        bad = torch.rand(1, 3, 64, 80)
        args = (bad, trg) if which == "src_img" else (src, bad)
        with pytest.raises(ShapeError, match=f"{which}.*multiples of 32.*64x80"):
            net(*args, kps, valid)

    @pytest.mark.parametrize("which", ["src_img", "trg_img"])
    def test_nan_image(self, net, which):
        src, trg, kps, valid = inputs(b=1)
        (src if which == "src_img" else trg)[0, 1, 3, 4] = float("nan")
        with pytest.raises(ShapeError, match=f"{which}: contains NaN"):
            net(src, trg, kps, valid)

    def test_nan_valid_keypoint(self, net):
        src, trg, kps, valid = inputs(b=1)
        kps[0, 2, 1] = float("nan")
        with pytest.raises(ShapeError, match="src_kps: contains NaN"):
            net(src, trg, kps, valid)

    def test_bad_shapes_and_dtypes(self, net):
        src, trg, kps, valid = inputs(b=2)
        with pytest.raises(ShapeError, match="src_kps"):
            net(src, trg, kps[..., :1], valid)
        with pytest.raises(ShapeError, match="trg_img"):
            net(src, trg[:1], kps, valid)
        with pytest.raises(ShapeError, match="valid: expected dtype"):
            net(src, trg, kps, valid.float())

    @pytest.mark.parametrize(
        "kwargs,match",
        [
            ({"stride": 32}, "stride"),
            ({"decoder": "dense"}, "decoder"),
            ({"channels": 30, "heads": 4}, "divisible"),
            ({"decoder_channels": (16, 16), "decoder_strides": (1,)}, "same length"),
            ({"decoder_channels": (6,)}, "groups"),
            ({"temperature": 0.0}, "temperature"),
        ],
    )
    def test_bad_config(self, kwargs, match):
        with pytest.raises(ConfigError, match=match):
            make_net(**kwargs)


class TestTraining:
    def test_gradient_reaches_every_trainable_parameter(self):
        net = make_net().train()
        src, trg, kps, valid = inputs(b=2)
        out = net(src, trg, kps, valid)
        keypoint_epe(out.kps, kps.flip(-1), valid, (H, W)).backward()
        missing = [
            n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
        ]
        assert not missing

    def test_freeze_backbone_really_freezes(self):
        net = make_net(freeze_backbone=True)
        net.train()
        norms = [
            m
            for m in net.backbone.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        assert norms and not any(m.training for m in norms)
        assert net.csfa.training and net.decoder.training
        stats = {k: v.clone() for k, v in net.backbone.state_dict().items()}
        src, trg, kps, valid = inputs(b=2)
        out = net(src, trg, kps, valid)
        keypoint_epe(out.kps, kps, valid, (H, W)).backward()
        assert all(not p.requires_grad and p.grad is None for p in net.backbone.parameters())
        assert all(torch.equal(v, net.backbone.state_dict()[k]) for k, v in stats.items())
        assert net.decoder.skip.grad is not None

    def test_untrained_decoder_follows_mean_correlation(self, net):
        src, trg, *_ = inputs(b=1)
        with torch.no_grad():
            feats, _ = net.correlation_features(torch.cat([src, trg]))
            corr = correlation_volume(feats[:1], feats[1:])
            scores = net.decoder(corr)
        assert torch.allclose(scores, corr.mean(1), atol=1e-2)

    def test_parameter_count_is_small_beyond_the_backbone(self, net):
        head = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("backbone."))
        assert 50_000 < head < 1_000_000


class TestAblations:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"decoder": "full", "decoder_channels": (8, 8), "csfa_layers": 1},
            {"use_csfa": False},
            {"decoder_strides": (2, 1, 1)},
            {"kernel_sigma": 1.5, "kernel_size": 5, "decoder_channels": (8,)},
            {"backbone": "resnet18", "channels": 32, "heads": 2, "csfa_layers": 2},
        ],
    )
    def test_variant_runs_forward_and_backward(self, kwargs):
        net = make_net(**kwargs).train()
        src, trg, kps, valid = inputs(b=2, size=(64, 64))
        out = net(src, trg, kps, valid)
        assert out.kps.shape == (2, 5, 2) and torch.isfinite(out.kps).all()
        keypoint_epe(out.kps, kps, valid, (64, 64)).backward()
        assert net.decoder.head.bias.grad is not None

    def test_without_csfa_correlation_has_three_channels(self):
        net = make_net(use_csfa=False)
        assert net.correlation_channels == 3 and len(net.csfa.layers) == 0


class TestPieces:
    def test_upsample_target_interpolates_strided_taps(self):
        full = torch.arange(7.0)[None, None, None, :, None].expand(1, 1, 1, 7, 5) * 2
        taps = full[..., ::2, ::2]
        up = upsample_target(taps, (7, 5), 2)
        assert torch.allclose(up, full)
        assert interpolation_matrix(3, 1, 2).tolist() == [[1.0], [1.0], [1.0]]

    def test_sine_positions_encode_image_positions_whatever_the_grid(self):
        coarse, fine = sine_positions(2, 2, 16), sine_positions(6, 6, 16)
        assert coarse.shape == (4, 16) and fine.shape == (36, 16)
        # coarse cell (0, 0) and fine cell (1, 1) share the centre (0.25, 0.25) of the image
        assert torch.allclose(coarse[0], fine[1 * 6 + 1], atol=1e-6)
        assert not torch.allclose(coarse[0], coarse[3])

    def test_csfa_shapes(self):
        csfa = CSFA((8, 16, 32), (8, 16, 32), 16, channels=32, heads=4)
        feats = [torch.randn(2, c, 64 // s, 96 // s) for c, s in zip((8, 16, 32), (8, 16, 32))]
        aligned, projected = csfa(feats)
        assert aligned.shape == (2, 32, 4, 6)
        assert [tuple(p.shape) for p in projected] == [(2, 32, 8, 12), (2, 32, 4, 6), (2, 32, 2, 3)]


def _photo_pairs(n_pairs: int = 8, n_kps: int = 8, size: tuple[int, int] = (H, W), seed: int = 0):
    """Pairs (source photo, random affine warp of it) with keypoints moved by the exact inverse warp."""
    skdata = pytest.importorskip("skimage.data")
    gen = torch.Generator().manual_seed(seed)
    s_h, s_w = size
    photos = [skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket()]
    wh = torch.tensor([s_w, s_h], dtype=torch.float32)
    ys, xs = torch.meshgrid(torch.arange(s_h) + 0.5, torch.arange(s_w) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], -1)  # target pixel centres (x, y)
    srcs, trgs, src_kps, trg_kps = [], [], [], []
    for i in range(n_pairs):
        img = (
            torch.from_numpy(np.ascontiguousarray(photos[i % len(photos)])).permute(2, 0, 1).float()
            / 255
        )
        img = F.interpolate(
            img[None], size=size, mode="bilinear", antialias=True, align_corners=False
        )[0]
        img = img.flip(-1) if i >= len(photos) else img
        angle = math.radians(40.0) * (torch.rand(1, generator=gen).item() - 0.5)
        scale = 0.8 + 0.4 * torch.rand(1, generator=gen).item()
        a = scale * torch.tensor(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        b = wh / 2 - a @ (wh / 2) + (torch.rand(2, generator=gen) - 0.5) * wh * 0.15
        # target pixel p shows source point a p + b; a source keypoint q lands at a^-1 (q - b)
        grid = (pix @ a.T + b) / wh * 2 - 1
        trg = F.grid_sample(
            img[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False
        )[0]
        a_inv = torch.linalg.inv(a)
        qs, ps = [], []
        while len(qs) < n_kps:
            q = torch.rand(2, generator=gen) * (wh - 8) + 4
            p = a_inv @ (q - b)
            if bool(((p >= 4) & (p <= wh - 4)).all()):
                qs.append(q)
                ps.append(p)
        srcs.append(img)
        trgs.append(trg)
        src_kps.append(torch.stack(qs))
        trg_kps.append(torch.stack(ps))
    return torch.stack(srcs), torch.stack(trgs), torch.stack(src_kps), torch.stack(trg_kps)


def test_overfits_eight_photo_pairs():
    """PCK@0.1 (alpha * max(S_h, S_w)) >= 0.95 on 8 warped photo pairs, plain loop, keypoint EPE."""
    src, trg, src_kps, trg_kps = _photo_pairs()
    valid = torch.ones(src_kps.shape[:2], dtype=torch.bool)
    net = make_net(pretrained="package")
    optim = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)

    def pck() -> float:
        net.eval()
        with torch.no_grad():
            out = net(src, trg, src_kps, valid)
        net.train()
        return float(((out.kps - trg_kps).norm(dim=-1) <= 0.1 * max(H, W)).float().mean())

    before, losses = pck(), []
    for _ in range(30):
        loss = keypoint_epe(net(src, trg, src_kps, valid).kps, trg_kps, valid, (H, W))
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    after = pck()
    assert after >= 0.95, (before, after, losses[::10])
    assert losses[-1] < 0.5 * losses[0]


class TestCorrelationGrid:
    """``max_cells``: the 4D volume's grid is capped; up to the cap nothing changes, bit for bit."""

    def test_up_to_the_cap_the_output_is_bit_identical_to_the_uncapped_network(self):
        capped, uncapped = make_net(max_cells=16).eval(), make_net().eval()
        uncapped.load_state_dict(capped.state_dict())  # same weights, same names
        src, trg, kps, valid = inputs(b=2, n=7, size=(256, 256))
        with torch.no_grad():
            a, b = capped(src, trg, kps, valid), uncapped(src, trg, kps, valid)
        assert a.flow.shape == (2, 2, 16, 16)
        for name in ("kps", "flow", "confidence"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name

    def test_a_larger_grid_is_pooled_to_the_cap_keeping_the_aspect_ratio(self):
        net = make_net(max_cells=4, return_scores=True).eval()
        src, trg, kps, valid = inputs(b=1, n=3, size=(128, 96))  # working grid 8 x 6 -> 4 x 3
        with torch.no_grad():
            out = net(src, trg, kps, valid)
        assert out.flow.shape == (1, 2, 4, 3) and out.scores.shape == (1, 4, 3, 4, 3)
        assert torch.isfinite(out.kps).all()
        assert (out.kps[..., 0] <= 96).all() and (out.kps[..., 1] <= 128).all()

    def test_old_weights_load_and_the_option_is_checked(self):
        make_net(max_cells=8).load_state_dict(make_net(max_cells=None).state_dict(), strict=True)
        with pytest.raises(ConfigError, match="max_cells"):
            make_net(max_cells=0)

    def test_a_record_without_the_option_rebuilds_the_uncapped_network(self):
        from sosc.checkpoint import instantiate

        old = {"class_path": "sosc.KBCNet", "init_args": {"backbone": "tf_efficientnet_lite0", "stride": 16}}
        assert instantiate(old).max_cells is None
        new = {"class_path": "sosc.KBCNet", "init_args": {"backbone": "tf_efficientnet_lite0", "max_cells": 16}}
        assert instantiate(new).max_cells == 16
