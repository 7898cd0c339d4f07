"""What the package's commands print: their libraries' known noise left out, errors in one line.

For ``sosc``, ``sosc-match``, ``sosc-bench`` and ``python -m sosc.demo`` only: :func:`quiet`
installs its filters for the duration of a command and removes them after, so a user's own
code (a script that builds a ``Trainer``, a notebook) still sees every warning.

What is left out, and why it is noise here:

- Lightning's tips to install ``litlogger`` and ``litmodels`` (cloud services; printed by every
  ``Trainer``, three times per demo);
- "The dirpath has changed from ... to ...": a checkpoint restored from another folder (a
  copied run, a ``--ckpt_path`` elsewhere); ``sosc``'s run checkpoints go where the run says;
- "``isinstance(treespec, LeafSpec)`` is deprecated": Lightning's own use of a torch API;
- jsonargparse's deprecation notices about Lightning's calls to it, and Lightning's warning
  that ``LightningCLI(args=...)`` was given beside command-line arguments (the demo does that
  by design);
- and, from :meth:`sosc.lightning_cli.SoscCLI.quiet_expected_warnings`, the eval mode of a
  frozen backbone and, when resuming, "Checkpoint directory ... exists and is not empty".

:func:`debug_requested` and :func:`report_errors` give the commands their error convention: a
user mistake (a :class:`~sosc.errors.SoscError`) prints ``<prog>: error: <message>`` on one line
and exits with status 2; ``--debug`` or ``SOSC_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence

#: Messages (regular expressions, matched at the start) of warnings the commands leave out.
NOISE_WARNINGS: tuple[str, ...] = (
    r"The dirpath has changed from",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r"LightningCLI's args parameter is intended to run from within Python",
    r"No seed found, seed set to",  # Lightning logs "Seed set to N" as well
    # CorrespondenceModule finishes batches on the device on purpose (resample="device")
    r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`",
)
#: Warning categories the commands leave out, by module and class name (imported lazily).
NOISE_CATEGORIES: tuple[tuple[str, str], ...] = (("jsonargparse._deprecated", "JsonargparseDeprecationWarning"),)
#: Messages (regular expressions, searched) of log records the commands leave out.
NOISE_LOGS: tuple[str, ...] = (r"Tip: For seamless cloud .* try installing \[lit(logger|models)\]",)
#: The loggers Lightning prints its information through.
LIGHTNING_LOGGERS: tuple[str, ...] = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)


class _DropNoise(logging.Filter):
    """Drops log records whose message matches one of ``patterns``."""

    def __init__(self, patterns: Sequence[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


@contextlib.contextmanager
def quiet(extra_warnings: Sequence[str] = ()) -> Iterator[None]:
    """Inside: the known noise of :data:`NOISE_WARNINGS`, :data:`NOISE_CATEGORIES` and
    :data:`NOISE_LOGS` (and the warning messages ``extra_warnings``) is not printed. Warning
    filters added inside (e.g. by a command's hooks) are removed on the way out, with these.

    >>> import warnings
    >>> with quiet():
    ...     with warnings.catch_warnings(record=True) as seen:
    ...         warnings.warn("The dirpath has changed from 'a' to 'b'")
    ...         warnings.warn("something else")
    >>> [str(w.message) for w in seen]
    ['something else']
    """
    drop = _DropNoise(NOISE_LOGS)
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    with warnings.catch_warnings():
        for pattern in (*NOISE_WARNINGS, *extra_warnings):
            warnings.filterwarnings("ignore", message=pattern)
        for module, name in NOISE_CATEGORIES:
            category = getattr(sys.modules.get(module), name, None)
            if category is None:
                with contextlib.suppress(ImportError):
                    category = getattr(__import__(module, fromlist=[name]), name, None)
            if isinstance(category, type) and issubclass(category, Warning):
                warnings.filterwarnings("ignore", category=category)
        for logger in loggers:
            logger.addFilter(drop)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(drop)


def debug_requested(argv: Sequence[str] = ()) -> bool:
    """Whether the user asked for tracebacks: ``--debug`` in ``argv``, or ``SOSC_DEBUG`` set to
    anything but ``""`` or ``0``."""
    return "--debug" in argv or os.environ.get("SOSC_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def report_errors(prog: str, debug: bool = False, kinds: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Inside: a :class:`~sosc.errors.SoscError` (or one of ``kinds``) prints
    ``<prog>: error: <message>`` on one line on stderr and exits with status 2, unless
    ``debug`` (then it propagates with its traceback)."""
    from sosc.errors import SoscError

    try:
        yield
    except (SoscError, *kinds) as err:
        if debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: error: {message} (--debug shows the traceback)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


#: Lines of jsonargparse's messages that say nothing the other lines do not.
_PARSE_NOISE = (
    re.compile(r"^Does not validate against any of the Union subtypes$"),
    re.compile(r"^Subtypes: "),
    re.compile(r"^Errors:$"),
    re.compile(r"^Given value type: "),
    re.compile(r"^Given value: Namespace\("),  # a whole parsed group, restated
    re.compile(r"^Expected a <class 'NoneType'>$"),
    re.compile(r"^Expected a path but .* either not accessible or invalid$"),
    re.compile(r"^Problem with given class_path '[^']*':$"),
)


def one_line_parse_error(message: str) -> str:
    """A jsonargparse error message in one line: the lines that only restate the union's
    subtypes are left out, and for ``model.matcher`` the package's matchers are named.

    >>> one_line_parse_error('Parser key "model.kbc":\\n  Does not validate against any of the '
    ...                      'Union subtypes\\n  Errors:\\n    - Parser key "target":\\n      Expected one '
    ...                      'of pred-box, oracle. Got value: gt\\n    - Expected a <class \\'NoneType\\'>')
    'Parser key "model.kbc": Parser key "target": Expected one of pred-box, oracle. Got value: gt'
    """
    kept = []
    for line in message.splitlines():
        line = line.strip().lstrip("-").strip()
        if line and not any(p.search(line) for p in _PARSE_NOISE):
            kept.append(line)
    text = " ".join(kept) or message.strip()
    if 'key "model.matcher"' in text:
        text += (
            ". The matchers: sosc.KBCNet, sosc.matchers.FeatureMatcher, and the adapters sosc.matchers.FlowMatcher, "
            "ScoreVolumeMatcher, FeatureFnMatcher, CallableMatcher, which wrap a network of your own (given by "
            "class path in their init_args); a sosc.Matcher subclass of your package is accepted by class path"
        )
    return text
