"""FeatureMatcher: the training-free baseline under the matcher contract."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sosc.errors import ConfigError, ShapeError
from sosc.matchers import FeatureMatcher, MatchOutput


@pytest.fixture(scope="module")
def matcher():
    return FeatureMatcher("tf_efficientnet_lite0", pretrained="package", strides=(8, 16)).eval()


def photo(size=(96, 128)):
    skdata = pytest.importorskip("skimage.data")
    img = torch.from_numpy(np.ascontiguousarray(skdata.astronaut())).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)


class TestFeatureMatcher:
    def test_identity_pair_recovers_keypoints(self, matcher):
        img = photo()
        kps = torch.tensor([[[20.0, 30.0], [64.0, 48.0], [100.0, 70.0], [40.0, 80.0]]])
        with torch.no_grad():
            out = matcher(img, img, kps, torch.ones(1, 4, dtype=torch.bool))
        assert isinstance(out, MatchOutput) and out.kps.shape == (1, 4, 2)
        assert (out.kps - kps).norm(dim=-1).max() < 8.0  # within one stride-8 cell
        assert out.confidence.shape == (1, 4) and (out.confidence <= 1).all()

    def test_padding_never_changes_valid_results(self, matcher):
        img = photo()
        kps = torch.tensor([[[20.0, 30.0], [64.0, 48.0], [0.0, 0.0]]])
        valid = torch.tensor([[True, True, False]])
        other = kps.clone()
        other[0, 2] = torch.tensor([1e4, -1e4])
        with torch.no_grad():
            a = matcher(img, img, kps, valid).kps
            b = matcher(img, img, other, valid).kps
        assert torch.equal(a[valid], b[valid])

    def test_a_second_copy_does_not_drag_the_prediction(self, matcher):
        """The default kernel soft-argmax (``kernel_sigma`` 2 cells): with the source photo twice,
        side by side, in the target, each keypoint lands on one copy; the plain soft-argmax
        (``kernel_sigma=None``) averages the two modes and lands between them (22 to 58 px off)."""
        img = photo()
        target = torch.cat([img, img], dim=-1)  # (1, 3, 96, 256): copies at x + 0 and x + 128
        kps = torch.tensor([[[20.0, 30.0], [64.0, 48.0], [100.0, 70.0], [40.0, 80.0]]])
        valid = torch.ones(1, 4, dtype=torch.bool)
        plain = FeatureMatcher("tf_efficientnet_lite0", pretrained="package", kernel_sigma=None).eval()
        with torch.no_grad():
            kernel_kps, plain_kps = matcher(img, target, kps, valid).kps, plain(img, target, kps, valid).kps
        assert matcher.kernel_sigma == 2.0
        shift = torch.tensor([128.0, 0.0])

        def off_the_copies(pred):
            return torch.minimum((pred - kps).norm(dim=-1), (pred - kps - shift).norm(dim=-1))

        assert off_the_copies(kernel_kps).max() < 8.0, kernel_kps  # within one stride-8 cell of a copy
        assert off_the_copies(plain_kps).min() > 16.0, plain_kps  # dragged between them

    @pytest.mark.parametrize("options", [{"kernel_sigma": "none"}, {"kernel_sigma": 0}, {"temperature": "0.02"}])
    def test_a_bad_soft_argmax_option_is_a_clear_error(self, options):
        """A string where a number or null belongs (``--matcher-args '{"kernel_sigma": "none"}'``)
        is a ConfigError naming the option, not a TypeError from a comparison."""
        with pytest.raises(ConfigError, match=next(iter(options))):
            FeatureMatcher("resnet18", pretrained=False, strides=(8,), **options)

    def test_untrained_projection_is_identity(self, matcher):
        for conv in matcher.proj:
            assert torch.equal(conv.weight[:, :, 0, 0], torch.eye(conv.weight.shape[0]))

    def test_size_not_divisible_is_a_clear_error(self, matcher):
        with pytest.raises(ShapeError, match="multiples of 16"):
            matcher(torch.rand(1, 3, 50, 64), torch.rand(1, 3, 50, 64), torch.zeros(1, 1, 2), None)

    def test_nan_image_is_a_clear_error(self, matcher):
        img = torch.rand(1, 3, 32, 32)
        img[0, 0, 0, 0] = float("nan")
        with pytest.raises(ShapeError, match="NaN"):
            matcher(img, img, torch.zeros(1, 1, 2), None)

    def test_trains(self):
        m = FeatureMatcher("resnet18", pretrained=False, strides=(8,), freeze_backbone=True).train()
        out = m(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 2) * 32, None)
        out.kps.sum().backward()
        assert m.proj[0].weight.grad is not None
        assert all(p.grad is None for p in m.backbone.parameters())


class TestDINOv2:
    """Issue #14: ``FeatureMatcher(backbone="vit_small_patch14_dinov2", pretrained=False,
    strides=(14,))`` inside ``KBCWrapper(input_size=224)`` failed with "Input height (224)
    doesn't match model (518)"."""

    @pytest.fixture(scope="class")
    def dino(self):
        torch.manual_seed(0)
        return FeatureMatcher(backbone="vit_small_patch14_dinov2", pretrained=False, strides=(14,)).eval()

    def test_inside_kbc_wrapper_at_224(self, dino):
        from sosc import KBCWrapper

        assert dino.input_multiple == 14
        kps = torch.tensor([[[100.0, 80.0], [110.0, 95.0], [96.0, 90.0]]])
        with torch.no_grad():
            info = KBCWrapper(dino, input_size=224).forward_with_info([torch.rand(3, 300, 200)],
                                                                      [torch.rand(3, 250, 260)], kps)
        assert info.kps.shape == (1, 3, 2) and torch.isfinite(info.kps).all()

    def test_an_input_size_that_is_not_a_multiple_of_14_is_refused_at_once(self, dino):
        from sosc import KBCWrapper
        from sosc.errors import ConfigError

        with pytest.raises(ConfigError, match=r"multiple of 14 .*the nearest valid sizes are 252 and 266"):
            KBCWrapper(dino, input_size=256)
