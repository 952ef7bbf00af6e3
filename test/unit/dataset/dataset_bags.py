"""Quick robot bags for the dataset tests: textured images, no rendering (milliseconds a frame).

``write_quick_bag`` writes what ``ros2 bag record`` of a robot writes (the project's writer and
message builders): ``/tf_static`` base_link -> camera_link -> camera_optical_frame, ``/tf``
odom -> base_link per frame, ``/camera/camera_info`` and ``/camera/image_raw``; options break it
in the ways the converter must catch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from mickey_ros.bags.writer import DEFAULT_QOS, LATCHED_QOS, add_connection, make_typestore, \
    open_writer, write_message
from mickey_ros.relocalization.messages import (
    MessageTypes,
    camera_info_msg,
    header_msg,
    rgb_to_compressed_image_msg,
    rgb_to_image_msg,
    tf_message,
    transform_stamped_msg,
)
from mickey_ros.synth.rosbag import R_LINK_OPTICAL, START_NS

K = np.array([[200.0, 0.0, 79.5], [0.0, 200.0, 59.5], [0.0, 0.0, 1.0]])
T_BASE_LINK = np.eye(4)
T_BASE_LINK[:3, 3] = [0.2, 0.0, 0.8]
T_LINK_OPTICAL = np.eye(4)
T_LINK_OPTICAL[:3, :3] = R_LINK_OPTICAL


def drive(t_s: float, speed: float = 0.5) -> np.ndarray:
    """(4, 4) odom -> base_link: forward along x at ``speed`` m/s, turning slowly."""
    T = np.eye(4)
    yaw = 0.05 * t_s
    T[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    T[:3, 3] = [speed * t_s, 0.0, 0.0]
    return T


def texture(k: int, size_wh: tuple[int, int] = (160, 120)) -> np.ndarray:
    """A sharp random texture (H, W, 3) uint8, different per frame."""
    rng = np.random.default_rng(k)
    W, H = size_wh
    small = rng.integers(0, 255, (H // 4, W // 4, 3), dtype=np.uint8)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)


def write_quick_bag(
    path: Path,
    frames: int = 40,
    rate_hz: float = 5.0,
    storage: str = "sqlite3",
    pose: Callable[[float], np.ndarray] = drive,
    camera_info: bool = True,
    size_at: Callable[[int], tuple[int, int]] = lambda k: (160, 120),
    image: Callable[[int], np.ndarray] | None = None,
    tf_at: Callable[[int], bool] = lambda k: True,
    compressed: bool = False,
    depth_16uc1: float | None = None,
    odometry: bool = False,
    pose_stamped: bool = False,
    images: bool = True,
) -> Path:
    """One bag; ``pose(t)`` is odom -> base_link, ``tf_at(k)`` False leaves frame k's TF out.

    ``depth_16uc1``: also a 16UC1 depth topic of this constant depth (metres) on
    ``/camera/depth/image_raw``. ``odometry``: the pose on ``/odom`` (nav_msgs/Odometry) instead
    of ``/tf``; ``pose_stamped``: on ``/pose`` (geometry_msgs/PoseStamped, the pose of base_link).
    ``images=False``: no image topic at all.
    """
    ts = make_typestore()
    types = MessageTypes.from_typestore(ts)
    with open_writer(path, storage) as w:
        tf_static = add_connection(w, "/tf_static", "tf2_msgs/msg/TFMessage", ts, LATCHED_QOS)
        tf = add_connection(w, "/tf", "tf2_msgs/msg/TFMessage", ts, DEFAULT_QOS)
        odom = add_connection(w, "/odom", "nav_msgs/msg/Odometry", ts) if odometry else None
        posed = (add_connection(w, "/pose", "geometry_msgs/msg/PoseStamped", ts)
                 if pose_stamped else None)
        info = (add_connection(w, "/camera/camera_info", "sensor_msgs/msg/CameraInfo", ts)
                if camera_info else None)
        img_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
        img = add_connection(w, topic, img_type, ts) if images else None
        dep = (add_connection(w, "/camera/depth/image_raw", "sensor_msgs/msg/Image", ts)
               if depth_16uc1 is not None else None)
        static = [transform_stamped_msg(types, T_BASE_LINK, START_NS, "base_link", "camera_link"),
                  transform_stamped_msg(types, T_LINK_OPTICAL, START_NS, "camera_link",
                                        "camera_optical_frame")]
        write_message(w, tf_static, START_NS, tf_message(types, static), ts)
        for k in range(frames):
            stamp = START_NS + round(k * 1e9 / rate_hz)
            T = pose(k / rate_hz)
            if odometry:
                write_message(w, odom, stamp, _odometry(ts, types, T, stamp), ts)
            elif pose_stamped:
                msg = ts.types["geometry_msgs/msg/PoseStamped"](
                    header=header_msg(types, stamp, "odom"), pose=_pose(ts, T))
                write_message(w, posed, stamp, msg, ts)
            elif tf_at(k):
                msg = tf_message(types, [transform_stamped_msg(types, T, stamp, "odom",
                                                               "base_link")])
                write_message(w, tf, stamp, msg, ts)
            W, H = size_at(k)
            rgb = image(k) if image is not None else texture(k, (W, H))
            if camera_info:
                msg = camera_info_msg(types, K, W, H, stamp, "camera_optical_frame")
                write_message(w, info, stamp, msg, ts)
            if compressed:
                msg = rgb_to_compressed_image_msg(types, rgb, stamp, "camera_optical_frame",
                                                  fmt="jpeg", quality=90)
            else:
                msg = rgb_to_image_msg(types, rgb, stamp, "camera_optical_frame")
            if images:
                write_message(w, img, stamp, msg, ts)
            if dep is not None:
                mm = np.full((H, W), round(depth_16uc1 * 1000), "<u2")
                msg = types.Image(header=header_msg(types, stamp, "camera_optical_frame"),
                                  height=H, width=W, encoding="16UC1", is_bigendian=0,
                                  step=2 * W, data=types.uint8_array(mm.view(np.uint8).ravel()))
                write_message(w, dep, stamp, msg, ts)
    return path


def _pose(ts, T: np.ndarray):
    from mickey_ros.geometry.pose import rotmat_to_quat_xyzw

    q = rotmat_to_quat_xyzw(T[:3, :3])
    t = ts.types
    return t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
        orientation=t["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))


def _odometry(ts, types: MessageTypes, T: np.ndarray, stamp: int):
    t = ts.types
    pose = _pose(ts, T)
    zero = np.zeros(36)
    twist = t["geometry_msgs/msg/Twist"](linear=t["geometry_msgs/msg/Vector3"](x=0, y=0, z=0),
                                         angular=t["geometry_msgs/msg/Vector3"](x=0, y=0, z=0))
    return t["nav_msgs/msg/Odometry"](
        header=header_msg(types, stamp, "odom"), child_frame_id="base_link",
        pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=zero),
        twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=zero))


def write_ros1_bag(path: Path, frames: int = 10, rate_hz: float = 5.0) -> Path:
    """A ROS 1 ``.bag`` (rosbags' writer, Noetic types) of the quick drive: /tf, /tf_static,
    camera_info and rgb8 images in ``camera_optical_frame``."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from mickey_ros.geometry.pose import rotmat_to_quat_xyzw

    ts = get_typestore(Stores.ROS1_NOETIC)
    ts.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms",
                                   "tf2_msgs/msg/TFMessage"))
    t = ts.types

    def header(stamp: int, frame: str):
        sec, nsec = divmod(stamp, 1_000_000_000)
        return t["std_msgs/msg/Header"](seq=0, stamp=t["builtin_interfaces/msg/Time"](
            sec=sec, nanosec=nsec), frame_id=frame)

    def tf(stamp: int, edges: list[tuple[np.ndarray, str, str]]):
        out = []
        for T, parent, child in edges:
            q = rotmat_to_quat_xyzw(T[:3, :3])
            out.append(t["geometry_msgs/msg/TransformStamped"](
                header=header(stamp, parent), child_frame_id=child,
                transform=t["geometry_msgs/msg/Transform"](
                    translation=t["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                    rotation=t["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))))
        return t["tf2_msgs/msg/TFMessage"](transforms=out)

    with Writer(path) as w:
        conn = {name: w.add_connection(topic, msgtype, typestore=ts) for name, topic, msgtype in (
            ("static", "/tf_static", "tf2_msgs/msg/TFMessage"),
            ("tf", "/tf", "tf2_msgs/msg/TFMessage"),
            ("info", "/camera/camera_info", "sensor_msgs/msg/CameraInfo"),
            ("image", "/camera/image_raw", "sensor_msgs/msg/Image"))}

        def write(name: str, stamp: int, msg) -> None:
            w.write(conn[name], stamp, ts.serialize_ros1(msg, conn[name].msgtype))

        write("static", START_NS, tf(START_NS, [(T_BASE_LINK, "base_link", "camera_link"), (
            T_LINK_OPTICAL, "camera_link", "camera_optical_frame")]))
        for k in range(frames):
            stamp = START_NS + round(k * 1e9 / rate_hz)
            write("tf", stamp, tf(stamp, [(drive(k / rate_hz), "odom", "base_link")]))
            roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                        width=0, do_rectify=False)
            write("info", stamp, t["sensor_msgs/msg/CameraInfo"](
                header=header(stamp, "camera_optical_frame"), height=120, width=160,
                distortion_model="plumb_bob", D=np.zeros(5), K=K.ravel().copy(),
                R=np.eye(3).ravel(), P=np.hstack([K, np.zeros((3, 1))]).ravel(), binning_x=0,
                binning_y=0, roi=roi))
            rgb = texture(k)
            write("image", stamp, t["sensor_msgs/msg/Image"](
                header=header(stamp, "camera_optical_frame"), height=120, width=160,
                encoding="rgb8", is_bigendian=0, step=480, data=rgb.reshape(-1)))
    return path
