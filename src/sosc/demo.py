"""``make demo``: the main job on the offline synthetic benchmark, start to finish.

1. ``sosc fit`` (generates the synthetic set on first use, then a short training run);
2. ``sosc test`` with the resulting checkpoint and KBC (pred-box): one run reports both the
   plain result of its pass 1 and the KBC result, prints the PCK tables and writes CSV and
   Markdown reports;
3. a three-line summary: PCK@0.1 without -> with KBC, overall and on small objects, and where
   the checkpoint and the reports are.

Everything of one demo lives in one run folder, ``<logs>/<name>`` (``logs/demo/synthetic``;
a later demo takes ``synthetic-2``, ...): the checkpoints in ``checkpoints/``, the training
log in ``version_0/``, the test's log and reports in ``version_1/``. Every step is an
ordinary ``sosc`` command, printed before it runs, so it can be repeated by hand. Run
``python -m sosc.demo --help`` for the options.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The threshold the summary reports.
ALPHA = "0.1"


@dataclass
class DemoResult:
    """What a demo produced: PCK@0.1 as fractions (``None`` where the split has no such pair)."""

    plain: float
    kbc: float
    plain_small: float | None
    kbc_small: float | None
    small_pairs: int
    pairs: int
    run_folder: Path
    checkpoint: Path
    reports: list[Path]
    seconds: float


def _run(args: list[str]):
    from sosc.cli import main as sosc

    print("\n$ sosc " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    cli = sosc(args)
    print(f"({time.perf_counter() - start:.0f} s)", flush=True)
    return cli


def fresh_run_name(logs: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ... : the first whose run folder ``logs/<name>`` does not exist yet.

    >>> fresh_run_name(Path("/no/such/folder"), "synthetic")
    'synthetic'
    """
    name, n = base, 1
    while (logs / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def summary(result: DemoResult) -> str:
    """The demo's closing three lines.

    >>> print(summary(DemoResult(0.329, 0.512, 0.262, 0.542, 97, 300, Path("logs/demo/synthetic"),
    ...       Path("logs/demo/synthetic/checkpoints/last.ckpt"), [Path("logs/demo/synthetic/version_1/pck_plain.md")], 1.0)))
    PCK@0.1 on the test split (300 pairs): 32.9 without KBC -> 51.2 with KBC (pred-box)
    small objects (97 pairs): 26.2 -> 54.2
    run folder logs/demo/synthetic: checkpoint checkpoints/last.ckpt, reports version_1/pck_plain.md
    """
    def rel(path: Path) -> str:
        try:
            return str(Path(path).relative_to(result.run_folder))
        except ValueError:
            return str(path)

    return "\n".join([
        f"PCK@{ALPHA} on the test split ({result.pairs} pairs): {_pct(result.plain)} without KBC -> "
        f"{_pct(result.kbc)} with KBC (pred-box)",
        f"small objects ({result.small_pairs} pairs): {_pct(result.plain_small)} -> {_pct(result.kbc_small)}",
        f"run folder {result.run_folder}: checkpoint {rel(result.checkpoint)}, reports "
        + ", ".join(rel(p) for p in result.reports),
    ])


def _results(reports: Sequence) -> tuple[Mapping[str, float], Mapping[str, float]]:
    """The plain and KBC results of a KBC test run's ``module.test_reports``."""
    by_prefix = {report.prefix: report.result for report in reports}
    if "test_plain" not in by_prefix or "test" not in by_prefix:
        raise RuntimeError(f"the KBC test reported {sorted(by_prefix)}, expected test_plain and test")
    return by_prefix["test_plain"], by_prefix["test"]


def main(argv: Sequence[str] | None = None) -> DemoResult:
    """Run the demo (see the module docstring) and return what it measured."""
    parser = argparse.ArgumentParser(prog="python -m sosc.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml", help="the sosc config (default %(default)s)")
    parser.add_argument("--max-steps", type=int, default=100, help="training steps (default %(default)s)")
    parser.add_argument("--logs", default="logs/demo", help="the folder of the demo's run folders (default %(default)s)")
    parser.add_argument("--name", default=None,
                        help="the run folder's name under --logs (default: the config's logger name, e.g. synthetic, "
                             "or synthetic-2, ... when taken)")
    opts = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    if not Path(opts.config).is_file():
        raise SystemExit(f"config {opts.config} not found: run the demo from the repository root (make demo)")
    start = time.perf_counter()
    logs = Path(opts.logs)
    name = opts.name or fresh_run_name(logs, Path(opts.config).stem)
    common = ["--config", opts.config, "--trainer.logger.init_args.save_dir", str(logs),
              "--trainer.logger.init_args.name", name]
    fit = _run(["fit", *common, "--trainer.max_steps", str(opts.max_steps),
                "--trainer.val_check_interval", str(opts.max_steps)])
    callback = fit.trainer.checkpoint_callback
    ckpt = callback.best_model_path or callback.last_model_path
    if not ckpt:
        raise SystemExit("training wrote no checkpoint; see the log above")
    test = _run(["test", *common, "--ckpt_path", ckpt, "--model.kbc.enabled", "true", "--model.kbc.target", "pred-box"])
    plain, kbc = _results(test.model.test_reports)
    key, small = f"pck@{ALPHA}", f"pck@{ALPHA}/size=small"
    report = test.trainer.callbacks
    written = [p for cb in report if hasattr(cb, "written") for p in cb.written if p.suffix == ".md"]
    result = DemoResult(
        plain=plain[key], kbc=kbc[key], plain_small=plain.get(small), kbc_small=kbc.get(small),
        small_pairs=int(kbc.get("pairs/size=small", 0)), pairs=int(kbc["pairs"]), run_folder=Path(os.path.relpath(logs / name)),
        checkpoint=Path(os.path.relpath(ckpt)), reports=[Path(os.path.relpath(p)) for p in written],
        seconds=time.perf_counter() - start,
    )
    print(f"\ndemo done in {result.seconds / 60:.1f} min\n{summary(result)}", flush=True)
    return result


def command() -> None:
    """``python -m sosc.demo``: :func:`main` on ``sys.argv``, exit status 0 on success; a
    :class:`~sosc.errors.SoscError` in one line (``SOSC_DEBUG=1`` for the traceback)."""
    from sosc.console import debug_requested, report_errors

    with report_errors("sosc.demo", debug_requested()):
        main(sys.argv[1:])


if __name__ == "__main__":
    command()
