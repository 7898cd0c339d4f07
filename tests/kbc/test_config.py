"""Tests of sosc.kbc.config: one configuration, every range checked, the defaults written once."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from sosc.errors import ConfigError
from sosc.kbc import KBCConfig, kbc_config, windows


@pytest.mark.parametrize(
    ("option", "value"),
    [("tau", -0.1), ("rho", 0.0), ("rho", 1.5), ("zoom_px", 0.0), ("min_zoom", 0.5), ("margin", -1.0),
     ("min_margin", -1.0), ("s_max", 0.5), ("robust_k", 0.0), ("pred_box_context", 0.9), ("cycle_keep", -0.1),
     ("cycle_reject", -0.1), ("train_p", 1.5), ("rho", float("nan")), ("zoom_px", float("inf")),
     ("s_max", float("inf"))],
)
def test_every_numeric_option_is_range_checked_and_named(option, value):
    with pytest.raises(ConfigError, match=f"KBC option {option} must be"):
        KBCConfig(**{option: value})


@pytest.mark.parametrize(("option", "value"), [("target", "gt"), ("choice", "best"), ("pred_box", "median")])
def test_every_choice_option_names_its_choices(option, value):
    with pytest.raises(ConfigError, match=f"{option} must be one of"):
        KBCConfig(**{option: value})


def test_zoom_px_none_is_the_fill_ratio_of_method_md():
    assert KBCConfig(zoom_px=None).zoom_px is None


def test_unknown_options_are_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown KBC option\(s\) \['guard'\]; KBCConfig has"):
        kbc_config(guard=True)
    assert kbc_config(tau=0.3, config=None).tau == 0.3


def test_the_window_functions_take_their_defaults_from_the_config():
    """Each number's default is written once: the functions read KBCConfig's class attributes."""
    defaults = {f.name: f.default for f in dataclasses.fields(KBCConfig)}
    for fn in (windows.grow_box, windows.kbc_box, windows.kbc_trigger, windows.kbc_window, windows.kbc_windows,
               windows.match_window_scales, windows.robust_inliers):
        for name, param in inspect.signature(fn).parameters.items():
            if name in defaults and param.default is not inspect.Parameter.empty:
                assert param.default == defaults[name], f"{fn.__name__}({name}=...) differs from KBCConfig"


class TestZoomPerMatcher:
    """``zoom_px="auto"`` (the default): the matcher's measured zoom (issue #11: KBCNet prefers
    160 input px on val pairs, the FeatureMatcher 96)."""

    def test_auto_is_the_matchers_own_zoom_else_the_default(self):
        from sosc.kbc.config import DEFAULT_ZOOM_PX
        from sosc.matchers import KBCNet

        assert KBCConfig().zoom_px == "auto" and DEFAULT_ZOOM_PX == 96.0
        assert KBCConfig().for_matcher(KBCNet).zoom_px == 160.0  # the class states it
        assert KBCConfig().for_matcher(lambda *a: None).zoom_px == 96.0  # a plain function states none
        assert KBCConfig().for_matcher(None).zoom_px == 96.0
        assert KBCConfig(zoom_px=64).for_matcher(KBCNet).zoom_px == 64  # a number is kept
        assert KBCConfig(zoom_px=None).for_matcher(KBCNet).zoom_px is None  # and so is the fill ratio

    def test_auto_without_a_matcher_zooms_to_the_default(self):
        assert windows.zoom_params(KBCConfig(), 256) == windows.zoom_params(KBCConfig(zoom_px=96.0), 256)

    @pytest.mark.parametrize("value", ["big", "", True])
    def test_any_other_word_is_refused_by_name(self, value):
        with pytest.raises(ConfigError, match="KBC option zoom_px must be"):
            KBCConfig(zoom_px=value)

    def test_a_matchers_bad_zoom_is_named_as_the_matchers(self):
        class Odd:
            kbc_zoom_px = -3

        with pytest.raises(ConfigError, match=r"Odd.kbc_zoom_px must be > 0 input pixels or None, got -3"):
            KBCConfig().for_matcher(Odd())
