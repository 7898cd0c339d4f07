"""The public surface: names users import must not disappear, imports stay light, the README runs.

The surface is recorded in ``tests/api_surface.txt`` (one ``module:name`` per line, for every
public package). A name that disappears fails :func:`test_the_api_surface_matches_the_record`;
after a deliberate change, regenerate the record with

    SOSC_WRITE_API_SURFACE=1 python -m pytest tests/test_api.py -k surface

and commit it with the change that explains it.
"""

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sosc

PACKAGES = ("sosc", "sosc.kbc", "sosc.matchers", "sosc.data", "sosc.data.synthetic", "sosc.data.real_semantic")
RECORD = Path(__file__).with_name("api_surface.txt")


def current_surface() -> list[str]:
    return sorted(f"{pkg}:{name}" for pkg in PACKAGES for name in importlib.import_module(pkg).__all__)


def test_the_api_surface_matches_the_record():
    surface = current_surface()
    if os.environ.get("SOSC_WRITE_API_SURFACE"):
        RECORD.write_text("\n".join(surface) + "\n")
    recorded = RECORD.read_text().split()
    missing = sorted(set(recorded) - set(surface))
    added = sorted(set(surface) - set(recorded))
    assert not missing, f"public names disappeared: {missing} (see this file's docstring to regenerate)"
    assert not added, f"new public names not in {RECORD.name}: {added} (see this file's docstring to regenerate)"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_and_has_a_docstring(package):
    module = importlib.import_module(package)
    assert sorted(dir(module)) == sorted(set(dir(module)))
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{package}.{name} has no docstring"


def _modules_after(code: str) -> dict[str, bool]:
    """Which heavy modules a fresh interpreter has loaded after ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps({m: m in sys.modules for m in "
             "('lightning', 'pytorch_lightning', 'sosc.data', 'sosc.module', 'timm', 'torchmetrics', 'scipy')}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kbc_imports_neither_lightning_timm_nor_the_data_readers():
    loaded = _modules_after("import sosc.kbc\nfrom sosc import KBCWrapper, KBCConfig, MatchOutput")
    assert not any(loaded.values()), loaded


def test_pck_and_the_matchers_import_neither_lightning_nor_the_data_readers():
    loaded = _modules_after("from sosc import KBCWrapper, PCK, KBCNet, FeatureMatcher, FlowMatcher, ScoreVolumeMatcher")
    assert not (loaded["lightning"] or loaded["pytorch_lightning"] or loaded["sosc.data"] or loaded["sosc.module"]), loaded


def test_the_lightning_module_is_still_one_name_away():
    assert sosc.CorrespondenceModule.__name__ == "CorrespondenceModule"
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        sosc.NoSuchName  # noqa: B018


def test_readme_python_example_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README lost its Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["trg_kps"].shape == (1, 3, 2)
