"""The one KBC configuration: every number of KBC, with its default written here only.

:class:`KBCConfig` is what :class:`~sosc.kbc.KBCWrapper`, the LightningModule
(``model.kbc``), the data modules' train-time KBC (``data.init_args.kbc``, linked from
``model.kbc`` by the ``sosc`` CLI) and ``sosc-match`` all take. The functions of
:mod:`sosc.kbc.windows` take the same numbers as keyword arguments whose defaults are read
from this class (``rho: float = KBCConfig.rho``), so each default exists once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sosc.errors import ConfigError

Target = Literal["pred-box", "object-bbox", "oracle"]
TARGETS: tuple[str, ...] = ("pred-box", "object-bbox", "oracle")


@dataclass
class KBCConfig:
    """The options of KBC, with ``docs/METHOD.md``'s defaults (all "our choice" unless noted).

    Attributes:
        enabled: KBC at evaluation time (``sosc test``/``predict``, ``sosc-match``,
            :class:`~sosc.kbc.KBCWrapper`); ``False`` keeps every window the full image.
            Training-time KBC is ``train_p`` alone.
        target: what defines the target window at test/predict time: ``"pred-box"`` (the
            pass-1 predictions, leak-free, the default), ``"object-bbox"`` (the annotated
            target object box) or ``"oracle"`` (ground-truth target keypoints: leaks the
            answer, for analysis only).
        tau: trigger threshold on ``max(box_w, box_h) / max(W, H)``; ``0`` never triggers.
        rho: fill ratio, the box's longer side over the window side (``0 < rho <= 1``).
        margin: grow the box by this fraction of its side, per side and per axis.
        min_margin: ...but by at least this many original pixels per side.
        s_max: the window side is never below ``max(W, H) / s_max`` (the zoom cap).
        train_p: training-time probability that a pair is cropped around its ground-truth
            keypoint boxes (:func:`~sosc.kbc.kbc_train_windows`); ``0`` never.
        guard: ``pred-box`` only: use the more generous target window (``guard_rho``) and
            fall back to pass 1 where pass 1 looks unreliable (below).
        guard_rho: fill ratio of the target window under the guard (smaller = more context
            around the predicted box; ``0.5`` gives a 1.4x larger window than ``rho=0.7``).
        guard_min_confidence: fall back where the pass-1 mean confidence of the valid
            keypoints is below this (only for matchers that return
            ``MatchOutput.confidence``, a peak probability; ``0`` disables it).
        guard_max_scale_ratio: fall back where the predicted target box's relative size
            ``max(box side) / max(W, H)`` and the source box's differ by more than this
            factor, either way (``inf`` disables it).

    Raises:
        ConfigError: naming the option and its valid range, for any value out of range.
    """

    enabled: bool = True
    target: Target = "pred-box"
    tau: float = 0.5
    rho: float = 0.7
    margin: float = 0.15
    min_margin: float = 8.0
    s_max: float = 4.0
    train_p: float = 0.5
    guard: bool = True
    guard_rho: float = 0.5
    guard_min_confidence: float = 0.05
    guard_max_scale_ratio: float = 3.0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"KBC option target must be one of {TARGETS}, got {self.target!r}")
        check_kbc_options(
            tau=self.tau, rho=self.rho, margin=self.margin, min_margin=self.min_margin, s_max=self.s_max,
            train_p=self.train_p, guard_rho=self.guard_rho, guard_min_confidence=self.guard_min_confidence,
            guard_max_scale_ratio=self.guard_max_scale_ratio,
        )

    @property
    def leaks_answer(self) -> bool:
        """True under ``target="oracle"``: results must say that they used the answer."""
        return self.target == "oracle"


#: Valid range of each numeric option, and the text that says it.
_RANGES = {
    "tau": (lambda v: v >= 0.0, ">= 0 (0 never triggers)"),
    "rho": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "guard_rho": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "margin": (lambda v: v >= 0.0, ">= 0"),
    "min_margin": (lambda v: v >= 0.0, ">= 0 pixels"),
    "s_max": (lambda v: v >= 1.0, ">= 1 (the largest zoom factor)"),
    "train_p": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"),
    "guard_min_confidence": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1] (0 disables it)"),
    "guard_max_scale_ratio": (lambda v: v >= 1.0, "a factor >= 1 (inf disables it)"),
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not ok(float(value)):
            raise ConfigError(f"KBC option {name} must be {text}, got {value}")
