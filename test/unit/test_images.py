import cv2
import numpy as np
import pytest

from mickey_ros.utils.images import ImageError, load_depth_png, save_depth_png


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
