"""sosc.matchers.grid: the cell-centre convention, sampling features and flows, soft-argmax.

Coordinates (positions, flows, sampling positions) are float32 whatever the dtype of the
features or scores and under autocast; flows are exact up to the image border.
"""

from __future__ import annotations

import math

import pytest
import torch

from sosc.matchers.grid import (
    cell_centers,
    from_cells,
    pad_linear,
    sample_at,
    sample_flow,
    soft_argmax,
    to_cells,
)

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


class TestCells:
    def test_centres_and_cell_coordinates_agree(self):
        centres = cell_centers(3, 4, (48, 64))
        assert centres[2, 3].tolist() == [56.0, 40.0]
        cells = to_cells(centres.reshape(-1, 2), (3, 4), (48, 64))
        assert torch.equal(from_cells(cells, (3, 4), (48, 64)), centres.reshape(-1, 2))
        assert cells[-1].tolist() == [3.0, 2.0]


class TestSampleAt:
    def test_border_value_beyond_the_outer_centres(self):
        ramp = torch.arange(4.0).view(1, 1, 1, 4)  # cells centred at x = 1, 3, 5, 7 of an 8-pixel input
        out = sample_at(ramp, torch.tensor([[[0.0, 1.0], [2.0, 1.0], [8.0, 1.0]]]), (2, 8))
        assert out.flatten().tolist() == [0.0, 0.5, 3.0]

    def test_positions_are_float32_for_bf16_features(self):
        """A point near the right edge of a 256-pixel input: sampled in bf16 it was read at 240.0
        instead of 240.3 (the value 0 instead of 0.019)."""
        xs = cell_centers(1, 32, (8, 256))[0, :, 0]  # stride 8
        ramp = ((xs - 240.0) / 16.0).view(1, 1, 1, 32)  # 0 at x = 240, 1/16 per pixel
        points = torch.tensor([[[240.3, 4.0]]])
        want = 0.3 / 16.0
        assert sample_at(ramp, points, (8, 256)).item() == pytest.approx(want, abs=1e-6)
        got = sample_at(ramp.bfloat16(), points, (8, 256))
        assert got.dtype == torch.bfloat16 and got.float().item() == pytest.approx(want, abs=2e-4)
        with torch.autocast(**BF16):
            assert sample_at(ramp, points, (8, 256)).item() == pytest.approx(want, abs=1e-6)


class TestSampleFlow:
    def test_reproduces_an_affine_flow_up_to_the_border(self):
        h, w, size = 4, 6, (64, 96)
        a = torch.tensor([[0.9, -0.2], [0.15, 1.1]])
        t = torch.tensor([5.0, -3.0])
        ys, xs = (torch.arange(h) + 0.5) * 16, (torch.arange(w) + 0.5) * 16
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (h, w, 2)
        flow = (centres @ a.T + t).permute(2, 0, 1)[None]
        pts = torch.tensor([[[0.0, 0.0], [96.0, 64.0], [3.0, 50.0], [47.3, 12.9]]])
        assert torch.allclose(sample_flow(flow, pts, size), pts @ a.T + t, atol=1e-4)

    def test_identity_flow_is_exact_at_the_border(self):
        """The reported case: a 4x4 identity flow over 64 px keeps (1, 1) and (63, 32)."""
        flow = cell_centers(4, 4, 64).permute(2, 0, 1)[None]
        pts = torch.tensor([[[1.0, 1.0], [63.0, 32.0], [0.0, 64.0]]])
        torch.testing.assert_close(sample_flow(flow, pts, (64, 64)), pts, atol=1e-5, rtol=0)

    def test_float32_whatever_the_flow_dtype(self):
        flow = cell_centers(16, 16, 256).permute(2, 0, 1)[None]
        pts = torch.tensor([[[204.8, 100.3]]])
        with torch.autocast(**BF16):
            out = sample_flow(flow, pts, (256, 256))
        assert out.dtype == torch.float32 and torch.allclose(out, pts, atol=1e-4)
        assert sample_flow(flow.double(), pts, (256, 256)).dtype == torch.float32

    def test_pad_linear_replicates_a_single_cell(self):
        assert pad_linear(torch.ones(1, 2, 1, 3)).shape == (1, 2, 3, 5)


class TestSoftArgmax:
    def scores(self) -> torch.Tensor:
        """Two peaks at 200 and 216 px (cells 12 and 13 of a 16-cell row over 256 px), 7:3."""
        scores = torch.full((1, 1, 1, 16), -1e4)
        scores[..., 12:14] = torch.tensor([0.7, 0.3]).log()
        return scores

    def test_the_reported_two_peaks(self):
        pos, conf = soft_argmax(self.scores(), (16, 256), temperature=1.0)
        assert pos.dtype == torch.float32 and pos[0, 0].tolist() == pytest.approx([204.8, 8.0], abs=1e-4)
        assert conf.item() == pytest.approx(0.7, abs=1e-6)

    def test_bf16_autocast_keeps_the_answer(self):
        """Before: 205.0 under bf16 autocast (the expectation was a bf16 matmul)."""
        with torch.autocast(**BF16):
            pos, conf = soft_argmax(self.scores(), (16, 256), temperature=1.0)
        assert pos.dtype == torch.float32 and conf.dtype == torch.float32
        assert pos[0, 0, 0].item() == pytest.approx(204.8, abs=1e-4)

    def test_bf16_scores_give_float32_positions(self):
        """Before: the position took the scores' dtype (bf16: 205.0)."""
        pos, _ = soft_argmax(self.scores().bfloat16(), (16, 256), temperature=1.0)
        assert pos.dtype == torch.float32
        assert pos[0, 0, 0].item() == pytest.approx(204.8, abs=0.02)  # bf16 scores: 0.7 is 0.6992...

    def test_kernel_window_under_autocast(self):
        scores = self.scores()
        scores[..., 0] = torch.tensor(0.5).log()  # a far second mode (below the peak) that the kernel ignores
        with torch.autocast(**BF16):
            pos, _ = soft_argmax(scores, (16, 256), temperature=1.0, kernel_sigma=1.0)
        assert pos.dtype == torch.float32
        near = 0.3 * math.exp(-0.5)  # the neighbour one cell away, under a kernel of 1 cell
        assert pos[0, 0, 0].item() == pytest.approx(200 + 16 * near / (0.7 + near), abs=1e-3)
