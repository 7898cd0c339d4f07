"""One contract test over every matcher of the package, alone and inside KBCWrapper.

The contract (:mod:`sosc.matchers.base`): ``matcher(src_img, trg_img, src_kps, valid)`` returns
``(B, N, 2)`` target keypoints in input pixels, float32 and finite, and padded keypoints never
change the valid results. :class:`~sosc.kbc.KBCWrapper` around any of them keeps the contract in
original pixels. A new matcher is added to ``MATCHERS`` below, with the input size it runs at.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sosc.errors import ShapeError
from sosc.kbc import KBCWrapper
from sosc.matchers import (
    CallableMatcher,
    FeatureFnMatcher,
    FeatureMatcher,
    FlowMatcher,
    KBCNet,
    Matcher,
    ScoreVolumeMatcher,
    keypoints_of,
)
from sosc.matchers.grid import cell_centers

torch.set_num_threads(2)
SIZE = 64
#: How far KBC's output may move when padding is added (float rounding only). A random-weight
#: ViT's features are nearly flat, so its soft-argmax turns the batched matmul's rounding
#: (1e-8, which depends on the number of keypoints) into 1e-4 px in pass 1, and KBC's windows
#: into a few 1e-3 px.
KBC_PADDING_ATOL = {"FeatureMatcher-DINOv2": 2e-2}


def _shift_flow(src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
    """A dense-flow net: every source cell moves 3 px right (absolute, input pixels, 8x8 grid)."""
    b = src.shape[0]
    centres = cell_centers(8, 8, src.shape[-2:]).permute(2, 0, 1)[None].expand(b, 2, 8, 8).clone()
    centres[:, 0] += 3.0 + 0.0 * trg.mean()
    return centres


def _cosine_volume(src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
    """A score-volume net: cosine similarity of 8x8-pooled colours, ``(B, 8, 8, 8, 8)``."""
    fs, ft = F.avg_pool2d(src, 8), F.avg_pool2d(trg, 8)
    fs, ft = F.normalize(fs.flatten(2), dim=1), F.normalize(ft.flatten(2), dim=1)
    return torch.einsum("bcs,bct->bst", fs, ft).reshape(src.shape[0], 8, 8, 8, 8)


def _flat_volume(src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
    """CHM's layout: the same volume flattened, ``(B, 64, 64)``, scaled as CHM's votes."""
    return 10.0 * _cosine_volume(src, trg).reshape(src.shape[0], 64, 64)


def _pooled_colours(image: torch.Tensor) -> torch.Tensor:
    """A feature extractor: centred colours pooled to stride 8, ``(B, 3, S_h / 8, S_w / 8)``."""
    return F.avg_pool2d(image - 0.5, 8)


#: name -> (build, input size the contract runs at: a multiple of the matcher's input_multiple)
MATCHERS = {
    "KBCNet": (lambda: KBCNet(backbone="resnet18", pretrained=False, channels=32, heads=2,
                              decoder_channels=(8,), groups=2), 64),
    "FeatureMatcher": (lambda: FeatureMatcher(backbone="resnet18", pretrained=False, strides=(8, 16)), 64),
    "FeatureMatcher-DINOv2": (lambda: FeatureMatcher(backbone="vit_small_patch14_dinov2", pretrained=False,
                                                     strides=(14,)), 56),
    "CallableMatcher": (lambda: CallableMatcher(lambda s, t, k, v: k * 0.5 + 4.0), 64),
    "FlowMatcher": (lambda: FlowMatcher(_shift_flow, flow_units="input"), 64),
    "ScoreVolumeMatcher": (lambda: ScoreVolumeMatcher(_cosine_volume, temperature=0.1), 64),
    "ScoreVolumeMatcher-chm": (lambda: ScoreVolumeMatcher(_flat_volume, src_grid=(8, 8), readout="chm"), 64),
    "FeatureFnMatcher": (lambda: FeatureFnMatcher(_pooled_colours, input_multiple=8, temperature=0.05), 64),
}


@pytest.fixture(scope="module", params=sorted(MATCHERS))
def sized(request) -> tuple[Matcher, int, str]:
    torch.manual_seed(0)
    build, size = MATCHERS[request.param]
    return build().eval(), size, request.param


@pytest.fixture(scope="module")
def matcher(sized) -> Matcher:
    return sized[0]


@pytest.fixture(scope="module")
def size(sized) -> int:
    return sized[1]


def _pairs(b: int = 2, n: int = 5, seed: int = 0, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(b, 3, size, size, generator=g)
    trg = torch.rand(b, 3, size, size, generator=g)
    kps = 4.0 + (size - 8.0) * torch.rand(b, n, 2, generator=g)
    return src, trg, kps


def test_every_matcher_subclasses_the_base_and_records_its_arguments(matcher, size):
    assert isinstance(matcher, Matcher)
    assert isinstance(matcher.init_args, dict)
    assert size % matcher.input_multiple == 0


@torch.no_grad()
def test_plain_output_has_the_contract_shape_dtype_and_is_finite(matcher, size):
    src, trg, kps = _pairs(size=size)
    out = keypoints_of(matcher(src, trg, kps, torch.ones(2, 5, dtype=torch.bool)))
    assert out.shape == (2, 5, 2) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_padding_never_changes_the_valid_results(matcher, size):
    src, trg, kps = _pairs(size=size)
    valid = torch.ones(2, 5, dtype=torch.bool)
    ref = keypoints_of(matcher(src, trg, kps, valid))
    padded = torch.cat([kps, torch.full((2, 3, 2), 1e4)], dim=1)  # far outside, and invalid
    pad_valid = torch.cat([valid, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    out = keypoints_of(matcher(src, trg, padded, pad_valid))
    assert torch.allclose(out[:, :5], ref, atol=1e-4)


@torch.no_grad()
def test_inside_kbc_wrapper_the_contract_holds_in_original_pixels(sized):
    matcher, size, name = sized
    g = torch.Generator().manual_seed(1)
    src = [torch.rand(3, 150, 200, generator=g), torch.rand(3, 120, 90, generator=g)]
    trg = [torch.rand(3, 100, 130, generator=g), torch.rand(3, 160, 160, generator=g)]
    kps = torch.tensor([[[20.0, 30.0], [28.0, 35.0], [25.0, 40.0]], [[10.0, 12.0], [14.0, 20.0], [12.0, 16.0]]])
    valid = torch.ones(2, 3, dtype=torch.bool)
    wrapped = KBCWrapper(matcher, input_size=size)
    info = wrapped.forward_with_info(src, trg, kps, valid)
    assert info.kps.shape == (2, 3, 2) and info.kps.dtype == torch.float32 and torch.isfinite(info.kps).all()
    assert bool(info.refined.any())  # the small keypoint boxes zoom
    padded = torch.cat([kps, torch.full((2, 2, 2), 5e3)], dim=1)
    pad_valid = torch.cat([valid, torch.zeros(2, 2, dtype=torch.bool)], dim=1)
    out = wrapped.forward_with_info(src, trg, padded, pad_valid)
    assert torch.allclose(out.kps[:, :3], info.kps, atol=KBC_PADDING_ATOL.get(name, 1e-3))
    assert torch.equal(out.refined, info.refined)


# -------------------------------------------------------------------------------------- bad inputs (#12)

BAD_IMAGES = {
    # before: uint8 images gave NaN for every keypoint (backbones), float 0-255 images ran on
    # (PCK@0.1 0.184 -> 0.052), an HWC or empty batch failed deep inside or with a foreign shape
    "uint8": (lambda img: (img * 255).to(torch.uint8), r"expected float RGB in \[0, 1\], got dtype torch.uint8; pass floats, e.g. img.float\(\) / 255"),
    "0-255": (lambda img: img * 255, r"values in \[.*\] but images must be float RGB in \[0, 1\] .*divide by 255"),
    "slightly below 0": (lambda img: img - 0.05, r"values in \[-0.0[45]"),
    "channels last": (lambda img: img.permute(0, 2, 3, 1), r"expected shape \(B, 3, H, W\) float RGB in \[0, 1\], got \(2, (64, 64|56, 56), 3\): channels last\?"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
@pytest.mark.parametrize("which", ["src_img", "trg_img"])
def test_bad_images_are_refused_naming_the_argument(matcher, size, case, which):
    src, trg, kps = _pairs(size=size)
    change, message = BAD_IMAGES[case]
    args = (change(src), trg) if which == "src_img" else (src, change(trg))
    with pytest.raises(ShapeError, match=f"{which}: {message}"):
        matcher(*args, kps, None)


@torch.no_grad()
def test_resampling_overshoot_is_tolerated(matcher, size):
    src, trg, kps = _pairs(size=size)
    out = keypoints_of(matcher(src * 1.005, trg - 0.005, kps, None))
    assert torch.isfinite(out).all()


def test_empty_batch_is_named(matcher, size):
    src, trg, kps = _pairs(size=size)
    with pytest.raises(ShapeError, match=rf"src_img: the batch is empty, got shape \(0, 3, {size}, {size}\)"):
        matcher(src[:0], trg[:0], kps[:0], None)


@pytest.mark.parametrize("wrapped", [False, True])
@torch.no_grad()
def test_under_bf16_autocast_keypoints_are_float32_and_not_rounded(matcher, size, wrapped):
    """Before: coordinates took the scores' dtype (bf16: 1 px steps from 128 px, 2 px from 256)."""
    src, trg, kps = _pairs(seed=3, size=size)
    kps = kps * 0.5 + size * 0.375  # small enough that KBC zooms when wrapped
    run = KBCWrapper(matcher, input_size=size) if wrapped else matcher
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = keypoints_of(run(src, trg, kps, None))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not torch.equal(out, out.bfloat16().float())  # not on the bf16 grid
