"""The installed scripts exit with status 0 after a successful run.

A console script runs ``sys.exit(target())``: a target that returns an object (the CLI, the
benchmark rows) makes a successful run exit with status 1 and print the object's repr.
"""

import subprocess
import sys
from importlib.metadata import entry_points

from sosc import app, bench, cli, inference


def test_installed_scripts_point_at_the_command_functions():
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.module.startswith("sosc.")}
    assert {name: ep.load() for name, ep in scripts.items()} == {
        "sosc": cli.command, "sosc-bench": bench.command, "sosc-match": inference.command, "sosc-app": app.command,
    }


def test_sosc_command_returns_none(spair_tree, tmp_path, monkeypatch):
    root, _ = spair_tree
    monkeypatch.setattr(sys, "argv", [
        "sosc", "fit", "--data", "sosc.data.SPair71kDataModule", "--data.root", str(root),
        "--data.input_size", "64", "--data.num_workers", "0", "--data.batch_size", "2",
        "--model.matcher", "sosc.matchers.FeatureMatcher",
        "--model.matcher.backbone", "resnet18", "--model.matcher.pretrained", "false",
        "--trainer.logger.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
        "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
    ])
    assert cli.command() is None


def test_sosc_bench_exits_zero_as_a_console_script(tmp_path):
    out = tmp_path / "bench.json"
    wrapper = "import sys; from sosc.bench import command; sys.argv[0] = 'sosc-bench'; sys.exit(command())"
    args = ["--backbone", "resnet18", "--sizes", "64", "--batches", "1", "--what", "backbone",
            "--warmup", "0", "--repeats", "1", "--device", "cpu", "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file()


def _env(**extra):
    import os
    from pathlib import Path

    import sosc

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SOSC_DEBUG")}
    return {**env, "PYTHONPATH": str(Path(sosc.__file__).parents[1]), **extra}


def test_sosc_help_answers_at_once():
    from sosc.cli import ROOT_HELP

    done = subprocess.run([sys.executable, "-m", "sosc.cli", "--help"], capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert done.returncode == 0 and done.stdout == ROOT_HELP


def test_a_first_sosc_fit_without_the_data_is_one_line_and_exit_status_2(tmp_path):
    """configs/spair.yaml as a newcomer runs it, HF_HUB_OFFLINE unset: the data is named first
    (before any weights), in one line, the traceback behind --debug."""
    import time
    from pathlib import Path

    config = Path(__file__).parents[1] / "configs" / "spair.yaml"
    args = [sys.executable, "-m", "sosc.cli", "fit", "--config", str(config), "--data.init_args.root",
            str(tmp_path / "data"), "--data.init_args.download", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)
    seconds = time.perf_counter() - start
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("sosc: error: SPair-71k not found and download=False")
    assert "To install SPair-71k by hand: download SPair-71k.tar.gz" in errors[0] and "Traceback" not in done.stderr
    assert "huggingface" not in done.stderr and seconds < 120  # the parser's set-up, not a hub's retries
    debug = subprocess.run([*args, "--debug"], capture_output=True, text=True, env=_env(), timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DatasetError" in debug.stderr
