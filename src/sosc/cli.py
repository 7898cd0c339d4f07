"""The ``sosc`` command: a LightningCLI with ``fit``, ``validate``, ``test`` and ``predict``.

``sosc fit --config configs/synthetic.yaml``; ``sosc test --config configs/synthetic.yaml
--model.kbc.enabled true --ckpt_path <checkpoint>``. The LightningCLI subclass and what it
adds (links, callbacks, ``--ckpt_path last``, the data checked before any weights are
fetched) is :class:`sosc.lightning_cli.SoscCLI`; this module is the command around it:

- :func:`main` runs it in-process (Python, tests), the package's known console noise left out
  (:func:`sosc.console.quiet`);
- :func:`command` is the installed script: a user mistake (a :class:`~sosc.errors.SoscError`,
  a bad option) prints ``sosc: error: <what>`` on one line and exits with status 2, the
  traceback behind ``--debug`` (anywhere on the line) or ``SOSC_DEBUG=1``;
- ``sosc --help`` is answered without importing Lightning (:data:`ROOT_HELP`, in well under a
  second instead of the ten it takes to build the four subcommands' parsers);
  ``sosc <subcommand> --help`` is LightningCLI's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sosc.lightning_cli import SoscCLI

#: What ``sosc --help`` and ``sosc <subcommand> --help`` say the command is.
DESCRIPTION = (
    "sosc: small object semantic correspondence. Train and test keypoint matchers (KBCNet, "
    "FeatureMatcher, adapters around your network) on SPair-71k, PF-PASCAL, PF-WILLOW or the "
    "offline synthetic benchmark, with KBC (keypoint bounding box-centred cropping) at test time."
)

#: The subcommands and what each does (their help in ``sosc --help``).
SUBCOMMANDS = {
    "fit": "train a matcher, validating on the way; checkpoints in <save_dir>/<name>/checkpoints",
    "validate": "PCK on the validation split",
    "test": "PCK on the test split and its report; with --model.kbc.enabled true, without and with KBC",
    "predict": "the predicted target keypoints of a split, as JSON (--predictions.path)",
}

#: ``sosc --help``: the same subcommands and options as LightningCLI's root parser (checked by
#: the test suite), with examples, printed without importing Lightning.
ROOT_HELP = f"""usage: sosc [-h] [-c CONFIG] [--print_config[=flags]] [--debug] {{fit,validate,test,predict}} ...

{DESCRIPTION}

examples:
  sosc fit --config configs/synthetic.yaml            # train KBCNet (offline benchmark, made on first use)
  sosc test --config configs/synthetic.yaml --ckpt_path last --model.kbc.enabled true
                                                      # PCK without and with KBC, and the reports
  sosc fit --help                                     # every option of a subcommand, with its default
  make demo                                           # a short fit and a KBC test, with a summary

subcommands (each takes --help, --config and --print_config):
  fit                   {SUBCOMMANDS["fit"]}
  validate              {SUBCOMMANDS["validate"]}
  test                  {SUBCOMMANDS["test"]}
  predict               {SUBCOMMANDS["predict"]}

options:
  -h, --help            show this help message and exit
  -c CONFIG, --config CONFIG
                        a configuration file (yaml or json), e.g. configs/synthetic.yaml
  --print_config[=flags]
                        print the configuration after applying all other arguments and exit
                        (flags: skip_default, skip_unset)
  --debug               show the traceback of an error (anywhere on the line; also SOSC_DEBUG=1);
                        by default an error is one line, exit status 2

other commands: sosc-match (keypoints of your own image pair), sosc-bench (speed and memory),
python -m sosc.demo (what `make demo` runs). Documentation: README.md, docs/METHOD.md.
"""


def subcommand_parser_kwargs(name: str) -> dict[str, str]:
    """The usage line and description of ``sosc <name> --help``: one usage line instead of
    jsonargparse's list of every option (70 lines), and where each group of options is."""
    return {
        "usage": f"sosc {name} [-h] [-c CONFIG] [--print_config[=flags]] [--<group>.<option> VALUE ...]",
        "description": (
            f"sosc {name}: {SUBCOMMANDS[name]}. Options by group: --trainer.* (Lightning's Trainer), --model.* "
            "(the matcher, its training and KBC), --data.* (the benchmark), --checkpoint.*, --report.*, "
            "--predictions.*; a config file takes the same keys (--print_config shows them). Errors are one "
            "line; --debug shows the traceback."
        ),
    }


def main(args: Sequence[str] | None = None, run: bool = True) -> SoscCLI:
    """Run the ``sosc`` command in-process and return the CLI (``cli.trainer``, ``cli.model``).

    ``args`` as on the command line (default ``sys.argv[1:]``); ``run=False`` only parses and
    instantiates. Errors are raised (a bad option: ``SystemExit(2)`` after one line on stderr);
    the installed ``sosc`` script calls :func:`command` instead, which prints them in one line.
    The package's known console noise is left out while it runs (:func:`sosc.console.quiet`).
    """
    from sosc.console import quiet
    from sosc.data.datamodule import PairDataModule
    from sosc.lightning_cli import SoscArgumentParser, SoscCLI
    from sosc.module import CorrespondenceModule

    os.environ.setdefault("WANDB_MODE", "offline")
    parser_kwargs: dict[str, Any] = {"description": DESCRIPTION, "prog": "sosc"}
    parser_kwargs.update({name: subcommand_parser_kwargs(name) for name in SUBCOMMANDS})
    with quiet():
        return SoscCLI(
            CorrespondenceModule,
            PairDataModule,
            subclass_mode_data=True,
            args=args,
            run=run,
            auto_configure_optimizers=False,
            parser_class=SoscArgumentParser,
            parser_kwargs=parser_kwargs,
        )


def command(argv: Sequence[str] | None = None) -> None:
    """The installed ``sosc`` script: :func:`main` on ``sys.argv``, exit status 0 on success.

    ``sosc --help`` prints :data:`ROOT_HELP`. A :class:`~sosc.errors.SoscError` (missing data,
    weights that cannot be had, a bad value) or Lightning's ``MisconfigurationException``
    prints ``sosc: error: <message>`` on one line and exits with status 2; ``--debug``
    (anywhere on the line) or ``SOSC_DEBUG=1`` shows the traceback (and jsonargparse's full
    messages) instead.
    """
    from sosc.console import debug_requested, report_errors

    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print(ROOT_HELP, end="")
        return
    debug = debug_requested(args)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ["SOSC_DEBUG"] = "1"  # for the parser's errors (sosc.lightning_cli.SoscArgumentParser)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    with report_errors("sosc", debug, kinds=(MisconfigurationException,)):
        main(args)


def __getattr__(name: str) -> Any:
    """``sosc.cli.SoscCLI`` and ``sosc.cli.CHECKPOINT_DEFAULTS``, from :mod:`sosc.lightning_cli`
    when first read (so that importing this module stays light)."""
    if name in ("SoscCLI", "SoscArgumentParser", "CHECKPOINT_DEFAULTS"):
        from sosc import lightning_cli

        return getattr(lightning_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    command()
