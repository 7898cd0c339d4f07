"""Tests of sosc.matchers.adapters with stand-in nets of each kind, alone and inside KBCWrapper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from third_party_nets import (
    CATS_FEATURE,
    CATsStyle,
    CHMStyle,
    DIFTStyle,
    cats_training_flow,
    shifted_pair,
)
from torch import nn

from sosc.errors import ConfigError, ShapeError
from sosc.kbc import KBCWrapper, match_plain
from sosc.matchers.adapters import (
    CallableMatcher,
    FeatureFnMatcher,
    FlowMatcher,
    ScoreVolumeMatcher,
    as_score_volume,
    check_matcher_inputs,
    chm_transfer,
    flow_to_input_pixels,
    transfer_by_flow,
    transfer_by_scores,
)
from sosc.matchers.base import MatchOutput, keypoints_of
from sosc.matchers.grid import cell_centers

torch.set_num_threads(1)

ZOOM, SHIFT = 1.25, (3.0, -2.0)  # the synthetic warp q = ZOOM * p + SHIFT, input pixels


def warp(p: torch.Tensor) -> torch.Tensor:
    return ZOOM * p + torch.tensor(SHIFT, dtype=p.dtype)


def true_flow(b: int, h: int, w: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``p`` and their warped positions ``q``, each ``(B, 2, h, w)`` input pixels."""
    p = cell_centers(h, w, size).permute(2, 0, 1)[None].expand(b, 2, h, w)
    q = warp(p.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return p, q


def encode(q: torch.Tensor, p: torch.Tensor, fmt: str, units: str, conv: str, size, grid) -> torch.Tensor:
    """Write the true flow the way a third-party net with these conventions would."""
    s = torch.tensor([size[1], size[0]], dtype=q.dtype).view(1, 2, 1, 1)
    g = torch.tensor([grid[1], grid[0]], dtype=q.dtype).view(1, 2, 1, 1)
    v = q if fmt == "absolute" else q - p
    index = conv == "index"
    if units == "normalized":
        if fmt == "absolute":
            return 2.0 * (v - 0.5) / (s - 1) - 1.0 if index else 2.0 * v / s - 1.0
        return 2.0 * v / (s - 1) if index else 2.0 * v / s
    if units == "grid":
        v = v * g / s
        return v - 0.5 if (index and fmt == "absolute") else v
    return v - 0.5 if (index and fmt == "absolute") else v


def interior_kps(b: int, n: int, lo: float, hi: float, seed: int = 0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, n, 2, generator=torch.Generator().manual_seed(seed))


class StaticFlowNet(nn.Module):
    def __init__(self, flow: torch.Tensor) -> None:
        super().__init__()
        self.flow = flow
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, a, b):
        self.seen.append((a, b))
        return self.flow


# --------------------------------------------------------------------------- flows


class TestFlowToInputPixels:
    @pytest.mark.parametrize("fmt", ["absolute", "displacement"])
    @pytest.mark.parametrize("units", ["grid", "input", "normalized"])
    @pytest.mark.parametrize("conv", ["continuous", "index"])
    def test_every_convention_recovers_the_flow(self, fmt, units, conv):
        size, grid = (24, 32), (6, 8)
        p, q = true_flow(2, *grid, size)
        raw = encode(q, p, fmt, units, conv, size, grid)
        got = flow_to_input_pixels(raw, size, fmt, units, conv)
        want = q if fmt == "absolute" else q - p
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)

    def test_bad_option(self):
        with pytest.raises(ConfigError, match="flow_units"):
            flow_to_input_pixels(torch.zeros(1, 2, 2, 2), 8, flow_units="pixels")
        with pytest.raises(ShapeError, match="flow"):
            flow_to_input_pixels(torch.zeros(1, 3, 2, 2), 8)


class TestFlowMatcher:
    @pytest.mark.parametrize("fmt", ["absolute", "displacement"])
    @pytest.mark.parametrize("units", ["grid", "normalized"])
    def test_translation_and_zoom_at_lower_resolution(self, fmt, units):
        size, grid = (32, 48), (8, 12)
        p, q = true_flow(2, *grid, size)
        net = StaticFlowNet(encode(q, p, fmt, units, "continuous", size, grid))
        matcher = FlowMatcher(net, flow_format=fmt, flow_units=units)
        kps = interior_kps(2, 6, 4.0, 28.0)  # between the outer cell centres
        out = matcher(torch.zeros(2, 3, *size), torch.zeros(2, 3, *size), kps, None)
        assert isinstance(out, MatchOutput) and out.kps.shape == (2, 6, 2)
        torch.testing.assert_close(out.kps, warp(kps), atol=1e-4, rtol=0)
        torch.testing.assert_close(out.flow, q, atol=1e-4, rtol=0)

    def test_displacement_is_exact_near_borders(self):
        size, grid = (32, 32), (4, 4)
        p, q = true_flow(1, *grid, size)
        matcher = FlowMatcher(StaticFlowNet(encode(q, p, "displacement", "grid", "continuous", size, grid)),
                              flow_format="displacement")
        kps = torch.tensor([[[0.5, 0.5], [31.5, 1.0]]])  # outside the cell-centre hull: translation only
        out = matcher(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), kps, None)
        assert torch.isfinite(out.kps).all()

    @pytest.mark.parametrize("flow_on", ["first", "second"])
    def test_the_source_goes_where_the_flow_lives_and_is_normalised(self, flow_on):
        net = StaticFlowNet(torch.zeros(1, 2, 2, 2))
        matcher = FlowMatcher(net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), flow_on=flow_on)
        src, trg = torch.full((1, 3, 8, 8), 0.75), torch.full((1, 3, 8, 8), 0.25)
        matcher(src, trg, torch.zeros(1, 1, 2), None)
        first, second = net.seen[-1]
        want_first = 1.0 if flow_on == "first" else -1.0  # (0.75 - 0.5) / 0.25: the source
        assert torch.allclose(first, torch.full_like(first, want_first))
        assert torch.allclose(second, torch.full_like(second, -want_first))

    def test_target_first_is_refused_with_what_to_give_instead(self):
        """Before: target_first=True (the README's advice for CATs) read a flow on the target
        grid at source keypoints: 229 px off for CATs on a 256-pixel pair, silently."""
        with pytest.raises(ConfigError, match=r"target_first is gone.*flow_on='first' \(CATs"):
            FlowMatcher(StaticFlowNet(torch.zeros(1, 2, 2, 2)), target_first=True)
        with pytest.raises(ConfigError, match=r"target_first is gone.*rows='source'"):
            ScoreVolumeMatcher(lambda a, b: None, target_first=True)
        net = StaticFlowNet(torch.zeros(1, 2, 2, 2))  # False was the default: the same as flow_on="first"
        FlowMatcher(net, target_first=False)(torch.full((1, 3, 8, 8), 0.75), torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 2))
        assert float(net.seen[-1][0].mean()) == 0.75

    def test_bad_flows_are_named(self):
        img = torch.zeros(1, 3, 8, 8)
        with pytest.raises(ShapeError, match=r"channels last\? return flow.permute\(0, 3, 1, 2\)"):
            FlowMatcher(lambda a, b: torch.zeros(1, 4, 4, 2))(img, img, torch.ones(1, 1, 2))
        with pytest.raises(ShapeError, match=r"on its second argument's grid\): expected shape \(1, 2, h, w\)"):
            FlowMatcher(lambda a, b: torch.zeros(2, 2, 2, 2), flow_on="second")(img, img, torch.ones(1, 1, 2))
        with pytest.raises(ShapeError, match="NaN or Inf"):
            FlowMatcher(lambda a, b: torch.full((1, 2, 2, 2), float("nan")))(img, img, torch.ones(1, 1, 2))
        with pytest.raises(ShapeError, match="displacement flow needs source and target inputs of one size"):
            FlowMatcher(lambda a, b: torch.zeros(1, 2, 2, 2), flow_format="displacement")(
                img, torch.zeros(1, 3, 8, 16), torch.ones(1, 1, 2))
        with pytest.raises(ConfigError, match="flow_on must be one of 'first', 'second'"):
            FlowMatcher(lambda a, b: None, flow_on="source")

    def test_absolute_flow_into_a_target_of_another_size(self):
        """Absolute positions are read in the target's pixels (normalised units over the target)."""
        flow = torch.zeros(1, 2, 2, 2)  # every cell -> the target's centre, normalised units
        out = FlowMatcher(lambda a, b: flow, flow_units="normalized")(
            torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 32), torch.tensor([[[2.0, 2.0]]]))
        torch.testing.assert_close(out.kps, torch.tensor([[[16.0, 8.0]]]), atol=1e-5, rtol=0)

    def test_dict_and_tuple_outputs(self):
        flow = torch.zeros(1, 2, 2, 2)
        for out in ({"flow": flow}, (flow, "extra")):
            m = FlowMatcher(lambda a, b, o=out: o)
            assert m(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 2), None).kps.shape == (1, 1, 2)
        with pytest.raises(ShapeError, match="'flow'"):
            FlowMatcher(lambda a, b: {"x": flow})(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 2))

    def test_transfer_by_flow_functional(self):
        flow = torch.zeros(1, 2, 2, 2) + torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
        kps = torch.tensor([[[3.0, 3.0]]])
        assert transfer_by_flow(flow, kps, 8, "displacement").tolist() == [[[4.0, 5.0]]]
        assert transfer_by_flow(flow, kps, 8, "absolute").tolist() == [[[1.0, 2.0]]]


# --------------------------------------------------------------------------- score volumes


def gaussian_scores(q: torch.Tensor, trg_grid: tuple[int, int], size, sigma: float) -> torch.Tensor:
    """``(B, h_s, w_s, h_t, w_t)`` log-Gaussian scores around the warped source cells ``q`` ``(B, 2, h_s, w_s)``."""
    c = cell_centers(*trg_grid, size)  # (h_t, w_t, 2)
    d2 = ((q.permute(0, 2, 3, 1)[:, :, :, None, None, :] - c) ** 2).sum(-1)
    return -d2 / (2 * sigma**2)


class TestScoreVolumeMatcher:
    def test_known_warp(self):
        size = (48, 64)
        _, q = true_flow(2, 12, 16, size)  # source grid 12 x 16
        scores = gaussian_scores(q, (16, 20), size, sigma=4.0)  # target grid 16 x 20, sigma one cell
        matcher = ScoreVolumeMatcher(lambda a, b: scores, temperature=1.0, dense_flow=True)
        kps = interior_kps(2, 5, 12.0, 28.0)
        out = matcher(torch.zeros(2, 3, *size), torch.zeros(2, 3, *size), kps, None)
        torch.testing.assert_close(out.kps, warp(kps), atol=1e-2, rtol=0)
        assert out.confidence.shape == (2, 5) and ((out.confidence > 0) & (out.confidence <= 1)).all()
        assert out.flow.shape == (2, 2, 12, 16)
        assert out.scores.shape == (2, 12, 16, 16, 20)

    def test_six_dim_volume_and_kernel(self):
        size = (48, 48)
        _, q = true_flow(1, 12, 12, size)
        scores = gaussian_scores(q, (12, 12), size, sigma=4.0)[:, None]
        kps = interior_kps(1, 4, 14.0, 22.0)
        img = torch.zeros(1, 3, 48, 48)
        out = ScoreVolumeMatcher(lambda a, b: (scores,), temperature=1.0)(img, img, kps, None)
        torch.testing.assert_close(out.kps, warp(kps), atol=2e-2, rtol=0)
        # the kernel is centred on the arg-max cell, not the true peak: a sub-cell bias
        out = ScoreVolumeMatcher(lambda a, b: (scores,), temperature=1.0, kernel_sigma=3.0)(img, img, kps, None)
        torch.testing.assert_close(out.kps, warp(kps), atol=0.5, rtol=0)

    def test_bad_volumes(self):
        with pytest.raises(ShapeError, match="one channel"):
            as_score_volume(torch.zeros(1, 2, 2, 2, 2, 2))
        with pytest.raises(ShapeError, match="scores"):
            as_score_volume(torch.zeros(1, 2, 2, 2))
        with pytest.raises(ConfigError, match="temperature"):
            ScoreVolumeMatcher(lambda a, b: None, temperature=0.0)

    def test_transfer_by_scores_functional(self):
        scores = torch.full((1, 2, 2, 2, 2), -10.0)
        scores[0, :, :, 1, 0] = 10.0  # every source cell -> target cell (row 1, col 0)
        kps, conf = transfer_by_scores(scores, torch.tensor([[[1.0, 1.0]]]), 4, temperature=0.1)
        torch.testing.assert_close(kps, torch.tensor([[[1.0, 3.0]]]), atol=1e-4, rtol=0)
        assert conf.item() > 0.99


# --------------------------------------------------------------------------- callables


class TestCallableMatcher:
    def test_tensor_dict_and_match_output(self):
        src, trg, kps = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), torch.rand(2, 3, 2) * 8
        assert torch.equal(CallableMatcher(lambda s, t, k, v: k)(src, trg, kps, None), kps)
        out = CallableMatcher(lambda s, t, k, v: {"kps": k, "confidence": v.float()})(src, trg, kps, None)
        assert isinstance(out, MatchOutput) and torch.equal(out.confidence, torch.ones(2, 3))
        out = CallableMatcher(lambda s, t, k, v: MatchOutput(kps=k))(src, trg, kps, torch.ones(2, 3).bool())
        assert torch.equal(keypoints_of(out), kps)

    def test_wrong_output_shape(self):
        with pytest.raises(ShapeError, match="keypoints returned"):
            CallableMatcher(lambda s, t, k, v: k[:, :1])(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8),
                                                         torch.zeros(1, 2, 2), None)

    def test_normalisation_and_bad_inputs(self):
        seen = []
        m = CallableMatcher(lambda s, t, k, v: seen.append(s) or k, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        m(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.zeros(1, 1, 2), None)
        assert torch.equal(seen[0], torch.ones(1, 3, 4, 4))
        with pytest.raises(ConfigError, match="mean and std"):
            CallableMatcher(lambda *a: None, mean=(0.5, 0.5, 0.5))
        with pytest.raises(ShapeError, match="trg_img"):
            check_matcher_inputs(torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.zeros(1, 1, 2), None)


# --------------------------------------------------------------------------- with KBCWrapper: nets that really match

REF, OFFSET = 400.0, 0.1  # colour = OFFSET + original source position / REF: inside [0, 1]


def ramp(h: int, w: int, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """``(3, h, w)``: pixel centre ``q`` shows the colour of the source point ``(q - shift) / zoom``."""
    xs = OFFSET + ((torch.arange(w) + 0.5) - shift[0]) / zoom / REF
    ys = OFFSET + ((torch.arange(h) + 0.5) - shift[1]) / zoom / REF
    return torch.stack([xs[None].expand(h, w), ys[:, None].expand(h, w), torch.full((h, w), 0.5)])


def locate(colours: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
    """Where colours ``(2, ...)`` lie in one target input ``(3, S_h, S_w)``, input pixels ``(2, ...)``.

    Fits the target's colour as an affine function of position on its clean pixels (no padding,
    not on the border) and inverts it: exact for any window of a ramp image.
    """
    _, s_h, s_w = trg.shape
    centres = cell_centers(s_h, s_w, (s_h, s_w)).double()
    clean = (trg[2] - 0.5).abs() < 1e-4
    clean[:2] = clean[-2:] = False
    clean[:, :2] = clean[:, -2:] = False
    pos = centres[clean]  # (M, 2)
    col = trg[:2].permute(1, 2, 0)[clean].double()
    design = torch.cat([pos, torch.ones(len(pos), 1, dtype=pos.dtype)], dim=1)
    sol = torch.linalg.lstsq(design, col).solution  # col = pos @ A + b
    a, b = sol[:2], sol[2]
    flat = colours.reshape(2, -1).T.double()
    return torch.linalg.solve(a.T, (flat - b).T).reshape(colours.shape).to(colours.dtype)


class RampFlowNet(nn.Module):
    """A flow net for ramp images: absolute flow at stride 4, in the grid's own pixels."""

    def forward(self, src, trg):
        pooled = F.avg_pool2d(src[:, :2], 4)
        q = torch.stack([locate(pooled[i], trg[i]) for i in range(src.shape[0])])
        return q / 4.0


class RampScoreNet(nn.Module):
    """A score net for ramp images: log-Gaussian scores (sigma one cell) at stride 4."""

    def forward(self, src, trg):
        pooled = F.avg_pool2d(src[:, :2], 4)
        q = torch.stack([locate(pooled[i], trg[i]) for i in range(src.shape[0])])
        return gaussian_scores(q, tuple(pooled.shape[-2:]), tuple(src.shape[-2:]), sigma=4.0)


def ramp_pair(b: int = 2):
    src = torch.stack([ramp(160, 200)] * b)
    trg = torch.stack([ramp(180, 220, 1.3, (20.0, 10.0))] * b)
    kps = interior_kps(b, 5, 60.0, 90.0, seed=3)
    expected = 1.3 * kps + torch.tensor([20.0, 10.0])
    return src, trg, kps, expected


@pytest.mark.parametrize("target", ["pred-box", "object-bbox", "oracle"])
@pytest.mark.parametrize("kind", ["flow", "scores"])
def test_adapters_inside_kbc_wrapper(kind, target):
    matcher = (FlowMatcher(RampFlowNet()) if kind == "flow"
               else ScoreVolumeMatcher(RampScoreNet(), temperature=1.0))
    src, trg, kps, expected = ramp_pair()
    tol = 0.02 if kind == "flow" else 0.1
    with torch.no_grad():
        plain, _ = match_plain(matcher, src, trg, kps, None, 64)
        assert (plain - expected).abs().max().item() < tol * 3
        bbox = torch.tensor([[70.0, 70.0, 130.0, 130.0]] * 2)
        info = KBCWrapper(matcher, 64, target=target).forward_with_info(src, trg, kps, None, trg_bbox=bbox,
                                                                       trg_kps=expected)
    assert info.refined.all() and info.src_triggered.all() and info.trg_triggered.all()
    assert (info.kps - expected).abs().max().item() < tol


@pytest.mark.parametrize("kind", ["flow", "scores", "callable"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_padding_never_changes_valid_results(kind, wrapped):
    matcher = {"flow": lambda: FlowMatcher(RampFlowNet()),
               "scores": lambda: ScoreVolumeMatcher(RampScoreNet(), temperature=1.0),
               "callable": lambda: CallableMatcher(lambda s, t, k, v: k * 0.5 + 1.0)}[kind]()
    src, trg, kps, _ = ramp_pair()
    valid = torch.tensor([[True, True, True, False, False], [True, False, True, True, False]])
    moved = kps.clone()
    moved[~valid] = torch.tensor([-300.0, 1e3])
    with torch.no_grad():
        if wrapped:
            run = KBCWrapper(matcher, 64)
            a, b = run(src, trg, kps, valid), run(src, trg, moved, valid)
        else:
            s_in, t_in = F.interpolate(src, size=64), F.interpolate(trg, size=64)
            a = keypoints_of(matcher(s_in, t_in, kps * 0.3, valid))
            b = keypoints_of(matcher(s_in, t_in, moved * 0.3, valid))
    assert a.shape == (2, 5, 2) and torch.isfinite(a[valid]).all()
    torch.testing.assert_close(a[valid], b[valid], atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- near the border (#12)


def identity_flow(grid: int = 4, size: int = 64) -> torch.Tensor:
    return cell_centers(grid, grid, size).permute(2, 0, 1)[None]


class TestNearTheBorder:
    BORDER = torch.tensor([[[1.0, 1.0], [63.0, 32.0], [0.5, 63.5], [32.0, 32.0]]])

    def test_absolute_flow_is_exact_to_the_border(self):
        """Before: an identity flow on a 4x4 grid of a 64 px image moved (1, 1) to (8, 8) and
        (63, 32) to (56, 32) (clamped to the outer cell centres)."""
        out = FlowMatcher(StaticFlowNet(identity_flow()), flow_units="input")(
            torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64), self.BORDER, None)
        torch.testing.assert_close(out.kps, self.BORDER, atol=1e-5, rtol=0)
        torch.testing.assert_close(transfer_by_flow(identity_flow(), self.BORDER, 64), self.BORDER, atol=1e-5, rtol=0)

    @pytest.mark.parametrize("fmt", ["absolute", "displacement"])
    def test_a_zoom_and_a_mirror_are_exact_to_the_border(self, fmt):
        size, grid = (32, 32), (4, 4)
        p = cell_centers(*grid, size).permute(2, 0, 1)[None]
        for a, t in ((torch.eye(2) * 1.25, torch.tensor([3.0, -2.0])), (torch.diag(torch.tensor([-1.0, 1.0])), torch.tensor([32.0, 0.0]))):
            q = torch.einsum("ij,bjhw->bihw", a, p) + t.view(1, 2, 1, 1)
            flow = q if fmt == "absolute" else q - p
            kps = torch.tensor([[[0.5, 0.5], [31.5, 1.0], [2.0, 30.0], [16.0, 31.9]]])
            got = transfer_by_flow(flow, kps, size, fmt)
            torch.testing.assert_close(got, kps @ a.T + t, atol=1e-4, rtol=0)

    def test_score_rows_extrapolate_the_position_not_the_scores(self):
        """Scores are not affine: the border row is read as is, and the transferred position is
        extrapolated with the local slope, so an identity, a zoom and a mirror are exact
        (given rows whose soft-argmax is exact at the cell centres: Gaussian scores, one target
        cell wide, on a larger target whose edges they stay clear of)."""
        size, trg_size = (64, 64), (96, 96)
        p = cell_centers(4, 4, size).permute(2, 0, 1)[None]  # source grid 4 x 4 (16 px cells)
        shift = torch.tensor([16.0, 16.0])
        cases = {
            "identity": (torch.eye(2), shift),
            "zoom": (torch.eye(2) * 0.8, torch.tensor([6.4, 6.4]) + shift),
            "mirror": (torch.diag(torch.tensor([-1.0, 1.0])), torch.tensor([64.0, 0.0]) + shift),
        }
        for name, (a, t) in cases.items():
            q = torch.einsum("ij,bjhw->bihw", a, p) + t.view(1, 2, 1, 1)
            scores = gaussian_scores(q, (24, 24), trg_size, sigma=4.0)  # target grid 24 x 24 (4 px cells)
            kps, conf = transfer_by_scores(scores, self.BORDER, size, trg_size, temperature=1.0)
            torch.testing.assert_close(kps, self.BORDER @ a.T + t, atol=1e-3, rtol=0, msg=name)
            assert conf.shape == (1, 4) and bool((conf > 0).all())
        # before: the border row alone, (1, 1) -> (8, 8) + shift under the identity
        # inside the outer centres nothing changes: the bilinear blend of the rows
        inner = torch.tensor([[[12.0, 20.0], [40.0, 52.0]]])
        scores = gaussian_scores(p + shift.view(1, 2, 1, 1), (24, 24), trg_size, 4.0)
        kps, _ = transfer_by_scores(scores, inner, size, trg_size, temperature=1.0)
        torch.testing.assert_close(kps, inner + shift, atol=1e-3, rtol=0)

    def test_one_cell_wide_grid_has_no_slope(self):
        scores = torch.zeros(1, 1, 1, 2, 2)
        scores[..., 1, 0] = 10.0
        kps, _ = transfer_by_scores(scores, torch.tensor([[[1.0, 7.0]]]), 8, temperature=0.1)
        torch.testing.assert_close(kps, torch.tensor([[[2.0, 6.0]]]), atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- bf16 autocast (#12)

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


class TestAutocast:
    def test_flow_conversion_is_float32(self):
        """A net's bf16 flow is converted in float32: only the net's own rounding remains."""
        size = (256, 256)
        p = cell_centers(16, 16, size).permute(2, 0, 1)[None]
        raw = (2.0 * (p + 0.3) / 256 - 1.0).bfloat16()  # normalised units, as a bf16 net gives them
        got = flow_to_input_pixels(raw, size, "absolute", "normalized")
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, (raw.float() + 1.0) * 128.0, atol=1e-5, rtol=0)

    @pytest.mark.parametrize("fmt", ["absolute", "displacement"])
    def test_flow_matcher(self, fmt):
        size = (256, 256)
        p = cell_centers(16, 16, size).permute(2, 0, 1)[None]
        q = p + torch.tensor([4.8, 0.3]).view(1, 2, 1, 1)
        net = StaticFlowNet(q if fmt == "absolute" else q - p)
        kps = torch.tensor([[[200.0, 100.0], [17.3, 250.1]]])
        img = torch.zeros(1, 3, 256, 256)
        with torch.autocast(**BF16):
            out = FlowMatcher(net, flow_format=fmt, flow_units="input")(img, img, kps, None)
        assert out.kps.dtype == torch.float32 and out.flow.dtype == torch.float32
        torch.testing.assert_close(out.kps, kps + torch.tensor([4.8, 0.3]), atol=1e-4, rtol=0)

    def test_score_volume_matcher(self):
        """Before: the positions went through a bf16 matmul (204.8 -> 205.0)."""
        scores = torch.full((1, 1, 1, 1, 16), -1e4)
        scores[..., 12:14] = torch.tensor([0.7, 0.3]).log()
        img = torch.zeros(1, 3, 16, 256)
        with torch.autocast(**BF16):
            out = ScoreVolumeMatcher(lambda a, b: scores, temperature=1.0, dense_flow=True)(
                img, img, torch.tensor([[[100.0, 8.0]]]), None)
        assert out.kps.dtype == torch.float32 and out.flow.dtype == torch.float32
        assert out.kps[0, 0].tolist() == pytest.approx([204.8, 8.0], abs=1e-4)

    def test_callable_matcher_returns_float32(self):
        m = CallableMatcher(lambda s, t, k, v: k.bfloat16())
        with torch.autocast(**BF16):
            out = m(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.ones(1, 2, 2), None)
        assert out.dtype == torch.float32


# --------------------------------------------------------------------------- the field's conventions (#14)

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def cats_matcher(flow_on: str = "first") -> FlowMatcher:
    """The README's CATs line, around the CATs-style stand-in."""
    return FlowMatcher(CATsStyle(), flow_format="displacement", flow_units="grid", flow_on=flow_on, **IMAGENET)


class TestCATsConvention:
    """A stand-in with CATs' convention (``third_party_nets.CATsStyle``): ``forward(a, b)``
    returns a displacement in cells of its 16 x 16 grid, on ``a``'s grid, into ``b``; the pair
    is one texture, the target showing it moved 8 px right."""

    def test_the_training_flow_of_a_known_shift(self):
        jsz = 64 // CATS_FEATURE
        idx = torch.arange(CATS_FEATURE, dtype=torch.float32) * jsz + jsz // 2
        points = torch.stack(torch.meshgrid(idx, idx, indexing="xy"), dim=-1).reshape(-1, 2)
        flow = cats_training_flow(points, points + torch.tensor([8.0, -4.0]), 64)
        assert torch.equal(flow[0], torch.full((16, 16), 2.0)) and torch.equal(flow[1], torch.full((16, 16), -1.0))

    def test_the_stand_in_points_from_its_first_argument_into_its_second(self):
        src, trg = shifted_pair(32, (4, 0))
        net = CATsStyle()
        assert torch.allclose(net(src, trg), torch.tensor([2.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 16, 16))
        assert torch.allclose(net(trg, src), torch.tensor([-2.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 16, 16))

    def test_the_reported_pair(self):
        """Issue #14: a 64 px pair whose target is the source moved 8 px right, input 32,
        source keypoint (30.5, 20.5): the answer is (38.5, 20.5). The old README advice
        (``target_first=True``, i.e. the flow of ``net(trg, src)`` read at source keypoints)
        gave (22.5, 20.5)."""
        src, trg = shifted_pair(64, (8, 0))
        kps = torch.tensor([[[30.5, 20.5]]])
        with torch.no_grad():
            right, _ = match_plain(cats_matcher(), src, trg, kps, None, 32)
            wrong, _ = match_plain(cats_matcher(flow_on="second"), src, trg, kps, None, 32)
        torch.testing.assert_close(right, torch.tensor([[[38.5, 20.5]]]), atol=1e-4, rtol=0)
        torch.testing.assert_close(wrong, torch.tensor([[[22.5, 20.5]]]), atol=1e-4, rtol=0)

    def test_both_directions(self):
        """Source keypoints into the target, and (as CATs' own evaluation does, with the images
        swapped) target keypoints back into the source."""
        src, trg = shifted_pair(64, (8, -4))
        kps = torch.tensor([[[30.5, 20.5], [12.0, 50.0], [50.0, 10.0]]])
        moved = kps + torch.tensor([8.0, -4.0])
        with torch.no_grad():
            forward, _ = match_plain(cats_matcher(), src, trg, kps, None, 32)
            back, _ = match_plain(cats_matcher(), trg, src, moved, None, 32)
        torch.testing.assert_close(forward, moved, atol=1e-4, rtol=0)
        torch.testing.assert_close(back, kps, atol=1e-4, rtol=0)

    def test_a_net_whose_flow_lives_on_its_second_argument(self):
        src, trg = shifted_pair(64, (8, 0))
        net = CATsStyle()
        second = FlowMatcher(lambda a, b: net(b, a), flow_format="displacement", flow_units="grid", flow_on="second")
        with torch.no_grad():
            out, _ = match_plain(second, src, trg, torch.tensor([[[30.5, 20.5]]]), None, 32)
        torch.testing.assert_close(out, torch.tensor([[[38.5, 20.5]]]), atol=1e-4, rtol=0)

    def test_inside_kbc_wrapper(self):
        src, trg = shifted_pair(128, (8, 0))
        kps = torch.tensor([[[60.5, 50.5], [64.0, 56.0], [58.0, 60.0]]])  # a small object: KBC zooms
        with torch.no_grad():
            info = KBCWrapper(cats_matcher(), input_size=32).forward_with_info(src, trg, kps, None)
        assert bool(info.refined.all())
        torch.testing.assert_close(info.kps, kps + torch.tensor([8.0, 0.0]), atol=0.5, rtol=0)


def chm_matcher(**kw) -> ScoreVolumeMatcher:
    """The README's CHM line, around the CHM-style stand-in."""
    return ScoreVolumeMatcher(CHMStyle(), src_grid=(30, 30), readout="chm", **IMAGENET, **kw)


class TestCHMConvention:
    """A stand-in with CHM's convention (``third_party_nets.CHMStyle``): ``forward(src, trg)``
    returns ``(B, h*w, h*w)``, source cells as rows, at 1/8 of the input, peaked where the
    found shift (whole cells) moves each source cell."""

    def test_a_flattened_volume_needs_its_grids(self):
        """Before: ``ShapeError: expected (B, h_s, w_s, h_t, w_t), got (1, 900, 900)`` and no option."""
        src, trg = shifted_pair(240, (8, 0))
        with pytest.raises(ShapeError, match=r"flattened volume \(1, 900, 900\) needs its grids: give src_grid=\(h, w\), "
                                             r"e.g. \(30, 30\)"):
            ScoreVolumeMatcher(CHMStyle())(src, trg, torch.ones(1, 1, 2))
        with pytest.raises(ShapeError, match="does not fit src_grid=.20, 40."):
            ScoreVolumeMatcher(CHMStyle(), src_grid=(20, 40))(src, trg, torch.ones(1, 1, 2))

    def test_the_known_peak_lands_where_each_read_out_puts_it(self):
        """One cell right. CHM's read-out places cell j at 240 j / 29, so a keypoint on cell
        (row 10, column 12) lands one CHM cell (8.28 px) right; the bilinear read-out places it
        at (j + 0.5) 8, so one cell is 8 px."""
        src, trg = shifted_pair(240, (8, 0))
        on_cell = torch.tensor([[[240 * 12 / 29, 240 * 10 / 29]]])
        with torch.no_grad():
            chm = chm_matcher()(src, trg, on_cell)
            bilinear = ScoreVolumeMatcher(CHMStyle(), src_grid=(30, 30), temperature=1.0)(
                src, trg, torch.tensor([[[100.0, 84.0]]]))
        torch.testing.assert_close(chm.kps, on_cell + torch.tensor([240 / 29, 0.0]), atol=0.02, rtol=0)
        torch.testing.assert_close(bilinear.kps, torch.tensor([[[108.0, 84.0]]]), atol=0.02, rtol=0)
        assert chm.confidence.shape == (1, 1) and 0 < float(chm.confidence) <= 1
        assert chm.scores.shape == (1, 30, 30, 30, 30)

    @pytest.mark.parametrize("rows", ["source", "target"])
    def test_both_directions(self, rows):
        """Target keypoints back into the source by swapping the images; a volume whose rows are
        the target's (``rows="target"``) reads the same."""
        chm = CHMStyle()
        net = chm if rows == "source" else (lambda s, t: chm(s, t).transpose(1, 2))
        matcher = ScoreVolumeMatcher(net, src_grid=(30, 30), readout="chm", rows=rows)
        src, trg = shifted_pair(240, (8, -16))
        step = 240 / 29
        kps = torch.tensor([[[step * 12, step * 10], [step * 5, step * 20]]])
        moved = kps + torch.tensor([step, -2 * step])
        with torch.no_grad():
            torch.testing.assert_close(matcher(src, trg, kps).kps, moved, atol=0.05, rtol=0)
            torch.testing.assert_close(matcher(trg, src, moved).kps, kps, atol=0.05, rtol=0)

    def test_inside_kbc_wrapper(self):
        src, trg = shifted_pair(480, (16, 0))
        kps = torch.tensor([[[230.0, 200.0], [240.0, 215.0], [225.0, 222.0]]])
        with torch.no_grad():
            info = KBCWrapper(chm_matcher(), input_size=240).forward_with_info(src, trg, kps, None)
        assert torch.isfinite(info.kps).all() and bool(info.refined.all())
        # CHM's placement stretches a whole-cell move by n / (n - 1) (30 / 29), in any window
        torch.testing.assert_close(info.kps, kps + torch.tensor([16.0, 0.0]), atol=2.0, rtol=0)


class TestScoreVolumeLayouts:
    def test_every_layout_reads_the_same_volume(self):
        vol = torch.randn(2, 3, 4, 5, 6)
        flat = vol.reshape(2, 12, 30)
        torch.testing.assert_close(as_score_volume(vol), vol)
        torch.testing.assert_close(as_score_volume(vol[:, None]), vol)
        torch.testing.assert_close(as_score_volume(flat, src_grid=(3, 4), trg_grid=(5, 6)), vol)
        torch.testing.assert_close(as_score_volume(vol.reshape(2, 12, 5, 6), src_grid=(3, 4)), vol)
        torch.testing.assert_close(as_score_volume(vol, src_grid=(3, 4), trg_grid=(5, 6)), vol)
        transposed = vol.permute(0, 3, 4, 1, 2)
        torch.testing.assert_close(as_score_volume(transposed, rows="target"), vol)
        torch.testing.assert_close(
            as_score_volume(transposed.reshape(2, 30, 12), src_grid=(3, 4), trg_grid=(5, 6), rows="target"), vol)

    def test_one_grid_given_is_both(self):
        assert as_score_volume(torch.zeros(1, 6, 6), trg_grid=(2, 3)).shape == (1, 2, 3, 2, 3)

    def test_wrong_grids_are_named(self):
        with pytest.raises(ShapeError, match=r"does not fit src_grid=\(3, 4\) and trg_grid=\(5, 5\)"):
            as_score_volume(torch.zeros(1, 12, 30), src_grid=(3, 4), trg_grid=(5, 5))
        with pytest.raises(ShapeError, match=r"does not fit src_grid=\(4, 3\), trg_grid=None"):
            as_score_volume(torch.zeros(1, 3, 4, 5, 6), src_grid=(4, 3))
        with pytest.raises(ShapeError, match=r"give trg_grid=\(h, w\)"):
            as_score_volume(torch.zeros(1, 30, 12), rows="target")
        with pytest.raises(ConfigError, match="src_grid must be"):
            as_score_volume(torch.zeros(1, 6, 6), src_grid=(2, 0))
        with pytest.raises(ConfigError, match="rows must be one of"):
            as_score_volume(torch.zeros(1, 6, 6), rows="src")

    def test_options_of_the_read_outs(self):
        with pytest.raises(ConfigError, match="radius is CHM's attentive radius"):
            ScoreVolumeMatcher(lambda a, b: None, radius=0.2)
        with pytest.raises(ConfigError, match="readout must be one of 'bilinear', 'chm'"):
            ScoreVolumeMatcher(lambda a, b: None, readout="CHM")
        default, chm = ScoreVolumeMatcher(lambda a, b: None), ScoreVolumeMatcher(lambda a, b: None, readout="chm")
        assert (default.temperature, default.kernel_sigma, default.radius) == (0.05, None, None)
        assert (chm.temperature, chm.kernel_sigma, chm.radius) == (1.0, 17.0, 0.1)


def chm_transfer_by_loops(scores, kps, src_size, trg_size, temperature, sigma, radius):
    """The steps of ``chm_transfer``'s docstring, one keypoint and one cell at a time."""
    b, h_s, w_s, h_t, w_t = scores.shape
    (sh, sw), (th, tw) = src_size, trg_size

    def place(n, s):
        return [s / 2.0] if n == 1 else [s * j / (n - 1) for j in range(n)]

    tx, ty, sx, sy = place(w_t, tw), place(h_t, th), place(w_s, sw), place(h_s, sh)
    out = torch.zeros(b, kps.shape[1], 2, dtype=torch.float64)
    for n in range(b):
        pred = {}
        for i in range(h_s):
            for j in range(w_s):
                row = scores[n, i, j].double()
                pi, pj = divmod(int(row.flatten().argmax()), w_t)
                ii, jj = torch.meshgrid(torch.arange(h_t).double(), torch.arange(w_t).double(), indexing="ij")
                kern = torch.exp(-((ii - pi) ** 2 + (jj - pj) ** 2) / (2 * sigma**2))
                p = torch.softmax((kern * row).flatten() / temperature, 0).reshape(h_t, w_t)
                pred[i, j] = torch.stack([(p.sum(0) * torch.tensor(tx)).sum(), (p.sum(1) * torch.tensor(ty)).sum()])
        for k, (x, y) in enumerate(kps[n].double().tolist()):
            u, v = (x - sw / 2) / (sw / 2), (y - sh / 2) / (sh / 2)
            total, acc, near, best = 0.0, torch.zeros(2, dtype=torch.float64), None, float("inf")
            for (i, j), p in pred.items():
                d = ((sx[j] / (sw / 2) - 1 - u) ** 2 + (sy[i] / (sh / 2) - 1 - v) ** 2 + 1e-5) ** 0.5
                if d < best:
                    best, near = d, p
                if radius - d > 0:
                    total, acc = total + (radius - d), acc + (radius - d) * p
            out[n, k] = acc / total if total > 0 else near
    return out.float()


class TestCHMTransfer:
    @pytest.mark.parametrize("radius", [0.1, 0.5, 0.01])  # 0.01: no cell that near, the nearest cell's
    def test_equals_its_steps_one_at_a_time(self, radius):
        g = torch.Generator().manual_seed(0)
        scores = torch.rand(2, 3, 5, 4, 6, generator=g) * 6
        kps = torch.rand(2, 4, 2, generator=g) * torch.tensor([100.0, 60.0])
        got, conf, per_cell = chm_transfer(scores, kps, (60, 100), (80, 120), 0.7, 2.0, radius)
        want = chm_transfer_by_loops(scores, kps, (60, 100), (80, 120), 0.7, 2.0, radius)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        assert per_cell.shape == (2, 15, 2) and conf.shape == (2, 4) and bool(((conf > 0) & (conf <= 1)).all())

    def test_padding_and_bad_keypoints_change_nothing_else(self):
        scores = torch.rand(1, 4, 4, 4, 4)
        kps = torch.tensor([[[10.0, 10.0], [float("nan"), 1e9]]])
        out, _, _ = chm_transfer(scores, kps, 32)
        torch.testing.assert_close(out[:, :1], chm_transfer(scores, kps[:, :1], 32)[0])

    def test_dense_flow_is_every_cells_prediction(self):
        scores = torch.full((1, 2, 2, 2, 2), -10.0)
        scores[0, :, :, 1, 0] = 10.0
        out = ScoreVolumeMatcher(lambda a, b: scores, readout="chm", dense_flow=True, temperature=0.1)(
            torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.tensor([[[4.0, 4.0]]]))
        torch.testing.assert_close(out.flow, torch.tensor([0.0, 8.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2),
                                   atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- feature extractors (#14)


def dift_matcher() -> FeatureFnMatcher:
    """The README's feature-extractor line, around the DIFT-style stand-in."""
    return FeatureFnMatcher(DIFTStyle(), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_multiple=8,
                            kernel_sigma=2.0)


class TestFeatureFnMatcher:
    def test_a_dift_style_extractor_finds_the_shift(self):
        src, trg = shifted_pair(128, (8, 8))
        kps = torch.tensor([[[40.0, 50.0], [80.0, 60.0], [64.0, 90.0]]])
        with torch.no_grad():
            out = dift_matcher()(src, trg, kps)
        assert isinstance(out, MatchOutput) and out.confidence.shape == (1, 3)
        torch.testing.assert_close(out.kps, kps + 8.0, atol=1.0, rtol=0)

    def test_inside_kbc_wrapper_and_its_input_multiple(self):
        src, trg = shifted_pair(256, (8, 8), grain=16)
        kps = torch.tensor([[[120.0, 110.0], [130.0, 118.0], [124.0, 126.0]]])
        matcher = dift_matcher()
        with torch.no_grad():
            info = KBCWrapper(matcher, input_size=128).forward_with_info(src, trg, kps, None)
        assert bool(info.refined.all())
        torch.testing.assert_close(info.kps, kps + 8.0, atol=1.5, rtol=0)  # a random-conv extractor
        with pytest.raises(ConfigError, match=r"multiple of 8 .*the nearest valid sizes are 128 and 136"):
            KBCWrapper(matcher, input_size=130)

    def test_source_and_target_of_different_sizes(self):
        """Each grid covers its own input: the same features over a target twice as wide."""
        src = torch.rand(1, 3, 32, 32)
        trg = F.interpolate(src, size=(32, 64), mode="nearest")
        m = FeatureFnMatcher(lambda img: F.avg_pool2d(img - 0.5, (8, 8 * img.shape[-1] // 32)), temperature=1e-3)
        out = m(src, trg, torch.tensor([[[12.0, 20.0]]]))
        torch.testing.assert_close(out.kps, torch.tensor([[[24.0, 20.0]]]), atol=1e-3, rtol=0)

    def test_bad_features_are_named(self):
        img = torch.rand(2, 3, 16, 16)
        kps = torch.ones(2, 1, 2)
        with pytest.raises(ShapeError, match=r"features of src_img returned by fn: expected shape \(2, C, h, w\)"):
            FeatureFnMatcher(lambda x: x[:1])(img, img, kps)
        with pytest.raises(ShapeError, match="3 channels for src_img but 2 for trg_img"):
            channels = iter([3, 2])
            FeatureFnMatcher(lambda x: x[:, :next(channels)])(img, img, kps)
        with pytest.raises(ShapeError, match="contain NaN or Inf"):
            FeatureFnMatcher(lambda x: x * float("nan"))(img, img, kps)
        with pytest.raises(ConfigError, match="needs a callable"):
            FeatureFnMatcher("dift")
        with pytest.raises(ShapeError, match="multiples of 14"):
            FeatureFnMatcher(lambda x: x, input_multiple=14)(img, img, kps)

    def test_a_module_extractor_is_a_submodule(self):
        m = FeatureFnMatcher(DIFTStyle())
        assert isinstance(m.fn, nn.Module) and any(p is m.fn.conv.weight for p in m.parameters())
