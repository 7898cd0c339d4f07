"""FeatureMatcher: nearest-neighbour matching of pretrained CNN or ViT (DINOv2) features, a training-free baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sosc.matchers.backbone import Backbone
from sosc.matchers.base import Matcher, MatchOutput, check_matcher_inputs
from sosc.matchers.grid import check_soft_argmax_options, transfer_by_features


class FeatureMatcher(Matcher):
    """Match keypoints by cosine similarity of L2-normalised backbone features.

    Source features are sampled (bilinearly) at each source keypoint and compared with every
    target cell; a softmax with ``temperature``, windowed around its arg-max (kernel
    soft-argmax, ``kernel_sigma``), gives the expected target position. A 1x1 projection per
    stride, initialised to the identity, is the only trainable part unless the backbone is
    unfrozen, so the untrained matcher is exactly nearest-neighbour matching of the pretrained
    features.

    **Foundation-model features.** timm's DINOv2 ViTs work as backbones:
    ``FeatureMatcher("vit_small_patch14_dinov2.lvd142m", pretrained=True, strides=(14,))``
    (also ``vit_base_``, ``vit_large_``, ``vit_giant_patch14_dinov2`` and the ``_reg4_`` ones
    with registers): one stride, the patch (14), the last block's tokens as a ``h x w`` grid
    over the input (cell ``(i, j)`` is patch ``(i, j)``, centred at ``((j + 0.5) 14, (i + 0.5)
    14)``), ImageNet normalisation; any input whose sides are multiples of 14, so
    :attr:`input_multiple` is 14 and ``KBCWrapper(matcher, input_size=224)`` (or 252, 448,
    518...) fits. Weights from timm's hub (``pretrained=True``, online) or a local file
    (``pretrained="/path/to/file"``: timm's ``model.safetensors`` / ``.pth``, or DINOv2's own
    ``dinov2_vits14_pretrain.pth``, which timm converts). Any other extractor (DIFT, SD+DINO):
    :class:`~sosc.matchers.adapters.FeatureFnMatcher`.

    Args:
        backbone: timm model name (a CNN, or a ViT such as the DINOv2 ones above).
        pretrained: see :class:`sosc.matchers.backbone.Backbone` (``"package"`` gives real
            ImageNet weights offline for ``tf_efficientnet_lite0``).
        strides: feature strides to use; maps are resampled to the finest, each
            L2-normalised, concatenated and normalised again. Default ``(8, 16)``; a ViT has
            one, its patch (``(14,)`` for DINOv2).
        temperature: softmax temperature on cosine similarity. Default 0.02.
        kernel_sigma: kernel soft-argmax (Lee et al., SFNet, CVPR 2019): a Gaussian window of
            this sigma, in target cells of the finest stride, around each keypoint's arg-max
            multiplies its probabilities, so that a second mode far away cannot drag the
            estimate; ``None``: the plain soft-argmax. Default 2, our choice on the val splits
            (PCK@0.1 with the default KBC, real-semantic / synthetic: None 30.5 / 38.5, 1 32.9 /
            46.3, 2 33.9 / 45.6, 3 33.3 / 45.4; without KBC None 17.6 / 27.4, 2 20.8 / 32.3;
            ``results/kbc_real_semantic.md``).
        freeze_backbone: keep the backbone fixed. Default True.

    Input: images ``(B, 3, S_h, S_w)`` in ``[0, 1]`` (``S`` divisible by the coarsest stride,
    :attr:`input_multiple`),
    ``src_kps`` ``(B, N, 2)`` input pixels, ``valid`` ``(B, N)``. Output: :class:`MatchOutput`
    with ``kps`` ``(B, N, 2)`` input pixels and ``confidence`` ``(B, N)``.
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        pretrained: bool | str = "package",
        strides: Sequence[int] = (8, 16),
        temperature: float = 0.02,
        kernel_sigma: float | None = 2.0,
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
        src_size, trg_size = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        if src_size == trg_size:
            src_f, trg_f = self.features(torch.cat([src_img, trg_img])).chunk(2)
        else:
            src_f, trg_f = self.features(src_img), self.features(trg_img)
        kps, conf = transfer_by_features(src_f, trg_f, src_kps, src_size, trg_size, self.temperature, self.kernel_sigma)
        return MatchOutput(kps=kps, confidence=conf)
