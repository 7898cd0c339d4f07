"""The match figure (:mod:`sosc.viz`): every element is there, where it should be, and readable."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sosc.errors import ShapeError
from sosc.viz import PALETTE, figure_array, keypoint_colours, plot_match, plot_result, save_figure

H, W = 360, 480
N = 5


def scene(seed=0):
    """A grey target with a small object (a 40 px box near (300, 200)), a source with a large one."""
    rng = np.random.default_rng(seed)
    src = torch.full((3, 300, 400), 0.5)
    trg = torch.full((3, H, W), 0.35) + 0.05 * torch.from_numpy(rng.random((3, H, W))).float()
    src_kps = torch.tensor([[100.0, 80], [300, 80], [200, 150], [140, 230], [260, 230]])
    gt = torch.tensor([[290.0, 190], [310, 190], [300, 200], [293, 210], [307, 210]])
    return src, trg, src_kps, gt


def kbc_figure(**overrides):
    src, trg, src_kps, gt = scene()
    plain = gt + torch.tensor([[40.0, 30], [1, 1], [-60, 20], [2, -1], [30, 50]])
    kps = gt + torch.tensor([[1.0, 1], [0.5, 0], [9, 3], [1, 1], [-1, 2]])
    args = dict(plain_kps=plain, gt_kps=gt, pck_bound=40.0, src_window=[0, 0, 400, 300],
                trg_window=[255, 155, 345, 245], from_pass2=[True, True, True, False, True], reason="zoomed",
                title="a small target")
    args.update(overrides)
    return plot_match(src, trg, src_kps, kps, **args)


def by_label(fig, label):
    return [ax for ax in fig.axes if ax.get_label() == label]


def gids(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def numbers(ax):
    return sorted(int(t.get_text()) for t in ax.texts if t.get_gid() == "number")


class TestZoomedPair:
    def test_two_rows_full_images_and_a_zoom_on_the_target_window(self):
        fig = kbc_figure()
        assert len(by_label(fig, "full-src")) == 2 and len(by_label(fig, "full-trg")) == 2
        zooms = by_label(fig, "zoom-trg")
        assert len(zooms) == 2 and not by_label(fig, "zoom-src")  # the source window is the whole image
        for ax in zooms:  # the keypoints' part of KBC's target window (they span 20 of its 90 px)
            (x0, x1), (y1, y0) = ax.get_xlim(), ax.get_ylim()
            assert 255 <= x0 < 290 and 310 < x1 <= 345 and 155 <= y0 < 190 and 210 < y1 <= 245
            assert "the keypoints in KBC's window" in ax.get_title()
        fig = kbc_figure(trg_window=[280, 180, 320, 220])  # keypoints fill the window: all of it is shown
        for ax in by_label(fig, "zoom-trg"):
            assert ax.get_xlim() == (280, 320) and ax.get_ylim() == (220, 180)
            assert "zoom on KBC's window" in ax.get_title()
        rows = [ax.get_ylabel() for ax in by_label(fig, "full-src")]
        assert rows == ["without KBC (plain pass)", "with KBC"]

    def test_windows_are_drawn_on_the_full_target_only_where_they_crop(self):
        fig = kbc_figure()
        for ax in by_label(fig, "full-trg"):
            rects = gids(ax, "window-trg")
            assert len(rects) == 2  # a white line under a black dashed one
            assert rects[0].get_xy() == (255, 155) and rects[0].get_width() == 90
        assert not any(gids(ax, "window-src") for ax in fig.axes)
        fig = kbc_figure(src_window=[100, 60, 300, 210])  # x2
        assert all(gids(ax, "window-src") for ax in by_label(fig, "full-src"))
        assert len(by_label(fig, "zoom-src")) == 2

    def test_numbers_correct_wrong_truth_errors_and_kept_pass_1(self):
        fig = kbc_figure()
        plain_zoom, kbc_zoom = by_label(fig, "zoom-trg")
        assert numbers(kbc_zoom) == [1, 2, 3, 4, 5]
        # with KBC: keypoint 3 is 9.5 px off (> 0.1 * 40), the others within 4 px
        (correct,), (wrong,) = gids(kbc_zoom, "prediction-correct"), gids(kbc_zoom, "prediction-wrong")
        assert len(correct.get_offsets()) == 4 and np.allclose(wrong.get_offsets(), [[309, 203]])
        assert len(gids(kbc_zoom, "error-line")) == 5 and len(gids(kbc_zoom, "truth")) == 1
        (kept,) = gids(kbc_zoom, "kept-pass-1")
        assert np.allclose(kept.get_offsets(), [[294, 211]])  # keypoint 4 kept pass 1
        assert not gids(plain_zoom, "kept-pass-1")
        assert len(gids(plain_zoom, "prediction-wrong")[0].get_offsets()) == 3
        (src,) = by_label(fig, "full-src")[:1]
        assert numbers(src) == [1, 2, 3, 4, 5]  # the source has no zoom: its full panel is numbered
        assert "2/5 correct without KBC, 4/5 correct with" in fig._suptitle.get_text()

    def test_each_keypoint_keeps_its_colour_across_panels_and_lines_join_the_pair(self):
        fig = kbc_figure()
        colours = [tuple(c) for c in gids(by_label(fig, "full-src")[0], "source-keypoints")[0].get_facecolors()]
        assert len(set(colours)) == N
        kbc_zoom = by_label(fig, "zoom-trg")[1]
        wrong = gids(kbc_zoom, "prediction-wrong")[0]
        assert tuple(wrong.get_facecolors()[0]) == colours[2]  # keypoint 3, same colour
        lines = [a for a in fig.artists if a.get_gid() == "pair-line"]
        assert len(lines) == 2 * N  # source -> prediction, once per row

    def test_pixels_markers_where_the_points_are_and_legend_off_the_images(self, tmp_path):
        fig = kbc_figure()
        path = save_figure(fig, tmp_path / "fig.png")
        with Image.open(path) as im:
            w, h = im.size
            assert (w, h) == tuple(round(v * fig.dpi) for v in fig.get_size_inches())
            pixels = np.asarray(im.convert("RGB"))
        src_ax = by_label(fig, "full-src")[0]
        src, _, src_kps, _ = scene()
        for k in range(N):  # the centre pixel of each source marker has that keypoint's colour
            x, y = src_ax.transData.transform(src_kps[k].numpy())
            colour = pixels[int(round(h - y)), int(round(x))]
            want = np.array([int(PALETTE[k][i:i + 2], 16) for i in (1, 3, 5)])
            assert np.abs(colour.astype(int) - want).max() < 40, (k, colour, want)
        renderer = fig.canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer)
        for ax in fig.axes:
            assert not legend.overlaps(ax.get_window_extent(renderer)), ax.get_label()
        assert figure_array(fig).shape == (h, w, 3)

    def test_a_window_that_magnifies_little_gets_a_display_zoom_on_small_keypoints_instead(self):
        fig = kbc_figure(trg_window=[20, 10, 460, 350])
        zooms = by_label(fig, "zoom-trg")
        assert len(zooms) == 2 and all("display only" in ax.get_title() for ax in zooms)
        assert all(gids(ax, "display-zoom-trg") and gids(ax, "window-trg") for ax in by_label(fig, "full-trg"))
        src, trg, src_kps, gt = scene()
        fig = plot_match(src, trg, src_kps, src_kps + 20, plain_kps=src_kps + 25, src_window=[0, 0, 400, 300],
                         trg_window=[20, 10, 460, 350], reason="zoomed")  # large keypoints: no zoom at all
        assert [ax.get_label() for ax in fig.axes] == ["full-src", "full-trg"] * 2
        assert all(numbers(ax) == [1, 2, 3, 4, 5] for ax in by_label(fig, "full-trg"))


class TestWithoutZoom:
    def test_kbc_that_did_not_zoom_draws_one_row_and_says_why(self):
        src, trg, src_kps, gt = scene()
        fig = plot_match(src, trg, src_kps, gt + 1, plain_kps=gt + 1, gt_kps=gt, pck_bound=40.0,
                         src_window=[0, 0, 400, 300], trg_window=[0, 0, W, H], from_pass2=[False] * N,
                         reason="large enough")
        assert len(by_label(fig, "full-trg")) == 1
        assert "KBC did not zoom (large enough)" in fig._suptitle.get_text()
        assert not any(gids(ax, "kept-pass-1") for ax in fig.axes)
        assert not any(gids(ax, "window-trg") for ax in fig.axes)
        # the small target gets a zoom for display, marked as such on the full image
        (zoom,) = by_label(fig, "zoom-trg")
        assert "display only" in zoom.get_title() and gids(by_label(fig, "full-trg")[0], "display-zoom-trg")

    def test_predictions_alone_without_truth_or_kbc(self):
        src, trg, src_kps, gt = scene()
        fig = plot_match(src, trg, src_kps.tolist(), gt.numpy())
        (ax,) = by_label(fig, "full-trg")
        (pred,) = gids(ax, "prediction")
        assert len(pred.get_offsets()) == N and not gids(ax, "truth")
        assert fig._suptitle.get_text() == "without KBC"

    def test_invalid_keypoints_are_not_drawn_and_keep_their_numbers(self):
        src, trg, src_kps, gt = scene()
        fig = plot_match(src, trg, src_kps, gt, valid=[True, False, True, True, True])
        assert numbers(by_label(fig, "zoom-trg")[0]) == [1, 3, 4, 5]

    def test_large_objects_get_no_zoom(self):
        src, trg, src_kps, _ = scene()
        fig = plot_match(src, trg, src_kps, src_kps + 20)
        assert [ax.get_label() for ax in fig.axes] == ["full-src", "full-trg"]


def test_plot_result_reads_a_match_pair_result():
    src, trg, src_kps, gt = scene()
    result = {"src_kps": src_kps.tolist(), "kps": (gt + 1).tolist(), "plain_kps": (gt + 30).tolist(),
              "kbc": {"enabled": True, "reason": "zoomed", "src_window": [0, 0, 400, 300],
                      "trg_window": [255, 155, 345, 245], "from_pass2": [True] * N}}
    fig = plot_result(src, trg, result)
    assert len(by_label(fig, "zoom-trg")) == 2
    result["kbc"] = {"enabled": False, "reason": "kbc off"}
    assert plot_result(src, trg, result)._suptitle.get_text() == "without KBC"


def test_images_of_other_types_and_bad_shapes():
    src, trg, src_kps, gt = scene()
    as_uint8 = (trg.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    plot_match(Image.fromarray(as_uint8), as_uint8[..., 0], src_kps, gt)
    with pytest.raises(ShapeError, match="kps: expected"):
        plot_match(src, trg, src_kps, gt[:3])
    with pytest.raises(ShapeError, match="pck_bound"):
        plot_match(src, trg, src_kps, gt, gt_kps=gt)
    with pytest.raises(ShapeError, match="src_img"):
        plot_match(torch.zeros(4, 5), trg, src_kps, gt)


def test_many_keypoints_get_distinct_colours():
    colours = keypoint_colours(30)
    assert len(set(colours)) == 30 and colours[:len(PALETTE)] == list(PALETTE)


def test_no_pyplot_and_lazy_matplotlib():
    code = ("import sys, torch; import sosc.viz as v; assert 'matplotlib' not in sys.modules; "
            "v.plot_match(torch.rand(3, 20, 30), torch.rand(3, 20, 30), [[5, 5]], [[6, 6]]); "
            "assert 'matplotlib.pyplot' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
