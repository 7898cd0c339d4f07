"""The `sosc` command in-process: fit, test, predict, overrides and bad input."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import truncate_image, write_spair_tree
from lightning.pytorch.callbacks import Callback

import sosc
from sosc.callbacks import RunCheckpoint, find_last_checkpoint
from sosc.cli import main
from sosc.data import TrainSampler
from sosc.errors import ConfigError, DatasetError


def common(root: Path, logs: Path) -> list[str]:
    return [
        "--data", "sosc.data.SPair71kDataModule", "--data.root", str(root), "--data.input_size", "64",
        "--data.num_workers", "0", "--data.batch_size", "2",
        "--model.matcher", "sosc.matchers.FeatureMatcher",
        "--model.matcher.backbone", "resnet18", "--model.matcher.pretrained", "false",
        "--model.matcher.strides", "[8, 16]",
        "--trainer.logger.save_dir", str(logs), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


@pytest.fixture
def trained(spair_tree, tmp_path):
    root, _ = spair_tree
    args = common(root, tmp_path / "logs")
    cli = main(["fit", *args, "--trainer.max_steps", "2"])
    ckpt = cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path
    assert Path(ckpt).is_file()
    return args, ckpt, tmp_path


class TestCLI:
    def test_fit_then_test_writes_the_report(self, trained):
        args, ckpt, tmp = trained
        cli = main(["test", *args, "--ckpt_path", ckpt])
        folder = Path(cli.trainer.log_dir)
        assert (folder / "pck_plain.csv").is_file() and (folder / "pck_plain.md").is_file()
        metrics = cli.trainer.callback_metrics
        assert {"test/pck@0.1", "test/pck_kp@0.1", "test/pck@0.05"} <= set(metrics)
        assert 0.0 <= float(metrics["test/pck@0.1"]) <= 1.0

    def test_command_line_beats_checkpoint_hyperparameters(self, trained):
        args, ckpt, _ = trained
        cli = main(["test", *args, "--ckpt_path", ckpt, "--model.kbc.enabled", "true",
                    "--model.kbc.target", "object-bbox"])
        assert cli.model.kbc_config.enabled and cli.model.kbc_config.target == "object-bbox"
        assert (Path(cli.trainer.log_dir) / "pck_kbc_object-bbox.md").is_file()

    def test_predict_writes_json(self, trained, spair_tree):
        args, ckpt, tmp = trained
        out = tmp / "pred.json"
        main(["predict", *args, "--ckpt_path", ckpt, "--predictions.path", str(out)])
        data = json.loads(out.read_text())
        _, written = spair_tree
        assert len(data["pairs"]) == len(written["test"])
        first = data["pairs"][0]
        assert len(first["trg_kps"]) == len(written["test"][0]["trg_kps"])

    def test_input_size_is_set_once_on_the_data(self, spair_tree, tmp_path):
        root, _ = spair_tree
        cli = main(common(root, tmp_path), run=False)
        assert cli.model.input_size is None and cli.datamodule.input_size == (64, 64)

    def test_a_model_input_size_that_differs_from_the_data_is_refused_before_any_work(self, spair_tree, tmp_path):
        root, _ = spair_tree
        cli = main([*common(root, tmp_path), "--model.input_size", "128"], run=False)
        assert cli.model.input_size == (128, 128)
        with pytest.raises(ConfigError, match=r"model.input_size is \(128, 128\).*data.init_args.input_size is \(64, 64\)"):
            cli.trainer.test(cli.model, datamodule=cli.datamodule)

    def test_every_kbc_option_reaches_the_model_and_the_data(self, spair_tree, tmp_path):
        root, _ = spair_tree
        cli = main([*common(root, tmp_path), "--model.kbc.train_p", "0.25", "--model.kbc.rho", "0.6",
                    "--model.kbc.min_margin", "4", "--model.kbc.zoom_px", "64", "--model.kbc.choice", "cycle"], run=False)
        for config in (cli.model.kbc_config, cli.datamodule.kbc):
            assert (config.train_p, config.rho, config.min_margin, config.zoom_px, config.choice) == (0.25, 0.6, 4, 64, "cycle")
        assert cli.datamodule.train_window_fn() is not None

    def test_unknown_key_is_rejected(self, spair_tree, tmp_path):
        root, _ = spair_tree
        with pytest.raises(SystemExit):
            main([*common(root, tmp_path), "--model.no_such_option", "1"], run=False)

    def test_bad_kbc_target_is_rejected(self, spair_tree, tmp_path):
        root, _ = spair_tree
        with pytest.raises(SystemExit):
            main([*common(root, tmp_path), "--model.kbc.target", "ground-truth"], run=False)

    @pytest.mark.parametrize("name", ["synthetic", "spair", "pfpascal", "pfwillow"])
    def test_configs_parse(self, name, tmp_path):
        path = Path(__file__).parents[1] / "configs" / f"{name}.yaml"
        cli = main(["--config", str(path), "--trainer.logger.init_args.save_dir", str(tmp_path),
                    "--model.matcher.init_args.pretrained", "false"], run=False)
        assert type(cli.model.matcher).__name__ == "KBCNet"
        assert cli.datamodule.input_size == ((512, 512) if name == "spair" else (256, 256))


def test_wandb_logger_works_offline(spair_tree, tmp_path):
    root, _ = spair_tree
    args = common(root, tmp_path / "logs")
    args = [a for a in args if a not in ("--trainer.logger.save_dir", str(tmp_path / "logs"))]
    cli = main(["fit", *args, "--trainer.logger", "lightning.pytorch.loggers.WandbLogger",
                "--trainer.logger.init_args.offline", "true", "--trainer.logger.init_args.save_dir",
                str(tmp_path / "wb"), "--trainer.max_steps", "1"])
    assert type(cli.trainer.logger).__name__ == "WandbLogger"
    assert any((tmp_path / "wb" / "wandb").glob("offline-run-*"))


def test_a_matcher_named_on_the_command_line_gets_its_own_defaults(tmp_path):
    """No default matcher whose init_args jsonargparse would carry over to the one named."""
    cli = main(["--data", "sosc.data.SPair71kDataModule", "--data.root", str(tmp_path), "--trainer.logger", "false",
                "--model.matcher", "sosc.KBCNet", "--model.matcher.backbone", "resnet18",
                "--model.matcher.pretrained", "false"], run=False)
    matcher = cli.model.matcher
    assert matcher.temperature == 0.05 and not matcher.backbone.freeze  # KBCNet's defaults


def test_no_matcher_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--data", "sosc.data.SPair71kDataModule", "--data.root", str(tmp_path)], run=False)
    assert "model.matcher" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "message"), [("zoom_px", "-5", r"KBC option zoom_px must be > 0"),
                                                         ("rho", "2", r"KBC option rho must be in \(0, 1\], got 2.0")])
def test_an_out_of_range_kbc_option_is_one_line_and_exit_2(spair_tree, tmp_path, capsys, monkeypatch, option, value,
                                                          message):
    """Found by a review: the class's range check reached the user as jsonargparse's traceback
    (exit 1); now ``sosc: error: <the option and its range>``, exit 2."""
    from sosc.cli import command

    monkeypatch.delenv("SOSC_DEBUG", raising=False)
    root, _ = spair_tree
    with pytest.raises(SystemExit) as exit_info:
        command(["fit", *common(root, tmp_path), f"--model.kbc.{option}", value])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sosc:")]
    assert len(err) == 1 and re.search(message, err[0]), err


# -- resuming ----------------------------------------------------------------------------------
class StallAfterStep(Callback):
    """Used by a ``sosc fit`` subprocess: once ``step`` steps are done (the checkpoint callbacks,
    which Lightning runs after this one, have saved the steps before), write ``marker`` and wait
    to be killed. It also sets the subprocess's ``threads`` to the test process's: float sums
    depend on the thread count, and importing this module (conftest) sets its own."""

    def __init__(self, step: int, marker: str, threads: int) -> None:
        self.step, self.marker = step, marker
        torch.set_num_threads(threads)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            Path(self.marker).write_text(str(trainer.global_step))
            time.sleep(300)
            os._exit(3)  # never reached when the test kills us


def resume_args(root: Path, logs: Path) -> list[str]:
    """A tiny run with every source of randomness on: shuffling, train-time KBC, augmentation;
    4 training pairs in batches of 1, so that step 2 is the middle of epoch 0 and step 6 of epoch 1.
    On the CPU, whose kernels are deterministic (cuDNN's backward need not be)."""
    return [*common(root, logs), "--trainer.accelerator", "cpu", "--seed_everything", "0", "--data.batch_size", "1",
            "--model.kbc.train_p", "0.5", "--model.warmup_steps", "2", "--trainer.max_steps", "6",
            "--trainer.limit_val_batches", "0", "--checkpoint.every_n_train_steps", "2"]


def test_a_run_killed_after_a_step_checkpoint_resumes_to_the_same_weights_and_pck(spair_tree, tmp_path):
    root, _ = spair_tree
    marker = tmp_path / "stalled"
    stall = json.dumps({"class_path": "test_cli.StallAfterStep",
                        "init_args": {"step": 3, "marker": str(marker), "threads": torch.get_num_threads()}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(sosc.__file__).parents[1]), str(Path(__file__).parent)])}
    killed = subprocess.Popen([sys.executable, "-m", "sosc.cli", "fit", *resume_args(root, tmp_path / "logs"),
                               f"--trainer.callbacks+={stall}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), killed.stdout.read().decode()[-3000:] if killed.poll() is not None else "no step 3"
    finally:
        killed.kill()  # SIGKILL: no exception handler, no checkpoint on the way out
        killed.wait()
    folder = tmp_path / "logs" / "sosc" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    (folder / "last.ckpt").unlink()  # as if killed between the step checkpoint and the link

    resumed = main(["fit", *resume_args(root, tmp_path / "logs"), "--ckpt_path", "last"])
    straight = main(["fit", *resume_args(root, tmp_path / "straight")])
    assert resumed.trainer.global_step == straight.trainer.global_step == 6
    ours, theirs = resumed.model.state_dict(), straight.model.state_dict()
    assert max(float((ours[k].float() - theirs[k].float()).abs().max()) for k in ours) <= 1e-6
    pck = [cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False) for cli in (resumed, straight)]
    assert pck[0] == pck[1]


def test_ckpt_path_last_without_a_checkpoint_names_the_folder(spair_tree, tmp_path):
    root, _ = spair_tree
    with pytest.raises(ConfigError, match=r"--ckpt_path last: no checkpoint in .*logs/sosc/checkpoints"):
        main(["fit", *common(root, tmp_path / "logs"), "--ckpt_path", "last"])


def test_a_bad_training_image_saves_a_checkpoint_before_failing(spair_tree, tmp_path):
    """The truncated JPEG passes set-up (headers only), is drawn at the third step, and the step
    checkpoint of the exception lets the run go on once the file is fixed (or checked at set-up
    with verify_images)."""
    root, written = spair_tree
    args = [*common(root, tmp_path / "logs"), "--seed_everything", "0", "--data.batch_size", "1",
            "--trainer.max_steps", "4", "--trainer.limit_val_batches", "0"]
    order = [i for i, _ in TrainSampler(range(len(written["trn"])), seed=0)]
    pair = written["trn"][order[2]]
    image = root / "JPEGImages" / pair["category"] / pair["src_imname"]
    intact = image.read_bytes()
    truncate_image(image)
    with pytest.raises(DatasetError, match=pair["src_imname"]):
        main(["fit", *args])
    saved = find_last_checkpoint(tmp_path / "logs" / "sosc" / "checkpoints")
    assert saved is not None and torch.load(saved, weights_only=False)["global_step"] >= 1
    with pytest.raises(DatasetError, match=rf"do not decode: .*{pair['src_imname']}"):
        main(["fit", *args, "--data.verify_images", "true"])  # named at set-up, before any step
    image.write_bytes(intact)
    assert main(["fit", *args, "--ckpt_path", "last"]).trainer.global_step == 4


def test_checkpointing_can_be_turned_off(spair_tree, tmp_path):
    """Lightning refuses enable_checkpointing=false beside a checkpoint callback: sosc drops its own."""
    root, _ = spair_tree
    cli = main([*common(root, tmp_path / "logs"), "--trainer.enable_checkpointing", "false"], run=False)
    assert cli.trainer.checkpoint_callbacks == []
    assert [type(c) for c in main(common(root, tmp_path / "logs"), run=False).trainer.checkpoint_callbacks] == [RunCheckpoint]


# -- several processes -------------------------------------------------------------------------
DDP = ["--trainer.strategy", "ddp_fork", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


@pytest.fixture
def one_thread():
    """Both processes of a ``ddp_fork`` run single-threaded: GNU OpenMP hangs in a forked child
    whose parent has used its thread pool. The single-process reference runs the same way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


needs_fork = pytest.mark.skipif(
    not torch.distributed.is_available() or "fork" not in torch.multiprocessing.get_all_start_methods(),
    reason="the 2-process runs fork gloo workers",
)


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """As ``trained``, once for the 2-process tests (each reads it and writes elsewhere)."""
    tmp = tmp_path_factory.mktemp("ddp")
    write_spair_tree(tmp / "SPair-71k")
    args = common(tmp / "SPair-71k", tmp / "logs")
    callback = main(["fit", *args, "--trainer.max_steps", "2"]).trainer.checkpoint_callback
    return args, callback.best_model_path or callback.last_model_path, tmp


@needs_fork
@pytest.mark.distributed
class TestTwoProcesses:
    """`sosc` on 2 CPU processes (gloo) gives what 1 process gives."""

    def test_validate_test_and_predict_equal_one_process(self, trained_once, one_thread):
        args, ckpt, tmp = trained_once
        # CPU for the 1-process reference too; alphas that keep PCK away from 0 on a tiny model
        args = [*args, "--trainer.accelerator", "cpu", "--ckpt_path", ckpt, "--model.alphas", "[0.1, 0.3, 0.5]"]
        for sub, extra in (("validate", []), ("test", []), ("test", ["--model.kbc.enabled", "true"])):
            single = main([sub, *args, *extra])
            one = {k: float(v) for k, v in single.trainer.callback_metrics.items()}
            two = {k: float(v) for k, v in main([sub, *args, *extra, *DDP, "--report.folder", str(tmp / "ddp")])
                   .trainer.callback_metrics.items()}
            assert two.keys() == one.keys() and two == pytest.approx(one, rel=1e-6), sub  # val/loss: a mean of means
            assert {k: v for k, v in two.items() if "pck" in k} == {k: v for k, v in one.items() if "pck" in k}, sub
        assert float(two["test/pairs"]) == 3 and "test_kbc/pairs_zoomed" in two  # a repeated pair counts once
        assert two["test_kbc/matcher_passes"] == one["test_kbc/matcher_passes"]  # and its passes once
        for name in ("pck_plain.csv", "pck_kbc_pred-box.csv"):  # the reports of the last (KBC) run
            assert (tmp / "ddp" / name).read_text() == (Path(single.trainer.log_dir) / name).read_text(), name
        main(["predict", *args, "--predictions.path", str(tmp / "one.json")])
        main(["predict", *args, *DDP, "--predictions.path", str(tmp / "two.json")])
        assert (tmp / "two.json").read_text() == (tmp / "one.json").read_text()

    def test_fit_writes_the_run_checkpoint_and_a_bad_output_stops_every_process(self, trained_once, one_thread):
        args, ckpt, tmp = trained_once
        main(["fit", *args, *DDP, "--trainer.max_steps", "2", "--trainer.logger.name", "ddp"])
        saved = find_last_checkpoint(tmp / "logs" / "ddp" / "checkpoints")
        assert torch.load(saved, weights_only=False)["global_step"] == 2
        (tmp / "taken.json").write_text("{}")
        with pytest.raises(Exception, match="taken.json already exists"):
            main(["predict", *args, *DDP, "--ckpt_path", ckpt, "--predictions.path", str(tmp / "taken.json")])


# -- a newcomer's first hour: errors first and fast, help, console ----------------------------------
CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if any pretrained weights are asked for."""
    import sosc.matchers.backbone as backbone

    def refuse(*args, **kwargs):
        raise AssertionError("pretrained weights were fetched before the data was checked")

    monkeypatch.setattr(backbone, "hub_features", refuse)
    monkeypatch.setattr(backbone, "packaged_features", refuse)


class TestDataBeforeWeights:
    def test_missing_data_is_named_before_any_weights_are_fetched(self, tmp_path, no_weights):
        with pytest.raises(DatasetError, match=r"download=False.*To install SPair-71k by hand: download SPair-71k\.tar\.gz"):
            main(["fit", "--config", str(CONFIGS / "spair.yaml"), "--data.init_args.root", str(tmp_path / "data"),
                  "--data.init_args.download", "false", "--trainer.logger.init_args.save_dir", str(tmp_path)])

    def test_download_true_with_the_server_unreachable_says_the_same_in_seconds(self, tmp_path, no_weights):
        start = time.perf_counter()
        with pytest.raises(DatasetError) as err:
            main(["fit", "--config", str(CONFIGS / "spair.yaml"), "--data.init_args.root", str(tmp_path / "data"),
                  "--data.init_args.url", "http://127.0.0.1:9/SPair-71k.tar.gz",
                  "--trainer.logger.init_args.save_dir", str(tmp_path)])
        assert "could not be downloaded: http://127.0.0.1:9/SPair-71k.tar.gz: 127.0.0.1:9 cannot be reached" in str(err.value)
        assert "To install SPair-71k by hand" in str(err.value) and not (tmp_path / "data").exists()
        assert time.perf_counter() - start < 60  # the parser's set-up; the probe itself is at most 5 s

    def test_pf_willow_refuses_fit_before_any_weights_are_fetched(self, tmp_path, no_weights):
        with pytest.raises(ConfigError, match="test set only"):
            main(["fit", "--config", str(CONFIGS / "pfwillow.yaml"), "--data.init_args.root", str(tmp_path),
                  "--trainer.logger.init_args.save_dir", str(tmp_path)])

    def test_parsing_alone_checks_no_data(self, tmp_path):
        """run=False (no subcommand) builds the classes only: no data check, as before."""
        cli = main(["--config", str(CONFIGS / "spair.yaml"), "--data.init_args.root", str(tmp_path / "none"),
                    "--model.matcher.init_args.pretrained", "false", "--trainer.logger", "false"], run=False)
        assert cli.datamodule.root == tmp_path / "none"


class TestErrors:
    def test_a_bad_option_is_one_line_and_exit_status_2(self, spair_tree, tmp_path, capsys):
        root, _ = spair_tree
        with pytest.raises(SystemExit) as exit_:
            main(["fit", *common(root, tmp_path), "--model.kbc.target", "ground-truth"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1, err
        assert err[0].startswith("sosc: error: ") and "target" in err[0] and "ground-truth" in err[0]

    def test_sosc_debug_keeps_jsonargparse_s_full_message(self, spair_tree, tmp_path, capsys, monkeypatch):
        root, _ = spair_tree
        monkeypatch.setenv("SOSC_DEBUG", "1")
        with pytest.raises(SystemExit):
            main(["fit", *common(root, tmp_path), "--model.kbc.target", "ground-truth"])
        assert "usage:" in capsys.readouterr().err

    def test_a_network_that_is_not_a_matcher_is_pointed_at_the_adapters(self, spair_tree, tmp_path, capsys):
        root, _ = spair_tree
        with pytest.raises(SystemExit):
            main(["fit", "--data", "sosc.data.SPair71kDataModule", "--data.root", str(root),
                  "--model.matcher", "torch.nn.Identity"])
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "does not correspond to a subclass of Matcher" in err
        assert "sosc.matchers.FlowMatcher" in err and "CallableMatcher" in err and "class path" in err

    def test_a_third_party_network_by_class_path_in_an_adapter(self, spair_tree, tmp_path):
        root, _ = spair_tree
        cli = main(["--data", "sosc.data.SPair71kDataModule", "--data.root", str(root), "--trainer.logger", "false",
                    "--model.matcher", "sosc.matchers.CallableMatcher", "--model.matcher.fn", "test_cli.HalfWay"], run=False)
        assert type(cli.model.matcher.fn).__name__ == "HalfWay"
        cli = main(["--data", "sosc.data.SPair71kDataModule", "--data.root", str(root), "--trainer.logger", "false",
                    "--model.matcher", "test_cli.OwnMatcher"], run=False)
        assert type(cli.model.matcher).__name__ == "OwnMatcher"

    def test_command_prints_a_sosc_error_in_one_line(self, spair_tree, tmp_path, capsys):
        from sosc.cli import command

        root, _ = spair_tree
        with pytest.raises(SystemExit) as exit_:
            command(["fit", *common(root, tmp_path), "--ckpt_path", "last"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and err[-1].startswith("sosc: error: --ckpt_path last: no checkpoint in ")
        assert "Traceback" not in "\n".join(err)

    def test_command_with_debug_raises_with_the_traceback(self, spair_tree, tmp_path, monkeypatch):
        from sosc.cli import command

        root, _ = spair_tree
        # command() sets SOSC_DEBUG for its own process: setenv (not delenv of an unset variable,
        # which records nothing to undo) makes the teardown remove it again for later tests
        monkeypatch.setenv("SOSC_DEBUG", "0")
        with pytest.raises(ConfigError, match="--ckpt_path last"):
            command(["fit", "--debug", *common(root, tmp_path), "--ckpt_path", "last"])


class HalfWay(torch.nn.Module):
    """A third-party network that follows the matcher contract (not a sosc.Matcher)."""

    def forward(self, src_img, trg_img, src_kps, valid):
        return src_kps * 0.5


class OwnMatcher(sosc.Matcher):
    """A sosc.Matcher subclass of another package, named by class path."""

    def forward(self, src_img, trg_img, src_kps, valid=None):
        return src_kps


class TestHelp:
    def test_root_help_names_what_the_parser_has_without_importing_lightning(self, capsys):
        from sosc.cli import ROOT_HELP

        code = ("import sys; from sosc.cli import command; command(['--help']); "
                "print('lightning imported:', 'lightning' in sys.modules)")
        env = {**os.environ, "PYTHONPATH": str(Path(sosc.__file__).parents[1])}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert done.stdout == ROOT_HELP + "lightning imported: False\n"
        with pytest.raises(SystemExit) as exit_:
            main(["--help"])  # LightningCLI's own root help
        real = capsys.readouterr().out
        assert exit_.value.code == 0 and "{fit,validate,test,predict}" in real
        for option in ("-h, --help", "-c CONFIG, --config CONFIG", "--print_config"):
            assert option in real and option in ROOT_HELP
        assert "Lightning Trainer command line tool" not in real and "small object semantic correspondence" in real
        assert len(ROOT_HELP.splitlines()) < 40

    def test_fit_help_is_sosc_s_and_lists_the_package_s_matchers(self, capsys):
        with pytest.raises(SystemExit):
            main(["fit", "--help"])
        out = capsys.readouterr().out
        assert out.startswith("usage: sosc fit [-h] [-c CONFIG]") and "sosc fit: train a matcher" in out
        matcher = out[out.index("--model.matcher MATCHER"):out.index("--model.input_size")]
        flat = " ".join(matcher.split())
        for name in ("sosc.KBCNet", "sosc.FeatureMatcher", "sosc.CallableMatcher", "sosc.FlowMatcher",
                     "sosc.ScoreVolumeMatcher", "sosc.FeatureFnMatcher"):
            assert name in flat
        assert "torch.nn" not in flat and len(out.splitlines()) < 800  # was 1,873 lines, every nn.Module listed

    @pytest.mark.parametrize(("given", "expected"), [("1", 1), ("3", 3), ("1.0", 1.0), ("0.25", 0.25)])
    def test_limit_batches_integers_are_batches_and_floats_fractions(self, spair_tree, tmp_path, given, expected):
        root, _ = spair_tree
        limits = [arg for name in ("train", "val", "test", "predict") for arg in (f"--trainer.limit_{name}_batches", given)]
        trainer = main([*common(root, tmp_path), *limits], run=False).trainer
        for name in ("train", "val", "test", "predict"):
            value = getattr(trainer, f"limit_{name}_batches")
            assert value == expected and type(value) is type(expected), (name, value)

    def test_limit_batches_from_a_config_file(self, spair_tree, tmp_path):
        root, _ = spair_tree
        config = tmp_path / "limits.yaml"
        config.write_text("trainer:\n  limit_predict_batches: 1\n  limit_val_batches: 0.5\n")
        trainer = main([*common(root, tmp_path), "--config", str(config)], run=False).trainer
        assert (trainer.limit_predict_batches, trainer.limit_val_batches) == (1, 0.5)
        assert type(trainer.limit_predict_batches) is int


#: What Lightning and its libraries print that sosc's commands leave out.
NOISE = ("litlogger", "litmodels", "LeafSpec", "module(s) in eval mode", "exists and is not empty",
         "dirpath has changed", "JsonargparseDeprecation", "deprecated in v4", "No seed found",
         "overridden `on_after_batch_transfer`")


def test_a_tiny_fit_resume_and_test_print_none_of_the_known_noise(spair_tree, tmp_path, capfd, caplog):
    import warnings

    root, _ = spair_tree
    args = [*common(root, tmp_path / "logs"), "--model.matcher.freeze_backbone", "true"]  # eval mode by design
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # past pytest's own filters (pyproject.toml)
        main(["fit", *args, "--trainer.max_steps", "1"])
        main(["fit", *args, "--trainer.max_steps", "2", "--ckpt_path", "last"])  # a folder with checkpoints
        main(["test", *args, "--ckpt_path", "last", "--model.kbc.enabled", "true"])
    printed = capfd.readouterr()
    everything = "\n".join([printed.out, printed.err, caplog.text, *(str(w.message) for w in seen)])
    assert not [n for n in NOISE if n in everything], [n for n in NOISE if n in everything]
    assert "PCK with KBC" in printed.out  # the report is still printed


def test_the_filters_end_with_the_command(tmp_path, caplog):
    """A user's own Trainer after a sosc command still gets every message."""
    import lightning

    from sosc.console import quiet

    with quiet():
        pass
    caplog.set_level("INFO")
    lightning.Trainer(logger=lightning.pytorch.loggers.CSVLogger(tmp_path), enable_progress_bar=False)
    assert "litlogger" in caplog.text
