"""ExampleFigures: ``sosc test`` draws its first and worst pairs beside the report and logs them."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sosc.callbacks import ExampleFigures, log_images
from sosc.cli import main
from sosc.data.dataset import collate_pairs
from sosc.errors import ConfigError


def cli_args(root: Path, logs: Path) -> list[str]:
    return [
        "test", "--data", "sosc.data.SPair71kDataModule", "--data.root", str(root), "--data.input_size", "64",
        "--data.num_workers", "0", "--data.batch_size", "2",
        "--model.matcher", "sosc.matchers.FeatureMatcher", "--model.matcher.backbone", "resnet18",
        "--model.matcher.pretrained", "false", "--model.matcher.strides", "[8, 16]",
        "--trainer.logger.save_dir", str(logs), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


def pngs(folder: Path) -> list[str]:
    return sorted(p.name.split("_")[0] + "_" + p.name.split("_")[1] for p in folder.glob("*.png"))


def test_sosc_test_with_kbc_draws_the_first_and_worst_pairs(spair_tree, tmp_path):
    root, written = spair_tree
    cli = main([*cli_args(root, tmp_path / "logs"), "--model.kbc.enabled", "true", "--examples.n", "2"])
    folder = Path(cli.trainer.log_dir) / "examples"
    assert pngs(folder) == ["first_1", "first_2", "worst_1", "worst_2"]
    assert (Path(cli.trainer.log_dir) / "pck_kbc_pred-box.md").is_file()  # beside the report
    first = sorted(folder.glob("first_1_*.png"))[0]
    assert written["test"][0]["src_imname"].split(".")[0] in first.name  # named by the pair id
    with Image.open(first) as im:
        assert im.size[0] > 600 and im.size[1] > 300


def test_examples_can_be_turned_off(spair_tree, tmp_path):
    root, _ = spair_tree
    cli = main([*cli_args(root, tmp_path / "logs"), "--examples.enabled", "false"])
    assert not (Path(cli.trainer.log_dir) / "examples").exists()
    assert (Path(cli.trainer.log_dir) / "pck_plain.md").is_file()


def batch_of(spair_tree, n=3):
    from sosc.data import SPair71kDataModule

    root, _ = spair_tree
    dm = SPair71kDataModule(root=root, input_size=64, num_workers=0)
    dm.setup("test")
    return collate_pairs([dm.datasets["test"][i] for i in range(n)])


def run_callback(callback, batch, preds, tmp_path, loggers=()):
    """Drive the callback as Lightning does: test_step's plain prediction is its ``outputs``."""
    from sosc.batch import original_keypoints

    gt = original_keypoints(batch, "trg")
    trainer = SimpleNamespace(log_dir=str(tmp_path), is_global_zero=True, loggers=list(loggers), global_step=7)
    module = SimpleNamespace()
    callback.on_test_start(trainer, module)
    callback.on_test_batch_end(trainer, module, gt + preds, batch, 0)
    callback.on_test_end(trainer, module)
    return callback


def test_worst_pairs_are_those_with_the_lowest_pck_then_the_largest_error(spair_tree, tmp_path):
    batch = batch_of(spair_tree)
    offsets = torch.zeros(3, *batch["trg_kps"].shape[1:])
    offsets[1] += 1000.0  # pair 1: every keypoint wrong, far
    offsets[2] += 500.0   # pair 2: every keypoint wrong, less far
    callback = run_callback(ExampleFigures(n=2, log=False), batch, offsets, tmp_path)
    assert [p["order"] for p in callback._first] == [0, 1]
    assert [p["order"] for p in callback._worst] == [1, 2]
    assert [p.name.split("_")[0] for p in callback.written] == ["first", "first", "worst", "worst"]
    assert all(p.parent == tmp_path / "examples" and p.is_file() for p in callback.written)


class ImageLogger:
    """A logger with W&B's ``log_image`` signature that records its calls."""

    def __init__(self):
        self.calls = []

    def log_image(self, key, images, step=None, **kwargs):
        self.calls.append((key, images, step, kwargs))


def test_figures_go_to_loggers_that_take_images(spair_tree, tmp_path):
    batch = batch_of(spair_tree)
    logger = ImageLogger()
    run_callback(ExampleFigures(n=1), batch, torch.zeros(3, *batch["trg_kps"].shape[1:]), tmp_path, [logger])
    keys = [c[0] for c in logger.calls]
    assert keys == ["test_examples/first", "test_examples/worst"]
    key, images, step, kwargs = logger.calls[0]
    assert step == 7 and len(images) == 1 and images[0].dtype == np.uint8 and images[0].shape[-1] == 3
    assert "first 1:" in kwargs["caption"][0]
    assert log_images([SimpleNamespace()], {"first": [("x", images[0])]}) == []  # a CSV logger: the files are the record


def test_wandb_logger_receives_the_images_offline(spair_tree, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="sosc-test")
    batch = batch_of(spair_tree, 2)
    try:
        run_callback(ExampleFigures(n=1), batch, torch.zeros(2, *batch["trg_kps"].shape[1:]), tmp_path, [logger])
        run_dir = Path(logger.experiment.dir)
    finally:
        wandb.finish()
    media = list(run_dir.rglob("media/images/test_examples/*.png"))
    assert len(media) == 2, list(run_dir.rglob("*"))


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="n must be >= 0"):
        ExampleFigures(n=-1)
    with pytest.raises(ConfigError, match="alpha"):
        ExampleFigures(alpha=0)
