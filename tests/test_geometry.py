"""Windows: point maps, resampling, boxes (the basics; property tests live in kbc/test_windows.py)."""

import pytest
import torch
import torch.nn.functional as F

from sosc.errors import ShapeError
from sosc.geometry import (
    as_size,
    full_window,
    full_windows,
    image_sizes,
    points_box,
    points_from_window,
    points_to_window,
    resample_window,
    resample_windows,
)


class TestPointMaps:
    def test_full_window_is_plain_scaling(self):
        pts = torch.tensor([[0.0, 0.0], [640.0, 480.0], [320.0, 120.0]])
        out = points_to_window(pts, full_window(480, 640), (240, 320))
        assert torch.allclose(out, torch.tensor([[0.0, 0.0], [320.0, 240.0], [160.0, 60.0]]))

    def test_round_trip_batched(self):
        pts = torch.rand(3, 7, 2) * 500
        win = torch.tensor([[10.0, 20.0, 110.0, 70.0], [0, 0, 500, 400], [-50, -20, 300, 330]])
        back = points_from_window(points_to_window(pts, win, (64, 96)), win, (64, 96))
        assert torch.allclose(back, pts, atol=1e-3)

    def test_low_precision_points_map_in_float32(self):
        """#12: coordinates stay float32: bf16 points (a matcher's rounded output) against float32
        windows come out float32, and autocast changes nothing (no matmul here)."""
        win = torch.tensor([[1000.0, 500.0, 1300.0, 800.0]])
        pts = torch.tensor([[[100.3, 20.7]]])
        back = points_from_window(pts.bfloat16(), win, 256)
        assert back.dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            there = points_to_window(torch.tensor([[[1117.6, 524.3]]]), win, 256)
            again = points_from_window(there, win, 256)
        assert there.dtype == torch.float32 and again[0, 0].tolist() == pytest.approx([1117.6, 524.3], abs=1e-3)

    def test_degenerate_window_raises(self):
        with pytest.raises(ShapeError, match="x1 > x0"):
            points_to_window(torch.zeros(1, 2), torch.tensor([5.0, 5.0, 5.0, 9.0]), 32)


class TestResample:
    def test_full_window_equals_antialiased_resize(self):
        img = torch.rand(3, 90, 120)
        out = resample_window(img, full_window(90, 120), (45, 60))
        ref = F.interpolate(img[None], size=(45, 60), mode="bilinear", align_corners=False, antialias=True)[0]
        assert torch.allclose(out, ref, atol=1e-5)

    def test_upsampling_keeps_the_image_edges(self):
        """No dark frame: samples near the edge of an enlarged image are not blended with zeros."""
        img = torch.rand(3, 30, 40)
        out = resample_window(img, full_window(30, 40), (48, 64))
        ref = F.interpolate(img[None], size=(48, 64), mode="bilinear", align_corners=False)[0]
        assert torch.allclose(out, ref, atol=1e-5)
        zoom = resample_window(torch.ones(1, 400, 400), torch.tensor([0.0, 0.0, 25.0, 25.0]), (64, 64))
        assert torch.allclose(zoom, torch.ones_like(zoom))

    def test_crop_content_matches_pixels(self):
        img = torch.arange(64.0).reshape(1, 8, 8)
        out = resample_window(img, torch.tensor([4.0, 0.0, 8.0, 4.0]), (4, 4))
        assert torch.equal(out[0], img[0, :4, 4:])

    def test_outside_is_zero_padded(self):
        img = torch.ones(3, 10, 10)
        out = resample_window(img, torch.tensor([-10.0, 0.0, 10.0, 10.0]), (10, 20))
        assert out[:, :, :10].abs().max() == 0 and torch.allclose(out[:, :, 10:], torch.ones(3, 10, 10))

    def test_point_lands_on_its_pixel(self):
        # A bright pixel at (x=37, y=21) of a 100x80 image is found where points_to_window says.
        img = torch.zeros(1, 80, 100)
        img[0, 21, 37] = 1.0
        win = torch.tensor([30.0, 15.0, 46.0, 31.0])  # 16x16 window, zoomed x4
        out = resample_window(img, win, (64, 64))
        p = points_to_window(torch.tensor([[37.5, 21.5]]), win, 64)[0]
        peak = torch.nonzero(out[0] == out[0].max())[0]
        assert abs(float(peak[1]) + 0.5 - float(p[0])) <= 1.0 and abs(float(peak[0]) + 0.5 - float(p[1])) <= 1.0

    def test_list_of_sizes(self):
        imgs = [torch.rand(3, 30, 40), torch.rand(3, 50, 20)]
        sizes = image_sizes(imgs)
        assert sizes.tolist() == [[30.0, 40.0], [50.0, 20.0]]
        out = resample_windows(imgs, full_windows(sizes), 16)
        assert out.shape == (2, 3, 16, 16)

    def test_size_check(self):
        assert as_size(7) == (7, 7)
        with pytest.raises(ShapeError):
            as_size((1, 2, 3))


class TestPointsBox:
    def test_padding_never_enters(self):
        pts = torch.tensor([[[1.0, 1.0], [4.0, 3.0], [-100.0, 900.0]]])
        box = points_box(pts, torch.tensor([[True, True, False]]))
        assert box.tolist() == [[1.0, 1.0, 4.0, 3.0]]

    def test_no_point_at_all_is_nan(self):
        assert torch.isnan(points_box(torch.zeros(0, 2))).all()
        assert points_box(torch.zeros(3, 0, 2)).shape == (3, 4)

    def test_no_valid_point_is_nan(self):
        box = points_box(torch.zeros(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool))
        assert torch.isnan(box).all()
