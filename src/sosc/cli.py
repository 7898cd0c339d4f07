"""The ``sosc`` command: a LightningCLI with ``fit``, ``validate``, ``test`` and ``predict``.

``sosc fit --config configs/synthetic.yaml``; ``sosc test --config configs/synthetic.yaml
--model.kbc.enabled true --ckpt_path <checkpoint>``. The data module is chosen by
``data.class_path`` and the matcher by ``model.matcher.class_path``. What this subclass adds
to LightningCLI:

- one KBC configuration: ``model.kbc`` (:class:`sosc.kbc.KBCConfig`) is linked to the data
  module's ``kbc`` for train-time KBC;
- one input size: ``data.init_args.input_size``; the model reads it from the batches;
- three callbacks that are always there: ``report`` (:class:`sosc.callbacks.PCKReport`),
  ``predictions`` (:class:`sosc.callbacks.PredictionWriter`) and ``examples``
  (:class:`sosc.callbacks.ExampleFigures`: ``sosc test`` draws its first and worst pairs);
- the matcher's exact configuration handed to the module for the checkpoint record
  (:mod:`sosc.checkpoint`);
- a checkpoint only supplies weights: the command line and the config decide the options.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from sosc.callbacks import ExampleFigures, PCKReport, PredictionWriter
from sosc.data.datamodule import PairDataModule
from sosc.module import CorrespondenceModule


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
