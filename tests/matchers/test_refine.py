"""Keypoint refinement on the stride-8 grid: score rows, the fine soft-argmax, and KBCNet's use of it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sosc.errors import ShapeError
from sosc.matchers.grid import cell_centers, sample_at, sample_flow
from sosc.matchers.kbcnet import KBCNet
from sosc.matchers.refine import KeypointRefiner, refine_keypoints, score_rows


def test_score_rows_agree_with_bilinear_sampling_of_the_volume():
    torch.manual_seed(0)
    b, hs, ws, ht, wt, size = 2, 4, 6, 3, 5, (64, 96)
    scores = torch.randn(b, hs, ws, ht, wt)
    # inside, on the border, beyond the outer cell centres and outside the image
    points = torch.cat([torch.rand(b, 7, 2) * torch.tensor([96.0, 64.0]), torch.tensor([[[0.0, 0.0], [96.0, 64.0], [-5.0, 70.0]]] * b)], 1)
    volume = scores.reshape(b, hs, ws, ht * wt).permute(0, 3, 1, 2)
    expected = sample_at(volume, points, size).reshape(b, -1, ht, wt)
    assert torch.allclose(score_rows(scores, points, size), expected, atol=1e-5)


def test_score_rows_read_nan_as_zero():
    scores = torch.randn(1, 2, 3, 2, 2)
    rows = score_rows(scores, torch.tensor([[[float("nan"), float("nan")], [0.0, 0.0]]]), (32, 48))
    assert torch.equal(rows[0, 0], rows[0, 1])


def test_unchecked_nan_keypoint_does_not_crash():
    torch.manual_seed(0)
    net = KBCNet(backbone="tf_efficientnet_lite0", check_inputs=False).eval()
    kps = torch.tensor([[[float("nan"), 10.0], [20.0, 30.0]]])
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), kps, torch.ones(1, 2, dtype=torch.bool))
    assert torch.isfinite(out.kps[0, 1]).all()


def test_score_rows_reject_bad_shapes():
    with pytest.raises(ShapeError, match="scores must be"):
        score_rows(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2), (32, 32))


def test_fine_similarity_moves_a_keypoint_by_half_a_coarse_cell():
    """Coarse rows that cannot tell two stride-8 cells apart; the fine features can."""
    torch.manual_seed(0)
    size = (64, 64)
    rows = torch.zeros(1, 1, 4, 4)  # stride 16: no preference
    trg_fine = torch.randn(1, 32, 8, 8)
    src_fine = torch.randn(1, 32, 8, 8)
    point = torch.tensor([[[20.0, 44.0]]])  # source cell (5, 2) at stride 8
    src_fine[0, :, 5, 2] = trg_fine[0, :, 3, 6]  # it looks like target cell (row 3, col 6)
    kps, conf = refine_keypoints(rows, src_fine, trg_fine, point, size, size, weight=1.0, temperature=0.02)
    target = cell_centers(8, 8, size)[3, 6]
    assert torch.allclose(kps[0, 0], target, atol=0.5)
    assert conf.item() > 0.9


def test_with_zero_weight_the_coarse_peak_decides():
    rows = torch.full((1, 1, 4, 4), -1.0)
    rows[0, 0, 1, 2] = 1.0
    fine = torch.randn(1, 8, 8, 8)
    kps, _ = refine_keypoints(rows, fine, fine, torch.tensor([[[3.0, 3.0]]]), (64, 64), (64, 64), 0.0, 0.01)
    # the upsampled peak sits between the two stride-8 cells of coarse cell (1, 2): (40, 24)
    assert torch.allclose(kps[0, 0], torch.tensor([40.0, 24.0]), atol=1.0)


def test_refiner_weight_is_learnt():
    refiner = KeypointRefiner(0.5)
    scores = torch.randn(1, 2, 2, 2, 2)
    fine = torch.randn(2, 8, 4, 4)
    kps, _ = refiner(scores, fine[:1], fine[1:], torch.tensor([[[5.0, 9.0]]]), (32, 32), (32, 32), 0.05)
    kps.sum().backward()
    assert refiner.weight.grad is not None and refiner.weight.item() == 0.5


class TestKBCNetRefine:
    def run(self, **kwargs):
        """A KBCNet (EfficientNet-Lite0, random weights) on two random 64 x 96 pairs."""
        torch.manual_seed(0)
        net = KBCNet(backbone="tf_efficientnet_lite0", **kwargs).eval()
        torch.manual_seed(1)
        src, trg = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
        kps = torch.rand(2, 5, 2) * torch.tensor([96.0, 64.0])
        with torch.no_grad():
            out = net(src, trg, kps, torch.ones(2, 5, dtype=torch.bool))
        return net, out, src, trg, kps

    def test_without_refine_keypoints_sample_the_flow(self):
        net, out, _, _, kps = self.run(refine=False)
        assert net.refiner is None
        assert torch.allclose(out.kps, sample_flow(out.flow, kps, (64, 96)))

    def test_refined_keypoints_follow_the_fine_grid(self):
        net, out, src, trg, kps = self.run(return_scores=True)
        with torch.no_grad():
            _, src_fine = net.correlation_features(src)
            _, trg_fine = net.correlation_features(trg)
            rows = score_rows(out.scores, kps, (64, 96))
            expected, _ = refine_keypoints(
                rows, src_fine, trg_fine, kps, (64, 96), (64, 96), net.refiner.weight, net.temperature
            )
        assert isinstance(net.refiner, KeypointRefiner)
        assert src_fine.shape[-2:] == (8, 12)  # stride 8
        assert torch.allclose(out.kps, expected, atol=1e-3)
        # finer than the working-stride flow sampled at the keypoints, not equal to it
        assert not torch.allclose(out.kps, sample_flow(out.flow, kps, (64, 96)), atol=1e-2)

    def test_no_refiner_at_working_stride_8(self):
        assert KBCNet(backbone="tf_efficientnet_lite0", stride=8).refiner is None

    def test_fine_similarity_of_identical_images_sends_keypoints_home(self):
        """Same image twice: the fine cosine similarity peaks at the keypoint's own cell."""
        torch.manual_seed(0)
        net = KBCNet(backbone="tf_efficientnet_lite0", refine_weight=20.0).eval()
        img = torch.rand(1, 3, 64, 64)
        kps = cell_centers(8, 8, 64).reshape(1, -1, 2)
        with torch.no_grad():
            out = net(img, img, kps, torch.ones(1, 64, dtype=torch.bool))
        assert F.pairwise_distance(out.kps[0], kps[0]).median() < 4.0
