"""KBC on real photographs, with the training-free FeatureMatcher (packaged ImageNet weights,
offline): the astronaut case of issue #11 and the portrait pair (two people, keypoints from
``sosc.data.real_semantic``'s annotations, the same as ``shared/data/portrait_pair.json``).

The numbers in the comments were measured with KBC's defaults (``sosc.KBCConfig``) and the
FeatureMatcher's (its kernel soft-argmax, ``kernel_sigma=2``), input 256.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sosc import KBCConfig, KBCWrapper
from sosc.data import real_semantic as rs
from sosc.data.real_semantic import photos as photos_mod
from sosc.kbc import REASONS
from sosc.matchers import FeatureMatcher

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: the astronaut photo's keypoints over the whole person (eyes, nose, mouth, the collar ring's
#: sides, the mission badge, the name tag), (x, y) pixels of the 512 x 512 photo
BODY = [[204.0, 101.0], [246.0, 103.0], [225.0, 128.0], [225.0, 145.0], [125.0, 200.0], [300.0, 200.0],
        [170.0, 385.0], [305.0, 355.0]]


@pytest.fixture(scope="module")
def matcher() -> FeatureMatcher:
    return FeatureMatcher().eval()


@pytest.fixture(scope="module")
def photos() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    ann = rs.load_annotations()
    out = {}
    for name in ("astronaut", "grace_hopper"):
        inst = ann.instances[name]
        arr = photos_mod.load_photo(ann.photos[inst.photo])
        out[name] = (torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / 255,
                     torch.as_tensor(inst.kps, dtype=torch.float32))
    return out


def mean_error(pred: torch.Tensor, gt: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(pred[0] - gt, dim=-1).mean())


def test_a_large_source_and_a_small_target_zoom_and_land(matcher, photos):
    """Issue #11's astronaut case: the photo at full size against itself scaled to 0.3 on a
    640 x 480 canvas. The guard of earlier versions refused this pair (47.5 px with the
    FeatureMatcher); KBC zooms the target and lands within a few pixels (1.2 px; plain 40.5)."""
    image = photos["astronaut"][0]
    small = torch.from_numpy(np.asarray(Image.fromarray(
        (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((154, 154), Image.BICUBIC)))
    canvas = torch.full((480, 640, 3), 128, dtype=torch.uint8)
    canvas[200:354, 300:454] = small
    target = canvas.permute(2, 0, 1).float() / 255
    src = torch.tensor([BODY])
    gt = src[0] * (154 / 512) + torch.tensor([300.0, 200.0])
    with torch.no_grad():
        out = KBCWrapper(matcher, 256).forward_with_info([image], [target], src)
    assert REASONS[int(out.reason[0])] == "zoomed" and bool(out.trg_triggered[0])
    plain, kbc = mean_error(out.plain_kps, gt), mean_error(out.kps, gt)
    assert plain > 20.0 and kbc < 5.0, (plain, kbc)


def test_portrait_grace_hopper_to_astronaut(matcher, photos):
    """The portrait pair, Grace Hopper's face to the astronaut's: 18.9 px plain; KBC 10.2 px (KBC as
    issue #11 measured it, with the plain soft-argmax: 17.3 -> 27.4 px, the zoom made every keypoint
    worse)."""
    (src_img, src_kps), (trg_img, trg_kps) = photos["grace_hopper"], photos["astronaut"]
    with torch.no_grad():
        out = KBCWrapper(matcher, 256).forward_with_info([src_img], [trg_img], src_kps[None])
    plain, kbc = mean_error(out.plain_kps, trg_kps), mean_error(out.kps, trg_kps)
    assert plain == pytest.approx(18.9, abs=0.5)
    assert kbc <= plain and kbc < 12.0, (plain, kbc)


def test_portrait_astronaut_to_grace_hopper(matcher, photos):
    """The other direction: 38.8 px plain, KBC 21.8 px. With the plain soft-argmax (the
    FeatureMatcher's default until the kernel soft-argmax was chosen on the val splits) it was
    29.0 -> 30.5 px, KBC above plain: the shape choice kept pass 2's nose tip and a mouth corner
    where pass 1 was nearer."""
    (src_img, src_kps), (trg_img, trg_kps) = photos["astronaut"], photos["grace_hopper"]
    with torch.no_grad():
        out = KBCWrapper(matcher, 256).forward_with_info([src_img], [trg_img], src_kps[None])
    plain, kbc = mean_error(out.plain_kps, trg_kps), mean_error(out.kps, trg_kps)
    assert plain == pytest.approx(38.8, abs=0.5)
    assert kbc <= plain and kbc < 25.0, (plain, kbc)


def test_the_old_fill_ratio_is_still_worse_on_the_portrait_pair(matcher, photos):
    """What issue #11 measured, kept reachable (``zoom_px=None``: METHOD's fill ratio 0.7) and
    worse than the default in the direction where KBC helps (27.4 px as measured then)."""
    (src_img, src_kps), (trg_img, trg_kps) = photos["grace_hopper"], photos["astronaut"]
    with torch.no_grad():
        old = KBCWrapper(matcher, 256, config=KBCConfig(zoom_px=None, pred_box="all", choice="pass2"))
        out_old = old.forward_with_info([src_img], [trg_img], src_kps[None])
        out_new = KBCWrapper(matcher, 256).forward_with_info([src_img], [trg_img], src_kps[None])
    assert mean_error(out_new.kps, trg_kps) < mean_error(out_old.kps, trg_kps)
