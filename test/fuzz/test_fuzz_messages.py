"""Fuzzing of mickey_ros.relocalization.messages: ROS messages from the wire -> numpy (issue 9).

Messages are rosbags' ROS 2 Jazzy classes with field values inside the wire types' ranges
(uint32 sizes, uint8 flags), as a decoder hands them over. Property of every converter: a result
with the documented invariants, or ``ImageError`` / ``ValueError`` with a message; never another
exception, never a hang.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from rosbags.typesys import Stores, get_typestore

from mickey_ros.relocalization import messages as m
from mickey_ros.utils.images import ImageError

TYPES = m.MessageTypes.from_typestore(get_typestore(Stores.ROS2_JAZZY))
BYTES_PER_PIXEL = {
    "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "16UC1": 2,
    "8UC1": 1, "8UC3": 3, "rgb16": 6, "bgr16": 6, "rgba16": 8, "bgra16": 8, "bayer_rggb8": 1,
    "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1, "bayer_rggb16": 2, "yuv422": 2,
    "uyvy": 2, "yuyv": 2, "yuv422_yuy2": 2, "32FC1": 4, "16SC1": 2, "8UC4": 4, "64FC3": 24,
    "nv12": 1,
}
UINT32 = st.integers(0, 2**32 - 1)
SLOW = max(10, settings.default.max_examples // 3)


def header(frame_id: str = "cam"):
    return m.header_msg(TYPES, 5, frame_id)


@st.composite
def raw_images(draw):
    """Image messages near the valid ones: known or random encodings, sizes up to 12 px, steps
    with and without padding, buffers of the right or a wrong length."""
    encoding = draw(st.one_of(st.sampled_from(sorted(BYTES_PER_PIXEL)), st.text(max_size=12)))
    bpp = BYTES_PER_PIXEL.get(encoding, draw(st.integers(1, 8)))
    height, width = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    if draw(st.booleans()):
        height, width = draw(st.sampled_from([(2**32 - 1, 4), (4, 2**31), (0, 2**32 - 1)]))
    step = draw(st.one_of(st.just(width * bpp), st.integers(width * bpp, width * bpp + 9),
                          st.integers(0, 4 * width * bpp + 1), UINT32))
    size = step * height if step * height <= 4096 else 0
    size = draw(st.one_of(st.just(size), st.integers(0, 4096)))
    data = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), np.uint8).copy()
    return TYPES.Image(header=header(), height=height, width=width, encoding=encoding,
                       is_bigendian=draw(st.integers(0, 255)), step=step, data=data)


class TestImageMsgToRgb:
    @given(raw_images())
    def test_rgb_or_image_error(self, msg):
        try:
            rgb = m.image_msg_to_rgb(msg)
        except ImageError as err:
            assert str(err)
            return
        assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)
        assert rgb.flags.c_contiguous and not np.shares_memory(rgb, msg.data)  # a fresh array

    @given(raw_images())
    def test_check_agrees_with_decoder(self, msg):
        """``check_image_msg`` (run before cv_bridge) never passes a message the decoder would
        refuse for its geometry, and never refuses one it decodes."""
        try:
            m.check_image_msg(msg)
        except ImageError:
            with pytest.raises(ImageError):
                m.image_msg_to_rgb(msg)

    @given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 7),
           st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8"]), st.data())
    def test_padded_colour_round_trip_exact(self, height, width, pad, encoding, data):
        rgb = np.frombuffer(data.draw(st.binary(min_size=height * width * 3,
                                                max_size=height * width * 3)), np.uint8)
        rgb = rgb.reshape(height, width, 3)
        msg = m.rgb_to_image_msg(TYPES, rgb, 0, "cam", encoding)
        rows = np.asarray(msg.data).reshape(height, msg.step)
        msg.data = np.hstack([rows, np.full((height, pad), 0xAB, np.uint8)]).reshape(-1)
        msg.step += pad
        np.testing.assert_array_equal(m.image_msg_to_rgb(msg), rgb)

    @given(st.integers(1, 8), st.integers(1, 8), st.data())
    def test_big_endian_mono16_equals_little_endian(self, height, width, data):
        values = np.array(data.draw(st.lists(st.integers(0, 65535), min_size=height * width,
                                             max_size=height * width)))
        decoded = []
        for dtype, flag in (("<u2", 0), (">u2", 1)):
            payload = np.frombuffer(values.astype(dtype).tobytes(), np.uint8).copy()
            decoded.append(m.image_msg_to_rgb(TYPES.Image(
                header=header(), height=height, width=width, encoding="mono16",
                is_bigendian=flag, step=2 * width, data=payload)))
        np.testing.assert_array_equal(decoded[0], decoded[1])
        expected = values.reshape(height, width) * 255.0 / 65535.0
        np.testing.assert_allclose(decoded[0][:, :, 0], expected, atol=1.0)


def _encoded(kind: str) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return cv2.imencode(kind, rgb)[1].tobytes()


VALID_PAYLOADS = {".png": _encoded(".png"), ".jpg": _encoded(".jpg")}


@st.composite
def compressed_images(draw):
    """CompressedImage with random bytes, or a valid PNG/JPEG with bytes flipped or cut off."""
    payload = draw(st.one_of(
        st.binary(max_size=256),
        st.sampled_from(sorted(VALID_PAYLOADS)).map(VALID_PAYLOADS.get).flatmap(
            lambda b: st.tuples(st.just(b), st.integers(0, len(b)),
                                st.lists(st.tuples(st.integers(0, len(b) - 1),
                                                   st.integers(0, 255)), max_size=8))).map(
            lambda t: _mutate(*t)),
    ))
    fmt = draw(st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "16UC1; "
                                "compressedDepth png"]))
    return TYPES.CompressedImage(header=header(), format=fmt,
                                 data=np.frombuffer(payload, np.uint8).copy())


def _mutate(payload: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(payload)
    for index, value in flips:
        data[index] = value
    return bytes(data[:cut]) if cut else bytes(data)


class TestCompressedImage:
    @settings(max_examples=SLOW)
    @given(compressed_images())
    def test_rgb_or_image_error(self, msg):
        try:
            rgb = m.image_msg_to_rgb(msg)
        except ImageError as err:
            assert str(err)
            return
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert "compressedDepth" not in msg.format


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, 1.0, -1.0, 100.0, 1e-300]))


@st.composite
def camera_infos(draw):
    """CameraInfo with random K (NaN, Inf, zeros), sizes, binning and ROI within wire types."""
    if draw(st.booleans()):
        fx, fy, cx, cy = (draw(FLOATS) for _ in range(4))
        k = np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])
    else:
        k = np.array(draw(st.lists(FLOATS, min_size=9, max_size=9)))
    size = st.one_of(st.integers(0, 64), UINT32)
    roi = TYPES.RegionOfInterest(
        x_offset=draw(size), y_offset=draw(size), height=draw(size), width=draw(size),
        do_rectify=draw(st.booleans()))
    if draw(st.booleans()):
        roi = TYPES.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return TYPES.CameraInfo(
        header=header(), height=draw(size), width=draw(size), distortion_model="plumb_bob",
        d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=np.zeros(12),
        binning_x=draw(st.one_of(st.integers(0, 4), UINT32)),
        binning_y=draw(st.one_of(st.integers(0, 4), UINT32)), roi=roi)


class TestCameraInfoToIntrinsics:
    @given(camera_infos())
    def test_intrinsics_or_image_error(self, msg):
        try:
            intrinsics = m.camera_info_to_intrinsics(msg)
        except ImageError as err:
            assert str(err)
            return
        K = intrinsics.K
        assert K.shape == (3, 3) and np.all(np.isfinite(K))
        assert K[0, 0] > 0 and K[1, 1] > 0
        np.testing.assert_allclose(K[2], [0.0, 0.0, 1.0])

    @given(camera_infos())
    @example(TYPES.CameraInfo(
        header=header(), height=48, width=64, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([60.0, 0, 32, 0, 60, 24, 0, 0, 1]), r=np.eye(3).reshape(-1), p=np.zeros(12),
        binning_x=1000, binning_y=1, roi=TYPES.RegionOfInterest(
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)))  # was a 0-px size
    @example(TYPES.CameraInfo(
        header=header(), height=0, width=1, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([60.0, 0, 32, 0, 60, 24, 0, 0, 1]), r=np.eye(3).reshape(-1), p=np.zeros(12),
        binning_x=0, binning_y=0, roi=TYPES.RegionOfInterest(
            x_offset=0, y_offset=0, height=1, width=1, do_rectify=False)))  # ROI off the sensor
    def test_size_positive_and_roi_inside_sensor(self, msg):
        try:
            intrinsics = m.camera_info_to_intrinsics(msg)
        except ImageError:
            return
        assert intrinsics.width >= 1 and intrinsics.height >= 1, (
            f"zero image size {intrinsics.width}x{intrinsics.height} accepted")
        roi = msg.roi
        if roi.width and roi.height:
            assert roi.x_offset + roi.width <= msg.width
            assert roi.y_offset + roi.height <= msg.height

    @given(st.floats(1.0, 5000.0), st.floats(1.0, 5000.0), st.floats(-10.0, 2000.0),
           st.floats(-10.0, 2000.0), st.integers(14, 4000), st.integers(14, 4000))
    def test_plain_calibration_round_trips(self, fx, fy, cx, cy, width, height):
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        intrinsics = m.camera_info_to_intrinsics(m.camera_info_msg(TYPES, K, width, height, 0,
                                                                   "cam"))
        np.testing.assert_array_equal(intrinsics.K, K)
        assert (intrinsics.width, intrinsics.height) == (width, height)


QUATERNION_PARTS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                             st.floats(-1.0, 1.0), st.just(0.0))


class TestTransformToMatrix:
    @given(st.lists(QUATERNION_PARTS, min_size=4, max_size=4),
           st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                              st.floats(-1e3, 1e3)), min_size=3, max_size=3))
    def test_rigid_or_value_error(self, q_xyzw, t):
        """Non-unit quaternions are normalised; zero, NaN or Inf ones are refused."""
        msg = SimpleNamespace(rotation=SimpleNamespace(**dict(zip("xyzw", q_xyzw))),
                              translation=SimpleNamespace(**dict(zip("xyz", t))))
        with np.errstate(over="ignore"):
            try:
                T = m.transform_to_matrix(msg)
            except ValueError as err:
                assert "quaternion" in str(err)
                return
        assert np.all(np.isfinite(T)) and np.array_equal(T[3], [0, 0, 0, 1])
        R = T[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-9)

    @given(st.lists(st.floats(-10.0, 10.0), min_size=4, max_size=4), st.floats(0.01, 100.0))
    def test_scale_of_quaternion_is_ignored(self, q_xyzw, scale):
        assume(np.linalg.norm(q_xyzw) > 1e-3)
        unit = SimpleNamespace(x=0.0, y=0.0, z=0.0)

        def matrix(q):
            rotation = SimpleNamespace(**dict(zip("xyzw", q)))
            return m.transform_to_matrix(SimpleNamespace(rotation=rotation, translation=unit))

        np.testing.assert_allclose(matrix(q_xyzw), matrix([scale * v for v in q_xyzw]),
                                   atol=1e-9)
