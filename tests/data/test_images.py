"""sosc.data.images: every image mode, EXIF orientation, transparency and damage, read right or refused."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sosc.data import images as images_module
from sosc.data.images import as_background, image_size, read_image
from sosc.errors import DatasetError, SoscError
from sosc.inference import load_image


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Each test sees the once-per-file warnings afresh."""
    images_module._warned.clear()
    image_size.cache_clear()
    yield
    images_module._warned.clear()
    image_size.cache_clear()


def ramp8() -> np.ndarray:
    """The 256 x 8 ramp of the issue: column x holds x."""
    return np.tile(np.arange(256, dtype=np.uint8), (8, 1))


class TestBitDepth:
    def test_16_bit_greyscale_is_scaled_by_65535(self, tmp_path):
        """Before: a 256x8 ramp saved as x * 257 came back 1.0 everywhere but column 0."""
        path = tmp_path / "ramp16.png"
        Image.fromarray(ramp8().astype(np.uint16) * 257).save(path)
        with Image.open(path) as im:
            assert im.mode == "I;16"
        img = read_image(path)
        assert img.shape == (3, 8, 256) and img.dtype == torch.float32
        want = torch.arange(256, dtype=torch.float32) / 255
        torch.testing.assert_close(img[:, 0], want.expand(3, 256), atol=1e-6, rtol=0)
        # the same picture saved at 8 bits reads the same
        Image.fromarray(ramp8()).save(tmp_path / "ramp8.png")
        torch.testing.assert_close(read_image(tmp_path / "ramp8.png"), img, atol=1e-6, rtol=0)

    @pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
    def test_16_bit_byte_orders(self, tmp_path, mode):
        path = tmp_path / "ramp.tif"
        dtype = ">u2" if mode == "I;16B" else "<u2"
        Image.frombytes(mode, (256, 8), (ramp8().astype(np.uint16) * 257).astype(dtype).tobytes()).save(path)
        with Image.open(path) as im:
            assert im.mode.startswith("I;16")  # a little-endian TIFF reads back as I;16
        img = read_image(path)
        torch.testing.assert_close(img[0, 3], torch.arange(256, dtype=torch.float32) / 255, atol=1e-6, rtol=0)

    def test_48_bit_rgb_png_keeps_its_range(self, tmp_path):
        """PIL gives a 16-bit-per-channel PNG as 8-bit RGB (its high bytes): the same range."""
        arr = np.zeros((4, 4, 3), np.uint16)
        arr[..., 0], arr[..., 1], arr[..., 2] = 1000, 40000, 65535
        raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
        (tmp_path / "rgb48.png").write_bytes(png)
        img = read_image(tmp_path / "rgb48.png")
        torch.testing.assert_close(img[:, 0, 0], torch.tensor([1000, 40000, 65535]) / 65535.0, atol=1 / 255, rtol=0)

    def test_32_bit_integer_from_a_png_is_16_bit(self, tmp_path, monkeypatch):
        path = tmp_path / "ramp16.png"
        Image.fromarray(ramp8().astype(np.uint16) * 257).save(path)
        real_open = Image.open

        def open_as_i(p, *args, **kwargs):  # what older Pillow gives for a 16-bit PNG
            im = real_open(p, *args, **kwargs)
            im.load()
            out = im.convert("I")
            out.format = im.format
            return out

        monkeypatch.setattr(images_module.Image, "open", open_as_i)
        img = read_image(path)
        torch.testing.assert_close(img[0, 0], torch.arange(256, dtype=torch.float32) / 255, atol=1e-6, rtol=0)

    def test_32_bit_integer_tiff_is_refused_naming_the_mode(self, tmp_path):
        path = tmp_path / "int32.tif"
        Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000).save(path)
        with pytest.raises(DatasetError, match=r"int32.tif has mode 'I' \(32-bit integer samples"):
            read_image(path)

    def test_float_image_in_unit_range_is_read_as_is(self, tmp_path):
        path = tmp_path / "float.tif"
        values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
        Image.fromarray(values, mode="F").save(path)
        img = read_image(path)
        torch.testing.assert_close(img[1], torch.from_numpy(values), atol=0, rtol=0)

    def test_float_image_outside_unit_range_is_refused(self, tmp_path):
        path = tmp_path / "float255.tif"
        Image.fromarray(np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8), mode="F").save(path)
        with pytest.raises(SoscError, match=r"mode 'F' \(32-bit float samples in \[0, 255\]"):
            load_image(path)

    def test_8_bit_modes_are_unchanged(self, tmp_path):
        rng = np.random.default_rng(0)
        arr = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / "rgb.png")
        want = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
        assert torch.equal(read_image(tmp_path / "rgb.png"), want)
        Image.fromarray(arr[..., 0]).save(tmp_path / "l.png")
        assert torch.equal(read_image(tmp_path / "l.png"), want[:1].expand(3, 6, 5))
        Image.fromarray(arr[..., 0] > 127).save(tmp_path / "bits.png")
        assert set(read_image(tmp_path / "bits.png").unique().tolist()) <= {0.0, 1.0}


# -------------------------------------------------------------------------------------- orientation


def displayed() -> np.ndarray:
    """An asymmetric picture, 5 high and 7 wide, as a viewer should show it."""
    return np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def stored_for(orientation: int, shown: np.ndarray) -> np.ndarray:
    """The stored pixels that a viewer turns into ``shown`` for an EXIF Orientation value
    (from the EXIF definition: where row 0 and column 0 of the stored image appear)."""
    h, w = shown.shape[:2]
    i, j = np.meshgrid(np.arange(w if orientation >= 5 else h), np.arange(h if orientation >= 5 else w), indexing="ij")
    where = {
        1: (i, j),                  # row 0 top, column 0 left
        2: (i, w - 1 - j),          # row 0 top, column 0 right
        3: (h - 1 - i, w - 1 - j),  # row 0 bottom, column 0 right
        4: (h - 1 - i, j),          # row 0 bottom, column 0 left
        5: (j, i),                  # row 0 left, column 0 top
        6: (j, w - 1 - i),          # row 0 right, column 0 top
        7: (h - 1 - j, w - 1 - i),  # row 0 right, column 0 bottom
        8: (h - 1 - j, i),          # row 0 left, column 0 bottom
    }[orientation]
    return shown[where]


def save_with_orientation(path: Path, arr: np.ndarray, orientation: int, **kwargs) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif, **kwargs)


class TestOrientation:
    @pytest.mark.parametrize("orientation", range(1, 9))
    def test_every_orientation_is_applied_for_inference(self, tmp_path, orientation):
        shown = displayed()
        path = tmp_path / f"o{orientation}.png"
        save_with_orientation(path, stored_for(orientation, shown), orientation)
        img = load_image(path)
        assert torch.equal(img, torch.from_numpy(shown).permute(2, 0, 1).float() / 255)

    @pytest.mark.parametrize("orientation", range(2, 9))
    def test_readers_keep_the_stored_frame_and_warn_once_per_file(self, tmp_path, orientation):
        shown = displayed()
        stored = stored_for(orientation, shown)
        path = tmp_path / f"o{orientation}.png"
        save_with_orientation(path, stored, orientation)
        with pytest.warns(UserWarning, match=rf"EXIF Orientation {orientation} .*read as stored") as record:
            img = read_image(path)
            assert image_size(path) == stored.shape[:2]
            read_image(path)
        assert len([w for w in record if "EXIF" in str(w.message)]) == 1
        assert torch.equal(img, torch.from_numpy(stored).permute(2, 0, 1).float() / 255)

    def test_identity_orientation_does_not_warn(self, tmp_path):
        path = tmp_path / "o1.jpg"
        save_with_orientation(path, displayed(), 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            read_image(path)
            image_size(path)

    def test_the_reported_jpeg(self, tmp_path):
        """An 80x40 JPEG tagged "rotate 90" is shown 40x80: (30, 70) lies in it."""
        path = tmp_path / "rot.jpg"
        stored = np.zeros((40, 80, 3), np.uint8)
        stored[:, :40] = 255  # left half white as stored: the top half as shown (orientation 6)
        save_with_orientation(path, stored, 6, quality=95)
        img = load_image(path)
        assert img.shape == (3, 80, 40)
        assert img[:, :35].mean() > 0.95 and img[:, 45:].mean() < 0.05


# -------------------------------------------------------------------------------------- transparency


class TestTransparency:
    def rgba(self) -> np.ndarray:
        arr = np.zeros((2, 2, 4), np.uint8)
        arr[..., 0] = 200  # red 200/255
        arr[..., 3] = [[255, 0], [128, 255]]
        return arr

    @pytest.mark.parametrize("background,bg", [("white", 1.0), ("black", 0.0), (0.5, 0.5)])
    def test_rgba_is_composited_over_the_stated_background(self, tmp_path, background, bg):
        path = tmp_path / "rgba.png"
        Image.fromarray(self.rgba()).save(path)
        with pytest.warns(UserWarning, match=rf"rgba.png has transparent pixels \(mode RGBA\): composited over .*{bg}"):
            img = read_image(path, background=background)
        a = torch.tensor([[1.0, 0.0], [128 / 255, 1.0]])
        torch.testing.assert_close(img[0], 200 / 255 * a + bg * (1 - a), atol=1e-6, rtol=0)
        torch.testing.assert_close(img[1], bg * (1 - a), atol=1e-6, rtol=0)

    def test_la_and_palette_transparency(self, tmp_path):
        Image.fromarray(np.dstack([np.full((2, 2), 100, np.uint8), np.array([[255, 0], [0, 255]], np.uint8)]),
                        mode="LA").save(tmp_path / "la.png")
        with pytest.warns(UserWarning, match="mode LA"):
            img = read_image(tmp_path / "la.png", background="black")
        assert img[:, 0, 1].tolist() == [0.0, 0.0, 0.0]
        torch.testing.assert_close(img[:, 0, 0], torch.full((3,), 100 / 255), atol=1e-6, rtol=0)
        pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
        pal.putpalette([255, 0, 0, 0, 255, 0])
        pal.save(tmp_path / "p.png", transparency=1)
        with pytest.warns(UserWarning, match="mode P"):
            img = read_image(tmp_path / "p.png")  # white by default
        assert img[:, 0, 0].tolist() == [1.0, 0.0, 0.0] and img[:, 0, 1].tolist() == [1.0, 1.0, 1.0]

    def test_an_opaque_alpha_changes_nothing_and_says_nothing(self, tmp_path):
        arr = self.rgba()
        arr[..., 3] = 255
        Image.fromarray(arr).save(tmp_path / "opaque.png")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            img = read_image(tmp_path / "opaque.png")
        assert torch.equal(img[0], torch.full((2, 2), 200 / 255))

    def test_bad_background(self):
        assert as_background("white") == (1.0, 1.0, 1.0)
        with pytest.raises(SoscError, match="background"):
            as_background("grey")
        with pytest.raises(SoscError, match="background"):
            as_background((1.0, 2.0, 0.0))


# -------------------------------------------------------------------------------------- damage


class TestDamage:
    def test_truncated_jpeg_is_called_truncated(self, tmp_path):
        path = tmp_path / "cut.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:700])
        with pytest.raises(SoscError, match=r"cut.jpg is truncated or damaged .*: re-save or re-download it"):
            load_image(path)
        with pytest.raises(DatasetError, match="cut.jpg is truncated or damaged"):
            read_image(path)

    def test_a_header_cut_short_is_damaged_not_unknown(self, tmp_path):
        path = tmp_path / "head.png"
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:20])
        with pytest.raises(SoscError, match="head.png is truncated or damaged"):
            load_image(path)

    def test_not_an_image_is_named_as_such(self, tmp_path):
        (tmp_path / "text.png").write_text("not an image")
        with pytest.raises(SoscError, match="cannot be read .*give a JPEG, PNG or another format PIL reads"):
            load_image(tmp_path / "text.png")
