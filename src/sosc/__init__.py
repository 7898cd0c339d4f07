"""sosc: small object semantic correspondence with KBC cropping and KBCNet.

Conventions everywhere: keypoints ``(x, y)`` float pixels ``(B, N, 2)`` with a ``(B, N)``
bool ``valid`` mask; images float RGB in ``[0, 1]``; windows and boxes ``(x0, y0, x1, y1)``;
PCK as a fraction.
"""

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
from sosc.matchers import (
    Backbone,
    CallableMatcher,
    CenterPivotConv4d,
    FeatureMatcher,
    FlowMatcher,
    KBCNet,
    MatchOutput,
    ScoreVolumeMatcher,
    center_pivot_conv4d,
    keypoints_of,
)
from sosc.metrics import PCK, keypoint_correct, pck_per_pair
from sosc.module import CorrespondenceModule

__version__ = "0.1.0"

__all__ = [
    "PCK",
    "Backbone",
    "CallableMatcher",
    "CenterPivotConv4d",
    "FlowMatcher",
    "KBCNet",
    "ScoreVolumeMatcher",
    "center_pivot_conv4d",
    "ConfigError",
    "CorrespondenceModule",
    "DatasetError",
    "FeatureMatcher",
    "KBCConfig",
    "KBCOutput",
    "KBCWrapper",
    "MatchOutput",
    "ShapeError",
    "SoscError",
    "grow_box",
    "kbc_box",
    "kbc_train_windows",
    "kbc_trigger",
    "kbc_window",
    "kbc_windows",
    "keypoint_correct",
    "keypoint_epe",
    "keypoints_of",
    "match_in_windows",
    "match_plain",
    "pck_per_pair",
]
