"""Matchers: anything with ``forward(src_img, trg_img, src_kps, valid) -> trg_kps``."""

from sosc.matchers.adapters import CallableMatcher, FlowMatcher, ScoreVolumeMatcher
from sosc.matchers.backbone import PACKAGED_WEIGHTS, Backbone, WeightsError, WeightsRecord
from sosc.matchers.base import Matcher, MatchOutput, keypoints_of
from sosc.matchers.feature import FeatureMatcher

__all__ = [
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
