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
