"""The ``sosc`` command: a LightningCLI with ``fit``, ``validate``, ``test`` and ``predict``.

``sosc fit --config configs/synthetic.yaml``; ``sosc test --config configs/synthetic.yaml
--model.kbc.enabled true --ckpt_path <checkpoint>``. The data module is chosen by
``data.class_path`` and the matcher by ``model.matcher.class_path``. What this subclass adds
to LightningCLI:

- one KBC configuration: ``model.kbc`` (:class:`sosc.kbc.KBCConfig`) is linked to the data
  module's ``kbc`` for train-time KBC;
- one input size: ``data.init_args.input_size``; the model reads it from the batches;
- three callbacks that are always there: ``report`` (:class:`sosc.callbacks.PCKReport`),
  ``predictions`` (:class:`sosc.callbacks.PredictionWriter`), ``examples``
  (:class:`sosc.callbacks.ExampleFigures`: ``sosc test`` draws its first and worst pairs) and
  ``checkpoint``
  (:class:`sosc.callbacks.RunCheckpoint`: every ``--checkpoint.every_n_train_steps`` (100)
  training steps, ``last.ckpt``, and on an exception, in ``<save_dir>/<name>/checkpoints``);
- ``--ckpt_path last``: the newest checkpoint in the run's checkpoint folder
  (:func:`sosc.callbacks.find_last_checkpoint`), or an error naming the folder when there is
  none (plain LightningCLI would look in a new ``version_N`` folder and train from scratch);
- the matcher's exact configuration handed to the module for the checkpoint record
  (:mod:`sosc.checkpoint`);
- a checkpoint only supplies weights: the command line and the config decide the options.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.cli import LightningCLI
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
from sosc.data.datamodule import PairDataModule
from sosc.errors import ConfigError
from sosc.module import CorrespondenceModule

#: The ``checkpoint`` callback's defaults (every option is ``--checkpoint.<name>``).
CHECKPOINT_DEFAULTS = {"every_n_train_steps": 100, "save_top_k": 1, "save_last": "link", "save_on_exception": True,
                       "enable_version_counter": False}


class SoscCLI(LightningCLI):
    """LightningCLI with ``sosc``'s links, callbacks and defaults (CSV logging)."""

    def _parse_ckpt_path(self) -> None:
        """Keep the command line in charge of a run that loads a checkpoint.

        LightningCLI (a private hook of it, overridden here on purpose) would overwrite the parsed
        ``model`` options with the hyperparameters stored in the checkpoint, so ``sosc test
        --model.kbc.enabled true --ckpt_path ...`` would silently test without KBC. Here the
        checkpoint only supplies weights; a checkpoint that does not fit the configured matcher
        is refused with a message (:func:`sosc.checkpoint.check_state_dict`).
        """

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.kbc", "data.init_args.kbc", apply_on="parse")
        parser.add_lightning_class_args(PCKReport, "report")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(ExampleFigures, "examples")
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

    def before_fit(self) -> None:
        self.resolve_last_checkpoint()

    def before_validate(self) -> None:
        self.resolve_last_checkpoint()

    def before_test(self) -> None:
        self.resolve_last_checkpoint()

    def before_predict(self) -> None:
        self.resolve_last_checkpoint()

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does, then hand the module the matcher's exact configuration
        (``class_path`` and ``init_args`` as parsed) for its checkpoint record."""
        super().instantiate_classes()
        config = self.config[self.subcommand] if self.subcommand else self.config
        matcher = config.get("model.matcher")
        if matcher is not None and self.model is not None:
            self.model.matcher_config = matcher.as_dict() if hasattr(matcher, "as_dict") else dict(matcher)


def main(args: Sequence[str] | None = None, run: bool = True) -> SoscCLI:
    """Run the ``sosc`` command in-process and return the CLI (``cli.trainer``, ``cli.model``).

    ``args`` as on the command line (default ``sys.argv[1:]``); ``run=False`` only parses and
    instantiates. The installed ``sosc`` script calls :func:`command` instead.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    return SoscCLI(
        CorrespondenceModule,
        PairDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def command() -> None:
    """The installed ``sosc`` script: :func:`main` on ``sys.argv``, exit status 0 on success."""
    main()


if __name__ == "__main__":
    command()
