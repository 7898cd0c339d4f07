"""The commands' console: known noise filtered only while a command runs, errors in one line."""

import logging
import warnings

import pytest

from sosc.console import debug_requested, one_line_parse_error, quiet, report_errors
from sosc.errors import ConfigError


class TestQuiet:
    def test_known_warnings_are_left_out_inside_only(self):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with quiet(extra_warnings=[r"Found 3 module\(s\)"]):
                warnings.warn("The dirpath has changed from 'a' to 'b'", stacklevel=1)
                warnings.warn("Found 3 module(s) in eval mode at the start of training.", stacklevel=1)
                warnings.warn("Found 4 module(s) in eval mode at the start of training.", stacklevel=1)
                warnings.filterwarnings("ignore", message="added inside")  # a command's hook
            warnings.warn("The dirpath has changed from 'c' to 'd'", stacklevel=1)
            warnings.warn("added inside, shown after", stacklevel=1)
        assert [str(w.message) for w in seen] == [
            "Found 4 module(s) in eval mode at the start of training.",
            "The dirpath has changed from 'c' to 'd'",
            "added inside, shown after",
        ]

    def test_lightning_s_tips_are_left_out_inside_only(self, caplog):
        log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        tip = "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](https://x)"
        caplog.set_level("INFO")
        with quiet():
            log.info(tip)
            log.info("GPU available: False, used: False")
        log.info(tip)
        assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False", tip]


class TestErrors:
    def test_a_sosc_error_is_one_line_and_exit_status_2(self, capsys):
        with pytest.raises(SystemExit) as exit_, report_errors("sosc-x"):
            raise ConfigError("bad value\n  on two lines")
        assert exit_.value.code == 2
        assert capsys.readouterr().err == "sosc-x: error: bad value on two lines (--debug shows the traceback)\n"

    def test_debug_lets_it_through_and_other_errors_always(self):
        with pytest.raises(ConfigError), report_errors("sosc-x", debug=True):
            raise ConfigError("bad")
        with pytest.raises(KeyError), report_errors("sosc-x"):
            raise KeyError("a bug is not a user mistake")

    def test_debug_is_asked_by_flag_or_environment(self, monkeypatch):
        monkeypatch.delenv("SOSC_DEBUG", raising=False)
        assert debug_requested(["fit", "--debug"]) and not debug_requested(["fit"])
        monkeypatch.setenv("SOSC_DEBUG", "0")
        assert not debug_requested([])
        monkeypatch.setenv("SOSC_DEBUG", "1")
        assert debug_requested([])


def test_a_jsonargparse_message_in_one_line():
    message = ('Parser key "trainer.limit_val_batches":\n  Does not validate against any of the Union subtypes\n'
               "  Subtypes: [<class 'int'>, <class 'float'>, <class 'NoneType'>]\n  Errors:\n"
               "    - Expected a <class 'int'>\n    - Expected a <class 'float'>\n"
               "    - Expected a <class 'NoneType'>\n  Given value type: <class 'str'>\n  Given value: abc")
    assert one_line_parse_error(message) == ('Parser key "trainer.limit_val_batches": Expected a <class \'int\'> '
                                             "Expected a <class 'float'> Given value: abc")
