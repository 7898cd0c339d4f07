"""KBC, Keypoint Bounding box-centred Cropping: which window of each image a matcher sees.

KBC is a training-free transform that gives small objects more input pixels. It only picks
a different **window** (see :mod:`sosc.geometry`): an ``(x0, y0, x1, y1)`` box in original
pixels that is resampled to the network input ``(S_h, S_w)``. The plain path uses the full
image ``(0, 0, W, H)``.

Modules, each one idea:

- :mod:`sosc.kbc.config`: :class:`KBCConfig`, every option and its default;
- :mod:`sosc.kbc.windows`: steps 1-3 (box, trigger, window), the scale-aware zoom and one
  scale per pair, train-time windows;
- :mod:`sosc.kbc.inputs`: what KBC is given, checked (images, keypoints, the input size);
- :mod:`sosc.kbc.passes`: matching through windows (pass 1 and pass 2);
- :mod:`sosc.kbc.plan`: the target box, which pairs zoom and why, the merge;
- :mod:`sosc.kbc.choice`: which pass each keypoint keeps;
- :mod:`sosc.kbc.wrapper`: :class:`KBCWrapper` around any matcher.

Importing this package loads neither Lightning nor the data readers.
"""

from sosc.kbc.choice import choose_pass2, cycle_errors
from sosc.kbc.config import TARGETS, KBCConfig, Target, check_kbc_options
from sosc.kbc.passes import match_in_windows, match_plain
from sosc.kbc.plan import REASONS, WindowPlan, merge_pass2, plan_windows, target_box
from sosc.kbc.windows import (
    fill_ratio,
    grow_box,
    kbc_box,
    kbc_train_windows,
    kbc_trigger,
    kbc_window,
    kbc_windows,
    kbc_windows_for_points,
    match_window_scales,
    pair_windows,
    robust_inliers,
    similarity_box,
    zoom_params,
)
from sosc.kbc.wrapper import KBCOutput, KBCWrapper, kbc_config

__all__ = [
    "REASONS",
    "TARGETS",
    "KBCConfig",
    "KBCOutput",
    "KBCWrapper",
    "Target",
    "WindowPlan",
    "check_kbc_options",
    "choose_pass2",
    "cycle_errors",
    "fill_ratio",
    "grow_box",
    "kbc_box",
    "kbc_config",
    "kbc_train_windows",
    "kbc_trigger",
    "kbc_window",
    "kbc_windows",
    "kbc_windows_for_points",
    "match_in_windows",
    "match_plain",
    "match_window_scales",
    "merge_pass2",
    "pair_windows",
    "plan_windows",
    "robust_inliers",
    "similarity_box",
    "target_box",
    "zoom_params",
]
