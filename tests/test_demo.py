"""``make demo`` (python -m sosc.demo) on a tiny benchmark: one fit, one KBC test, a summary, one run folder."""

from pathlib import Path

import pytest

from sosc.demo import fresh_run_name, main


def tiny_config(root: Path, path: Path) -> Path:
    path.write_text(f"""seed_everything: 0
trainer:
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: logs, name: tiny}}
model:
  matcher:
    class_path: sosc.matchers.FeatureMatcher
    init_args: {{backbone: resnet18, pretrained: false, strides: [8, 16]}}
data:
  class_path: sosc.data.SPair71kDataModule
  init_args: {{root: {root}, input_size: 64, batch_size: 2, num_workers: 0, download: false}}
""")
    return path


@pytest.fixture
def demo(spair_tree, tmp_path, capsys):
    root, _ = spair_tree
    config = tiny_config(root, tmp_path / "tiny.yaml")
    logs = tmp_path / "logs"
    result = main(["--config", str(config), "--max-steps", "2", "--logs", str(logs)])
    return result, capsys.readouterr().out, config, logs


def test_one_fit_and_one_kbc_test_then_a_three_line_summary(demo):
    result, out, _, _ = demo
    commands = [line for line in out.splitlines() if line.startswith("$ sosc ")]
    assert len(commands) == 2 and commands[0].startswith("$ sosc fit ") and commands[1].startswith("$ sosc test ")
    assert "--model.kbc.enabled true" in commands[1]  # the KBC run reports the plain pass 1 too
    assert out.count("### PCK without KBC (the plain pass of the same run)") == 1 and out.count("### PCK with KBC") == 1
    last = out.strip().splitlines()[-3:]
    assert last[0] == (f"PCK@0.1 on the test split (3 pairs): {100 * result.plain:.1f} without KBC -> "
                       f"{100 * result.kbc:.1f} with KBC (pred-box)")
    assert last[1].startswith(f"small objects ({result.small_pairs} pairs): ")
    assert last[2].startswith(f"run folder {result.run_folder}: checkpoint checkpoints/") and "pck_kbc_pred-box.md" in last[2]
    assert 0.0 <= result.plain <= 1.0 and 0.0 <= result.kbc <= 1.0 and result.pairs == 3


def test_everything_of_one_demo_is_in_one_run_folder(demo):
    result, _, _, logs = demo
    assert [p.name for p in logs.iterdir()] == ["tiny"]
    run = logs / "tiny"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "version_0", "version_1"]
    assert result.checkpoint.resolve().parent == (run / "checkpoints").resolve()
    assert {p.name for p in (run / "version_1").iterdir()} >= {"pck_plain.md", "pck_plain.csv", "pck_kbc_pred-box.md",
                                                               "pck_kbc_pred-box.csv"}
    assert all(p.resolve().parent == (run / "version_1").resolve() for p in result.reports)


def test_a_second_demo_gets_its_own_run_folder(demo, capsys):
    _, _, config, logs = demo
    assert fresh_run_name(logs, "tiny") == "tiny-2"
    second = main(["--config", str(config), "--max-steps", "2", "--logs", str(logs)])
    assert second.run_folder.name == "tiny-2" and sorted(p.name for p in logs.iterdir()) == ["tiny", "tiny-2"]


def test_a_missing_config_says_where_to_run_it(tmp_path):
    with pytest.raises(SystemExit, match="run the demo from the repository root"):
        main(["--config", str(tmp_path / "none.yaml")])
