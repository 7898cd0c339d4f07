"""Custom-pair inference: `sosc-match` and `sosc.inference` on image files of any size."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data as skdata

from sosc import KBCNet
from sosc.cli import main as sosc
from sosc.errors import ConfigError, ShapeError, SoscError
from sosc.inference import load_image, load_module, main, match_pair, parse_keypoints

SHIFT = (40, 30)  # the target is the source cropped by (dx, dy): each point moves by -SHIFT


@pytest.fixture(scope="module")
def shifted_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    image = skdata.chelsea()  # 300 x 451 photograph
    Image.fromarray(image).save(folder / "src.png")
    Image.fromarray(image[SHIFT[1]:, SHIFT[0]:]).save(folder / "trg.jpg", quality=95)
    return folder / "src.png", folder / "trg.jpg"


def test_feature_matcher_finds_the_shifted_points(shifted_pair, tmp_path):
    src, trg = shifted_pair
    out = tmp_path / "pred.json"
    result = main(["--matcher", "feature", "--src", str(src), "--trg", str(trg),
                   "--kps", "150,100; 300,150; 200,200; 120,220", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["kps"] == result["kps"] and saved["trg_size"] == [451 - SHIFT[0], 300 - SHIFT[1]]
    truth = torch.tensor(saved["src_kps"]) - torch.tensor(SHIFT, dtype=torch.float32)
    err = (torch.tensor(saved["plain_kps"]) - truth).norm(dim=-1)
    assert (err < 0.05 * 451).float().mean() >= 0.75, err
    assert len(saved["confidence"]) == 4 and set(saved["kbc"]) >= {"refined", "fallback", "src_window", "trg_window"}


def test_no_kbc_returns_the_plain_prediction(shifted_pair, capsys):
    src, trg = shifted_pair
    result = main(["--matcher", "feature", "--src", str(src), "--trg", str(trg), "--kps", "[[150, 100]]", "--no-kbc"])
    assert result["kbc"]["enabled"] is False and result["kps"] == result["plain_kps"]
    assert json.loads(capsys.readouterr().out)["kps"] == result["kps"]


@pytest.fixture
def kbcnet_checkpoint(spair_tree, tmp_path):
    root, _ = spair_tree
    cli = sosc(["fit", "--data", "sosc.data.SPair71kDataModule", "--data.root", str(root), "--data.input_size", "64",
                "--data.num_workers", "0", "--data.batch_size", "2", "--model.matcher", "sosc.KBCNet",
                "--model.matcher.backbone", "resnet18", "--model.matcher.pretrained", "false",
                "--model.matcher.channels", "32", "--model.matcher.heads", "2", "--model.matcher.decoder_channels", "[8]",
                "--model.matcher.groups", "2", "--trainer.logger.save_dir", str(tmp_path / "logs"),
                "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"])
    callback = cli.trainer.checkpoint_callback
    return Path(callback.best_model_path or callback.last_model_path), cli.model


def test_a_checkpoint_rebuilds_its_matcher_without_the_config(kbcnet_checkpoint, shifted_pair):
    path, trained = kbcnet_checkpoint
    module = load_module(path)
    assert isinstance(module.matcher, KBCNet) and not module.training
    assert tuple(module.input_size) == (64, 64)
    for name, value in trained.state_dict().items():
        assert torch.equal(module.state_dict()[name], value.cpu()), name
    src, trg = shifted_pair
    result = main(["--ckpt", str(path), "--src", str(src), "--trg", str(trg), "--kps", "150,100 300,150"])
    assert len(result["kps"]) == 2 and all(0 <= x <= 411 and 0 <= y <= 270 for x, y in result["kps"])


def test_the_weights_come_from_the_checkpoint_not_a_download(kbcnet_checkpoint, tmp_path):
    path, _ = kbcnet_checkpoint
    ckpt = torch.load(path, weights_only=False)
    ckpt["sosc"]["matcher"]["init_args"]["pretrained"] = True  # would ask timm's hub (offline: error)
    edited = tmp_path / "hub.ckpt"
    torch.save(ckpt, edited)
    assert isinstance(load_module(edited).matcher, KBCNet)


def test_a_checkpoint_without_its_matcher_asks_for_the_config(kbcnet_checkpoint, tmp_path):
    path, _ = kbcnet_checkpoint
    ckpt = torch.load(path, weights_only=False)
    del ckpt["sosc"]  # as a checkpoint written before the record existed
    del ckpt["hyper_parameters"]["matcher"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(ConfigError, match="--config"):
        load_module(old)
    with pytest.raises(SoscError, match="does not exist"):
        load_module(tmp_path / "missing.ckpt")


def test_bad_input_is_named(shifted_pair, tmp_path):
    src, _ = shifted_pair
    with pytest.raises(SoscError, match="missing.png is missing: check the path"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(SoscError, match="cannot be read"):
        load_image(tmp_path / "text.png")
    with pytest.raises(ShapeError, match="cannot read"):
        parse_keypoints("1,2 x,4")
    with pytest.raises(ShapeError, match=r"\(x, y\) pairs"):
        parse_keypoints("[[1, 2, 3]]")
    img = load_image(src)
    with pytest.raises(ShapeError, match=r"keypoints \[1\] lie outside the 451x300"):
        match_pair(lambda *a: a[2], img, img, torch.tensor([[10.0, 10.0], [460.0, 10.0]]))


def test_plot_writes_a_figure(shifted_pair, tmp_path):
    src, trg = shifted_pair
    figure = tmp_path / "pair.png"
    main(["--matcher", "feature", "--src", str(src), "--trg", str(trg), "--kps", "150,100", "--plot", str(figure),
          "--out", str(tmp_path / "p.json")])
    with Image.open(figure) as im:
        assert im.size[0] > im.size[1] > 100


def test_lightning_load_from_checkpoint_works_too(kbcnet_checkpoint):
    from sosc import CorrespondenceModule

    path, trained = kbcnet_checkpoint
    module = CorrespondenceModule.load_from_checkpoint(path, map_location="cpu")
    assert isinstance(module.matcher, KBCNet)
    assert torch.equal(module.matcher.decoder.skip, trained.matcher.decoder.skip.cpu())


def test_packaged_weights_keep_their_input_normalisation(spair_tree, tmp_path):
    """The packaged EfficientNet-Lite0 normalises with its own mean and std (not timm's), which
    are not in the state dict: the rebuilt matcher must use the same."""
    root, _ = spair_tree
    cli = sosc(["fit", "--data", "sosc.data.SPair71kDataModule", "--data.root", str(root), "--data.input_size", "64",
                "--data.num_workers", "0", "--data.batch_size", "2", "--model.matcher", "sosc.matchers.FeatureMatcher",
                "--trainer.logger.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"])
    callback = cli.trainer.checkpoint_callback
    module = load_module(callback.best_model_path or callback.last_model_path)
    trained = cli.model.matcher.backbone
    assert torch.equal(module.matcher.backbone.normalize.mean, trained.normalize.mean.cpu())
    assert torch.equal(module.matcher.backbone.normalize.std, trained.normalize.std.cpu())
