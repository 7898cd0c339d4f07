"""The LightningCLI subclass behind the ``sosc`` command (:mod:`sosc.cli` runs it).

``sosc fit --config configs/synthetic.yaml``; ``sosc test --config configs/synthetic.yaml
--model.kbc.enabled true --ckpt_path <checkpoint>``. The data module is chosen by
``data.class_path`` and the matcher by ``model.matcher.class_path``. What this subclass adds
to LightningCLI:

- the data checked first (:meth:`SoscCLI.check_data`): missing data, a server that does not
  answer and a stage the benchmark lacks (PF-WILLOW has no training split) are reported in
  seconds, before the model is built and any pretrained weights are fetched;
- one KBC configuration: ``model.kbc`` (:class:`sosc.kbc.KBCConfig`) is linked to the data
  module's ``kbc`` for train-time KBC;
- one input size: ``data.init_args.input_size``; the model reads it from the batches;
- four callbacks that are always there: ``report`` (:class:`sosc.callbacks.PCKReport`),
  ``predictions`` (:class:`sosc.callbacks.PredictionWriter`), ``examples``
  (:class:`sosc.callbacks.ExampleFigures`) and ``checkpoint``
  (:class:`sosc.callbacks.RunCheckpoint`: every ``--checkpoint.every_n_train_steps`` (100)
  training steps, ``last.ckpt``, and on an exception, in ``<save_dir>/<name>/checkpoints``);
- ``--ckpt_path last``: the newest checkpoint in the run's checkpoint folder
  (:func:`sosc.callbacks.find_last_checkpoint`), or an error naming the folder when there is
  none (plain LightningCLI would look in a new ``version_N`` folder and train from scratch);
- the matcher's exact configuration handed to the module for the checkpoint record
  (:mod:`sosc.checkpoint`);
- a checkpoint only supplies weights: the command line and the config decide the options;
- ``--model.matcher`` lists the package's matchers (any :class:`~sosc.matchers.base.Matcher`
  subclass is accepted by class path; a third-party network goes in an adapter);
- ``--trainer.limit_{train,val,test,predict}_batches``: an integer is a number of batches,
  a float a fraction (plain LightningCLI reads ``1`` as ``1.0``, the whole split);
- parse errors in one line (:class:`SoscArgumentParser`; ``SOSC_DEBUG=1`` for jsonargparse's
  full message and the usage).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from sosc.callbacks import (
    CHECKPOINT_FOLDER,
    ExampleFigures,
    PCKReport,
    PredictionWriter,
    RunCheckpoint,
    find_last_checkpoint,
    run_folder,
)
from sosc.console import debug_requested, one_line_parse_error
from sosc.errors import ConfigError

#: The ``checkpoint`` callback's defaults (every option is ``--checkpoint.<name>``).
CHECKPOINT_DEFAULTS = {"every_n_train_steps": 100, "save_top_k": 1, "save_last": "link", "save_on_exception": True,
                       "enable_version_counter": False}

#: The modules whose :class:`~sosc.matchers.base.Matcher` subclasses ``--model.matcher`` lists.
MATCHER_MODULES = ("sosc.matchers.kbcnet", "sosc.matchers.feature", "sosc.matchers.adapters")

#: Trainer options whose integers are counts of batches and floats fractions of the split.
LIMIT_OPTIONS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                 "overfit_batches")


class SoscArgumentParser(LightningArgumentParser):
    """Lightning's argument parser with its errors in one line: ``sosc: error: <what>``, exit
    status 2 (jsonargparse prints the whole usage, 70 lines for ``sosc fit``, and a
    multi-line message). ``SOSC_DEBUG=1`` (``sosc --debug``) keeps jsonargparse's output."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_requested():
            super().error(message, ex)
        self._logger.error(message)
        prog = (self.prog or "sosc").split()[0]
        sys.stderr.write(f"{prog}: error: {one_line_parse_error(message)}\n")
        raise SystemExit(2)


def count_frozen_modules(model: Any) -> int:
    """How many modules of ``model`` a frozen backbone keeps in eval mode by design
    (:class:`sosc.matchers.backbone.Backbone` with ``freeze=True``)."""
    backbone = sys.modules.get("sosc.matchers.backbone")
    if backbone is None or model is None:
        return 0
    return sum(1 for m in model.modules() if isinstance(m, backbone.Backbone) and m.freeze for _ in m.body.modules())


class SoscCLI(LightningCLI):
    """LightningCLI with ``sosc``'s links, callbacks and defaults (CSV logging); see the module
    docstring. :func:`sosc.cli.main` builds it with :class:`SoscArgumentParser`."""

    def _parse_ckpt_path(self) -> None:
        """Keep the command line in charge of a run that loads a checkpoint.

        LightningCLI (a private hook of it, overridden here on purpose) would overwrite the parsed
        ``model`` options with the hyperparameters stored in the checkpoint, so ``sosc test
        --model.kbc.enabled true --ckpt_path ...`` would silently test without KBC. Here the
        checkpoint only supplies weights; a checkpoint that does not fit the configured matcher
        is refused with a message (:func:`sosc.checkpoint.check_state_dict`).
        """

    def add_arguments_to_parser(self, parser) -> None:
        for module in MATCHER_MODULES:  # so that --model.matcher's help lists their classes
            importlib.import_module(module)
        for name in LIMIT_OPTIONS:  # int first: 1 is one batch, 1.0 the whole split
            action = parser._option_string_actions.get(f"--trainer.{name}")
            if action is not None and hasattr(action, "_typehint"):
                action._typehint = int | float | None
        parser.link_arguments("model.kbc", "data.init_args.kbc", apply_on="parse")
        parser.add_lightning_class_args(PCKReport, "report")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ExampleFigures, "examples")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()})
        # No default matcher: jsonargparse carries the init_args of a default class over to the
        # class given on the command line, so `--model.matcher sosc.KBCNet` would silently
        # inherit another matcher's backbone, temperature and freezing.
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": "logs", "name": "sosc"},
                },
            }
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Any:
        """As LightningCLI, but without the ``checkpoint`` callback when
        ``--trainer.enable_checkpointing false`` (which Lightning refuses with any checkpoint
        callback present)."""
        if config.get("enable_checkpointing") is False:
            callbacks = [cb for cb in callbacks if not isinstance(cb, Checkpoint)]
        return super()._instantiate_trainer(config, callbacks)

    def resolve_last_checkpoint(self) -> None:
        """Replace ``--ckpt_path last`` by the newest checkpoint in the run's checkpoint folder, or
        raise :class:`ConfigError` naming the folder, before any work."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        folders = [
            Path(cb.dirpath) if cb.dirpath else run_folder(self.trainer) / CHECKPOINT_FOLDER
            for cb in self.trainer.checkpoint_callbacks
            if isinstance(cb, RunCheckpoint)
        ]
        if not folders:
            return  # no run checkpoint: Lightning's own meaning of "last"
        found = [path for path in map(find_last_checkpoint, dict.fromkeys(folders)) if path is not None]
        if not found:
            raise ConfigError(
                f"--ckpt_path last: no checkpoint in {', '.join(map(str, dict.fromkeys(folders)))}, the checkpoint "
                "folder of the run named by --trainer.logger.init_args.save_dir and .name: give the save_dir and "
                "name of the run to resume, or a checkpoint file, or leave --ckpt_path out to start afresh"
            )
        config["ckpt_path"] = str(max(found, key=lambda p: p.stat().st_mtime_ns))
        rank_zero_info(f"--ckpt_path last: {config['ckpt_path']}")

    def before_instantiate_classes(self) -> None:
        self.check_data()

    def check_data(self) -> None:
        """Check the data of the subcommand before the model is built (and its pretrained weights
        fetched): the data module's ``check_data(stage)`` (:meth:`sosc.data.PairDataModule.check_data`)
        on a throw-away instance of it, which raises :class:`~sosc.errors.DatasetError` saying
        what to put where. A data module that cannot be built alone (nested classes) or has no
        ``check_data`` is left to its ``prepare_data``."""
        if not self.subcommand:
            return
        data = self.config[self.subcommand].get("data")
        class_path = getattr(data, "class_path", None)
        if not class_path:
            return
        module, _, name = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
            init = data.init_args.as_dict() if data.get("init_args") is not None else {}
            init.pop("kbc", None)
            datamodule = cls(**init)
        except Exception:  # built for real by LightningCLI next, with its own error
            return
        check = getattr(datamodule, "check_data", None)
        if callable(check):
            check(self.subcommand)

    def quiet_expected_warnings(self) -> None:
        """Hide, for this command, Lightning's warnings about what ``sosc`` does on purpose: the
        eval mode of a frozen backbone (only when that is every module in eval mode), and a
        run folder that already holds checkpoints when resuming (the checkpoints are the run's)."""
        frozen = count_frozen_modules(self.model)
        if frozen:
            warnings.filterwarnings("ignore", message=rf"Found {frozen} module\(s\) in eval mode at the start")
        if self.config_init[self.subcommand].get("ckpt_path"):
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def before_fit(self) -> None:
        self.quiet_expected_warnings()
        self.resolve_last_checkpoint()

    def before_validate(self) -> None:
        self.resolve_last_checkpoint()

    def before_test(self) -> None:
        self.resolve_last_checkpoint()

    def before_predict(self) -> None:
        self.resolve_last_checkpoint()

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does, then hand the module the matcher's exact configuration
        (``class_path`` and ``init_args`` as parsed) for its checkpoint record.

        A value that parses but that its class refuses (``--model.kbc.zoom_px -5``: the range
        check of :class:`~sosc.kbc.KBCConfig`) reaches jsonargparse as a ``ValueError`` that
        restates the union's subtypes; it is raised as one :class:`~sosc.errors.ConfigError` line.
        """
        try:
            super().instantiate_classes()
        except ValueError as err:
            if "Does not validate against any of the Union subtypes" not in str(err):
                raise
            raise ConfigError(one_line_parse_error(str(err))) from err
        config = self.config[self.subcommand] if self.subcommand else self.config
        matcher = config.get("model.matcher")
        if matcher is not None and self.model is not None:
            self.model.matcher_config = matcher.as_dict() if hasattr(matcher, "as_dict") else dict(matcher)
