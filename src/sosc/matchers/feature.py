"""FeatureMatcher: nearest-neighbour matching of pretrained CNN features, a training-free baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sosc.matchers.backbone import Backbone
from sosc.matchers.base import Matcher, MatchOutput, check_matcher_inputs
from sosc.matchers.grid import check_soft_argmax_options, sample_at, soft_argmax


class FeatureMatcher(Matcher):
    """Match keypoints by cosine similarity of L2-normalised backbone features.

    Source features are sampled (bilinearly) at each source keypoint and compared with every
    target cell; a softmax with ``temperature`` (optionally a kernel soft-argmax) gives the
    expected target position. A 1x1 projection per stride, initialised to the identity,
    is the only trainable part unless the backbone is unfrozen, so the untrained matcher
    is exactly nearest-neighbour matching of the pretrained features.

    Args:
        backbone: timm model name.
        pretrained: see :class:`sosc.matchers.backbone.Backbone` (``"package"`` gives real
            ImageNet weights offline for ``tf_efficientnet_lite0``).
        strides: feature strides to use; maps are resampled to the finest, each
            L2-normalised, concatenated and normalised again. Default ``(8, 16)``.
        temperature: softmax temperature on cosine similarity. Default 0.02.
        kernel_sigma: kernel soft-argmax window in target cells, or None (plain soft-argmax).
        freeze_backbone: keep the backbone fixed. Default True.

    Input: images ``(B, 3, S_h, S_w)`` in ``[0, 1]`` (``S`` divisible by the coarsest stride),
    ``src_kps`` ``(B, N, 2)`` input pixels, ``valid`` ``(B, N)``. Output: :class:`MatchOutput`
    with ``kps`` ``(B, N, 2)`` input pixels and ``confidence`` ``(B, N)``.
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        pretrained: bool | str = "package",
        strides: Sequence[int] = (8, 16),
        temperature: float = 0.02,
        kernel_sigma: float | None = None,
        freeze_backbone: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, pretrained=pretrained, strides=strides, freeze=freeze_backbone)
        self.proj = nn.ModuleList(nn.Conv2d(c, c, kernel_size=1) for c in self.backbone.channels)
        for conv in self.proj:
            nn.init.eye_(conv.weight[:, :, 0, 0])
            nn.init.zeros_(conv.bias)
        check_soft_argmax_options(temperature, kernel_sigma)
        self.temperature = temperature
        self.kernel_sigma = kernel_sigma
        self.input_multiple = max(self.backbone.strides)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` L2-normalised features at the finest stride."""
        maps = self.backbone(image)
        size = maps[0].shape[-2:]
        parts = []
        for proj, fmap in zip(self.proj, maps):
            fmap = proj(fmap)
            if fmap.shape[-2:] != size:
                fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)
            parts.append(F.normalize(fmap, dim=1))
        return F.normalize(torch.cat(parts, dim=1), dim=1)

    def forward(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, valid: torch.Tensor | None = None
    ) -> MatchOutput:
        valid = check_matcher_inputs(src_img, trg_img, src_kps, valid, multiple=self.input_multiple)
        size = tuple(src_img.shape[-2:])
        feats = self.features(torch.cat([src_img, trg_img]))
        src_f, trg_f = feats.chunk(2)
        query = F.normalize(sample_at(src_f, src_kps, size), dim=-1)  # (B, N, C)
        scores = torch.einsum("bnc,bchw->bnhw", query, trg_f)
        kps, conf = soft_argmax(scores, size, self.temperature, self.kernel_sigma)
        return MatchOutput(kps=kps, confidence=conf)
