"""sosc: small object semantic correspondence with KBC cropping and KBCNet.

Conventions everywhere: keypoints ``(x, y)`` float pixels ``(B, N, 2)`` with a ``(B, N)``
bool ``valid`` mask; images float RGB in ``[0, 1]``; windows and boxes ``(x0, y0, x1, y1)``;
PCK as a fraction.

Public names are imported on first use (PEP 562): ``from sosc import KBCWrapper`` loads
torch and the KBC code only, neither Lightning, timm nor the data readers;
``sosc.CorrespondenceModule`` loads Lightning when it is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sosc._lazy import lazy_module_attributes

__version__ = "0.1.0"

_NAMES = {
    # errors
    "SoscError": "sosc.errors",
    "ShapeError": "sosc.errors",
    "DatasetError": "sosc.errors",
    "ConfigError": "sosc.errors",
    # KBC
    "KBCConfig": "sosc.kbc",
    "KBCOutput": "sosc.kbc",
    "KBCWrapper": "sosc.kbc",
    "grow_box": "sosc.kbc",
    "kbc_box": "sosc.kbc",
    "kbc_train_windows": "sosc.kbc",
    "kbc_trigger": "sosc.kbc",
    "kbc_window": "sosc.kbc",
    "kbc_windows": "sosc.kbc",
    "match_in_windows": "sosc.kbc",
    "match_plain": "sosc.kbc",
    # matchers
    "Matcher": "sosc.matchers.base",
    "MatchOutput": "sosc.matchers.base",
    "keypoints_of": "sosc.matchers.base",
    "Backbone": "sosc.matchers.backbone",
    "CallableMatcher": "sosc.matchers.adapters",
    "FeatureFnMatcher": "sosc.matchers.adapters",
    "FlowMatcher": "sosc.matchers.adapters",
    "ScoreVolumeMatcher": "sosc.matchers.adapters",
    "CenterPivotConv4d": "sosc.matchers.cp4d",
    "center_pivot_conv4d": "sosc.matchers.cp4d",
    "FeatureMatcher": "sosc.matchers.feature",
    "KBCNet": "sosc.matchers.kbcnet",
    # metrics and losses
    "PCK": "sosc.metrics",
    "keypoint_correct": "sosc.metrics",
    "pck_per_pair": "sosc.metrics",
    "keypoint_epe": "sosc.losses",
    # Lightning
    "CorrespondenceModule": "sosc.module",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_module_attributes(__name__, _NAMES)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from sosc.errors import ConfigError, DatasetError, ShapeError, SoscError
    from sosc.kbc import (
        KBCConfig,
        KBCOutput,
        KBCWrapper,
        grow_box,
        kbc_box,
        kbc_train_windows,
        kbc_trigger,
        kbc_window,
        kbc_windows,
        match_in_windows,
        match_plain,
    )
    from sosc.losses import keypoint_epe
    from sosc.matchers.adapters import (
        CallableMatcher,
        FeatureFnMatcher,
        FlowMatcher,
        ScoreVolumeMatcher,
    )
    from sosc.matchers.backbone import Backbone
    from sosc.matchers.base import Matcher, MatchOutput, keypoints_of
    from sosc.matchers.cp4d import CenterPivotConv4d, center_pivot_conv4d
    from sosc.matchers.feature import FeatureMatcher
    from sosc.matchers.kbcnet import KBCNet
    from sosc.metrics import PCK, keypoint_correct, pck_per_pair
    from sosc.module import CorrespondenceModule
