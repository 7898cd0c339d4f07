"""Every shipped config parses and builds its model and data module (no data, no download)."""

from pathlib import Path

import pytest

from sosc import KBCNet
from sosc.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_benchmark_configs_are_shipped():
    assert {p.stem for p in CONFIGS} == {"synthetic", "spair", "pfpascal", "pfwillow", "real_semantic"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(config, tmp_path):
    args = ["--config", str(config), "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--data.init_args.root", str(tmp_path / "data")]
    if config.stem != "synthetic":  # their backbone's weights come from timm's hub: keep offline
        args += ["--model.matcher.init_args.pretrained", "false", "--data.init_args.download", "false"]
    cli = main(args, run=False)
    matcher = cli.model.matcher
    if config.stem == "real_semantic":  # evaluation only: the training-free matcher
        assert type(matcher).__name__ == "FeatureMatcher"
        assert cli.model.input_size is None and cli.datamodule.input_size == (256, 256)
        return
    assert isinstance(matcher, KBCNet)
    assert matcher.refiner is not None  # the refinement is on in every shipped config
    assert cli.model.input_size is None and len(cli.datamodule.input_size) == 2
