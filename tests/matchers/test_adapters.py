"""Tests of sosc.matchers.adapters with stand-in nets of each kind, alone and inside KBCWrapper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sosc.errors import ConfigError, ShapeError
from sosc.kbc import KBCWrapper, match_plain
from sosc.matchers.adapters import (
    CallableMatcher,
    FlowMatcher,
    ScoreVolumeMatcher,
    as_score_volume,
    check_matcher_inputs,
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

    def test_target_first_and_normalisation(self):
        net = StaticFlowNet(torch.zeros(1, 2, 2, 2))
        matcher = FlowMatcher(net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), target_first=True)
        src, trg = torch.full((1, 3, 8, 8), 0.75), torch.full((1, 3, 8, 8), 0.25)
        matcher(src, trg, torch.zeros(1, 1, 2), None)
        first, second = net.seen[-1]
        assert torch.allclose(first, torch.full_like(first, -1.0))  # (0.25 - 0.5) / 0.25: the target
        assert torch.allclose(second, torch.full_like(second, 1.0))

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
