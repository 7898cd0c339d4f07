"""Matchers: anything with ``forward(src_img, trg_img, src_kps, valid) -> trg_kps``."""

from sosc.matchers.adapters import CallableMatcher, FlowMatcher, ScoreVolumeMatcher
from sosc.matchers.backbone import PACKAGED_WEIGHTS, Backbone, WeightsError, WeightsRecord
from sosc.matchers.base import Matcher, MatchOutput, check_matcher_inputs, keypoints_of
from sosc.matchers.correlation import CorrelationDecoder, correlation_volume
from sosc.matchers.cp4d import CenterPivotConv4d, Conv4d, center_pivot_conv4d, conv4d
from sosc.matchers.csfa import CSFA
from sosc.matchers.feature import FeatureMatcher
from sosc.matchers.kbcnet import KBCNet

__all__ = [
    "CSFA",
    "CenterPivotConv4d",
    "Conv4d",
    "CorrelationDecoder",
    "KBCNet",
    "center_pivot_conv4d",
    "check_matcher_inputs",
    "conv4d",
    "correlation_volume",
    "PACKAGED_WEIGHTS",
    "Backbone",
    "CallableMatcher",
    "FlowMatcher",
    "FeatureMatcher",
    "MatchOutput",
    "ScoreVolumeMatcher",
    "Matcher",
    "WeightsError",
    "WeightsRecord",
    "keypoints_of",
]
