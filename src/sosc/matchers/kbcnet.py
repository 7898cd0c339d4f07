"""KBCNet: backbone -> CSFA -> multi-channel 4D correlation -> center-pivot decoder -> soft-argmax.

See ``METHOD.md`` (KBCNet). The pieces live in :mod:`sosc.matchers.csfa`,
:mod:`sosc.matchers.correlation` and :mod:`sosc.matchers.cp4d`; this module holds the
function that turns scores into a flow, and the thin :class:`KBCNet` module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sosc.errors import ConfigError
from sosc.matchers.backbone import Backbone
from sosc.matchers.base import Matcher, MatchOutput, check_matcher_inputs
from sosc.matchers.correlation import CorrelationDecoder, correlation_volume, resample_to
from sosc.matchers.csfa import CSFA
from sosc.matchers.grid import check_soft_argmax_options, sample_at, sample_flow, soft_argmax
from sosc.matchers.refine import KeypointRefiner

#: Backbone strides KBCNet reads (METHOD.md): fine, middle, coarse.
SCALES = (8, 16, 32)


def flow_from_scores(
    scores: torch.Tensor, size: Sequence[int], temperature: float, kernel_sigma: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense flow from a score volume, by (kernel) soft-argmax over the target cells, in float32.

    Args:
        scores: ``(B, h_s, w_s, h_t, w_t)``, higher is a better match.
        size: target input size ``(S_h, S_w)`` that the target grid covers.
        temperature: softmax temperature on the scores.
        kernel_sigma: Gaussian window (in target cells) around the arg-max, or ``None``.

    Returns:
        ``flow`` ``(B, 2, h_s, w_s)``: expected target ``(x, y)`` in input pixels per source cell;
        ``peak`` ``(B, h_s, w_s)``: the softmax's peak probability, in ``[0, 1]``.
    """
    with torch.autocast(device_type=scores.device.type, enabled=False):
        pos, peak = soft_argmax(scores.float(), size, temperature, kernel_sigma)
    return pos.permute(0, 3, 1, 2), peak


def correlation_grid(working: Sequence[int], max_cells: int | None) -> tuple[int, int]:
    """The ``(h, w)`` cells of the correlation volume for a working grid ``working`` ``(h, w)``:
    itself when both sides are at most ``max_cells`` (or ``max_cells`` is None), else scaled
    down so that the longer side is ``max_cells``, the shorter rounded (at least 1).

    >>> correlation_grid((16, 16), 16), correlation_grid((32, 32), 16), correlation_grid((32, 24), 16)
    ((16, 16), (16, 16), (16, 12))
    """
    h, w = int(working[0]), int(working[1])
    if max_cells is None or max(h, w) <= max_cells:
        return h, w
    scale = max_cells / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


class KBCNet(Matcher):
    """KBCNet matcher: ``forward(src_img, trg_img, src_kps, valid) -> MatchOutput``.

    Inputs: ``src_img``, ``trg_img`` ``(B, 3, S_h, S_w)`` float RGB in ``[0, 1]`` (sizes may
    differ between source and target, each a multiple of 32, non-square allowed);
    ``src_kps`` ``(B, N, 2)`` ``(x, y)`` source keypoints in input pixels; ``valid`` ``(B, N)``
    bool. Output :class:`MatchOutput` with ``kps`` ``(B, N, 2)`` target keypoints (input
    pixels of the target), ``flow`` ``(B, 2, h_s, w_s)`` float32 (target ``(x, y)`` per source
    cell of the correlation grid), ``confidence`` ``(B, N)`` (the peak softmax probability behind
    each keypoint), ``scores`` ``(B, h_s, w_s, h_t, w_t)`` if ``return_scores``.

    The correlation grid is the working stride's grid, pooled to at most ``max_cells`` cells
    per side when that is given (``max_cells=16``: CATs' grid, what ``configs/spair.yaml`` uses):
    up to 256 px at stride 16 it *is* the working grid (the computation is unchanged, bit for
    bit); at 512 px the 32 x 32 working grid is area-pooled to 16 x 16, so the 4D volume has 16^4
    cells instead of 32^4 (2.6x the pairs/s of the uncapped network on the dev CPU), and the
    stride-8 keypoint refinement does the fine work (``docs/PERF_NOTES.md``, entry 6).

    Keypoints: with ``refine`` (default) and working stride 16, each keypoint is re-located on
    the stride-8 target grid (:mod:`sosc.matchers.refine`: its row of the score volume,
    upsampled, plus a learnt weight times the cosine similarity of the projected stride-8
    features), so ``kps`` are finer than the dense ``flow``; without it (or at working
    stride 8) ``kps`` are the ``flow`` sampled at the source keypoints.

    Every keypoint, valid or not, gets a prediction; a padded keypoint's
    non-finite coordinates are read as ``(0, 0)``, so padded entries never change valid ones and
    a pair without any valid keypoint still gets a defined (ignored by the loss) result.
    NaN/Inf in an image or a valid keypoint, or a size that is not a multiple of 32, raise
    :class:`~sosc.errors.ShapeError`.

    Pipeline: timm backbone at strides 8/16/32 -> CSFA (projection to ``channels``, working
    stride cells cross-attend to the other scales) -> cosine correlation with
    ``K = 1 + 3`` channels (the aligned map and each projected scale resampled to the
    correlation grid; ``K = 3`` without CSFA) -> decoder of center-pivot 4D blocks -> one score per
    (source cell, target cell) -> softmax over target cells -> flow -> keypoints.

    Args:
        backbone: timm CNN name (default ``"resnet101"``).
        pretrained: backbone weights: ``False`` (default, random init), ``True`` (timm hub),
            ``"package"`` (offline packaged weights) or a weights file path; see
            :class:`~sosc.matchers.backbone.Backbone`.
        stride: working stride, 16 (default) or 8.
        max_cells: the most cells per side of the correlation grid; a larger working grid is
            area-pooled to it, keeping its aspect ratio (side ``round(n * max_cells / max(h, w))``).
            ``None`` (default): the working grid at every size, whose volume grows as
            ``(S / stride)^4`` (what every checkpoint before this option computed). A model
            trained with one setting is best run with it: the cells' size in pixels changes.
        channels: CSFA width ``C`` (default 128), divisible by ``heads`` and 4.
        heads: attention heads (default 4).
        csfa_layers: cross-attention layers (default 1).
        mlp_ratio: CSFA MLP width over ``channels`` (default 2.0).
        use_csfa: cross-scale attention on (default); ``False`` is the ablation (correlation
            of the projected scales only).
        decoder: ``"center-pivot"`` (default) or ``"full"`` 4D convolutions (ablation).
        decoder_channels: channels of each decoder block (default ``(16, 16, 16)``).
        decoder_strides: target-dims stride of each block (default all 1). Strides shrink the
            decoder's volume (speed at stride 8 or large inputs); the score head upsamples back.
        kernel_size: odd 4D kernel size (default 3).
        groups: GroupNorm groups in the decoder (default 4).
        temperature: softmax temperature on the scores (default 0.05; scores start as the
            mean cosine correlation, in ``[-1, 1]``).
        kernel_sigma: Gaussian window in target cells for kernel soft-argmax (default ``None``:
            plain soft-argmax).
        refine: re-locate keypoints on the stride-8 grid (default ``True``; no effect at
            working stride 8). Our addition to METHOD.md's KBCNet, see ``docs/METHOD.md``.
        refine_weight: initial weight of the stride-8 cosine similarity (default 1.0; learnt).
        freeze_backbone: keep backbone weights and BN statistics fixed (default ``False``).
        grad_checkpointing: in training, recompute the activations of each backbone block and
            each decoder block in backward instead of storing them: less memory for about one
            extra forward (default ``False``; see :mod:`sosc.matchers.checkpointing`). With a
            trained backbone, its BatchNorm running statistics are updated twice per step
            (forward and recompute); a frozen backbone is not affected.
        return_scores: also return the score volume (default ``False``; it is large).
        check_inputs: validate shapes and finiteness (default ``True``; one host sync).

    KBC (``KBCConfig(zoom_px="auto")``, the default) zooms a KBCNet's keypoint boxes to
    :attr:`kbc_zoom_px` = 160 input pixels (96 for matchers that state none): measured on val
    pairs with the frozen EfficientNet-Lite0 KBCNet of ``configs/synthetic.yaml`` (PCK@0.1,
    ``choice="shape"``; zoom_px 96 / 128 / 160): synthetic val 49.5 / 53.7 / 54.3 (a checkpoint
    trained with fill-ratio windows) and 47.3 / 51.1 / 53.4 (one trained with 96-px windows),
    real-semantic val 31.5 / 32.4 / 31.9 (``results/kbc_real_semantic.md``).
    """

    kbc_zoom_px = 160.0

    def __init__(
        self,
        backbone: str = "resnet101",
        pretrained: bool | str = False,
        stride: int = 16,
        max_cells: int | None = None,
        channels: int = 128,
        heads: int = 4,
        csfa_layers: int = 1,
        mlp_ratio: float = 2.0,
        use_csfa: bool = True,
        decoder: str = "center-pivot",
        decoder_channels: Sequence[int] = (16, 16, 16),
        decoder_strides: Sequence[int] | None = None,
        kernel_size: int = 3,
        groups: int = 4,
        temperature: float = 0.05,
        kernel_sigma: float | None = None,
        refine: bool = True,
        refine_weight: float = 1.0,
        freeze_backbone: bool = False,
        grad_checkpointing: bool = False,
        return_scores: bool = False,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        if stride not in (8, 16):
            raise ConfigError(f"stride (the working stride) must be 8 or 16, got {stride}")
        check_soft_argmax_options(temperature, kernel_sigma)
        if max_cells is not None and int(max_cells) < 1:
            raise ConfigError(f"max_cells must be a positive int or None, got {max_cells}")
        self.stride = stride
        self.max_cells = None if max_cells is None else int(max_cells)
        self.input_multiple = max(SCALES)
        self.use_csfa = use_csfa
        self.temperature = float(temperature)
        self.kernel_sigma = kernel_sigma
        self.return_scores = return_scores
        self.check_inputs = check_inputs
        self.backbone = Backbone(
            backbone, pretrained, SCALES, freeze=freeze_backbone, grad_checkpointing=grad_checkpointing
        )
        self.csfa = CSFA(
            self.backbone.channels,
            SCALES,
            stride,
            channels=channels,
            heads=heads,
            layers=csfa_layers if use_csfa else 0,
            mlp_ratio=mlp_ratio,
        )
        self.correlation_channels = len(SCALES) + (1 if use_csfa else 0)
        self.decoder = CorrelationDecoder(
            self.correlation_channels,
            decoder_channels,
            decoder_strides,
            kernel_size=kernel_size,
            groups=groups,
            decoder=decoder,
            grad_checkpointing=grad_checkpointing,
        )
        self.refiner = KeypointRefiner(refine_weight) if refine and stride > min(SCALES) else None

    def correlation_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of ``images`` ``(B, 3, S_h, S_w)``: ``(B, K, C, h, w)`` on the correlation grid
        (:func:`correlation_grid`) and ``(B, C, S_h / 8, S_w / 8)``, the projected stride-8 map
        (for the refinement).

        Channel order: the CSFA-aligned map (when ``use_csfa``), then each projected scale,
        finest first, resampled to the correlation grid.
        """
        aligned, projected = self.csfa(self.backbone(images))
        size = correlation_grid(aligned.shape[-2:], self.max_cells)
        maps = ([resample_to(aligned, size)] if self.use_csfa else []) + [resample_to(p, size) for p in projected]
        return torch.stack(maps, dim=1), projected[0]

    def score_volume(
        self, src_img: torch.Tensor, trg_img: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score volume ``(B, h_s, w_s, h_t, w_t)`` of an image pair ``(B, 3, S_h, S_w)`` each,
        with the projected stride-8 maps of source and target ``(B, C, S_h / 8, S_w / 8)``."""
        if src_img.shape == trg_img.shape:  # one backbone pass over the joint batch
            stack, fine = self.correlation_features(torch.cat([src_img, trg_img]))
            (src, trg), (src_fine, trg_fine) = stack.chunk(2), fine.chunk(2)
        else:
            src, src_fine = self.correlation_features(src_img)
            trg, trg_fine = self.correlation_features(trg_img)
        return self.decoder(correlation_volume(src, trg)), src_fine, trg_fine

    def forward(
        self,
        src_img: torch.Tensor,
        trg_img: torch.Tensor,
        src_kps: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> MatchOutput:
        if self.check_inputs:
            valid = check_matcher_inputs(src_img, trg_img, src_kps, valid, self.input_multiple)
        elif valid is None:
            valid = torch.ones(src_kps.shape[:2], dtype=torch.bool, device=src_kps.device)
        src_size, trg_size = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        scores, src_fine, trg_fine = self.score_volume(src_img, trg_img)
        flow, peak = flow_from_scores(scores, trg_size, self.temperature, self.kernel_sigma)
        points = torch.where(
            valid[..., None], src_kps, torch.nan_to_num(src_kps, 0.0, 0.0, 0.0)
        ).float()
        if self.refiner is not None:
            kps, confidence = self.refiner(
                scores, src_fine, trg_fine, points, src_size, trg_size, self.temperature, self.kernel_sigma
            )
        else:
            with torch.autocast(device_type=flow.device.type, enabled=False):
                kps = sample_flow(flow, points, src_size)
                confidence = sample_at(peak[:, None], points, src_size)[..., 0]
        return MatchOutput(
            kps=kps, flow=flow, confidence=confidence, scores=scores if self.return_scores else None
        )
