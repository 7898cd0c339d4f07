"""Matchers: anything with ``forward(src_img, trg_img, src_kps, valid) -> trg_kps``.

The package's matchers (:class:`KBCNet`, :class:`FeatureMatcher`, the adapters
:class:`CallableMatcher`, :class:`FlowMatcher`, :class:`ScoreVolumeMatcher`,
:class:`FeatureFnMatcher`) subclass
:class:`Matcher` (:mod:`sosc.matchers.base`). Names are imported on first use, so reading
``sosc.matchers.MatchOutput`` does not load timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sosc._lazy import lazy_module_attributes

_NAMES = {
    "CallableMatcher": "sosc.matchers.adapters",
    "FeatureFnMatcher": "sosc.matchers.adapters",
    "FlowMatcher": "sosc.matchers.adapters",
    "ScoreVolumeMatcher": "sosc.matchers.adapters",
    "PACKAGED_WEIGHTS": "sosc.matchers.backbone",
    "Backbone": "sosc.matchers.backbone",
    "WeightsError": "sosc.matchers.backbone",
    "WeightsRecord": "sosc.matchers.backbone",
    "Matcher": "sosc.matchers.base",
    "MatchOutput": "sosc.matchers.base",
    "Normalize": "sosc.matchers.base",
    "check_matcher_inputs": "sosc.matchers.base",
    "keypoints_of": "sosc.matchers.base",
    "CorrelationDecoder": "sosc.matchers.correlation",
    "correlation_volume": "sosc.matchers.correlation",
    "CenterPivotConv4d": "sosc.matchers.cp4d",
    "Conv4d": "sosc.matchers.cp4d",
    "center_pivot_conv4d": "sosc.matchers.cp4d",
    "conv4d": "sosc.matchers.cp4d",
    "CSFA": "sosc.matchers.csfa",
    "FeatureMatcher": "sosc.matchers.feature",
    "cell_centers": "sosc.matchers.grid",
    "sample_at": "sosc.matchers.grid",
    "soft_argmax": "sosc.matchers.grid",
    "KBCNet": "sosc.matchers.kbcnet",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_module_attributes(__name__, _NAMES)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from sosc.matchers.adapters import (
        CallableMatcher,
        FeatureFnMatcher,
        FlowMatcher,
        ScoreVolumeMatcher,
    )
    from sosc.matchers.backbone import PACKAGED_WEIGHTS, Backbone, WeightsError, WeightsRecord
    from sosc.matchers.base import (
        Matcher,
        MatchOutput,
        Normalize,
        check_matcher_inputs,
        keypoints_of,
    )
    from sosc.matchers.correlation import CorrelationDecoder, correlation_volume
    from sosc.matchers.cp4d import CenterPivotConv4d, Conv4d, center_pivot_conv4d, conv4d
    from sosc.matchers.csfa import CSFA
    from sosc.matchers.feature import FeatureMatcher
    from sosc.matchers.grid import cell_centers, sample_at, soft_argmax
    from sosc.matchers.kbcnet import KBCNet
