"""relocalization.messages with rosbags' ROS 2 Jazzy message classes (the node uses rclpy's)."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.geometry.pose import transform_from_xyz_qxyzw
from mickey_ros.relocalization import messages as m
from mickey_ros.relocalization.session import Frame, RelocalizationSession, SessionConfig
from mickey_ros.utils.images import ImageError

TS = get_typestore(Stores.ROS2_JAZZY)
TYPES = m.MessageTypes.from_typestore(TS)
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)  # even size for Bayer / 4:2:2
COLOUR = (200, 100, 50)


def image(encoding: str, data: np.ndarray | bytes, height: int, width: int, step: int,
          bigendian: int = 0):
    return TYPES.Image(header=m.header_msg(TYPES, 5, "cam"), height=height, width=width,
                       encoding=encoding, is_bigendian=bigendian, step=step,
                       data=np.frombuffer(bytes(data), np.uint8).copy())


def bayer(pattern: str, H: int = 8, W: int = 8) -> np.ndarray:
    """Mosaic of the uniform COLOUR in ``pattern`` (e.g. 'rggb' = top-left R, G / G, B)."""
    value = dict(zip("rgb", COLOUR))
    mosaic = np.zeros((H, W), np.uint8)
    for k, channel in enumerate(pattern):
        mosaic[k // 2 :: 2, k % 2 :: 2] = value[channel]
    return mosaic


def rotz(deg: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(deg)
    T = np.eye(4)
    T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T[:3, 3] = t
    return T


def random_T(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = q, rng.normal(size=3)
    return T


class TestStamps:
    @pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_700_000_000_123_456_789, -1])
    def test_round_trip(self, ns):
        stamp = m.ns_to_stamp(TYPES, ns)
        assert 0 <= stamp.nanosec < 1_000_000_000
        assert m.stamp_to_ns(stamp) == ns

    def test_fields(self):
        stamp = m.ns_to_stamp(TYPES, 12_000_000_345)
        assert (stamp.sec, stamp.nanosec) == (12, 345)


class TestImageMsgToRgb:
    @pytest.mark.parametrize("encoding, convert", [
        ("rgb8", lambda x: x), ("bgr8", lambda x: x[:, :, ::-1]),
        ("rgba8", lambda x: np.dstack([x, np.full(x.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda x: np.dstack([x[:, :, ::-1], np.full(x.shape[:2], 7, np.uint8)])),
    ])
    def test_colour_encodings_exact(self, encoding, convert):
        pixels = np.ascontiguousarray(convert(RGB))
        msg = image(encoding, pixels.tobytes(), 6, 10, pixels.strides[0])
        np.testing.assert_array_equal(m.image_msg_to_rgb(msg), RGB)

    def test_mono8_is_grey_in_all_channels(self):
        grey = RGB[:, :, 0]
        out = m.image_msg_to_rgb(image("mono8", grey.tobytes(), 6, 10, 10))
        np.testing.assert_array_equal(out, np.dstack([grey] * 3))

    @pytest.mark.parametrize("encoding, bigendian, dtype", [
        ("mono16", 0, "<u2"), ("mono16", 1, ">u2"), ("16UC1", 0, "<u2"), ("16UC1", 1, ">u2"),
    ])
    def test_16_bit_scaled_to_8_bit(self, encoding, bigendian, dtype):
        grey = RGB[:, :, 1]
        pixels = (grey.astype(np.uint32) * 257).astype(dtype)  # v * 257 * 255 / 65535 == v
        out = m.image_msg_to_rgb(image(encoding, pixels.tobytes(), 6, 10, 20, bigendian))
        np.testing.assert_array_equal(out, np.dstack([grey] * 3))

    @pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
    def test_bayer_uniform_colour(self, pattern):
        out = m.image_msg_to_rgb(image(f"bayer_{pattern}8", bayer(pattern).tobytes(), 8, 8, 8))
        # interior pixels of a uniform mosaic demosaic to the colour itself
        np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3), [COLOUR] * 16, atol=1)

    def test_bayer_pattern_matters(self):
        out = m.image_msg_to_rgb(image("bayer_bggr8", bayer("rggb").tobytes(), 8, 8, 8))
        np.testing.assert_allclose(out[3, 3], COLOUR[::-1], atol=1)  # R and B swapped

    @pytest.mark.parametrize("encoding, order", [
        ("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuyv", "YUYV"), ("yuv422_yuy2", "YUYV"),
    ])
    def test_yuv422_byte_order(self, encoding, order):
        # two pixels per 4 bytes: Y0 = 16 (black), Y1 = 235 (white) in BT.601 video range
        quad = {"U": 128, "V": 128, "Y": None}
        values = []
        ys = iter([16, 235])
        for c in order:
            values.append(next(ys) if c == "Y" else quad[c])
        data = np.tile(np.array(values, np.uint8), (2, 2))  # 2 rows x 4 px
        out = m.image_msg_to_rgb(image(encoding, data.tobytes(), 2, 4, 8))
        np.testing.assert_array_equal(out[:, 0::2], np.zeros((2, 2, 3)))
        np.testing.assert_array_equal(out[:, 1::2], np.full((2, 2, 3), 255))

    @pytest.mark.parametrize("pad", [1, 3, 32])
    def test_row_padding_is_removed(self, pad):
        rgb = RNG.integers(0, 256, (5, 33, 3), dtype=np.uint8)  # odd width: 99 bytes per row
        rows = np.full((5, 99 + pad), 0xAB, np.uint8)
        rows[:, :99] = rgb.reshape(5, 99)
        out = m.image_msg_to_rgb(image("rgb8", rows.tobytes(), 5, 33, 99 + pad))
        np.testing.assert_array_equal(out, rgb)

    @pytest.mark.parametrize("wrap", [bytes, bytearray, lambda b: array.array("B", b),
                                      lambda b: list(b), lambda b: np.frombuffer(b, np.uint8)])
    def test_rclpy_style_data(self, wrap):
        msg = SimpleNamespace(header=None, height=6, width=10, encoding="bgr8", is_bigendian=0,
                              step=30, data=wrap(RGB[:, :, ::-1].tobytes()))
        np.testing.assert_array_equal(m.image_msg_to_rgb(msg), RGB)

    def test_output_is_a_fresh_array(self):
        msg = image("rgb8", RGB.tobytes(), 6, 10, 30)
        out = m.image_msg_to_rgb(msg)
        out[:] = 0
        np.testing.assert_array_equal(m.image_msg_to_rgb(msg), RGB)

    @pytest.mark.parametrize("height, width, step, nbytes, text", [
        (0, 10, 30, 0, "zero size"),
        (6, 0, 0, 0, "zero size"),
        (6, 10, 30, 179, "expected step\\*height"),
        (6, 10, 30, 181, "expected step\\*height"),
        (6, 10, 29, 174, "smaller than width"),
    ])
    def test_bad_geometry(self, height, width, step, nbytes, text):
        with pytest.raises(ImageError, match=text):
            m.image_msg_to_rgb(image("rgb8", bytes(nbytes), height, width, step))

    @pytest.mark.parametrize("encoding", ["foo", "nv12", "32FC1x", ""])
    def test_unknown_encoding(self, encoding):
        with pytest.raises(ImageError, match="unsupported image encoding"):
            m.image_msg_to_rgb(image(encoding, bytes(60), 6, 10, 10))

    def test_depth_float_cannot_become_rgb(self):
        with pytest.raises(ImageError, match="cannot convert 32FC1"):
            m.image_msg_to_rgb(image("32FC1", bytes(240), 6, 10, 40))


class TestCompressedImage:
    def test_png_exact(self):
        msg = m.rgb_to_compressed_image_msg(TYPES, RGB, 5, "cam", fmt="png")
        assert msg.format == "rgb8; png compressed bgr8"
        np.testing.assert_array_equal(m.image_msg_to_rgb(msg), RGB)

    def test_jpeg_close(self):
        smooth = np.dstack([*np.meshgrid(np.arange(64), np.arange(48)), np.full((48, 64), 30)])
        smooth = (smooth * 3).astype(np.uint8)
        out = m.image_msg_to_rgb(m.rgb_to_compressed_image_msg(TYPES, smooth, 5, "cam"))
        assert np.abs(out.astype(int) - smooth).mean() < 2.0

    def test_grey_jpeg_gives_three_channels(self):
        ok, buf = cv2.imencode(".jpg", np.full((16, 16), 77, np.uint8))
        msg = TYPES.CompressedImage(header=m.header_msg(TYPES, 0, "cam"), format="jpeg", data=buf)
        out = m.image_msg_to_rgb(msg)
        assert out.shape == (16, 16, 3)
        np.testing.assert_allclose(out, 77, atol=1)

    @pytest.mark.parametrize("fmt, data, text", [
        ("jpeg", b"", "has no data"),
        ("jpeg", b"not a jpeg at all", "cannot decode 17 bytes"),
        ("16UC1; compressedDepth png", b"\x89PNG", "depth image"),
    ])
    def test_bad_payload(self, fmt, data, text):
        msg = SimpleNamespace(header=None, format=fmt, data=data)
        with pytest.raises(ImageError, match=text):
            m.image_msg_to_rgb(msg)


    def test_truncated_jpeg_refused_by_decoder_and_check(self):
        rng = np.random.default_rng(0)
        full = m.rgb_to_compressed_image_msg(TYPES, rng.integers(0, 255, (48, 64, 3), np.uint8),
                                             5, "cam")
        data = bytes(full.data)
        cut = SimpleNamespace(header=None, format=full.format, data=data[: len(data) * 2 // 3])
        for check in (m.image_msg_to_rgb, m.check_image_msg):  # named, not "cannot decode"
            with pytest.raises(ImageError, match=r"truncated JPEG \(\d+ bytes.*frame is skipped"):
                check(cut)
        assert m.image_msg_to_rgb(full).shape == (48, 64, 3)


class TestCheckImageMsg:
    def test_accepts_valid_and_padded(self):
        rgb = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
        padded = np.concatenate([rgb.reshape(6, 30), np.full((6, 2), 255, np.uint8)], axis=1)
        for msg in (image("rgb8", rgb.tobytes(), 6, 10, 30),  # packed
                    image("rgb8", padded.tobytes(), 6, 10, 32)):  # 2 bytes of row padding
            assert m.check_image_msg(msg) is None  # accepted ...
            np.testing.assert_array_equal(m.image_msg_to_rgb(msg), rgb)  # ... as these pixels
        with pytest.raises(ImageError, match="truncated"):  # one byte short of the padded rows
            m.check_image_msg(image("rgb8", padded.tobytes()[:-1], 6, 10, 32))

    def test_rejects_like_decoder(self):
        with pytest.raises(ImageError, match="truncated"):
            m.check_image_msg(image("rgb8", bytes(100), 6, 10, 30))
        with pytest.raises(ImageError, match="no data"):
            m.check_image_msg(SimpleNamespace(format="jpeg", data=b""))


class TestRgbToImageMsg:
    @pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
    def test_round_trip(self, encoding):
        msg = m.rgb_to_image_msg(TYPES, RGB, 7, "cam", encoding)
        np.testing.assert_array_equal(m.image_msg_to_rgb(msg), RGB)
        back = TS.deserialize_cdr(TS.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
        np.testing.assert_array_equal(m.image_msg_to_rgb(back), RGB)

    def test_rgba_has_opaque_alpha(self):
        msg = m.rgb_to_image_msg(TYPES, RGB, 7, "cam", "rgba8")
        assert msg.step == 40 and np.all(msg.data.reshape(6, 10, 4)[:, :, 3] == 255)

    @pytest.mark.parametrize("encoding", ["mono8", "mono16"])
    def test_mono(self, encoding):
        grey = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
        out = m.image_msg_to_rgb(m.rgb_to_image_msg(TYPES, RGB, 7, "cam", encoding))
        np.testing.assert_array_equal(out, np.dstack([grey] * 3))

    def test_bad_encoding(self):
        with pytest.raises(ValueError, match="encoding must be one of"):
            m.rgb_to_image_msg(TYPES, RGB, 7, "cam", "bayer_rggb8")

    def test_rclpy_hook_builds_array(self):
        data = m.rclpy_uint8_array(np.arange(5, dtype=np.uint8))
        assert isinstance(data, array.array) and data.typecode == "B"
        assert list(data) == [0, 1, 2, 3, 4]
        d = m.rclpy_float64_sequence(np.zeros(5))
        assert d.typecode == "d" and list(d) == [0.0] * 5


def camera_info(K, width=640, height=480, binning=(0, 0), roi=(0, 0, 0, 0)):
    msg = m.camera_info_msg(TYPES, np.asarray(K, dtype=np.float64), width, height, 1, "cam")
    msg.binning_x, msg.binning_y = binning
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = roi
    return msg


K = [[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]]


class TestCameraInfoToIntrinsics:
    def test_plain(self):
        intr = m.camera_info_to_intrinsics(camera_info(K))
        np.testing.assert_array_equal(intr.K, K)
        assert (intr.width, intr.height) == (640, 480)

    def test_cdr_round_trip_keeps_k(self):
        msg = camera_info(K)
        back = TS.deserialize_cdr(TS.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
        np.testing.assert_array_equal(m.camera_info_to_intrinsics(back).K, K)
        np.testing.assert_array_equal(back.p.reshape(3, 4)[:, :3], K)

    def test_binning_halves_k_and_size(self):
        intr = m.camera_info_to_intrinsics(camera_info(K, binning=(2, 2)))
        np.testing.assert_allclose(intr.K, [[250, 0, 160], [0, 255, 120], [0, 0, 1]])
        assert (intr.width, intr.height) == (320, 240)

    def test_roi_shifts_principal_point(self):
        intr = m.camera_info_to_intrinsics(camera_info(K, roi=(100, 40, 200, 150)))
        np.testing.assert_allclose(intr.K[:2, 2], [220.0, 200.0])
        assert (intr.width, intr.height) == (200, 150)

    @pytest.mark.parametrize("bad, text", [
        (np.zeros((3, 3)), "K = 0 \\(uncalibrated"),
        ([[np.nan, 0, 320], [0, 500, 240], [0, 0, 1]], "NaN/Inf"),
        ([[-500, 0, 320], [0, 500, 240], [0, 0, 1]], "fx, fy > 0"),
        ([[500, 0, 320], [0, 500, 240], [0, 0, 0]], "last row 0 0 1"),
    ])
    def test_invalid_k(self, bad, text):
        with pytest.raises(ImageError, match=text):
            m.camera_info_to_intrinsics(camera_info(bad))

    @pytest.mark.parametrize("size, binning", [((0, 0), (0, 0)), ((1, 1), (2, 2))])
    def test_zero_size(self, size, binning):
        with pytest.raises(ImageError, match="zero image size"):
            m.camera_info_to_intrinsics(camera_info(K, *size, binning=binning))


class TestCheckImageSize:
    def test_mismatch_names_both_sizes(self):
        intr = m.camera_info_to_intrinsics(camera_info(K))
        with pytest.raises(ImageError, match="10x6 but its CameraInfo says 640x480"):
            m.check_image_size(RGB, intr)


class TestTransformStamped:
    def test_quaternion_order_xyzw(self):
        msg = m.transform_stamped_msg(TYPES, rotz(90, (1, 2, 3)), 5, "parent", "child")
        q = msg.transform.rotation
        np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, 0, np.sqrt(0.5), np.sqrt(0.5)])
        v = msg.transform.translation
        assert (v.x, v.y, v.z) == (1.0, 2.0, 3.0)
        assert (msg.header.frame_id, msg.child_frame_id) == ("parent", "child")

    @pytest.mark.parametrize("seed", range(5))
    def test_round_trip_through_cdr(self, seed):
        T = random_T(seed)
        msg = m.transform_stamped_msg(TYPES, T, 1_500_000_000, "a", "b")
        raw = TS.serialize_cdr(msg, msg.__msgtype__)
        back = TS.deserialize_cdr(raw, msg.__msgtype__)
        np.testing.assert_allclose(m.transform_stamped_to_matrix(back), T, atol=1e-12)
        assert m.stamp_to_ns(back.header.stamp) == 1_500_000_000

    @pytest.mark.parametrize("parent, child", [("", "b"), ("/a", "b"), ("a", "a")])
    def test_bad_frames(self, parent, child):
        with pytest.raises(ValueError, match="frame"):
            m.transform_stamped_msg(TYPES, np.eye(4), 0, parent, child)

    def test_non_finite(self):
        T = np.eye(4)
        T[0, 3] = np.nan
        with pytest.raises(ValueError, match="finite"):
            m.transform_stamped_msg(TYPES, T, 0, "a", "b")

    def test_zero_quaternion_refused(self):
        msg = m.transform_stamped_msg(TYPES, np.eye(4), 0, "a", "b")
        msg.transform.rotation.w = 0.0
        with pytest.raises(ValueError, match="quaternion"):
            m.transform_stamped_to_matrix(msg)

    def test_tf_message(self):
        edges = [m.transform_stamped_msg(TYPES, random_T(k), k, "a", f"c{k}") for k in range(3)]
        msg = m.tf_message(TYPES, edges)
        back = TS.deserialize_cdr(TS.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
        assert [t.child_frame_id for t in back.transforms] == ["c0", "c1", "c2"]


class _Double:
    def __init__(self, T_query_ref, confidence=1024.0):
        self.estimate_out = PoseEstimate(valid=True, R=T_query_ref[:3, :3], t=T_query_ref[:3, 3],
                                         confidence=confidence, num_inliers=900, num_samples=2048)
        self.has_reference = False

    def set_reference(self, image, K):
        self.has_reference = True

    def estimate(self, image, K):
        return self.estimate_out


def _result(tf_mode="relative", confidence=1024.0):
    T_query_ref = random_T(3)
    config = SessionConfig(tf_mode=tf_mode)
    session = RelocalizationSession(_Double(T_query_ref, confidence), config)
    session.set_reference(Frame(RGB, np.array(K), 1_000, "cam"))
    result = session.process(Frame(RGB, np.array(K), 2_000_000_000, "cam"), 2_050_000_000)
    return result, T_query_ref


class TestRelativePoseMsg:
    def test_fields_and_cdr_round_trip(self):
        result, T_query_ref = _result()
        msg = m.relative_pose_msg(TYPES, result)
        raw = TS.serialize_cdr(msg, m.RELATIVE_POSE_TYPE)
        back = TS.deserialize_cdr(raw, m.RELATIVE_POSE_TYPE)
        assert bytes(TS.serialize_cdr(back, m.RELATIVE_POSE_TYPE)) == bytes(raw)
        assert (back.header.frame_id, back.child_frame_id) == (
            "mickey_reference_optical", "mickey_query_optical")
        assert m.stamp_to_ns(back.header.stamp) == 2_000_000_000
        assert m.stamp_to_ns(back.reference_stamp) == 1_000
        np.testing.assert_allclose(m.transform_to_matrix(back.transform),
                                   np.linalg.inv(T_query_ref), atol=1e-12)
        assert (back.valid, back.accepted, back.status) == (True, True, "ok")
        assert (back.num_inliers, back.num_samples) == (900, 2048)
        assert back.confidence == 1024.0 and back.inlier_ratio == 0.5
        np.testing.assert_allclose(back.covariance.reshape(6, 6), result.covariance)

    def test_rejected_pose_reports_reason(self):
        result, _ = _result(confidence=10.0)
        msg = m.relative_pose_msg(TYPES, result)
        assert not msg.accepted and msg.valid and msg.status.startswith("low confidence")

    def test_unregistered_type(self):
        result, _ = _result()
        types = m.MessageTypes.from_typestore(get_typestore(Stores.ROS2_HUMBLE), register=False)
        with pytest.raises(ValueError, match="not registered"):
            m.relative_pose_msg(types, result)


class TestPoseWithCovarianceMsg:
    def test_reference_frame(self):
        result, T_query_ref = _result()
        msg = m.pose_with_covariance_msg(TYPES, result)
        assert msg.header.frame_id == "mickey_reference_optical"
        o, p = msg.pose.pose.orientation, msg.pose.pose.position
        T = transform_from_xyz_qxyzw([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])
        np.testing.assert_allclose(T, np.linalg.inv(T_query_ref), atol=1e-12)
        TS.serialize_cdr(msg, msg.__msgtype__)
