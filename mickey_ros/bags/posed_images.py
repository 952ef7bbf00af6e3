"""Camera frames of rosbags with their pose in a fixed frame: what datasets and keyframe maps need.

``read_posed_images(bags, fixed_frame="odom")`` streams one ``PosedImage`` per camera frame: the
RGB image (raw or compressed), K from camera_info, the camera's pose in the fixed frame at the
image stamp (TF interpolated, or a PoseStamped / Odometry topic), and an aligned depth image when
asked. Two passes over each bag: the first reads only the small messages (TF, poses,
camera_info), the second the images, so memory stays bounded by the TF history, not the images.

``KeyframeSelector`` keeps a frame after enough motion; ``blur_score`` measures sharpness.

Convention:
    ``T_fixed_camera`` (4, 4) maps camera-frame points into the fixed frame (the camera's pose,
    tf2's ``lookup_transform(fixed, camera)``). The camera frame is the optical frame of REP 103
    (z forward, x right, y down), the frame the pixels live in.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mickey_ros.bags.reader import BagError, BagMessage, BagReader, ReadIssues
from mickey_ros.bags.tf_buffer import TfBuffer, TfLookupError
from mickey_ros.geometry.pose import rotation_angle_deg, transform_from_xyz_qxyzw
from mickey_ros.relocalization.messages import (
    camera_info_to_intrinsics,
    image_msg_to_rgb,
    stamp_to_ns,
)
from mickey_ros.utils.images import ImageError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "nav_msgs/msg/Odometry",
              "geometry_msgs/msg/PoseWithCovarianceStamped")
DEPTH_MATCH_NS = 5_000_000  # colour and depth of one RGB-D frame carry (nearly) equal stamps
_PENDING_NS = 1_000_000_000  # how long a frame waits for its depth partner

# camera body frame (x forward, y left, z up) -> optical frame (z forward, x right, y down)
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass
class PosedImage:
    """One camera frame with its pose in the fixed frame.

    Attributes:
        image_rgb: (H, W, 3) uint8.
        K: (3, 3) float64 intrinsics of ``image_rgb``.
        T_fixed_camera: (4, 4) camera optical frame -> fixed frame (the camera's pose).
        stamp_ns: the image header stamp.
        topic: the image topic; bag: the bag path; camera_frame: the image's frame_id (or the
            frame named by ``camera_frame=``).
        depth_m: (H, W) float32 metres, 0 = unknown; None without a depth topic (or no match).
    """

    image_rgb: np.ndarray
    K: np.ndarray
    T_fixed_camera: np.ndarray
    stamp_ns: int
    topic: str
    bag: str
    camera_frame: str
    depth_m: np.ndarray | None = None


@dataclass
class PosedImageReport:
    """What reading met: frames seen, frames dropped by reason, damage of each bag."""

    frames_read: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first detailed message
    bag_issues: dict[str, ReadIssues] = field(default_factory=dict)  # bag -> issues
    image_topic: str = ""
    camera_frame: str = ""
    body_frame: bool = False  # the camera frame is a body frame (x forward), rotated to optical

    def drop(self, reason: str, detail: str) -> None:
        """Count one dropped frame."""
        self.dropped[reason] += 1
        self.examples.setdefault(reason, detail)


# ----------------------------------------------------------------------------- helpers
def blur_score(image_rgb: np.ndarray, long_side: int = 320) -> float:
    """Sharpness: variance of the Laplacian of the grey image scaled to ``long_side`` pixels.

    Scaling first makes the score independent of the resolution (and cheap); sharp camera images
    score in the hundreds, motion-blurred ones in the tens.
    """
    import cv2

    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    scale = long_side / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


class KeyframeSelector:
    """Keeps a frame once the camera moved ``min_translation_m`` or turned ``min_rotation_deg``
    since the last kept frame (the first frame is always kept).

    ``wants(T)`` asks without committing (so a caller can still drop the frame, e.g. as blurred);
    ``keep(T)`` commits. Both take ``T_fixed_camera`` (4, 4).
    """

    def __init__(self, min_translation_m: float = 0.1, min_rotation_deg: float = 5.0) -> None:
        if min_translation_m < 0 or min_rotation_deg < 0:
            raise ValueError("keyframe thresholds must be >= 0, got "
                             f"{min_translation_m} m, {min_rotation_deg} deg")
        self.min_translation_m, self.min_rotation_deg = min_translation_m, min_rotation_deg
        self.last: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the last keyframe (a new scene starts)."""
        self.last = None

    def wants(self, T_fixed_camera: np.ndarray) -> bool:
        """True when the frame moved enough since the last kept one."""
        if self.last is None:
            return True
        moved = np.linalg.norm(T_fixed_camera[:3, 3] - self.last[:3, 3])
        turned = rotation_angle_deg(self.last[:3, :3].T @ T_fixed_camera[:3, :3])
        return moved >= self.min_translation_m or turned >= self.min_rotation_deg

    def keep(self, T_fixed_camera: np.ndarray) -> None:
        """Make this frame the last keyframe."""
        self.last = np.array(T_fixed_camera, dtype=np.float64)


def depth_msg_to_metres(msg: Any) -> np.ndarray:
    """A depth ``sensor_msgs/Image`` (16UC1 / mono16 millimetres or 32FC1 metres) -> (H, W) float32
    metres, 0 where unknown (0, NaN, Inf).

    Raises:
        ImageError: another encoding, or a buffer that disagrees with its size.
    """
    encoding = str(msg.encoding)
    dtypes = {"16UC1": np.uint16, "mono16": np.uint16, "32FC1": np.float32}
    if encoding not in dtypes:
        raise ImageError(f"depth image encoding {encoding!r} is not 16UC1 (mm) or 32FC1 (m); "
                         "publish a registered depth image (depth_image_proc)")
    dtype = np.dtype(dtypes[encoding]).newbyteorder(">" if msg.is_bigendian else "<")
    H, W, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(np.asarray(msg.data, dtype=np.uint8).tobytes(), dtype=np.uint8)
    if H <= 0 or W <= 0 or step < W * dtype.itemsize or data.size != H * step:
        raise ImageError(f"depth image {W}x{H} step {step} has {data.size} bytes: corrupt")
    rows = data.reshape(H, step)[:, : W * dtype.itemsize]
    depth = rows.copy().view(dtype).reshape(H, W).astype(np.float32)
    if dtypes[encoding] is np.uint16:
        depth *= 1e-3
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def _pose_msg_matrix(msg: Any) -> tuple[str, str, int, np.ndarray]:
    """(parent frame, child frame or '', stamp, T_parent_child) of a pose message."""
    pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
    p, q = pose.position, pose.orientation
    T = transform_from_xyz_qxyzw(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
    return (msg.header.frame_id, getattr(msg, "child_frame_id", ""),
            stamp_to_ns(msg.header.stamp), T)


def _topics_line(bag: BagReader) -> str:
    return ", ".join(f"{t.name} ({t.msgtype.rsplit('/', 1)[-1]}, {t.count})"
                     for t in sorted(bag.topics.values(), key=lambda t: t.name)) or "none"


def _pick_image_topic(bag: BagReader, topic: str | None, depth_topic: str | None) -> str:
    """``topic`` checked against the bag, or the bag's only camera stream.

    A camera stream is an image topic with more than one message that is not a depth topic;
    an image and its own ``/compressed`` sub-topic count once (the raw one is read).
    """
    found = bag.topics.get(topic) if topic else None
    if topic is not None:
        if found is not None and found.msgtype in IMAGE_TYPES:
            return topic
        what = f"has type {found.msgtype}" if found else "is not in the bag"
        raise BagError(f"image topic {topic!r} {what}; {bag.path} has: {_topics_line(bag)}")
    streams = sorted(t.name for t in bag.topics.values() if t.msgtype in IMAGE_TYPES
                     and t.count > 1 and t.name != depth_topic and "depth" not in t.name)
    streams = [t for t in streams if not (t.endswith("/compressed")
                                          and t.removesuffix("/compressed") in streams)]
    if len(streams) != 1:
        what = "no camera image" if not streams else f"{len(streams)} image"
        raise BagError(f"{what} topics in {bag.path}; name one with --image-topic; the bag has: "
                       f"{_topics_line(bag)}")
    return streams[0]


def _info_topic(bag: BagReader, image_topic: str) -> str:
    """The camera_info beside ``image_topic`` (``/cam/image_raw`` -> ``/cam/camera_info``)."""
    base = image_topic.removesuffix("/compressed").rsplit("/", 1)[0]
    candidates = [f"{base}/camera_info"] + sorted(
        t.name for t in bag.topics.values() if t.msgtype == INFO_TYPE)
    for name in candidates:
        if name in bag.topics and bag.topics[name].msgtype == INFO_TYPE:
            return name
    raise BagError(f"no camera_info for {image_topic} in {bag.path} (looked for "
                   f"{base}/camera_info); record the camera's camera_info topic too")


# ----------------------------------------------------------------------------- first pass
def _intrinsics(msg: Any):
    """``camera_info_to_intrinsics`` of a ROS 2 or a ROS 1 CameraInfo (upper-case ``K``)."""
    if not hasattr(msg, "k") and hasattr(msg, "K"):
        msg = SimpleNamespace(k=msg.K, header=msg.header, width=msg.width, height=msg.height,
                              binning_x=msg.binning_x, binning_y=msg.binning_y, roi=msg.roi)
    return camera_info_to_intrinsics(msg)


@dataclass
class _Calibration:
    """camera_info over time: (stamp, K, W, H) at each change."""

    stamps: list[int] = field(default_factory=list)
    values: list[tuple[np.ndarray, int, int]] = field(default_factory=list)

    def add(self, stamp_ns: int, K: np.ndarray, W: int, H: int, topic: str) -> None:
        if self.values:
            K0, W0, H0 = self.values[-1]
            if (W0, H0) != (W, H):
                raise BagError(f"{topic} changes the image size from {W0}x{H0} to {W}x{H} at "
                               f"{stamp_ns / 1e9:.3f} s; convert the two parts as separate bags")
            if np.array_equal(K0, K):
                return
        self.stamps.append(stamp_ns)
        self.values.append((K, W, H))

    def at(self, stamp_ns: int) -> tuple[np.ndarray, int, int]:
        i = max(bisect.bisect_right(self.stamps, stamp_ns) - 1, 0)
        return self.values[i]


def _first_pass(
    bag: BagReader, info_topic: str, pose_topic: str | None, pose_child: str | None
) -> tuple[TfBuffer, _Calibration]:
    """TF (or the pose topic + /tf_static) and camera_info of one bag."""
    tf, calib = TfBuffer(), _Calibration()
    tf_topics = [t for t in ("/tf_static", "/tf") if t in bag.topics
                 and bag.topics[t].msgtype == TF_TYPE and not (pose_topic and t == "/tf")]
    for m in bag.messages([*tf_topics, info_topic, *([pose_topic] if pose_topic else [])]):
        try:
            if m.topic == info_topic:
                cam = _intrinsics(m.msg)
                calib.add(stamp_to_ns(m.msg.header.stamp), cam.K, cam.width, cam.height, m.topic)
            elif m.topic == pose_topic:
                parent, child, stamp, T = _pose_msg_matrix(m.msg)
                tf.add_transform(parent, child or pose_child, stamp, T)
            else:
                tf.add_tf_message(m.msg, static=m.topic == "/tf_static")
        except (ValueError, ImageError) as err:
            if isinstance(err, BagError):
                raise
            bag.issues.add(f"{m.topic} @ {m.log_time_ns / 1e9:.3f} s", str(err))
    if not calib.values:
        raise BagError(f"{info_topic} has no usable CameraInfo in {bag.path}: K is needed; "
                       "record the camera_info topic")
    return tf, calib


def _pose_child(bag: BagReader, pose_topic: str, camera_frame: str | None) -> str:
    """The frame a PoseStamped describes: the root of the camera's static chain."""
    tf = TfBuffer()
    if "/tf_static" in bag.topics:
        for m in bag.messages(["/tf_static"], report=False):
            tf.add_tf_message(m.msg, static=True)
    frame = camera_frame or ""
    while frame and tf.parent(frame):
        frame = tf.parent(frame)
    if not frame:
        raise BagError(f"pose topic {pose_topic}: cannot tell which frame its poses describe; "
                       "pass --camera-frame (the frame whose pose it is, or a child on /tf_static)")
    return frame


# ----------------------------------------------------------------------------- second pass
class _Pairing:
    """Colour frames matched with depth frames of (nearly) the same stamp, in stream order."""

    def __init__(self, with_depth: bool) -> None:
        self.with_depth = with_depth
        self.images: dict[int, BagMessage] = {}
        self.depths: dict[int, BagMessage] = {}

    def push(self, m: BagMessage, is_depth: bool) -> Iterator[tuple[BagMessage, Any]]:
        stamp = stamp_to_ns(m.msg.header.stamp)
        if not self.with_depth:
            yield m, None
            return
        mine, other = (self.depths, self.images) if is_depth else (self.images, self.depths)
        partner = min(other, key=lambda s: abs(s - stamp), default=None)
        if partner is not None and abs(partner - stamp) <= DEPTH_MATCH_NS:
            found = other.pop(partner)
            yield (found, m) if is_depth else (m, found)
        else:
            mine[stamp] = m
        for old in [s for s in self.images if s < stamp - _PENDING_NS]:
            yield self.images.pop(old), None  # its depth never came
        for old in [s for s in self.depths if s < stamp - _PENDING_NS]:
            del self.depths[old]

    def flush(self) -> Iterator[tuple[BagMessage, Any]]:
        for stamp in sorted(self.images):
            yield self.images.pop(stamp), None


@dataclass(frozen=True)
class _Options:
    fixed_frame: str
    camera_frame: str | None
    max_gap_ns: int
    optical: str
    want: Callable[[int, np.ndarray], bool] | None


def _camera_pose(
    tf: TfBuffer, opts: _Options, frame: str, stamp: int, report: PosedImageReport
) -> np.ndarray | None:
    try:
        T = tf.lookup(opts.fixed_frame, frame, stamp, opts.max_gap_ns)
    except TfLookupError as err:
        text = str(err)
        if "not connected" in text or "does not exist" in text:
            raise BagError(f"no TF path from {opts.fixed_frame!r} to the camera frame {frame!r}: "
                           f"{text}; name the frames with --fixed-frame / --camera-frame") from None
        reason = "TF gap" if "gap in the TF" in text else "TF out of range"
        report.drop(reason, f"{frame} @ {stamp / 1e9:.3f} s: {text}")
        return None
    if opts.optical == "body":
        T = T.copy()
        T[:3, :3] = T[:3, :3] @ R_BODY_OPTICAL
    return T


def _frames_of_bag(
    bag: BagReader, topics: tuple[str, str, str | None, str | None], opts: _Options,
    report: PosedImageReport,
) -> Iterator[PosedImage]:
    image_topic, info_topic, pose_topic, depth_topic = topics
    pose_child = None
    if pose_topic and bag.topics[pose_topic].msgtype != "nav_msgs/msg/Odometry":
        first = next(bag.messages([image_topic], report=False), None)
        camera = opts.camera_frame or (first.msg.header.frame_id if first else None)
        pose_child = _pose_child(bag, pose_topic, camera)
    tf, calib = _first_pass(bag, info_topic, pose_topic, pose_child)
    pairing = _Pairing(depth_topic is not None)
    stream = bag.messages([image_topic, *([depth_topic] if depth_topic else [])])
    for m in stream:
        for colour, depth in pairing.push(m, m.topic == depth_topic):
            frame = _posed(tf, calib, colour, depth, opts, str(bag.path), report)
            if frame is not None:
                yield frame
    for colour, depth in pairing.flush():
        frame = _posed(tf, calib, colour, depth, opts, str(bag.path), report)
        if frame is not None:
            yield frame


def _posed(
    tf: TfBuffer, calib: _Calibration, colour: BagMessage, depth: BagMessage | None,
    opts: _Options, bag: str, report: PosedImageReport,
) -> PosedImage | None:
    report.frames_read += 1
    stamp = stamp_to_ns(colour.msg.header.stamp)
    frame = opts.camera_frame or colour.msg.header.frame_id.lstrip("/")
    report.camera_frame = frame
    T = _camera_pose(tf, opts, frame, stamp, report)
    if T is None or (opts.want is not None and not opts.want(stamp, T)):
        return None
    try:
        rgb = image_msg_to_rgb(colour.msg)
        depth_m = None if depth is None else depth_msg_to_metres(depth.msg)
    except ImageError as err:
        report.drop("undecodable image", f"{colour.topic} @ {stamp / 1e9:.3f} s: {err}")
        return None
    K, W, H = calib.at(stamp)
    if rgb.shape[:2] != (H, W) or (depth_m is not None and depth_m.shape != (H, W)):
        got = depth_m.shape[::-1] if depth_m is not None and depth_m.shape != (H, W) else \
            rgb.shape[1::-1]
        raise BagError(f"{colour.topic} @ {stamp / 1e9:.3f} s: an image of {got[0]}x{got[1]} but "
                       f"camera_info says {W}x{H}; the depth must be registered to the colour "
                       "camera and the camera_info must belong to the image topic")
    return PosedImage(rgb, K.copy(), T, stamp, colour.topic, bag, frame, depth_m)


def read_posed_images(
    bags: Sequence[str | Path],
    *,
    fixed_frame: str,
    image_topic: str | None = None,
    camera_frame: str | None = None,
    pose_topic: str | None = None,
    depth_topic: str | None = None,
    max_tf_gap_s: float = 0.25,
    optical: str = "optical",
    want: Callable[[int, np.ndarray], bool] | None = None,
    report: PosedImageReport | None = None,
) -> Iterator[PosedImage]:
    """Every camera frame of ``bags`` (in order) with its pose in ``fixed_frame``.

    Args:
        bags: rosbag2 directories (sqlite3 / MCAP), ``.mcap`` files (ROS 1 ``.bag`` where
            rosbags reads it).
        fixed_frame: the frame poses are expressed in (``odom``, ``map``).
        image_topic: Image or CompressedImage topic; None: the bag's only image topic.
        camera_frame: the frame of the pixels; None: each image's header frame_id.
        pose_topic: PoseStamped / PoseWithCovarianceStamped / Odometry instead of /tf (mocap);
            its poses are of the Odometry's child frame, or for PoseStamped of the root of the
            camera's /tf_static chain, which then links it to the camera.
        depth_topic: registered depth (16UC1 mm / 32FC1 m) with the colour stamps.
        max_tf_gap_s: refuse a frame whose bracketing TF samples are farther apart.
        optical: ``"optical"`` (the camera frame is REP 103 optical) or ``"body"`` (x forward,
            z up: rotated into the optical frame).
        want: ``want(stamp_ns, T_fixed_camera)`` before decoding; False skips the frame cheaply
            (keyframe selection).
        report: filled with counts and drop reasons while iterating.

    Raises:
        BagError: a missing topic or camera_info, or an image size change (one line each).
    """
    if optical not in ("optical", "body"):
        raise ValueError(f"optical must be 'optical' or 'body', got {optical!r}")
    report = PosedImageReport() if report is None else report
    opts = _Options(fixed_frame.lstrip("/"), camera_frame, round(max_tf_gap_s * 1e9), optical,
                    want)
    report.body_frame = optical == "body"
    for path in bags:
        with BagReader(Path(path)) as bag:
            report.bag_issues[str(path)] = bag.issues
            image = _pick_image_topic(bag, image_topic, depth_topic)
            report.image_topic = image
            pose = bag.require(pose_topic, POSE_TYPES, "pose").name if pose_topic else None
            depth = (bag.require(depth_topic, (IMAGE_TYPES[0],), "depth").name
                     if depth_topic else None)
            topics = (image, _info_topic(bag, image), pose, depth)
            yield from _frames_of_bag(bag, topics, opts, report)
