"""The ``sosc`` command: a LightningCLI with ``fit``, ``validate``, ``test`` and ``predict``.

``sosc fit --config configs/synthetic.yaml``; ``sosc test --config configs/synthetic.yaml
--model.kbc true --ckpt_path <checkpoint>``. The data module is chosen by ``data.class_path``
and the matcher by ``model.matcher.class_path``; the network input size is set once, as
``data.init_args.img_size``, and linked to the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from sosc.data.datamodule import PairDataModule
from sosc.module import CorrespondenceModule


def train_kbc_options(train_p: float, tau: float, rho: float, margin: float, s_max: float) -> dict[str, float]:
    """The data module's train-time KBC options, from the model's ``kbc_*`` settings."""
    return {"train_p": train_p, "tau": tau, "rho": rho, "margin": margin, "s_max": s_max}


class SoscCLI(LightningCLI):
    """LightningCLI with ``sosc``'s links and defaults (CSV logging)."""

    def _parse_ckpt_path(self) -> None:
        """Keep the command line in charge of a run that loads a checkpoint.

        LightningCLI would overwrite the parsed ``model`` options with the hyperparameters
        stored in the checkpoint, so ``sosc test --model.kbc true --ckpt_path ...`` would
        silently test without KBC. Here the checkpoint only supplies weights; the options
        are the config's and the command line's.
        """

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does, then record the matcher's configuration
        (``class_path`` and ``init_args``) in the model's hyperparameters, so that a checkpoint
        can rebuild its matcher without the config file (:func:`sosc.inference.load_module`)."""
        super().instantiate_classes()
        config = self.config[self.subcommand] if self.subcommand else self.config
        matcher = config.get("model.matcher")
        if matcher is not None and self.model is not None:
            self.model.hparams["matcher"] = matcher.as_dict() if hasattr(matcher, "as_dict") else dict(matcher)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.img_size", "model.input_size", apply_on="instantiate")
        parser.link_arguments(
            ("model.kbc_train_p", "model.kbc_tau", "model.kbc_rho", "model.kbc_margin", "model.kbc_s_max"),
            "data.init_args.kbc_train",
            compute_fn=train_kbc_options,
        )
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
