"""Tests of sosc.kbc.choice: which pass each keypoint of a zoomed pair keeps."""

from __future__ import annotations

import pytest
import torch

from sosc.kbc import KBCConfig, choose_pass2, cycle_errors


class TestCycleErrors:
    def test_distance_over_the_source_box_side(self):
        src = torch.tensor([[[10.0, 10.0], [20.0, 10.0]]])
        back = torch.tensor([[[13.0, 14.0], [20.0, 10.0]]])
        box = torch.tensor([[0.0, 0.0, 50.0, 25.0]])  # longer side 50
        assert cycle_errors(src, back, box)[0].tolist() == pytest.approx([0.1, 0.0])

    def test_a_degenerate_or_missing_box_counts_as_one_pixel(self):
        src, back = torch.zeros(2, 1, 2), torch.full((2, 1, 2), 3.0)
        box = torch.tensor([[5.0, 5.0, 5.0, 5.0], [float("nan")] * 4])
        assert torch.allclose(cycle_errors(src, back, box), torch.full((2, 1), 18.0**0.5))


class TestChoosePass2:
    def test_pass2_keeps_every_valid_keypoint(self):
        valid = torch.tensor([[True, False, True]])
        assert torch.equal(choose_pass2(KBCConfig(choice="pass2"), valid), valid)

    def test_cycle_keeps_pass1_only_where_it_comes_back_and_pass2_does_not(self):
        cfg = KBCConfig(choice="cycle", cycle_keep=0.2, cycle_reject=0.5)
        valid = torch.tensor([[True, True, True, True, False]])
        c1 = torch.tensor([[0.1, 0.1, 0.3, 0.1, 0.1]])
        c2 = torch.tensor([[0.6, 0.4, 0.9, 0.1, 0.9]])
        assert choose_pass2(cfg, valid, c1, c2).tolist() == [[False, True, True, True, False]]

    def test_cycle_needs_both_errors(self):
        with pytest.raises(ValueError, match="cycle errors"):
            choose_pass2(KBCConfig(choice="cycle"), torch.ones(1, 2, dtype=torch.bool))


class TestShapeChoice:
    """``choice="shape"``: each keypoint keeps pass 2 unless pass 1 lies more than
    ``shape_margin`` times nearer to the similarity fitted to pass 2."""

    @staticmethod
    def passes():
        src = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 5.0], [5.0, 0.0]]])
        second = 2 * src + 1.0  # pass 2 follows the layout...
        second[0, 4] += torch.tensor([10.0, 0.0])  # ...but one keypoint is 10 px off it
        first = second.clone() + 40.0  # pass 1 is far off everywhere...
        first[0, 4] = 2 * src[0, 4] + 1.0 + torch.tensor([7.0, 0.0])  # ...except there: 7 px off
        first[0, 5] = 2 * src[0, 5] + 1.0  # and on the layout exactly at the last keypoint
        return src, first, second

    def test_the_default_margin_gives_the_zoomed_pass_the_benefit_of_the_doubt(self):
        src, first, second = self.passes()
        valid = torch.ones(1, 6, dtype=torch.bool)
        keep2 = choose_pass2(KBCConfig(), valid, first=first, second=second, src_kps=src)
        # 7 px against 10 px is not 1.5 times nearer: pass 2; 0 px against 0 px: pass 2 too (ties)
        assert KBCConfig().shape_margin == 1.5 and keep2.tolist() == [[True] * 6]

    def test_margin_one_keeps_the_nearer_pass(self):
        src, first, second = self.passes()
        valid = torch.tensor([[True, True, True, True, True, False]])
        keep2 = choose_pass2(KBCConfig(shape_margin=1.0), valid, first=first, second=second, src_kps=src)
        assert keep2.tolist() == [[True, True, True, True, False, False]]  # invalid keypoints: never pass 2

    def test_shape_needs_both_passes(self):
        with pytest.raises(ValueError, match="both passes"):
            choose_pass2(KBCConfig(), torch.ones(1, 2, dtype=torch.bool))
