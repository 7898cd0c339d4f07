"""Custom-pair inference: `sosc-match` and `sosc.inference` on image files of any size."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from sosc import KBCNet
from sosc.cli import main as sosc
from sosc.errors import ConfigError, ShapeError, SoscError
from sosc.inference import command, load_image, load_module, main, match_pair, parse_keypoints

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
    assert saved["kps"] == result["kps"] and saved["trg_size"] == [300 - SHIFT[1], 451 - SHIFT[0]]
    assert saved["src_size"] == [300, 451]  # [H, W], as dataset items
    truth = torch.tensor(saved["src_kps"]) - torch.tensor(SHIFT, dtype=torch.float32)
    err = (torch.tensor(saved["plain_kps"]) - truth).norm(dim=-1)
    assert (err < 0.05 * 451).float().mean() >= 0.75, err
    assert len(saved["confidence"]) == 4 and set(saved["kbc"]) >= {"reason", "refined", "from_pass2", "counts", "src_window", "trg_window", "options"}
    assert saved["kbc"]["options"]["zoom_px"] == 96.0  # "auto" resolved: the zoom used is written down


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


def test_plot_writes_the_match_figure(shifted_pair, tmp_path):
    src, trg = shifted_pair
    figure = tmp_path / "pair.png"
    result = main(["--matcher", "feature", "--src", str(src), "--trg", str(trg), "--kps", "150,100 300,150",
                   "--plot", str(figure), "--out", str(tmp_path / "p.json")])
    with Image.open(figure) as im:
        assert im.size[0] > im.size[1] > 300
    assert result["kbc"]["reason"] in ("large enough", "zoomed")  # a large object: drawn either way (tests/test_viz.py)


def test_match_pair_takes_keypoints_as_a_list_or_an_array(shifted_pair):
    src, _ = shifted_pair
    img = load_image(src)
    identity = lambda s, t, kps, valid: kps  # noqa: E731 (a matcher that returns its input)
    points = [[150, 100], [300.5, 150]]
    for given in (points, np.array(points), np.array(points, dtype=np.float64), torch.tensor(points)):
        result = match_pair(identity, img, img, given)
        assert np.allclose(result["plain_kps"], points, atol=1.0) and len(result["kps"]) == 2
    assert result["src_size"] == result["trg_size"] == [300, 451]
    for bad, message in (([150, 100], r"\(N, 2\)"), ([], r"\(N, 2\)"), ([["a", 1]], "numbers"),
                         ([[float("nan"), 1.0]], "NaN")):
        with pytest.raises(ShapeError, match=message):
            match_pair(identity, img, img, bad)


@pytest.mark.parametrize("option", ["--out", "--plot"])
@pytest.mark.parametrize("where", ["missing", "file"])
def test_an_output_that_cannot_be_written_is_refused_before_anything_is_read(tmp_path, option, where):
    (tmp_path / "file").write_text("")
    why = {"missing": "its folder .* does not exist", "file": "is a file, not a folder"}[where]
    with pytest.raises(ConfigError, match=rf"{option} .*out.json cannot be written: .*{why}"):
        # the source does not exist either: the output is checked first, before any work
        main(["--matcher", "feature", "--src", str(tmp_path / "none.png"), "--trg", str(tmp_path / "none.png"),
              "--kps", "1,1", option, str(tmp_path / where / "out.json")])


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


# -------------------------------------------------------------------------------------- bad inputs (#12)


def test_16_bit_images_match_like_8_bit_ones(shifted_pair, tmp_path):
    """Before: a 16-bit greyscale PNG read as white; sosc-match exited 0 with a 79.7 px error where
    the 8-bit file gave 15.3 px. Now both files give the same prediction."""
    src, trg = shifted_pair
    grey = np.asarray(Image.open(src).convert("L"))
    Image.fromarray(grey).save(tmp_path / "src8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "src16.png")
    kps = "150,100; 300,150; 200,200"
    runs = [main(["--matcher", "feature", "--src", str(tmp_path / name), "--trg", str(trg), "--kps", kps, "--no-kbc",
                  "--out", str(tmp_path / "p.json")]) for name in ("src8.png", "src16.png")]
    torch.testing.assert_close(torch.tensor(runs[1]["kps"]), torch.tensor(runs[0]["kps"]), atol=0.02, rtol=0)


def test_exif_orientation_is_applied_to_images_and_keypoints(shifted_pair, tmp_path):
    """Before: a tagged image was read as stored, so keypoints read off the image as shown were
    rejected or matched in the wrong frame. Now the tagged file gives the untagged file's answer."""
    src, trg = shifted_pair
    shown = np.asarray(Image.open(src).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated back: viewers turn it 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(shown, 1))).save(tmp_path / "tagged.png", exif=exif)
    assert load_image(tmp_path / "tagged.png").shape == (3, 300, 451)
    kps = "150,100; 420,280"  # (420, 280) lies outside the stored 300 x 451 frame
    args = ["--matcher", "feature", "--trg", str(trg), "--kps", kps, "--no-kbc", "--out", str(tmp_path / "p.json")]
    tagged = main(["--src", str(tmp_path / "tagged.png"), *args])
    plain = main(["--src", str(src), *args])
    assert tagged["kps"] == plain["kps"]


@pytest.mark.parametrize("case", ["missing", "truncated", "outside", "kps-file", "input-size", "out", "background",
                                  "zoom"])
def test_user_mistakes_print_one_line_and_exit_2(shifted_pair, tmp_path, capsys, monkeypatch, case):
    """Before: two chained tracebacks. Now `sosc-match: error: ...` on one line, exit status 2."""
    monkeypatch.delenv("SOSC_DEBUG", raising=False)
    src, trg = shifted_pair
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(trg.read_bytes()[:2000])
    args, message = {
        "missing": (["--src", str(tmp_path / "nope.png"), "--kps", "1,1"], "nope.png is missing: check the path"),
        "truncated": (["--src", str(cut), "--kps", "1,1"], "cut.jpg is truncated or damaged"),
        "outside": (["--src", str(src), "--kps", "5000,5000"], r"keypoints \[0\] lie outside the 451x300"),
        "kps-file": (["--src", str(src), "--kps-file", str(tmp_path / "k.json")], "--kps-file .*k.json cannot be read"),
        "input-size": (["--src", str(src), "--kps", "1,1", "--input-size", "250"],
                       r"input_size \(250, 250\) must be a multiple of 16 .* 240 and 256"),
        "out": (["--src", str(src), "--kps", "1,1", "--no-kbc", "--out", str(tmp_path / "no" / "p.json")],
                r"--out .*p.json cannot be written"),
        "background": (["--src", str(src), "--kps", "1,1", "--background", "grey"], r"--background: expected white"),
        "zoom": (["--src", str(src), "--kps", "1,1", "--kbc.zoom_px", "inf"],
                 r"KBC option zoom_px must be > 0 input pixels \(or \"auto\".*got inf"),
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        command(["--matcher", "feature", "--trg", str(trg), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sosc-match: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_debug_shows_the_traceback(shifted_pair, tmp_path, monkeypatch):
    src, trg = shifted_pair
    args = ["--matcher", "feature", "--src", str(tmp_path / "nope.png"), "--trg", str(trg), "--kps", "1,1"]
    with pytest.raises(SoscError, match="is missing"):
        command([*args, "--debug"])
    monkeypatch.setenv("SOSC_DEBUG", "1")
    with pytest.raises(SoscError, match="is missing"):
        command(args)


# -------------------------------------------------------------------------------------- --matcher (#14)


@pytest.mark.parametrize("style", ["class path", "name", "json"])
def test_matcher_by_class_path_and_arguments(shifted_pair, tmp_path, style):
    """Before: ``--matcher`` took only ``feature``. Now any class, as ``sosc``'s ``--model.matcher``."""
    src, trg = shifted_pair
    init = {"backbone": "resnet18", "pretrained": False, "strides": [8]}
    which = {
        "class path": ["--matcher", "sosc.matchers.FeatureMatcher", "--matcher-args", json.dumps(init)],
        "name": ["--matcher", "FeatureMatcher", "--matcher-args", json.dumps(init)],
        "json": ["--matcher", json.dumps({"class_path": "sosc.matchers.FeatureMatcher", "init_args": init})],
    }[style]
    result = main([*which, "--src", str(src), "--trg", str(trg), "--kps", "150,100 300,150", "--out",
                   str(tmp_path / "p.json")])
    assert len(result["kps"]) == 2 and all(0 <= x <= 411 and 0 <= y <= 270 for x, y in result["kps"])


def test_the_json_says_which_matcher_ran_and_with_what(shifted_pair, tmp_path):
    """The matcher's class and arguments are written beside KBC's options, so that a result says
    whether the FeatureMatcher ran with its kernel soft-argmax (the default) or the plain one."""
    src, trg = shifted_pair
    outs = {}
    for name, extra in (("default", {}), ("plain", {"kernel_sigma": None})):
        init = {"backbone": "resnet18", "pretrained": False, "strides": [8], **extra}
        main(["--matcher", "sosc.matchers.FeatureMatcher", "--matcher-args", json.dumps(init), "--src", str(src),
              "--trg", str(trg), "--kps", "150,100", "--out", str(tmp_path / f"{name}.json")])
        outs[name] = json.loads((tmp_path / f"{name}.json").read_text())["matcher"]
    assert outs["default"]["class_path"] == "sosc.matchers.feature.FeatureMatcher"
    assert outs["default"]["init_args"]["kernel_sigma"] == 2.0 and outs["plain"]["init_args"]["kernel_sigma"] is None


def test_a_dinov2_matcher_gets_an_input_size_it_takes(shifted_pair, tmp_path):
    """DINOv2's patch is 14: the default input is 252, not 256 (which KBCWrapper refuses)."""
    from sosc.inference import build_matcher, default_input_size

    init = {"backbone": "vit_small_patch14_dinov2", "pretrained": False, "strides": [14]}
    assert default_input_size(build_matcher("FeatureMatcher", init)) == 252
    src, trg = shifted_pair
    result = main(["--matcher", "FeatureMatcher", "--matcher-args", json.dumps(init), "--src", str(src),
                   "--trg", str(trg), "--kps", "150,100", "--no-kbc", "--out", str(tmp_path / "p.json")])
    assert len(result["kps"]) == 1


def test_nested_class_paths_are_built():
    """A FlowMatcher's net, named by class path as in a ``sosc`` config."""
    from sosc.inference import build_matcher
    from sosc.matchers import FlowMatcher

    m = build_matcher("sosc.matchers.FlowMatcher", {"net": {"class_path": "torch.nn.Identity"}, "flow_on": "second"})
    assert isinstance(m, FlowMatcher) and isinstance(m.net, torch.nn.Identity) and m.flow_on == "second"


@pytest.mark.parametrize("case", ["unknown", "argument", "json", "ckpt"])
def test_matcher_mistakes_print_one_line_and_exit_2(shifted_pair, tmp_path, capsys, monkeypatch, case):
    monkeypatch.delenv("SOSC_DEBUG", raising=False)
    src, trg = shifted_pair
    args, message = {
        "unknown": (["--matcher", "sosc.matchers.NoSuchMatcher"],
                    r"--matcher 'sosc.matchers.NoSuchMatcher': cannot import it .* one of sosc.matchers.CallableMatcher, "
                    r"sosc.matchers.FeatureFnMatcher, sosc.matchers.FeatureMatcher, .*sosc.matchers.KBCNet"),
        "argument": (["--matcher", "FeatureMatcher", "--matcher-args", '{"backbon": "resnet18"}'],
                     r"unexpected keyword argument 'backbon'; it takes backbone, pretrained, strides"),
        "json": (["--matcher", "FeatureMatcher", "--matcher-args", "{backbone: resnet18}"], r"--matcher-args: not valid JSON"),
        "ckpt": (["--ckpt", str(tmp_path / "x.ckpt"), "--matcher-args", "{}"], r"--matcher-args goes with --matcher"),
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        command([*args, "--src", str(src), "--trg", str(trg), "--kps", "1,1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sosc-match: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_the_command_line_is_parsed_without_torch():
    """``sosc-match --help`` and a mistyped option answer before torch is imported (issue #16:
    every command spent seconds starting); the work imports it after parsing."""
    import subprocess
    import sys

    probe = ("import sys\nfrom sosc.match_cli import command\n"
             "try:\n    command(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
             "print('torch' in sys.modules, code)")
    bad_kbc = ["--matcher", "feature", "--src", "a.jpg", "--trg", "b.jpg", "--kps", "1,1", "--kbc.zoom_px", "big"]
    for args, code in ((["--help"], 0), (["--src", "a.jpg"], 2), (bad_kbc, 2)):
        env = {k: v for k, v in os.environ.items() if k != "SOSC_DEBUG"}  # one-line errors, as a user gets them
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120, env=env)
        assert done.stdout.strip().splitlines()[-1:] == [f"False {code}"], (done.stdout[-500:], done.stderr[-800:])


def test_kbc_zoom_px_takes_auto_a_number_or_none():
    """``--kbc.zoom_px``: ``auto`` (the default: the matcher's own zoom, 96 for the
    FeatureMatcher, 160 for a KBCNet), input pixels, or ``none`` (the fill ratio)."""
    from sosc.match_cli import build_parser, kbc_config_from

    parse = build_parser().parse_args
    base = ["--matcher", "feature", "--src", "a.jpg", "--trg", "b.jpg", "--kps", "1,1"]
    assert kbc_config_from(parse(base)).zoom_px == "auto"
    assert kbc_config_from(parse([*base, "--kbc.zoom_px", "128"])).zoom_px == 128.0
    assert kbc_config_from(parse([*base, "--kbc.zoom_px", "None"])).zoom_px is None
