"""The one KBC configuration: every number of KBC, with its default written here only.

:class:`KBCConfig` is what :class:`~sosc.kbc.KBCWrapper`, the LightningModule
(``model.kbc``), the data modules' train-time KBC (``data.init_args.kbc``, linked from
``model.kbc`` by the ``sosc`` CLI) and ``sosc-match`` (``--kbc.<field>``) all take. The
functions of :mod:`sosc.kbc.windows` take the same numbers as keyword arguments whose
defaults are read from this class (``rho: float = KBCConfig.rho``), so each default exists
once. ``docs/METHOD.md`` says which defaults are our choice and how they were chosen.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from sosc.errors import ConfigError

Target = Literal["pred-box", "object-bbox", "oracle"]
TARGETS: tuple[str, ...] = ("pred-box", "object-bbox", "oracle")
Choice = Literal["pass2", "shape", "cycle"]
CHOICES: tuple[str, ...] = ("pass2", "shape", "cycle")
PredBox = Literal["all", "robust", "similarity"]
PRED_BOXES: tuple[str, ...] = ("all", "robust", "similarity")

#: ``zoom_px="auto"`` for a matcher that states no zoom of its own (:attr:`Matcher.kbc_zoom_px
#: <sosc.matchers.Matcher.kbc_zoom_px>` ``None``, or not a :class:`~sosc.matchers.Matcher`),
#: and wherever no matcher is at hand: input pixels, chosen with the training-free
#: ``FeatureMatcher`` on the real-semantic val split (``docs/METHOD.md``).
DEFAULT_ZOOM_PX = 96.0


@dataclass
class KBCConfig:
    """The options of KBC (``docs/METHOD.md``; every default is our choice unless noted).

    Which window each image gets:

    Attributes:
        enabled: KBC at evaluation time (``sosc test``/``predict``, ``sosc-match``,
            :class:`~sosc.kbc.KBCWrapper`); ``False`` keeps every window the full image.
            Training-time KBC is ``train_p`` alone.
        target: what defines the target window at test/predict time: ``"pred-box"`` (the
            pass-1 predictions, leak-free, the default), ``"object-bbox"`` (the annotated
            target object box) or ``"oracle"`` (ground-truth target keypoints: leaks the
            answer, for analysis only).
        zoom_px: **scale-aware zoom**: each image's window is chosen so that its grown keypoint
            box spans about ``zoom_px`` network-input pixels along its longer side, the scale
            the matcher's features work at, whatever the image and input sizes. ``"auto"`` (the
            default): the matcher's own measured scale, its ``kbc_zoom_px`` attribute
            (``KBCNet``: 160), else :data:`DEFAULT_ZOOM_PX` (96) (:meth:`for_matcher`; the
            wrapper, the LightningModule and the data module's train-time windows resolve it).
            ``None`` uses METHOD.md's fixed fill ratio ``rho`` with trigger ``tau`` instead.
        pass1_src_px: ``pred-box`` only: pass 1 sees the source **shrunk** so that its grown
            keypoint box spans at most this many input pixels (zero padding around it), so that
            a target object several times smaller than the source object is found; pairs whose
            target then does not zoom get the plain pass instead (one extra pass, as a zoomed
            pair's pass 2). ``None``: pass 1 is the plain pass
            (:func:`~sosc.kbc.windows.pass1_source_windows`).
        min_zoom: with ``zoom_px``, an image zooms only where its window is at least this many
            times smaller than the whole image (smaller zooms are not worth a second pass).
        tau: with ``zoom_px=None``: trigger threshold on ``max(box_w, box_h) / max(W, H)``;
            ``0`` never triggers.
        rho: fill ratio, the box's longer side over the window side (``0 < rho <= 1``): with
            ``zoom_px=None`` the fill of every zoomed window; with ``zoom_px`` its cap (at an
            input under ``zoom_px / rho`` pixels the box keeps this much context).
        margin: grow the box by this fraction of its side, per side and per axis.
        min_margin: ...but by at least this many original pixels per side.
        s_max: the window side is never below ``max(W, H) / s_max`` (the zoom cap).
        match_scales: where one image of a pair cannot zoom as far as ``zoom_px`` asks (the cap,
            or the image's edge), zoom the other one less, so that both keypoint boxes reach
            the network at one scale.
        pred_box: ``pred-box`` only: the box of ``"all"`` valid pass-1 predictions; of the
            ``"robust"`` ones (predictions farther than ``robust_k`` times the median distance
            from their median are left out: a stray keypoint does not blow the window up); or
            ``"similarity"``: the source box scaled by the median ratio of pairwise distances
            and placed at the predictions' median (:func:`~sosc.kbc.windows.similarity_box`).
        robust_k: the ``"robust"`` box's outlier distance, in median distances.
        pred_box_context: ``pred-box`` only: the target window's side is multiplied by this
            (``>= 1``: more context around boxes predicted by an imperfect pass 1).
        choice: which pass each keypoint of a zoomed pair keeps: ``"pass2"`` (the zoomed pass);
            ``"shape"``: pass 2 unless pass 1 is ``shape_margin`` times nearer to where a
            similarity transform fitted robustly from the source keypoints to the zoomed
            predictions puts it (no extra pass); or ``"cycle"``:
            pass 1 where pass 1's forward-backward check passes (``cycle_keep``) and pass 2's
            fails (``cycle_reject``), at two reverse matcher passes on the zoomed pairs
            (:mod:`sosc.kbc.choice`).
        shape_margin: ``choice="shape"``: a keypoint keeps pass 2 unless pass 1 lies more than
            this many times nearer to the fitted position (``1``: whichever is nearer; above 1
            the zoomed pass, which sees the object larger, gets the benefit of the doubt).
        zoom_passes: zoomed passes per pair: ``1``, or ``2``: where the box of pass 2's
            predictions asks for a window at least ``min_zoom`` times smaller than pass 2's
            target window, a pass 3 runs on it (the target found, then seen closer).
        cycle_keep: ``choice="cycle"``: pass 1's prediction matched back to the source lands
            within this fraction of the source keypoint box's side from its keypoint.
        cycle_reject: ``choice="cycle"``: pass 2's lands farther than this fraction.
        train_p: training-time probability that a pair is cropped around its ground-truth
            keypoint boxes (:func:`~sosc.kbc.kbc_train_windows`); ``0`` never.

    Raises:
        ConfigError: naming the option and its valid range, for any value out of range.
    """

    enabled: bool = True
    target: Target = "pred-box"
    zoom_px: float | Literal["auto"] | None = "auto"
    pass1_src_px: float | None = None
    min_zoom: float = 1.25
    tau: float = 0.5
    rho: float = 0.7
    margin: float = 0.15
    min_margin: float = 8.0
    s_max: float = 4.0
    match_scales: bool = False
    pred_box: PredBox = "similarity"
    robust_k: float = 2.5
    pred_box_context: float = 1.0
    choice: Choice = "shape"
    shape_margin: float = 1.5
    cycle_keep: float = 0.2
    cycle_reject: float = 0.5
    zoom_passes: int = 1
    train_p: float = 0.5

    def __post_init__(self) -> None:
        for name, value, allowed in (("target", self.target, TARGETS), ("choice", self.choice, CHOICES),
                                     ("pred_box", self.pred_box, PRED_BOXES)):
            if value not in allowed:
                raise ConfigError(f"KBC option {name} must be one of {allowed}, got {value!r}")
        check_kbc_options(
            tau=self.tau, rho=self.rho, margin=self.margin, min_margin=self.min_margin, s_max=self.s_max,
            train_p=self.train_p, min_zoom=self.min_zoom, robust_k=self.robust_k,
            pred_box_context=self.pred_box_context, cycle_keep=self.cycle_keep, cycle_reject=self.cycle_reject,
            shape_margin=self.shape_margin,
        )
        if self.zoom_px is not None and self.zoom_px != "auto":
            check_kbc_options(zoom_px=self.zoom_px)
        if self.pass1_src_px is not None:
            check_kbc_options(pass1_src_px=self.pass1_src_px)
        if self.zoom_passes not in (1, 2):
            raise ConfigError(f"KBC option zoom_passes must be 1 or 2, got {self.zoom_passes}")

    def for_matcher(self, matcher: object | None = None) -> KBCConfig:
        """This configuration with ``zoom_px="auto"`` made a number: ``matcher``'s
        ``kbc_zoom_px`` (an attribute of the instance or class; :class:`~sosc.matchers.KBCNet`
        states 160), else :data:`DEFAULT_ZOOM_PX`. Any other ``zoom_px`` is kept.

        >>> KBCConfig().for_matcher().zoom_px
        96.0
        >>> class Wide:
        ...     kbc_zoom_px = 160
        >>> KBCConfig().for_matcher(Wide()).zoom_px, KBCConfig(zoom_px=64).for_matcher(Wide()).zoom_px
        (160.0, 64)
        """
        if self.zoom_px != "auto":
            return self
        own = getattr(matcher, "kbc_zoom_px", None) if matcher is not None else None
        if own is None:
            return dataclasses.replace(self, zoom_px=DEFAULT_ZOOM_PX)
        try:
            check_kbc_options(zoom_px=own)
        except ConfigError:
            raise ConfigError(f"{type(matcher).__name__}.kbc_zoom_px must be > 0 input pixels or None, got {own!r} "
                              "(the zoom KBC uses for it with zoom_px='auto')") from None
        return dataclasses.replace(self, zoom_px=float(own))

    @property
    def leaks_answer(self) -> bool:
        """True under ``target="oracle"``: results must say that they used the answer."""
        return self.target == "oracle"


#: Valid range of each numeric option, and the text that says it.
_RANGES = {
    "tau": (lambda v: v >= 0.0, ">= 0 (0 never triggers)"),
    "rho": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "zoom_px": (lambda v: v > 0.0, "> 0 input pixels (or \"auto\": the matcher's own; None: the fill ratio rho)"),
    "pass1_src_px": (lambda v: v > 0.0, "> 0 input pixels (or None: pass 1 on the full source)"),
    "min_zoom": (lambda v: v >= 1.0, ">= 1"),
    "margin": (lambda v: v >= 0.0, ">= 0"),
    "min_margin": (lambda v: v >= 0.0, ">= 0 pixels"),
    "s_max": (lambda v: v >= 1.0, ">= 1 (the largest zoom factor)"),
    "robust_k": (lambda v: v > 0.0, "> 0 median distances"),
    "pred_box_context": (lambda v: v >= 1.0, ">= 1"),
    "shape_margin": (lambda v: v > 0.0, "> 0 (1: the pass nearer to the fitted position)"),
    "cycle_keep": (lambda v: v >= 0.0, ">= 0 (a fraction of the source keypoint box's side)"),
    "cycle_reject": (lambda v: v >= 0.0, ">= 0 (a fraction of the source keypoint box's side)"),
    "train_p": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"),
}


def check_kbc_options(**options: float) -> None:
    """Raise :class:`ConfigError` for an out-of-range KBC option, naming it and its range.

    >>> check_kbc_options(rho=0.7, tau=0.5)
    >>> check_kbc_options(rho=1.5)
    Traceback (most recent call last):
    ...
    sosc.errors.ConfigError: KBC option rho must be in (0, 1], got 1.5
    """
    for name, value in options.items():
        ok, text = _RANGES[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(float(value)):
            raise ConfigError(f"KBC option {name} must be {text}, got {value}")
