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

Importing this package loads neither Lightning nor the data readers; its names are imported on
first use (PEP 562), so that :mod:`sosc.kbc.config` alone does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sosc._lazy import lazy_module_attributes

_NAMES = {
    "KBCConfig": "sosc.kbc.config",
    "KBCOutput": "sosc.kbc.wrapper",
    "KBCWrapper": "sosc.kbc.wrapper",
    "REASONS": "sosc.kbc.plan",
    "TARGETS": "sosc.kbc.config",
    "Target": "sosc.kbc.config",
    "WindowPlan": "sosc.kbc.plan",
    "check_kbc_options": "sosc.kbc.config",
    "choose_pass2": "sosc.kbc.choice",
    "cycle_errors": "sosc.kbc.choice",
    "fill_ratio": "sosc.kbc.windows",
    "grow_box": "sosc.kbc.windows",
    "kbc_box": "sosc.kbc.windows",
    "kbc_config": "sosc.kbc.wrapper",
    "kbc_train_windows": "sosc.kbc.windows",
    "kbc_trigger": "sosc.kbc.windows",
    "kbc_window": "sosc.kbc.windows",
    "kbc_windows": "sosc.kbc.windows",
    "kbc_windows_for_points": "sosc.kbc.windows",
    "match_in_windows": "sosc.kbc.passes",
    "match_plain": "sosc.kbc.passes",
    "match_window_scales": "sosc.kbc.windows",
    "merge_pass2": "sosc.kbc.plan",
    "pair_windows": "sosc.kbc.windows",
    "pass1_source_windows": "sosc.kbc.windows",
    "plan_windows": "sosc.kbc.plan",
    "robust_inliers": "sosc.kbc.windows",
    "similarity_box": "sosc.kbc.windows",
    "target_box": "sosc.kbc.plan",
    "zoom_params": "sosc.kbc.windows",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_module_attributes(__name__, _NAMES)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
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
        pass1_source_windows,
        robust_inliers,
        similarity_box,
        zoom_params,
    )
    from sosc.kbc.wrapper import KBCOutput, KBCWrapper, kbc_config
