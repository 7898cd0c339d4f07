"""records.py: PairRecord, the PCK bound rules, size classes, boxes against images, SkipReport."""

from pathlib import Path

import numpy as np
import pytest

from sosc.data.records import (
    BOUND_KINDS,
    BOX_OUTSIDE,
    BOX_TOLERANCE,
    BoxOutsideImage,
    PairRecord,
    SkipReport,
    empty_split_error,
    fit_box,
    fit_box_to_image,
    fit_record_boxes,
    pck_bound,
    size_class,
)
from sosc.errors import DatasetError

NO_BOX = np.full(4, np.nan)
NO_KPS = np.zeros((0, 2))


def _record(**kw):
    fields = dict(
        pair_id="p0", src_path=Path("a.jpg"), trg_path=Path("b.jpg"), src_kps=np.ones((3, 2), np.float32),
        trg_kps=np.ones((3, 2), np.float32), category="cat", category_id=7, bound="bbox",
    )
    fields.update(kw)
    return PairRecord(**fields)


class TestPairRecord:
    def test_defaults(self):
        rec = _record()
        assert rec.num_kps == 3 and rec.flip is False and rec.flags == {} and rec.source == ""
        for box in (rec.src_bbox, rec.trg_bbox):
            assert box.shape == (4,) and box.dtype == np.float32 and np.isnan(box).all()

    def test_defaults_are_not_shared(self):
        a, b = _record(), _record()
        a.flags["occlusion"] = 1
        a.trg_bbox[0] = 5.0
        assert b.flags == {} and np.isnan(b.trg_bbox).all()

    def test_num_kps_of_an_empty_pair(self):
        assert _record(src_kps=np.zeros((0, 2)), trg_kps=np.zeros((0, 2))).num_kps == 0


class TestPckBound:
    def test_bbox_is_the_max_side_of_the_target_box(self):
        assert pck_bound("bbox", np.array([10, 20, 60, 100.0]), (300, 400), NO_KPS) == 80.0
        assert pck_bound("bbox", np.array([0, 0, 90, 30.0]), (10, 10), NO_KPS) == 90.0  # the image is ignored

    def test_img_is_the_max_side_of_the_target_image(self):
        assert pck_bound("img", NO_BOX, (300, 400), NO_KPS) == 400.0
        assert pck_bound("img", np.array([0, 0, 5, 5.0]), (500, 20), NO_KPS) == 500.0  # the box is ignored

    def test_bbox_kp_is_the_extent_of_the_valid_target_keypoints(self):
        kps = np.array([[5, 5], [25, 45.0], [15, 10]])
        assert pck_bound("bbox-kp", NO_BOX, (300, 400), kps) == 40.0
        assert pck_bound("bbox-kp", NO_BOX, (300, 400), np.array([[3, 4.0]])) == 0.0

    def test_bbox_kp_without_a_valid_keypoint_is_nan(self):
        assert np.isnan(pck_bound("bbox-kp", NO_BOX, (300, 400), NO_KPS))

    def test_unknown_kind_names_the_kinds(self):
        with pytest.raises(ValueError, match=r"unknown PCK bound kind 'box'.*'bbox', 'img', 'bbox-kp'"):
            pck_bound("box", NO_BOX, (300, 400), NO_KPS)
        assert BOUND_KINDS == ("bbox", "img", "bbox-kp")


class TestSizeClass:
    @pytest.mark.parametrize(
        ("box", "expected"),
        [
            ([0, 0, 49, 10], "small"),   # 49 / 200 < 0.25
            ([0, 0, 50, 10], "medium"),  # 0.25 is not below the first threshold
            ([0, 0, 10, 99], "medium"),
            ([0, 0, 10, 100], "large"),  # 0.5
            ([0, 0, 200, 100], "large"),
        ],
    )
    def test_max_box_side_over_max_image_side(self, box, expected):
        assert size_class(np.array(box, dtype=float), (100, 200)) == expected

    def test_nan_boxes_are_unknown(self):
        assert size_class(NO_BOX, (100, 200)) == "unknown"
        assert size_class(np.array([0, 0, np.nan, 10]), (100, 200)) == "unknown"
        assert size_class(np.array([0, 0, np.inf, 10]), (100, 200)) == "unknown"


class TestFitBox:
    def test_inside_is_unchanged_float32(self):
        out = fit_box(np.array([1, 2, 30, 40]), (50, 60))
        assert out.dtype == np.float32 and out.tolist() == [1, 2, 30, 40]

    def test_edges_of_the_image_are_inside(self):
        assert fit_box(np.array([0, 0, 60, 50.0]), (50, 60)).tolist() == [0, 0, 60, 50]

    def test_within_tolerance_is_clipped(self):
        out = fit_box(np.array([-BOX_TOLERANCE, -0.5, 60 + BOX_TOLERANCE, 51.0]), (50, 60))
        assert out.tolist() == [0, 0, 60, 50]

    @pytest.mark.parametrize(
        "box",
        [
            [0, 0, 5000, 5000],           # the reported case
            [-2.5, 0, 30, 30],            # just beyond the tolerance
            [0, 0, 62.01, 30],
            [0, 0, 30, 52.5],
            [61, 0, 62, 30],              # within tolerance, but no area once clipped
            [0, 0, np.nan, 30],           # partly unknown
            [0, 0, np.inf, 30],
        ],
    )
    def test_outside_or_unusable_is_none(self, box):
        assert fit_box(np.array(box, dtype=float), (50, 60)) is None

    def test_wrong_shape_is_none(self):
        assert fit_box(np.array([1, 2, 3.0]), (50, 60)) is None

    def test_unknown_box_passes_unchanged(self):
        out = fit_box(NO_BOX, (50, 60))
        assert out.shape == (4,) and np.isnan(out).all()

    def test_tolerance_argument(self):
        assert fit_box(np.array([0, 0, 70, 50.0]), (50, 60), tolerance=10).tolist() == [0, 0, 60, 50]
        assert fit_box(np.array([0, 0, 60.5, 50.0]), (50, 60), tolerance=0) is None

    def test_fit_box_to_image_raises_naming_what_box_image_size_and_fix(self):
        with pytest.raises(BoxOutsideImage) as err:
            fit_box_to_image(np.array([0, 0, 5000, 5000.0]), (205, 206), what="x/pair.json: trg_bndbox",
                             image=Path("x/img.jpg"))
        msg = str(err.value)
        assert isinstance(err.value, DatasetError)
        assert msg.startswith("x/pair.json: trg_bndbox [0.0, 0.0, 5000.0, 5000.0] does not lie within image x/img.jpg")
        assert "W=206, H=205" in msg and "strict=False" in msg and "Fix the box" in msg

    def test_fit_box_to_image_returns_the_clipped_box(self):
        out = fit_box_to_image(np.array([0, 0, 207, 206.0]), (205, 206), what="w", image="i.jpg")
        assert out.tolist() == [0, 0, 206, 205]


class TestFitRecordBoxes:
    def test_both_sides_clipped_unknown_kept(self):
        rec = _record(src_bbox=np.array([-1, 0, 41, 30], np.float32))
        out = fit_record_boxes(rec, (30, 40), (10, 10))
        assert out.src_bbox.tolist() == [0, 0, 40, 30] and np.isnan(out.trg_bbox).all()
        assert out.src_kps is rec.src_kps and rec.src_bbox.tolist() == [-1, 0, 41, 30]  # a new record

    def test_names_the_source_and_side(self):
        rec = _record(trg_bbox=np.array([0, 0, 5000, 5000], np.float32), source="a/b.json")
        with pytest.raises(BoxOutsideImage, match=r"^a/b\.json: target object box .* image b\.jpg of size W=206, H=205"):
            fit_record_boxes(rec, (205, 206), (205, 206))
        with pytest.raises(BoxOutsideImage, match=r"^p0: target object box"):
            fit_record_boxes(_record(trg_bbox=rec.trg_bbox), (205, 206), (205, 206))


class TestSkipReport:
    def test_counting_by_reason(self):
        report = SkipReport()
        assert not report and report.summary() == "nothing"
        report.skip_pair("no keypoint in common", "s.csv:2")
        report.skip_pair("no keypoint in common")
        report.skip_keypoints("outside the image", 3, "a.json")
        report.skip_keypoints("outside the image", 0, "never.json")  # nothing left out: not counted
        assert report
        assert report.pairs == {"no keypoint in common": 2} and report.keypoints == {"outside the image": 3}
        assert report.examples == {"no keypoint in common": ["s.csv:2"], "outside the image": ["a.json"]}

    def test_keypoints_alone_make_it_true(self):
        report = SkipReport()
        report.skip_keypoints("missing in the pair list", 1)
        assert report and report.summary() == "1 keypoints (missing in the pair list)"

    def test_examples_are_capped(self):
        report = SkipReport()
        for i in range(5):
            report.skip_pair("r", f"f:{i}")
        assert report.pairs["r"] == 5 and report.examples["r"] == ["f:0", "f:1", "f:2"]
        assert report.summary() == "5 pairs (r; e.g. f:0, f:1, f:2)"

    def test_summary_lists_pairs_then_keypoints(self):
        report = SkipReport()
        report.skip_keypoints("k", 4, "x:1")
        report.skip_pair(BOX_OUTSIDE, "y.json")
        assert report.summary() == f"1 pairs ({BOX_OUTSIDE}; e.g. y.json), 4 keypoints (k; e.g. x:1)"

    def test_merge_adds_counts_caps_examples_keeps_inputs(self):
        a, b = SkipReport(split_file=Path("a.csv")), SkipReport(split_file=Path("b.csv"))
        for i in range(2):
            a.skip_pair("r", f"a:{i}")
        for i in range(2):
            b.skip_pair("r", f"b:{i}")
        b.skip_keypoints("k", 2, "b:9")
        out = a.merge(b)
        assert out.pairs == {"r": 4} and out.keypoints == {"k": 2}
        assert out.examples == {"r": ["a:0", "a:1", "b:0"], "k": ["b:9"]}
        assert out.split_file == Path("a.csv")
        assert a.pairs == {"r": 2} and a.examples == {"r": ["a:0", "a:1"]} and not a.keypoints

    def test_merge_takes_the_other_split_file_when_it_has_none(self):
        assert SkipReport().merge(SkipReport(split_file=Path("v.txt"))).split_file == Path("v.txt")
        assert SkipReport().merge(SkipReport()).split_file is None


class TestEmptySplitError:
    def test_empty_file(self):
        err = empty_split_error("PF-WILLOW", "test", SkipReport(split_file=Path("d/test_pairs.csv")), "Hint here.")
        assert isinstance(err, DatasetError)
        msg = str(err)
        assert msg.startswith("PF-WILLOW test split has no pair: d/test_pairs.csv lists none.")
        assert "published test split file" in msg and msg.endswith(" Hint here.")

    def test_every_pair_skipped_gives_the_summary(self):
        report = SkipReport(split_file=Path("val.txt"))
        report.skip_pair("no keypoint in common", "val.txt:1")
        msg = str(empty_split_error("SPair-71k", "val", report))
        assert "every pair listed in val.txt was left out: 1 pairs (no keypoint in common; e.g. val.txt:1)" in msg
        assert "Fix the annotations" in msg

    def test_unknown_split_file(self):
        assert "the train split file lists none" in str(empty_split_error("pairs", "train", SkipReport()))
