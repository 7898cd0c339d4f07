"""The public surface: names users import must not disappear, and the README example runs."""

import re
from pathlib import Path

import sosc
import sosc.data
import sosc.matchers

TOP_LEVEL = {
    "KBCNet", "FeatureMatcher", "KBCWrapper", "KBCConfig", "KBCOutput", "PCK", "CorrespondenceModule",
    "CenterPivotConv4d", "center_pivot_conv4d", "Backbone", "CallableMatcher", "FlowMatcher",
    "ScoreVolumeMatcher", "MatchOutput", "kbc_box", "grow_box", "kbc_trigger", "kbc_window", "kbc_windows",
    "kbc_train_windows", "match_plain", "match_in_windows", "keypoint_epe", "keypoint_correct",
    "pck_per_pair", "keypoints_of", "SoscError", "ShapeError", "DatasetError", "ConfigError",
}
DATA = {
    "SPair71kDataModule", "PFPascalDataModule", "PFWillowDataModule", "SyntheticDataModule", "PairDataModule",
    "PairDataset", "PairRecord", "collate_pairs", "read_spair", "read_pfpascal", "read_pfwillow", "fetch", "extract",
}


def test_top_level_names():
    assert TOP_LEVEL <= set(sosc.__all__)
    for name in sosc.__all__:
        assert getattr(sosc, name) is not None


def test_data_and_matcher_names():
    assert DATA <= set(sosc.data.__all__)
    assert {"KBCNet", "FeatureMatcher", "CallableMatcher", "FlowMatcher", "ScoreVolumeMatcher"} <= set(
        sosc.matchers.__all__
    )


def test_public_classes_have_docstrings():
    for name in sosc.__all__:
        obj = getattr(sosc, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"sosc.{name} has no docstring"


def test_readme_python_example_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README lost its Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["trg_kps"].shape == (1, 3, 2)
