"""Tests of sosc.kbc.inputs: what KBCWrapper (through match_plain / match_in_windows) is given (#12)."""

from __future__ import annotations

import pytest
import torch
from stand_ins import Recorder, images
from torch import nn

from sosc.errors import ConfigError, ShapeError
from sosc.geometry import full_windows
from sosc.kbc import KBCWrapper, match_in_windows, match_plain

torch.set_num_threads(1)


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
