"""Fuzzing of image preprocessing at the library boundary, mickey_ros.utils.images (issue 9).

Property: an image that passes ``check_rgb_image`` goes through resize, tensor conversion and
the crop with the documented shapes, ranges and intrinsics; anything else is an ``ImageError``
with a message. Views with odd strides (flipped, sliced) behave like their contiguous copies.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mickey_ros.utils.images import (
    ImageError,
    check_rgb_image,
    crop_to_multiple,
    load_rgb,
    resize_with_intrinsics,
    scale_intrinsics,
    to_tensor,
)

SLOW = max(10, settings.default.max_examples // 3)
DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32, np.bool_, np.int8])
_SCRATCH = tempfile.TemporaryDirectory(prefix="mickey_fuzz_img_")  # removed at exit


@st.composite
def rgb_images(draw, min_side: int = 14, max_side: int = 48):
    """Valid RGB uint8 images, sometimes as a flipped or sliced (non-contiguous) view."""
    H, W = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**16))
    image = np.random.default_rng(seed).integers(0, 256, (H + 2, W + 2, 3), dtype=np.uint8)
    view = draw(st.sampled_from(["plain", "flipped", "sliced"]))
    if view == "flipped":
        return image[:H, ::-1][:, :W]
    if view == "sliced":
        return image[1 : H + 1, 1 : W + 1]
    return np.ascontiguousarray(image[:H, :W])


def intrinsics(W: int, H: int) -> np.ndarray:
    return np.array([[1.1 * W, 0.0, W / 2], [0.0, 1.1 * W, H / 2], [0.0, 0.0, 1.0]])


class TestCheckRgbImage:
    @given(st.one_of(
        hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=20)),
        st.sampled_from([None, [[1, 2, 3]], "image", 3])))
    def test_accepts_exactly_rgb_uint8_of_usable_size(self, image):
        valid = (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                 and image.shape[2] == 3 and min(image.shape[:2]) >= 1)
        try:
            check_rgb_image(image, "query image")
        except ImageError as err:
            assert not valid and str(err).startswith("query image")
            return
        assert valid


class TestResizeWithIntrinsics:
    @settings(max_examples=SLOW)
    @given(rgb_images(), st.one_of(st.none(), st.tuples(st.integers(-3, 96),
                                                        st.integers(-3, 96))))
    def test_size_and_scaled_k_or_image_error(self, image, size_wh):
        H, W = image.shape[:2]
        K = intrinsics(W, H)
        try:
            resized, K_new = resize_with_intrinsics(image, K, size_wh)
        except ImageError as err:
            assert size_wh is not None and min(size_wh) < 1 and "must be positive" in str(err)
            return
        W_new, H_new = size_wh or (W, H)
        assert resized.shape == (H_new, W_new, 3) and resized.dtype == np.uint8
        np.testing.assert_allclose(K_new, scale_intrinsics(K, W_new / W, H_new / H), rtol=1e-12)
        if (W_new, H_new) == (W, H):
            np.testing.assert_array_equal(resized, image)

    @given(st.floats(0.05, 20.0), st.floats(0.05, 20.0), st.floats(1.0, 2000.0),
           st.floats(-50.0, 2000.0), st.floats(-50.0, 2000.0))
    def test_scale_intrinsics_inverse_and_backends_agree(self, sx, sy, f, cx, cy):
        K = np.array([[f, 0.0, cx], [0.0, 0.9 * f, cy], [0.0, 0.0, 1.0]])
        there = scale_intrinsics(K, sx, sy)
        np.testing.assert_allclose(scale_intrinsics(there, 1 / sx, 1 / sy), K, atol=1e-9 * f)
        np.testing.assert_allclose(scale_intrinsics(torch.from_numpy(K), sx, sy).numpy(), there)
        # pixel centres map to pixel centres: x' + 0.5 = sx (x + 0.5)
        assert np.isclose(there[0, 2] + 0.5, sx * (cx + 0.5), rtol=1e-12)
        assert np.isclose(there[1, 2] + 0.5, sy * (cy + 0.5), rtol=1e-12)


class TestToTensorAndCrop:
    @given(rgb_images(min_side=1, max_side=40), st.integers(1, 16))
    @example(np.zeros((1, 3, 3), np.uint8)[:, ::-1][:, :1], 1)  # flipped 1-px view: torch refused
    def test_shapes_values_and_top_left_crop(self, image, multiple):
        tensor = to_tensor(image)
        H, W = image.shape[:2]
        assert tensor.shape == (3, H, W) and tensor.dtype == torch.float32
        np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy() * 255.0,
                                      image.astype(np.float32))
        cropped = crop_to_multiple(tensor, multiple)
        h, w = cropped.shape[-2:]
        assert h % multiple == 0 and w % multiple == 0 and H - h < multiple and W - w < multiple
        assert torch.equal(cropped, tensor[:, :h, :w])


def _png() -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    return cv2.imencode(".png", rgb)[1].tobytes()


PNG = _png()


class TestLoadRgb:
    @settings(max_examples=SLOW)
    @given(st.one_of(st.binary(max_size=128),
                     st.tuples(st.integers(0, len(PNG)), st.lists(
                         st.tuples(st.integers(0, len(PNG) - 1), st.integers(0, 255)),
                         max_size=4)).map(lambda t: _damaged_png(*t))))
    def test_rgb_or_image_error(self, data):
        path = Path(_SCRATCH.name) / "image.png"
        path.write_bytes(data)
        try:
            rgb = load_rgb(path)
        except ImageError as err:
            assert str(path) in str(err)
            return
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3

    def test_missing_file(self, tmp_path):
        try:
            load_rgb(tmp_path / "none.png")
        except FileNotFoundError as err:
            assert "does not exist" in str(err)
        else:
            raise AssertionError("a missing file was read")


def _damaged_png(cut: int, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(PNG)
    for index, value in flips:
        data[index] = value
    return bytes(data[:cut]) if cut else bytes(data)
