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
     ("cycle_reject", -0.1), ("train_p", 1.5), ("rho", float("nan"))],
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
