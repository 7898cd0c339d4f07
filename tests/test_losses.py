import torch

from sosc.losses import keypoint_epe


class TestKeypointEPE:
    def test_per_pair_mean(self):
        pred = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 10.0], [0.0, 0.0]]])
        valid = torch.tensor([[True, True], [True, False]])
        # pair 0: (5 + 0) / 2 = 2.5; pair 1: 10 -> mean 6.25, normalised by 10
        assert torch.isclose(keypoint_epe(pred, torch.zeros(2, 2, 2), valid, 10), torch.tensor(0.625))

    def test_pair_without_keypoints_is_ignored(self):
        pred = torch.tensor([[[3.0, 4.0]], [[99.0, 99.0]]])
        valid = torch.tensor([[True], [False]])
        assert torch.isclose(keypoint_epe(pred, torch.zeros(2, 1, 2), valid, 10), torch.tensor(0.5))

    def test_no_valid_keypoint_gives_zero_with_gradient(self):
        pred = torch.rand(2, 3, 2, requires_grad=True)
        loss = keypoint_epe(pred, torch.zeros(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool), 32)
        loss.backward()
        assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()

    def test_padding_values_do_not_matter(self):
        valid = torch.tensor([[True, False]])
        a = keypoint_epe(torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]), torch.zeros(1, 2, 2), valid, 8)
        b = keypoint_epe(torch.tensor([[[1.0, 1.0], [1e6, -1e6]]]), torch.zeros(1, 2, 2), valid, 8)
        assert torch.equal(a, b)

    def test_exact_hit_has_finite_gradient(self):
        pred = torch.zeros(1, 2, 2, requires_grad=True)
        keypoint_epe(pred, torch.zeros(1, 2, 2), torch.ones(1, 2, dtype=torch.bool), 8).backward()
        assert torch.isfinite(pred.grad).all()
