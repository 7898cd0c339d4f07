"""The walkthrough notebook runs from another folder in a fresh kernel, writes nothing beside
itself, and shows its figure (nbclient and ipykernel: the dev extra)."""

import json
import warnings
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "kbc_walkthrough.ipynb"


def test_the_notebook_has_cell_ids_and_validates():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is missing: pip install -e '.[dev]'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. MissingIDFieldWarning
        nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    ids = [cell["id"] for cell in nb.cells]
    assert len(set(ids)) == len(ids) and all(ids)
    assert all(not cell.get("outputs") for cell in nb.cells if cell["cell_type"] == "code"), "commit it cleared"


def test_the_notebook_runs_from_any_folder_and_writes_only_to_its_data_folder(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is missing: pip install -e '.[dev]'")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is missing: pip install -e '.[dev]'")
    pytest.importorskip("ipykernel", reason="ipykernel is missing: pip install -e '.[dev]'")
    elsewhere, data = tmp_path / "elsewhere", tmp_path / "data"
    elsewhere.mkdir()
    monkeypatch.setenv("SOSC_NOTEBOOK_DATA", str(data))
    before = sorted(p.name for p in NOTEBOOK.parent.iterdir())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(elsewhere)}})
    client.execute()

    assert sorted(p.name for p in NOTEBOOK.parent.iterdir()) == before  # nothing written beside it
    assert not list(elsewhere.iterdir())  # nor in the folder it ran from
    outputs = {cell["id"]: cell.get("outputs", []) for cell in nb.cells if cell["cell_type"] == "code"}
    text = {key: "".join(o.get("text", "") for o in outs if o["output_type"] == "stream") for key, outs in outputs.items()}
    assert "validation pairs in" in text["data"]
    chosen = int(text["choice"].split()[0])
    assert chosen >= 4  # face pairs with a large source and a small target, two val instance pairs both ways
    assert text["kbc"].count(" of ") == chosen and "with KBC    PCK@0.05" in text["kbc"]
    assert any("image/png" in o.get("data", {}) for o in outputs["figure"])
    assert (data / "figures" / "kbc_walkthrough.png").is_file()
    assert "reason:" in text["decisions"] and "keypoints" in text["decisions"]
    json.dumps(nb)  # the executed notebook is still plain JSON
