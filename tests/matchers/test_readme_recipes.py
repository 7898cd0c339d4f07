"""The README's "KBC around your network" recipes, each run as written around a stand-in with
that network's convention and a known answer (``third_party_nets``).

Each Python block names the user's network (``cats``, ``chm``, ``extract``, ``match``) and
uses ``src_imgs``, ``trg_imgs``, ``src_kps``; the test supplies them (a pair whose target is
the source moved by a known shift, keypoints on a small object, so that KBC zooms) and checks
where ``trg_kps`` lands. The only edit: ``pretrained=True`` (timm's hub) becomes
``pretrained=False``, since the tests run offline; the random-weight DINOv2 recipe is checked
for its shape and size, not its answer. The command-line block is run through
``sosc.inference.main`` with image files, the CATs stand-in for ``mypkg.CATsWithWeights``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image
from third_party_nets import CATsStyle, CHMStyle, DIFTStyle, find_shift, shifted_pair

README = Path(__file__).parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## KBC around your network")
    return text[start:text.index("\n## ", start + 1)]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", section(), flags=re.S)


def match(src_img, trg_img, src_kps, valid):
    """A function that follows the contract: every keypoint moves by the shift between the two
    inputs (found by search, whole input pixels)."""
    return src_kps + find_shift(src_img, trg_img)[:, None]


#: network name in a recipe -> (the stand-in, pair size, shift in original pixels, tolerance in px or None)
STAND_INS = {
    "cats": (CATsStyle, 256, (8, 0), 0.5),
    "chm": (CHMStyle, 480, (16, 0), 2.0),  # CHM's cells stretch a whole-cell move by 30 / 29
    "extract": (DIFTStyle, 256, (8, 8), 0.5),
    "match": (lambda: match, 256, (8, 8), 0.5),
    "FeatureMatcher": (None, 224, (14, 0), None),  # random weights: shape and size only
}


def recipe_name(block: str) -> str:
    for name in ("cats", "chm", "extract", "match", "FeatureMatcher"):
        if re.search(rf"\b{name}\b", block.split("import", 1)[-1].split("\n", 1)[-1]):
            return name
    raise AssertionError(f"a README recipe without a known network:\n{block}")


def test_there_is_one_recipe_per_kind():
    names = [recipe_name(b) for b in python_blocks()]
    assert names == ["cats", "chm", "FeatureMatcher", "extract", "match"], names


@pytest.mark.parametrize("index", range(5))
def test_each_recipe_runs_and_lands_where_its_network_says(index):
    block = python_blocks()[index]
    name = recipe_name(block)
    build, size, shift, tol = STAND_INS[name]
    grain = 16 if name == "extract" else 4
    src, trg = shifted_pair(size, shift, grain=grain)
    c = size / 2
    src_kps = torch.tensor([[[c - 8.0, c - 10.0], [c + 4.0, c - 2.0], [c - 2.0, c + 6.0]]])
    namespace = {"src_imgs": [src[0]], "trg_imgs": [trg[0]], "src_kps": src_kps}
    if build is not None:
        namespace[name] = build()
    code = block.replace("pretrained=True", "pretrained=False")
    with torch.no_grad():
        exec(compile(code, f"README.md recipe {index} ({name})", "exec"), namespace)
    trg_kps = namespace["trg_kps"]
    assert trg_kps.shape == (1, 3, 2) and trg_kps.dtype == torch.float32 and torch.isfinite(trg_kps).all()
    if tol is not None:
        torch.testing.assert_close(trg_kps, src_kps + torch.tensor(shift, dtype=torch.float32), atol=tol, rtol=0)


def test_the_command_line_recipes_run(tmp_path, monkeypatch):
    from sosc.inference import main

    src, trg = shifted_pair(256, (8, 0))
    for name, img in (("a.jpg", src), ("b.jpg", trg)):
        Image.fromarray((img[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(tmp_path / name, quality=98)
    monkeypatch.chdir(tmp_path)
    block = re.findall(r"```bash\n(.*?)```", section(), flags=re.S)[0]
    lines = [line for line in block.replace("\\\n", " ").splitlines() if not line.startswith("#")]
    commands = re.split(r"\n(?=sosc-match )", "\n".join(lines).strip())
    assert len(commands) == 2
    results = []
    for command in commands:
        command = command.replace("mypkg.CATsWithWeights", "third_party_nets.CATsStyle").replace(
            '"pretrained": true', '"pretrained": false')
        args = shlex.split(command)
        assert args[0] == "sosc-match"
        results.append(main([*args[1:], "--out", str(tmp_path / "p.json")]))
    # the CATs stand-in, through the command line: (150, 100) moves 8 px right
    assert results[1]["kps"][0] == pytest.approx([158.0, 100.0], abs=0.5)
