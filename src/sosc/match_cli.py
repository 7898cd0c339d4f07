"""Match the keypoints of your own image pair: load a trained matcher, run it (with KBC), save.

``sosc-match --ckpt last.ckpt --src a.jpg --trg b.jpg --kps "120,80 140,95"`` prints (or writes
with ``--out``) JSON with the predicted target keypoints in original target pixels, with and
without KBC, the windows KBC chose, the matcher's confidence and both image sizes as ``[H, W]``
(``src_size``, ``trg_size``: height first, as dataset items). ``--plot fig.png`` draws the match
figure (:mod:`sosc.viz`). Instead of a checkpoint,
``--matcher`` builds a matcher by class path, as the ``sosc`` CLI's ``--model.matcher`` does:
``--matcher sosc.matchers.FeatureMatcher --matcher-args '{"backbone": "resnet18"}'``, a name of
:mod:`sosc.matchers` (``--matcher FeatureMatcher``), any importable class (``mypkg.MyMatcher``),
or a JSON ``{"class_path": ..., "init_args": {...}}``; ``--matcher feature`` is the training-free
FeatureMatcher with the offline EfficientNet-Lite0 weights. In Python:
:func:`sosc.checkpoint.load_module`, :func:`sosc.inference.build_matcher` and
:func:`sosc.inference.match_pair`.

This module is the command line alone (argparse and :class:`~sosc.kbc.KBCConfig`'s fields, no
torch), so that ``sosc-match --help`` and a mistyped option answer at once; the work is done by
:func:`sosc.inference.run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Sequence

from sosc.errors import SoscError
from sosc.kbc.config import DEFAULT_ZOOM_PX, KBCConfig

#: KBC options that ``sosc-match`` fixes: it always runs KBC's leak-free ``pred-box`` at test time.
_NOT_OPTIONS = ("enabled", "target", "train_p")


def add_kbc_options(parser: argparse.ArgumentParser) -> None:
    """``--kbc.<field>`` for every field of :class:`~sosc.kbc.KBCConfig` (as ``sosc``'s
    ``--model.kbc.<field>``), with its type and default."""
    group = parser.add_argument_group("KBC options (sosc.KBCConfig, docs/METHOD.md)")
    for field in dataclasses.fields(KBCConfig):
        if field.name in _NOT_OPTIONS:
            continue
        default = field.default
        kind = {bool: _boolean, float: float, int: int}.get(type(default), str)
        text = f"default {default}"
        if field.name == "zoom_px":
            kind = _zoom_px
            text += f" (the matcher's kbc_zoom_px, else {DEFAULT_ZOOM_PX:g}; a number of input pixels; none: the fill ratio rho)"
        elif field.name == "pass1_src_px":
            kind = _px_or_none
            text += " (input pixels; none: pass 1 on the full source)"
        group.add_argument(f"--kbc.{field.name}", dest=f"kbc_{field.name}", type=kind, default=default,
                           metavar=field.name.upper(), help=text)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _zoom_px(text: str) -> float | str | None:
    """``--kbc.zoom_px``: input pixels, ``auto`` (the matcher's own) or ``none`` (the fill ratio)."""
    return "auto" if text.strip().lower() == "auto" else _px_or_none(text)


def _px_or_none(text: str) -> float | str | None:
    """``--kbc.pass1_src_px``: input pixels or ``none``."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        return text  # KBCConfig refuses it, naming the option and what it takes


def kbc_config_from(opts: argparse.Namespace, enabled: bool = True) -> KBCConfig:
    """The :class:`~sosc.kbc.KBCConfig` of ``sosc-match``'s ``--kbc.*`` options (target ``pred-box``)."""
    values = {f.name: getattr(opts, f"kbc_{f.name}") for f in dataclasses.fields(KBCConfig)
              if f.name not in _NOT_OPTIONS}
    return KBCConfig(enabled=enabled, target="pred-box", train_p=0.0, **values)


def plain_text(doc: str) -> str:
    """A docstring as a terminal shows it: reST roles and literals without their markup.

    >>> plain_text("see :func:`sosc.viz.plot_result` and ``--plot``")
    'see sosc.viz.plot_result and --plot'
    """
    return re.sub(r"``([^`]+)``", r"\1", re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sosc-match``."""
    parser = argparse.ArgumentParser(prog="sosc-match", description=plain_text(__doc__.split("\n\nThis module is")[0]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="checkpoint written by `sosc fit`")
    which.add_argument("--matcher", metavar="CLASS",
                       help="a matcher instead of a checkpoint: a class path (sosc.matchers.FeatureMatcher, "
                            "mypkg.MyMatcher), a name of sosc.matchers (FeatureMatcher, KBCNet), "
                            "'{\"class_path\": ..., \"init_args\": {...}}', or 'feature' (FeatureMatcher "
                            "with offline EfficientNet-Lite0 weights)")
    parser.add_argument("--matcher-args", metavar="JSON", default=None,
                        help="the matcher's arguments as JSON, e.g. '{\"backbone\": \"vit_small_patch14_dinov2.lvd142m\", "
                             "\"pretrained\": true, \"strides\": [14]}'")
    parser.add_argument("--config", default=None, help="the training config, for a checkpoint that does not record its matcher")
    parser.add_argument("--src", required=True, help="source image file")
    parser.add_argument("--trg", required=True, help="target image file")
    kps = parser.add_mutually_exclusive_group(required=True)
    kps.add_argument("--kps", help="source keypoints, original pixels: 'x,y x,y ...' or '[[x, y], ...]'")
    kps.add_argument("--kps-file", help="JSON file with [[x, y], ...]")
    parser.add_argument("--no-kbc", action="store_true", help="plain matching only")
    add_kbc_options(parser)
    parser.add_argument("--input-size", type=int, default=None,
                        help="network input side (default: the checkpoint's; for --matcher 256, or the multiple of "
                             "the matcher's input multiple below it, e.g. 252 for DINOv2)")
    parser.add_argument("--device", default="cpu", help="e.g. cuda (default cpu)")
    parser.add_argument("--out", default=None, help="JSON output file (default: print)")
    parser.add_argument("--plot", default=None, help="also save the match figure (PNG): numbered keypoints, without and "
                                                      "with KBC, KBC's windows and a zoom on each (sosc.viz)")
    parser.add_argument("--background", default="white",
                        help="what transparent pixels (RGBA, LA, P) are composited over: white (default), black, "
                             "a grey level or r,g,b in [0, 1]")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also SOSC_DEBUG=1); by default one line, exit status 2")
    return parser


def command(argv: Sequence[str] | None = None) -> None:
    """The installed ``sosc-match`` script: exit status 0 on success; a user mistake (a
    :class:`~sosc.errors.SoscError`) prints ``sosc-match: error: <message>`` on one line and
    exits with status 2 (as argparse does for bad options); ``--debug`` or ``SOSC_DEBUG=1``
    shows the traceback instead."""
    from sosc.console import quiet

    opts = build_parser().parse_args(argv)
    try:
        kbc_config_from(opts)  # an out-of-range --kbc.* option answers before torch is imported
        with quiet():  # the package's known console noise (sosc.console)
            from sosc.inference import run  # torch and the matchers: only once the options parsed

            run(opts)
    except SoscError as err:
        if opts.debug or os.environ.get("SOSC_DEBUG", "") not in ("", "0"):
            raise
        print(f"sosc-match: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":  # python -m sosc.match_cli, as the sosc-match script
    command()
