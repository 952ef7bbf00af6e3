import struct

import cv2
import numpy as np
import pytest

from mickey_ros.utils.images import ImageError, load_depth_png, load_rgb, save_depth_png


class TestDepthPng:
    def test_round_trip_within_half_a_millimetre(self, tmp_path):
        depth = np.array([[0.0, 0.0004, 1.2345], [2.71828, 30.0, np.nan]], np.float32)
        back = load_depth_png(save_depth_png(tmp_path / "d.png", depth))
        assert back.dtype == np.float32 and back.shape == (2, 3)
        expected = np.array([[0.0, 0.0, 1.2345], [2.71828, 30.0, 0.0]])
        assert np.abs(back - expected).max() <= 0.0005 + 1e-6
        assert back[1, 2] == 0.0  # NaN is written as unknown

    def test_saturates_at_65535_units(self, tmp_path):
        back = load_depth_png(save_depth_png(tmp_path / "d.png", np.full((1, 1), 80.0)))
        assert back[0, 0] == pytest.approx(65.535)

    def test_other_units(self, tmp_path):
        path = save_depth_png(tmp_path / "d.png", np.full((2, 2), 3.0), metres_per_unit=0.0002)
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[0, 0] == 15000
        assert load_depth_png(path, metres_per_unit=0.0002)[0, 0] == pytest.approx(3.0)

    def test_8_bit_png_names_the_fix(self, tmp_path):
        cv2.imwrite(str(tmp_path / "d.png"), np.zeros((2, 2), np.uint8))
        with pytest.raises(ImageError, match="single-channel 16-bit PNG, got uint8"):
            load_depth_png(tmp_path / "d.png")

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="depth image .*d.png does not exist"):
            load_depth_png(tmp_path / "d.png")


def _jpeg(path, rgb: np.ndarray, app1: bytes = b"") -> bytes:
    """Write ``rgb`` as a JPEG with an optional APP1 segment after the start marker."""
    data = cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes()
    data = data[:2] + app1 + data[2:]
    path.write_bytes(data)
    return data


def _exif_orientation_app1(orientation: int, order: str) -> bytes:
    """An APP1 Exif segment whose IFD0 holds only the orientation tag (0x0112, SHORT)."""
    endian = ">" if order == "MM" else "<"
    tiff = (order.encode() + struct.pack(endian + "HI", 42, 8) + struct.pack(endian + "H", 1)
            + struct.pack(endian + "HHIHH", 0x0112, 3, 1, orientation, 0)
            + struct.pack(endian + "I", 0))
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


class TestLoadRgb:
    """Issue 28: files that decoded to a wrong image, or were misreported."""

    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)

    @pytest.mark.parametrize("keep", [0.5, 0.9, -2])
    def test_truncated_jpeg_refused(self, tmp_path, keep):
        """libjpeg only warned and filled the rest in grey: the pose was garbage, exit 0."""
        data = _jpeg(tmp_path / "full.jpg", self.rgb)
        cut = tmp_path / "cut.jpg"
        cut.write_bytes(data[: int(len(data) * keep) if keep > 0 else keep])
        with pytest.raises(ImageError) as err:
            load_rgb(cut)
        assert str(err.value) == (f"image {cut} is a truncated JPEG ({cut.stat().st_size} bytes, "
                                  "no end-of-image marker); copy or export the file again")
        assert load_rgb(tmp_path / "full.jpg").shape == (60, 80, 3)

    def test_jpeg_with_trailing_bytes_after_the_end_marker_loads(self, tmp_path):
        path = tmp_path / "tail.jpg"
        path.write_bytes(_jpeg(tmp_path / "a.jpg", self.rgb) + b"\x00" * 16)
        np.testing.assert_array_equal(load_rgb(path), load_rgb(tmp_path / "a.jpg"))

    def test_truncated_png_refused(self, tmp_path):
        path = tmp_path / "cut.png"
        path.write_bytes(cv2.imencode(".png", self.rgb)[1].tobytes()[:-20])
        with pytest.raises(ImageError, match="cut.png: it is truncated, corrupt or not an image; "
                                             "pass a complete JPEG/PNG file"):
            load_rgb(path)

    def test_directory_is_said(self, tmp_path):
        _jpeg(tmp_path / "a.jpg", self.rgb)
        with pytest.raises(IsADirectoryError) as err:
            load_rgb(tmp_path)
        assert str(err.value) == (f"image file {tmp_path} is a directory; pass a "
                                  ".jpg/.jpeg/.png file; it holds a.jpg")

    @pytest.mark.parametrize("order", ["MM", "II"])
    @pytest.mark.parametrize("orientation, said", [(6, "rotated 90 degrees clockwise"),
                                                   (3, "rotated 180 degrees")])
    def test_exif_orientation_not_applied_and_said(self, tmp_path, order, orientation, said):
        """OpenCV rotated the pixels for display, so K (sensor orientation) no longer fit."""
        path = tmp_path / "phone.jpg"
        _jpeg(path, self.rgb, _exif_orientation_app1(orientation, order))
        notes = []
        _jpeg(tmp_path / "plain.jpg", self.rgb)
        np.testing.assert_array_equal(load_rgb(path, notes.append),
                                      load_rgb(tmp_path / "plain.jpg"))
        assert notes == [
            f"{path} has EXIF orientation {orientation} ({said} for display); it is read as "
            "stored (sensor orientation), so its intrinsics must be for the stored pixels; to "
            "use the displayed view, rotate the pixels (e.g. `mogrify -auto-orient`) and "
            "calibrate K for it"]

    def test_exif_orientation_1_is_silent(self, tmp_path):
        notes = []
        _jpeg(tmp_path / "a.jpg", self.rgb, _exif_orientation_app1(1, "MM"))
        assert load_rgb(tmp_path / "a.jpg", notes.append).shape == (60, 80, 3) and notes == []

