""":class:`KBCWrapper`: KBC around any matcher, and :class:`KBCOutput`, what it decided.

The flow of one batch: pass 1 (:func:`~sosc.kbc.passes.match_in_windows`) on the full target
and the source, shrunk where its keypoint box is large (:func:`~sosc.kbc.windows.pass1_source_windows`);
the target box of the chosen mode (:func:`~sosc.kbc.plan.target_box`); both windows, the
guard and the pairs that zoom (:func:`~sosc.kbc.plan.plan_windows`); pass 2
(:func:`~sosc.kbc.passes.match_in_windows`) on those pairs only; which pass each keypoint
keeps (:mod:`sosc.kbc.choice`); the merge (:func:`~sosc.kbc.plan.merge_pass2`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sosc.errors import ConfigError, ShapeError, check_shape
from sosc.geometry import as_size, full_windows, image_sizes
from sosc.kbc.choice import choose_pass2, cycle_errors
from sosc.kbc.config import KBCConfig
from sosc.kbc.inputs import check_original_inputs, check_wrapper_input_size
from sosc.kbc.passes import (
    Images,
    batch_size,
    confidence_of,
    index_images,
    match_in_windows,
    run_in_windows,
    valid_or_all,
)
from sosc.kbc.plan import REASONS, check_target_inputs, merge_pass2, plan_windows, target_box
from sosc.kbc.windows import kbc_box, kbc_windows, pass1_source_windows, zoom_params
from sosc.matchers.base import MatchOutput


@dataclass
class KBCOutput:
    """What :meth:`KBCWrapper.forward_with_info` returns. ``B`` pairs, ``N`` keypoints.

    Attributes:
        kps: ``(B, N, 2)`` predicted target keypoints, original target pixels (KBC result).
        plain_kps: ``(B, N, 2)`` the plain (full-image) prediction, original pixels: the
            "without KBC" result. It is pass 1 where pass 1 saw the whole source; where pass 1
            shrank the source (``pass1_shrunk``), the plain pass run for pairs that did not zoom,
            or for every pair under ``forward_with_info(with_plain=True)`` (NaN rows for zoomed
            pairs otherwise).
        src_window, trg_window: ``(B, 4)`` the windows that produced ``kps`` (full images
            where the pair kept pass 1).
        src_box, trg_box: ``(B, 4)`` the grown boxes that defined the windows (NaN: none).
        src_triggered, trg_triggered: ``(B,)`` bool, KBC triggered on that image.
        refined: ``(B,)`` bool, pass 2 ran on the pair.
        reason: ``(B,)`` int, why the pair did or did not zoom (:data:`sosc.kbc.plan.REASONS`).
        from_pass2: ``(B, N)`` bool, the keypoint's ``kps`` come from pass 2 (valid keypoints
            of zoomed pairs that the choice kept; :mod:`sosc.kbc.choice`).
        confidence: ``(B, N)`` the matcher's confidence of the kept pass, or ``None``.
        target: the target mode; ``"oracle"`` results leak the answer.
        pass1_shrunk: ``(B,)`` bool, pass 1 saw the source shrunk (``KBCConfig.pass1_src_px``,
            :func:`~sosc.kbc.windows.pass1_source_windows`), or ``None``.
        passes: ``(B,)`` int, KBC's own matcher passes per pair: pass 1, the plain pass where
            pass 1 shrank the source of a pair that does not zoom, the zoomed pass (and pass 3
            of ``zoom_passes=2`` where it ran), ``choice="cycle"``'s two reverse passes; not the
            comparison-only plain pass of ``forward_with_info(with_plain=True)``. ``None`` where
            a :class:`KBCOutput` is built without it.
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
    reason: torch.Tensor
    from_pass2: torch.Tensor
    confidence: torch.Tensor | None
    target: str
    pass1_shrunk: torch.Tensor | None = None
    passes: torch.Tensor | None = None

    @property
    def leaks_answer(self) -> bool:
        """True under ``oracle``: metrics from these results must say so."""
        return self.target == "oracle"

    def counts(self, valid: torch.Tensor | None = None) -> dict[str, int]:
        """What each pass decided: pairs by reason (:data:`~sosc.kbc.plan.REASONS`), and the
        valid keypoints of zoomed pairs that kept pass 2 or pass 1; where :attr:`passes` is
        known, ``matcher passes``, what KBC cost in all.

        >>> out = KBCOutput(*[torch.zeros(1, 2, 2)] * 2, *[torch.zeros(1, 4)] * 4, *[torch.ones(1, dtype=torch.bool)] * 3,
        ...                 torch.tensor([3]), torch.tensor([[True, False]]), None, "pred-box")
        >>> out.counts()
        {'pairs': 1, 'pairs kbc off': 0, 'pairs no box': 0, 'pairs large enough': 0, 'pairs zoomed': 1, 'keypoints': 2, 'keypoints zoomed, pass 2 kept': 1, 'keypoints zoomed, pass 1 kept': 1}
        """
        valid = torch.ones_like(self.from_pass2) if valid is None else valid.to(self.from_pass2.device)
        out = {"pairs": int(self.reason.numel())}
        for code, name in enumerate(REASONS):
            out[f"pairs {name}"] = int((self.reason == code).sum())
        zoomed = valid & self.refined[:, None]
        if self.pass1_shrunk is not None:
            out["pairs source shrunk in pass 1"] = int(self.pass1_shrunk.sum())
        if self.passes is not None:
            out["matcher passes"] = int(self.passes.sum())
        out["keypoints"] = int(valid.sum())
        out["keypoints zoomed, pass 2 kept"] = int((zoomed & self.from_pass2).sum())
        out["keypoints zoomed, pass 1 kept"] = int((zoomed & ~self.from_pass2).sum())
        return out


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

    Pass 1 runs on the whole batch: the full target, and the source shrunk so that its keypoint
    box spans at most ``pass1_src_px`` input pixels (the full source where it already does, or
    with ``pass1_src_px=None``; ``pred-box`` only). Pairs whose pass 1 shrank the source and
    that do not zoom get the plain pass instead. The source window comes
    from the source keypoints; the target window from ``target``: ``"pred-box"`` the pass-1
    predictions (valid only), ``"object-bbox"`` ``trg_bbox`` ``(B, 4)`` original target
    pixels (NaN rows: no trigger), ``"oracle"`` ``trg_kps`` ``(B, N, 2)`` (leaks the answer).
    Both windows come from the scale-aware zoom (:func:`~sosc.kbc.windows.pair_windows`). Pass 2
    runs only on the pairs where a window changed (the batch is indexed); the others keep pass 1
    bit for bit, and within a zoomed pair each keypoint keeps the pass that ``choice`` picks.
    ``enabled=False`` is the plain path. :meth:`KBCOutput.counts` says what each pass decided.

    Args:
        matcher: anything following the matcher contract (:mod:`sosc.matchers.base`; an
            ``nn.Module`` is registered as a submodule).
        input_size: network input ``(S_h, S_w)`` or an int.
        config: a :class:`KBCConfig` (default: its defaults); ``zoom_px="auto"`` becomes the
            matcher's ``kbc_zoom_px`` (:meth:`KBCConfig.for_matcher`), so :attr:`config` holds
            the zoom used.
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
        self.config = kbc_config(config, **options).for_matcher(matcher)

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
        zoom = f"zoom_px={c.zoom_px}, min_zoom={c.min_zoom}" if c.zoom_px is not None else f"tau={c.tau}, rho={c.rho}"
        return (f"input_size={self.input_size}, target={c.target!r}, enabled={c.enabled}, {zoom}, s_max={c.s_max}, "
                f"match_scales={c.match_scales}, choice={c.choice!r}"
                + (f", pass1_src_px={c.pass1_src_px}" if c.pass1_src_px is not None else ""))

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
        return self.forward_with_info(src_img, trg_img, src_kps, valid, trg_bbox, trg_kps, with_plain=False).kps

    def forward_with_info(
        self,
        src_img: Images,
        trg_img: Images,
        src_kps: torch.Tensor,
        valid: torch.Tensor | None = None,
        trg_bbox: torch.Tensor | None = None,
        trg_kps: torch.Tensor | None = None,
        with_plain: bool = True,
    ) -> KBCOutput:
        """Like ``forward``, returning a :class:`KBCOutput` (windows, triggers, the plain result).

        ``with_plain``: also run the plain pass on the zoomed pairs whose pass 1 shrank the
        source (``pass1_src_px``), so that ``plain_kps`` holds the result without KBC for every
        pair (one more matcher pass on those pairs, for comparison only; ``forward`` does not).
        """
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

        check_original_inputs(src_img, trg_img, src_kps, valid)
        src_box = kbc_box(src_kps.detach(), valid, cfg.margin, cfg.min_margin)
        src_full, trg_full = full_windows(src_size), full_windows(trg_size)
        shrink = cfg.pass1_src_px if cfg.enabled and cfg.target == "pred-box" else None
        pass1_win, shrunk = pass1_source_windows(src_box, src_size, self.input_size, shrink)
        # checked once above: the passes on these images and source keypoints run unchecked
        first, out1 = run_in_windows(self.matcher, src_img, trg_img, src_kps, valid, pass1_win, trg_full,
                                     self.input_size)
        conf1 = confidence_of(out1)
        trg_box = (target_box(cfg, first, valid, trg_bbox, trg_kps, src_kps, src_box) if cfg.enabled
                   else torch.full_like(src_box, float("nan")))
        plan = plan_windows(cfg, src_box, trg_box, src_size, trg_size, self.input_size)

        # the plain pass where pass 1 shrank the source: the answer of the pairs that do not
        # zoom, and (plain=True) the "without KBC" result of the ones that do
        plain, conf_plain = first, conf1
        redo = (shrunk & (~plan.refined | with_plain)).nonzero().flatten()
        if redo.numel() > 0:
            kps_r, out_r = run_in_windows(self.matcher, index_images(src_img, redo), index_images(trg_img, redo),
                                          src_kps[redo], valid[redo], src_full[redo], trg_full[redo],
                                          self.input_size)
            plain = merge_pass2(first, kps_r.to(first.dtype), redo)
            conf_r = confidence_of(out_r)
            if conf1 is not None and conf_r is not None:
                conf_plain = merge_pass2(conf1, conf_r.to(conf1.dtype), redo)
        unknown = shrunk & plan.refined & (not with_plain)
        plain = torch.where(unknown[:, None, None], torch.full_like(plain, float("nan")), plain)
        passes = 1 + (plan.refined | shrunk).long()  # KBC's own matcher passes per pair

        kps, conf = plain, conf_plain
        from_pass2 = torch.zeros_like(valid)
        index = plan.refined.nonzero().flatten()
        if index.numel() > 0:
            src_i, trg_i = index_images(src_img, index), index_images(trg_img, index)
            kps2, out2 = run_in_windows(self.matcher, src_i, trg_i, src_kps[index], valid[index],
                                        plan.src_window[index], plan.trg_window[index], self.input_size)
            if cfg.zoom_passes == 2 and cfg.target == "pred-box":
                kps2, out2, plan.trg_window[index], again = self._zoom_again(
                    src_i, trg_i, src_kps[index], valid[index], src_box[index], kps2, out2, plan.src_window[index],
                    plan.trg_window[index], trg_size[index])
                passes[index] += again.long()
            if cfg.choice == "cycle":
                passes[index] += 2
            use2 = self._choose(src_i, trg_i, src_kps[index], valid[index], src_box[index], first[index], kps2,
                                pass1_win[index], plan.src_window[index], plan.trg_window[index], trg_size[index])
            kps = merge_pass2(plain, torch.where(use2[..., None], kps2.to(first.dtype), first[index]), index)
            from_pass2 = merge_pass2(from_pass2, use2, index)
            conf2 = confidence_of(out2)
            if conf1 is not None and conf2 is not None:
                conf = merge_pass2(conf_plain, torch.where(use2, conf2.to(conf1.dtype), conf1[index]), index)
        return KBCOutput(kps, plain, plan.src_window, plan.trg_window, src_box, trg_box, plan.src_triggered,
                         plan.trg_triggered, plan.refined, plan.reason, from_pass2, conf, cfg.target, shrunk, passes)

    def _zoom_again(self, src_img, trg_img, src_kps, valid, src_box, kps2, out2, src_win, trg_win, trg_size):
        """``zoom_passes=2``: where the target box of the zoomed pass's predictions asks for a
        window at least ``min_zoom`` times smaller than the one it ran on, run once more on that
        window. Returns the ``K`` pairs' keypoints, output and target windows, and ``(K,)`` bool:
        the pairs that ran pass 3."""
        cfg = self.config
        box = target_box(cfg, kps2, valid, src_kps=src_kps, src_box=src_box)
        tau, rho = zoom_params(cfg, self.input_size)
        context = cfg.pred_box_context
        closer, _ = kbc_windows(box, trg_size, self.input_size, tau / context, rho / context, cfg.s_max)
        min_zoom = cfg.min_zoom if cfg.zoom_px is not None else 1.0
        again = torch.isfinite(box).all(-1) & ((closer[:, 2] - closer[:, 0]) * min_zoom <= trg_win[:, 2] - trg_win[:, 0])
        pick = again.nonzero().flatten()
        if pick.numel() == 0:
            return kps2, out2, trg_win, again
        kps3, out3 = run_in_windows(self.matcher, index_images(src_img, pick), index_images(trg_img, pick),
                                    src_kps[pick], valid[pick], src_win[pick], closer[pick], self.input_size)
        kps2 = merge_pass2(kps2, kps3, pick)
        trg_win = merge_pass2(trg_win, closer[pick], pick)
        conf2, conf3 = confidence_of(out2), confidence_of(out3)
        if conf2 is not None and conf3 is not None:
            out2 = MatchOutput(kps=kps2, confidence=merge_pass2(conf2, conf3, pick))
        return kps2, out2, trg_win, again

    def _choose(self, src_img, trg_img, src_kps, valid, src_box, first, kps2, pass1_win, src_win, trg_win,
                trg_size) -> torch.Tensor:
        """``(K, N)`` which keypoints of the ``K`` zoomed pairs keep pass 2 (:mod:`sosc.kbc.choice`);
        ``choice="cycle"`` runs both passes' predictions back to the source first."""
        if self.config.choice == "pass2":
            return choose_pass2(self.config, valid)
        if self.config.choice == "shape":
            return choose_pass2(self.config, valid, first=first, second=kps2, src_kps=src_kps)
        back1, _ = match_in_windows(self.matcher, trg_img, src_img, first, valid, full_windows(trg_size),
                                    pass1_win, self.input_size)
        back2, _ = match_in_windows(self.matcher, trg_img, src_img, kps2, valid, trg_win, src_win, self.input_size)
        return choose_pass2(self.config, valid, cycle_errors(src_kps, back1, src_box),
                            cycle_errors(src_kps, back2, src_box))
