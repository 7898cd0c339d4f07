""":class:`KBCWrapper`: KBC around any matcher, and :class:`KBCOutput`, what it decided.

The flow of one batch: pass 1 (:func:`~sosc.kbc.passes.match_plain`) on the full images;
the target box of the chosen mode (:func:`~sosc.kbc.plan.target_box`); both windows, the
guard and the pairs that zoom (:func:`~sosc.kbc.plan.plan_windows`); pass 2
(:func:`~sosc.kbc.passes.match_in_windows`) on those pairs only; the merge
(:func:`~sosc.kbc.plan.merge_pass2`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sosc.errors import ConfigError, ShapeError, check_shape
from sosc.geometry import as_size, image_sizes
from sosc.kbc.config import KBCConfig
from sosc.kbc.inputs import check_wrapper_input_size
from sosc.kbc.passes import (
    Images,
    batch_size,
    confidence_of,
    index_images,
    match_in_windows,
    match_plain,
    valid_or_all,
)
from sosc.kbc.plan import check_target_inputs, merge_pass2, plan_windows, target_box
from sosc.kbc.windows import kbc_box


@dataclass
class KBCOutput:
    """What :meth:`KBCWrapper.forward_with_info` returns. ``B`` pairs, ``N`` keypoints.

    Attributes:
        kps: ``(B, N, 2)`` predicted target keypoints, original target pixels (KBC result).
        plain_kps: ``(B, N, 2)`` the pass-1 (plain, full-image) prediction, original pixels:
            the "without KBC" result at no extra cost.
        src_window, trg_window: ``(B, 4)`` the windows that produced ``kps`` (full images
            where the pair kept pass 1).
        src_box, trg_box: ``(B, 4)`` the grown boxes that defined the windows (NaN: none).
        src_triggered, trg_triggered: ``(B,)`` bool, KBC triggered on that image (before
            the guard).
        refined: ``(B,)`` bool, pass 2 ran on the pair and gave ``kps``.
        fallback: ``(B,)`` bool, the ``pred-box`` guard kept pass 1 for the pair.
        confidence: ``(B, N)`` the matcher's confidence of the kept pass, or ``None``.
        target: the target mode; ``"oracle"`` results leak the answer.
    """

    kps: torch.Tensor
    plain_kps: torch.Tensor
    src_window: torch.Tensor
    trg_window: torch.Tensor
    src_box: torch.Tensor
    trg_box: torch.Tensor
    src_triggered: torch.Tensor
    trg_triggered: torch.Tensor
    refined: torch.Tensor
    fallback: torch.Tensor
    confidence: torch.Tensor | None
    target: str

    @property
    def leaks_answer(self) -> bool:
        """True under ``oracle``: metrics from these results must say so."""
        return self.target == "oracle"


def kbc_config(config: KBCConfig | None = None, **options: Any) -> KBCConfig:
    """``config`` (default :class:`KBCConfig`) with ``options`` replacing its fields.

    Raises:
        ConfigError: naming an unknown option and the known ones, or an out-of-range value.

    >>> kbc_config(tau=0.3).tau
    0.3
    """
    known = {f.name for f in dataclasses.fields(KBCConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown KBC option(s) {unknown}; KBCConfig has {sorted(known)}")
    return dataclasses.replace(config or KBCConfig(), **options)


class KBCWrapper(nn.Module):
    """KBC around any matcher: picks a window per image, runs the matcher, maps back.

    Called as ``trg_kps = wrapped(src_img, trg_img, src_kps, valid, trg_bbox=None, trg_kps=None)``
    with **original** images (a ``(B, 3, H, W)`` tensor or a list of ``(3, H_i, W_i)``, float
    RGB in ``[0, 1]``), ``src_kps`` ``(B, N, 2)`` original source pixels, ``valid`` ``(B, N)``
    bool or ``None``; returns ``(B, N, 2)`` original target pixels.
    :meth:`forward_with_info` returns a :class:`KBCOutput` with the windows and flags.

    Pass 1 runs the plain path (full images) on the whole batch. The source window comes
    from the source keypoints; the target window from ``target``: ``"pred-box"`` the pass-1
    predictions (valid only), ``"object-bbox"`` ``trg_bbox`` ``(B, 4)`` original target
    pixels (NaN rows: no trigger), ``"oracle"`` ``trg_kps`` ``(B, N, 2)`` (leaks the answer).
    Pass 2 runs only on the pairs where a window changed (the batch is indexed); the others
    keep pass 1 bit for bit. ``enabled=False`` or ``tau=0`` is the plain path.

    Args:
        matcher: anything following the matcher contract (:mod:`sosc.matchers.base`; an
            ``nn.Module`` is registered as a submodule).
        input_size: network input ``(S_h, S_w)`` or an int.
        config: a :class:`KBCConfig` (default: its defaults).
        **options: :class:`KBCConfig` fields that replace ``config``'s, e.g. ``target="object-bbox"``
            (``train_p`` plays no part here).

    Raises:
        ConfigError: for a matcher that is not callable, an unknown or out-of-range option, or
            an ``input_size`` that is not a multiple of the matcher's ``input_multiple``.
        ShapeError (when called): for inputs that break the conventions above
            (:func:`sosc.kbc.inputs.check_original_inputs`), naming the argument.
    """

    def __init__(
        self,
        matcher: Any,
        input_size: int | Sequence[int] = 256,
        config: KBCConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if not callable(matcher):
            raise ConfigError(f"matcher must be callable (an nn.Module or function), got {type(matcher).__name__}")
        self.matcher = matcher
        self.input_size = as_size(input_size)
        check_wrapper_input_size(matcher, self.input_size)
        self.config = kbc_config(config, **options)

    @classmethod
    def from_config(cls, matcher: Any, config: KBCConfig, input_size: int | Sequence[int] = 256) -> KBCWrapper:
        """Build from a :class:`KBCConfig` (same as ``KBCWrapper(matcher, input_size, config)``)."""
        return cls(matcher, input_size=input_size, config=config)

    @property
    def leaks_answer(self) -> bool:
        """True under ``target="oracle"``."""
        return self.config.leaks_answer

    def extra_repr(self) -> str:
        c = self.config
        return (f"input_size={self.input_size}, target={c.target!r}, enabled={c.enabled}, tau={c.tau}, "
                f"rho={c.rho}, margin={c.margin}, s_max={c.s_max}, guard={c.guard}")

    def forward(
        self,
        src_img: Images,
        trg_img: Images,
        src_kps: torch.Tensor,
        valid: torch.Tensor | None = None,
        trg_bbox: torch.Tensor | None = None,
        trg_kps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, N, 2)`` predicted target keypoints, original target pixels (see the class)."""
        return self.forward_with_info(src_img, trg_img, src_kps, valid, trg_bbox, trg_kps).kps

    def forward_with_info(
        self,
        src_img: Images,
        trg_img: Images,
        src_kps: torch.Tensor,
        valid: torch.Tensor | None = None,
        trg_bbox: torch.Tensor | None = None,
        trg_kps: torch.Tensor | None = None,
    ) -> KBCOutput:
        """Like ``forward``, returning a :class:`KBCOutput` (windows, triggers, pass-1 result)."""
        cfg = self.config
        check_shape("src_kps", src_kps, ("B", "N", 2))
        b, n = src_kps.shape[:2]
        for name, images in (("src_img", src_img), ("trg_img", trg_img)):
            if batch_size(images) != b:
                raise ShapeError(f"{name} holds {batch_size(images)} images but src_kps has {b} pairs")
        valid = valid_or_all(valid, b, n, src_kps.device)
        check_target_inputs(cfg, trg_bbox, trg_kps, b, n)
        device, dtype = src_kps.device, src_kps.dtype
        src_size = image_sizes(src_img).to(device, dtype)
        trg_size = image_sizes(trg_img).to(device, dtype)

        plain, out1 = match_plain(self.matcher, src_img, trg_img, src_kps, valid, self.input_size)
        conf1 = confidence_of(out1)
        src_box = kbc_box(src_kps.detach(), valid, cfg.margin, cfg.min_margin)
        trg_box = (target_box(cfg, plain, valid, trg_bbox, trg_kps) if cfg.enabled
                   else torch.full_like(src_box, float("nan")))
        plan = plan_windows(cfg, src_box, trg_box, src_size, trg_size, self.input_size, conf1, valid)

        kps, conf = plain, conf1
        index = plan.refined.nonzero().flatten()
        if index.numel() > 0:
            kps2, out2 = match_in_windows(
                self.matcher, index_images(src_img, index), index_images(trg_img, index), src_kps[index],
                valid[index], plan.src_window[index], plan.trg_window[index], self.input_size,
            )
            kps = merge_pass2(plain, kps2, index)
            conf2 = confidence_of(out2)
            if conf1 is not None and conf2 is not None:
                conf = merge_pass2(conf1, conf2, index)
        return KBCOutput(kps, plain, plan.src_window, plan.trg_window, src_box, trg_box, plan.src_triggered,
                         plan.trg_triggered, plan.refined, plan.fallback, conf, cfg.target)
