"""Conversions between ROS 2 messages and numpy, written against field names only.

The same functions serve rclpy messages on a robot and rosbags message classes offline (replay,
tests): messages are built with every field passed by keyword (rosbags classes have no defaults)
and read through attributes. Array fields differ between the two worlds, so ``MessageTypes``
carries the two hooks that build them (rosbags wants numpy arrays; rclpy wants ``array.array`` for
unbounded sequences and numpy for fixed-size arrays).

Images are decoded by real libraries, never by hand: raw ``Image`` through rosbags-image (OpenCV
colour conversions, incl. Bayer and YUV 4:2:2), ``CompressedImage`` through ``cv2.imdecode``.
This module only strips row padding (``step``) and validates sizes before handing over.

Convention:
    A ``TransformStamped`` from ``parent`` to ``child`` carries ``T_parent_child`` (4, 4), which
    maps child-frame points into the parent frame (the pose of the child in the parent).
    Quaternions in messages are (x, y, z, w).
"""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from mickey_ros.mapfree.files import CameraIntrinsics
from mickey_ros.utils.images import ImageError, check_complete_jpeg

if TYPE_CHECKING:
    from mickey_ros.relocalization.session import SessionResult

RELATIVE_POSE_TYPE = "mickey_ros/msg/RelativePose"
# Byte-identical copy of msg/RelativePose.msg (a unit test keeps them equal): a pip install has no
# msg/ directory, and replay must register the type with rosbags.
RELATIVE_POSE_MSG = """\
# Metric relative pose of a live (query) camera with respect to a reference keyframe (MicKey).
# Published on ~/estimate for every processed frame, also when the pose failed the quality gate.
# header.stamp: stamp of the query image; header.frame_id: the reference keyframe frame.
std_msgs/Header header
# The query camera frame; transform is T_reference_query (pose of the query in the reference).
string child_frame_id
geometry_msgs/Transform transform
# Row-major 6x6 covariance of (x, y, z, rot_x, rot_y, rot_z), a heuristic from the inlier ratio.
float64[36] covariance
# Soft-inlier count of the final pose (the Map-free confidence, 0..num_samples).
float32 confidence
# confidence / num_samples, in [0, 1]; the quality gate compares it with min_confidence.
float32 inlier_ratio
uint32 num_inliers
uint32 num_samples
# valid: the solver returned a pose; accepted: it also passed the gate and was published.
bool valid
bool accepted
# "ok" or the reason the pose was not accepted.
string status
float32 inference_ms
float32 e2e_ms
# Stamp of the reference keyframe image the pose refers to.
builtin_interfaces/Time reference_stamp
# Keyframe library mode: the keyframe the pose was solved against, and the confidence of the
# best other keyframe tried (0 when fewer than two were tried). '' and 0 with a single keyframe.
string keyframe_id
float32 runner_up_confidence
"""

# Encodings that are the same pixels under a second name (OpenCV type names used by some drivers).
_ENCODING_ALIASES = {"16UC1": "mono16", "8UC1": "mono8", "yuv422_yuy2": "yuyv"}
_UNSUPPORTED = {"nv12", "nv21"}  # planar 4:2:0: rows != height, no ROS-wide layout agreement


def _numpy_uint8(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)


def _numpy_float64(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1).copy()


def rclpy_uint8_array(data: np.ndarray) -> array.array:
    """``uint8[]`` field value for rclpy (``array.array('B')`` skips its per-element checks)."""
    return array.array("B", np.ascontiguousarray(data, dtype=np.uint8).tobytes())


def rclpy_float64_sequence(values: np.ndarray) -> array.array:
    """Unbounded ``float64[]`` field value for rclpy (it refuses numpy arrays there)."""
    return array.array("d", np.asarray(values, dtype=np.float64).reshape(-1).tobytes())


@dataclass(frozen=True)
class MessageTypes:
    """The message classes (rosbags or rclpy) and how to fill their array fields.

    Fixed-size float arrays (``CameraInfo.k``, covariances) are numpy float64 in both worlds.
    """

    Time: type
    Header: type
    Image: type
    CompressedImage: type
    CameraInfo: type
    RegionOfInterest: type
    Vector3: type
    Quaternion: type
    Transform: type
    TransformStamped: type
    TFMessage: type
    Point: type
    Pose: type
    PoseWithCovariance: type
    PoseWithCovarianceStamped: type
    RelativePose: type | None = None  # None until the mickey_ros message is registered
    uint8_array: Callable[[np.ndarray], Any] = _numpy_uint8  # for uint8[] (image data)
    float64_sequence: Callable[[np.ndarray], Any] = _numpy_float64  # for float64[] (CameraInfo.d)

    @classmethod
    def from_typestore(cls, typestore: Any, register: bool = True) -> MessageTypes:
        """Classes of a rosbags typestore, e.g. ``get_typestore(Stores.ROS2_JAZZY)``.

        Args:
            typestore: a ``rosbags.typesys.store.Typestore``.
            register: register ``mickey_ros/msg/RelativePose`` in the typestore if missing.
        """
        if register:
            register_relative_pose(typestore)
        t = typestore.types
        return cls(
            Time=t["builtin_interfaces/msg/Time"],
            Header=t["std_msgs/msg/Header"],
            Image=t["sensor_msgs/msg/Image"],
            CompressedImage=t["sensor_msgs/msg/CompressedImage"],
            CameraInfo=t["sensor_msgs/msg/CameraInfo"],
            RegionOfInterest=t["sensor_msgs/msg/RegionOfInterest"],
            Vector3=t["geometry_msgs/msg/Vector3"],
            Quaternion=t["geometry_msgs/msg/Quaternion"],
            Transform=t["geometry_msgs/msg/Transform"],
            TransformStamped=t["geometry_msgs/msg/TransformStamped"],
            TFMessage=t["tf2_msgs/msg/TFMessage"],
            Point=t["geometry_msgs/msg/Point"],
            Pose=t["geometry_msgs/msg/Pose"],
            PoseWithCovariance=t["geometry_msgs/msg/PoseWithCovariance"],
            PoseWithCovarianceStamped=t["geometry_msgs/msg/PoseWithCovarianceStamped"],
            RelativePose=t.get(RELATIVE_POSE_TYPE),
        )


def register_relative_pose(typestore: Any) -> None:
    """Register ``mickey_ros/msg/RelativePose`` (from ``RELATIVE_POSE_MSG``) if not yet known."""
    if RELATIVE_POSE_TYPE in typestore.types:
        return
    from rosbags.typesys import get_types_from_msg

    typestore.register(get_types_from_msg(RELATIVE_POSE_MSG, RELATIVE_POSE_TYPE))


# --------------------------------------------------------------------------- time and headers
def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(types: MessageTypes, ns: int) -> Any:
    """Integer nanoseconds -> ``builtin_interfaces/Time`` (nanosec always in [0, 1e9))."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return types.Time(sec=sec, nanosec=nanosec)


def header_msg(types: MessageTypes, stamp_ns: int, frame_id: str) -> Any:
    """``std_msgs/Header`` with the given stamp and frame."""
    return types.Header(stamp=ns_to_stamp(types, stamp_ns), frame_id=frame_id)


# --------------------------------------------------------------------------- images
def _as_uint8(data: Any) -> np.ndarray:
    """A ``data`` field (numpy, bytes, array.array, list) as flat uint8, not copied if possible."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def _encoding_layout(encoding: str) -> tuple[str, int]:
    """Canonical encoding and bytes per pixel; ImageError for unknown ones."""
    from rosbags.image.image import ImageFormatError, to_cvtype

    canonical = _ENCODING_ALIASES.get(encoding, encoding)
    try:
        if canonical in _UNSUPPORTED:
            raise ImageFormatError(encoding)
        depth_bits, _, typestr, nchan = to_cvtype(canonical)
    except ImageFormatError:
        raise ImageError(
            f"unsupported image encoding {encoding!r}; publish rgb8/bgr8/mono8/mono16/bayer_*/"
            "yuv422 images (or use image_proc to convert)"
        ) from None
    return canonical, np.dtype(typestr).itemsize * nchan


def _packed_pixels(msg: Any, bytes_per_pixel: int) -> np.ndarray:
    """Validate the buffer against height, width and step; return rows without padding."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has zero size ({width}x{height}); the driver sent no pixels")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageError(
            f"image step {step} is smaller than width*bytes_per_pixel = {width}*{bytes_per_pixel}"
            f" for {msg.encoding}; the message header is inconsistent"
        )
    data = _as_uint8(msg.data)
    if data.size != step * height:
        raise ImageError(
            f"image data has {data.size} bytes, expected step*height = {step}*{height} = "
            f"{step * height} ({msg.encoding} {width}x{height}); the message is truncated/corrupt"
        )
    if step == row_bytes:
        return data
    return np.ascontiguousarray(data.reshape(height, step)[:, :row_bytes]).reshape(-1)


def _raw_image_to_rgb(msg: Any) -> np.ndarray:
    import cv2
    from rosbags.image import ImageConversionError, image_to_cvimage

    encoding, bytes_per_pixel = _encoding_layout(str(msg.encoding))
    packed = SimpleNamespace(
        height=int(msg.height), width=int(msg.width), encoding=encoding,
        is_bigendian=int(bool(msg.is_bigendian)), data=_packed_pixels(msg, bytes_per_pixel),
    )
    try:
        rgb = image_to_cvimage(packed, "rgb8")
    except (ImageConversionError, cv2.error) as err:
        raise ImageError(
            f"cannot convert {msg.encoding} {msg.width}x{msg.height} to RGB: {err}"
        ) from None
    return np.array(rgb, dtype=np.uint8, copy=True)


def _compressed_image_to_rgb(msg: Any) -> np.ndarray:
    import cv2

    fmt = str(msg.format)
    if "compressedDepth" in fmt:
        raise ImageError(f"compressed image format {fmt!r} is a depth image; subscribe to colour")
    data = _as_uint8(msg.data)
    _check_compressed_payload(data, fmt)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # always 8-bit, 3 channels
    if bgr is None:
        raise ImageError(f"cannot decode {data.size} bytes of compressed image format {fmt!r}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_compressed_payload(data: np.ndarray, fmt: str) -> None:
    if data.size == 0:
        raise ImageError(f"compressed image ({fmt!r}) has no data")
    check_complete_jpeg(data.tobytes(), f"message ({fmt!r})",
                        "the camera driver or the network cut it off; the frame is skipped")


def check_image_msg(msg: Any) -> None:
    """Validate an image message without decoding it; ImageError like ``image_msg_to_rgb``.

    Checks an Image's encoding, size, step and data length, or a CompressedImage's payload. The
    node runs it before cv_bridge, whose errors on malformed buffers are less specific.
    """
    if hasattr(msg, "format"):
        _check_compressed_payload(_as_uint8(msg.data), str(msg.format))
        return
    _, bytes_per_pixel = _encoding_layout(str(msg.encoding))
    _packed_pixels(msg, bytes_per_pixel)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` or ``CompressedImage`` -> RGB uint8 (H, W, 3), a fresh array.

    Raw encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (little and big endian), 16UC1,
    8UC1, rgb16/bgr16/rgba16/bgra16, bayer_{rggb,bggr,gbrg,grbg}{8,16}, yuv422/uyvy,
    yuyv/yuv422_yuy2. 16-bit images are scaled to 8 bit (value * 255 / 65535). Row padding
    (``step`` > width * bytes per pixel) is removed. Compressed: anything ``cv2.imdecode`` reads
    (JPEG, PNG, ...).

    Raises:
        ImageError: zero size, data length disagreeing with step * height, an unknown encoding or
            an undecodable compressed payload; the message names the problem.
    """
    if hasattr(msg, "format"):
        return _compressed_image_to_rgb(msg)
    return _raw_image_to_rgb(msg)


def check_image_size(rgb: np.ndarray, intrinsics: CameraIntrinsics, where: str = "image") -> None:
    """Raise ImageError when a decoded image's size disagrees with its CameraInfo."""
    H, W = rgb.shape[:2]
    if (W, H) != (intrinsics.width, intrinsics.height):
        raise ImageError(
            f"{where} is {W}x{H} but its CameraInfo says {intrinsics.width}x{intrinsics.height}; "
            "remap camera_info to the info topic of the same image stream"
        )


def rgb_to_image_msg(
    types: MessageTypes, rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8"
) -> Any:
    """RGB uint8 (H, W, 3) -> ``sensor_msgs/Image`` in ``encoding``, packed rows, little endian.

    Encodings: rgb8, bgr8, rgba8 / bgra8 (alpha 255), mono8, mono16 (grey * 257, so decoding
    gives the grey value back exactly). OpenCV converts the colours (rosbags-image's own
    rgb8 -> rgba8 path is a no-op because cv2.COLOR_RGB2RGBA == 0).
    """
    import cv2

    codes = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
             "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY, "mono16": cv2.COLOR_RGB2GRAY}
    if encoding not in codes:
        raise ValueError(f"encoding must be one of {sorted(codes)}, got {encoding!r}")
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    if codes[encoding] is not None:
        pixels = cv2.cvtColor(pixels, codes[encoding])
    if encoding == "mono16":
        pixels = pixels.astype("<u2") * np.uint16(257)
    H, W = rgb.shape[:2]
    return types.Image(
        header=header_msg(types, stamp_ns, frame_id), height=H, width=W, encoding=encoding,
        is_bigendian=0, step=pixels.nbytes // H,
        data=types.uint8_array(np.ascontiguousarray(pixels).view(np.uint8)),
    )


def rgb_to_compressed_image_msg(
    types: MessageTypes, rgb: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = "jpeg",
    quality: int = 90,
) -> Any:
    """RGB uint8 (H, W, 3) -> ``sensor_msgs/CompressedImage`` (``fmt`` 'jpeg' or 'png').

    The ``format`` field follows image_transport's compressed plugin, e.g.
    ``"rgb8; jpeg compressed bgr8"``.
    """
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb[:, :, ::-1], params)
    if not ok:
        raise ImageError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return types.CompressedImage(
        header=header_msg(types, stamp_ns, frame_id), format=f"rgb8; {fmt} compressed bgr8",
        data=types.uint8_array(buf.reshape(-1)),
    )


# --------------------------------------------------------------------------- camera info
def camera_info_to_intrinsics(msg: Any) -> CameraIntrinsics:
    """``sensor_msgs/CameraInfo`` -> K (3, 3) and the size of the images it describes.

    Binning and a region of interest are applied (as image_geometry does), so K and the size
    match the published image. Distortion is ignored: feed rectified images if it is large.

    Raises:
        ImageError: K all zeros (uncalibrated camera), NaN/Inf, non-positive focal lengths, a
            malformed last row, a zero image size or a region of interest outside the sensor;
            the message says how to fix it.
    """
    K = np.asarray(list(msg.k), dtype=np.float64).reshape(3, 3)
    where = f"CameraInfo of frame {msg.header.frame_id!r}"
    if not np.any(K):
        raise ImageError(
            f"{where} has K = 0 (uncalibrated camera); calibrate it (camera_calibration) or set "
            "the driver's camera_info_url"
        )
    if not np.all(np.isfinite(K)):
        raise ImageError(f"{where} has NaN/Inf in K = {K.ravel().tolist()}; recalibrate the camera")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ImageError(
            f"{where} has an invalid K = {K.ravel().tolist()}: need fx, fy > 0 and last row 0 0 1"
        )
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    roi = msg.roi
    full = int(roi.width) == 0 or int(roi.height) == 0
    if not full and (int(roi.x_offset) + int(roi.width) > int(msg.width)
                     or int(roi.y_offset) + int(roi.height) > int(msg.height)):
        raise ImageError(
            f"{where} has a region of interest {roi.width}x{roi.height} at ({roi.x_offset}, "
            f"{roi.y_offset}) outside its {msg.width}x{msg.height} sensor; fix the driver's roi"
        )
    width = (int(msg.width) if full else int(roi.width)) // bx
    height = (int(msg.height) if full else int(roi.height)) // by
    if width <= 0 or height <= 0:
        raise ImageError(f"{where} has zero image size {width}x{height} (after binning/ROI)")
    K[0, 2] -= 0 if full else int(roi.x_offset)
    K[1, 2] -= 0 if full else int(roi.y_offset)
    K[0] /= bx
    K[1] /= by
    if K[0, 0] <= 0 or K[1, 1] <= 0:  # a denormal focal length vanishes with binning
        raise ImageError(f"{where} has focal lengths {K[0, 0]}, {K[1, 1]} after binning")
    return CameraIntrinsics(K=K, width=width, height=height)


def camera_info_msg(
    types: MessageTypes, K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str
) -> Any:
    """Pinhole ``sensor_msgs/CameraInfo`` (plumb_bob, zero distortion, P = [K | 0])."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.hstack([K, np.zeros((3, 1))])
    roi = types.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types.CameraInfo(
        header=header_msg(types, stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model="plumb_bob", d=types.float64_sequence(np.zeros(5)), k=K.reshape(-1).copy(),
        r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi,
    )


# --------------------------------------------------------------------------- transforms
def _check_frame_id(frame_id: str, what: str) -> None:
    if not frame_id or frame_id.startswith("/"):
        raise ValueError(f"{what} frame id {frame_id!r} must be non-empty and not start with '/'")


def _quat_xyzw(R: np.ndarray) -> np.ndarray:
    from mickey_ros.geometry.pose import rotmat_to_quat_xyzw  # lazily: no torch at launch

    return rotmat_to_quat_xyzw(R)


def _check_transform(T: np.ndarray, what: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"{what} must be a finite (4, 4) transform, got shape {T.shape}")
    return T


def transform_msg(types: MessageTypes, T_parent_child: np.ndarray) -> Any:
    """(4, 4) rigid transform -> ``geometry_msgs/Transform`` (quaternion x, y, z, w)."""
    T = _check_transform(T_parent_child, "T_parent_child")
    x, y, z, w = (float(v) for v in _quat_xyzw(T[:3, :3]))
    tx, ty, tz = (float(v) for v in T[:3, 3])
    return types.Transform(
        translation=types.Vector3(x=tx, y=ty, z=tz),
        rotation=types.Quaternion(x=x, y=y, z=z, w=w),
    )


def transform_to_matrix(transform: Any) -> np.ndarray:
    """``geometry_msgs/Transform`` -> (4, 4) float64 (the quaternion is normalised).

    Raises:
        ValueError: for a zero or non-finite quaternion or translation.
    """
    q, v = transform.rotation, transform.translation
    q_xyzw = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    t = np.array([v.x, v.y, v.z], dtype=np.float64)
    finite = np.all(np.isfinite(q_xyzw)) and np.all(np.isfinite(t))
    if not finite or np.linalg.norm(q_xyzw) < 1e-9:
        raise ValueError(f"transform has a zero/non-finite quaternion {q_xyzw} or translation {t}")
    from mickey_ros.geometry.pose import transform_from_xyz_qxyzw  # lazily: no torch at launch

    return transform_from_xyz_qxyzw(t, q_xyzw)


def transform_stamped_msg(
    types: MessageTypes, T_parent_child: np.ndarray, stamp_ns: int, parent_frame: str,
    child_frame: str,
) -> Any:
    """``geometry_msgs/TransformStamped`` parent -> child carrying ``T_parent_child`` (4, 4)."""
    _check_frame_id(parent_frame, "parent")
    _check_frame_id(child_frame, "child")
    if parent_frame == child_frame:
        raise ValueError(f"parent and child frame are both {parent_frame!r}")
    return types.TransformStamped(
        header=header_msg(types, stamp_ns, parent_frame), child_frame_id=child_frame,
        transform=transform_msg(types, T_parent_child),
    )


def transform_stamped_to_matrix(msg: Any) -> np.ndarray:
    """``geometry_msgs/TransformStamped`` -> ``T_parent_child`` (4, 4) float64."""
    return transform_to_matrix(msg.transform)


def tf_message(types: MessageTypes, transforms: list) -> Any:
    """``tf2_msgs/TFMessage`` from a list of ``TransformStamped``."""
    return types.TFMessage(transforms=list(transforms))


# --------------------------------------------------------------------------- results
def pose_with_covariance_msg(types: MessageTypes, result: SessionResult) -> Any:
    """``geometry_msgs/PoseWithCovarianceStamped`` of the query camera, with covariance.

    The pose is ``result.pose``: in the reference frame, or in the map frame with tf_mode
    map_to_odom.
    """
    T = _check_transform(result.pose.T_parent_child, "result.pose")
    x, y, z, w = (float(v) for v in _quat_xyzw(T[:3, :3]))
    px, py, pz = (float(v) for v in T[:3, 3])
    pose = types.Pose(
        position=types.Point(x=px, y=py, z=pz), orientation=types.Quaternion(x=x, y=y, z=z, w=w)
    )
    covariance = np.asarray(result.covariance, dtype=np.float64).reshape(-1).copy()
    return types.PoseWithCovarianceStamped(
        header=header_msg(types, result.pose.stamp_ns, result.pose.parent),
        pose=types.PoseWithCovariance(pose=pose, covariance=covariance),
    )


def relative_pose_msg(types: MessageTypes, result: SessionResult) -> Any:
    """``mickey_ros/msg/RelativePose`` for ``~/estimate`` (sent for every processed frame)."""
    if types.RelativePose is None:
        raise ValueError(
            f"{RELATIVE_POSE_TYPE} is not registered; build MessageTypes.from_typestore(ts) "
            "(rosbags) or build the mickey_ros package with colcon (ROS)"
        )
    estimate, rel = result.estimate, result.relative
    return types.RelativePose(
        header=header_msg(types, rel.stamp_ns, rel.parent),
        child_frame_id=rel.child,
        transform=transform_msg(types, rel.T_parent_child),
        covariance=np.asarray(result.covariance, dtype=np.float64).reshape(-1).copy(),
        confidence=float(estimate.confidence),
        inlier_ratio=float(estimate.inlier_ratio),
        num_inliers=int(estimate.num_inliers),
        num_samples=int(estimate.num_samples),
        valid=bool(result.has_pose),
        accepted=bool(result.publish),
        status=result.status,
        inference_ms=float(result.inference_ms),
        e2e_ms=float(result.e2e_ms),
        reference_stamp=ns_to_stamp(types, result.reference_stamp_ns),
        keyframe_id=result.keyframe_id,
        runner_up_confidence=float(result.runner_up_confidence),
    )
