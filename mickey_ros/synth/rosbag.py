"""A rosbag2 of a robot driving through a synthetic scene, with ground-truth TF.

What is recorded (bag time == every header stamp):
    * ``/tf_static`` once at the start (TRANSIENT_LOCAL): base_link -> camera_link (mount: height
      and a small downward pitch) and camera_link -> camera_optical_frame (REP-103 optical: z
      forward, x right, y down).
    * ``/reference/image`` + ``/reference/camera_info`` once at the start (TRANSIENT_LOCAL,
      reliable, keep last 1): the keyframe seen from the start pose.
    * per frame: ``/tf`` odom -> base_link (odom = the robot's start pose), ``/camera/camera_info``,
      ``/camera/image_raw`` (rgb8) and optionally ``/camera/image_raw/compressed`` (JPEG) and
      ``/camera/depth/image_raw`` (32FC1 metres, registered to the colour image, same stamp).
    * ``optical_frame_in_tf=False`` leaves out the optical edge: images then carry the body-like
      ``camera_link`` frame (x forward, z up), a mistake real TF trees make (for tests).

The robot drives forward 2.5-3.5 m along a gentle curve, stops, reverses back and repeats, facing
the same way throughout, so every frame overlaps the reference keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mickey_ros.bags.writer import (
    DEFAULT_QOS,
    LATCHED_QOS,
    add_connection,
    make_typestore,
    open_writer,
    write_message,
)
from mickey_ros.relocalization.messages import (
    MessageTypes,
    camera_info_msg,
    header_msg,
    rgb_to_compressed_image_msg,
    rgb_to_image_msg,
    tf_message,
    transform_stamped_msg,
)
from mickey_ros.synth.cameras import PairSamplingConfig, sample_intrinsics
from mickey_ros.synth.pairs import random_exposure
from mickey_ros.synth.render import Exposure, Renderer
from mickey_ros.synth.scene import Scene, make_scene
from mickey_ros.synth.textures import load_texture_bank

START_NS = 1_700_000_000 * 1_000_000_000  # fixed start time: a bag is deterministic in its seed
_PATH_CLEARANCE_M = 0.7  # no object closer than this to the driven path

# camera_link -> camera_optical_frame (REP-103): optical z = link x, x = -link y, y = -link z.
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class RobotBagTopics:
    """Topic and frame names (REP-105 frames; the optical frame carries the images)."""

    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    reference_image: str = "/reference/image"
    reference_camera_info: str = "/reference/camera_info"
    tf: str = "/tf"
    tf_static: str = "/tf_static"
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    camera_frame: str = "camera_link"
    optical_frame: str = "camera_optical_frame"
    depth: str = "/camera/depth/image_raw"

    @property
    def compressed_image(self) -> str:
        """image_transport's compressed sub-topic of ``image``."""
        return f"{self.image}/compressed"


def _transform(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def _yaw(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class RobotPath:
    """Back-and-forth drive along y = A (1 - cos(pi s / D)) / 2 in the odom frame.

    Attributes:
        length_m: D, the distance driven forward before reversing.
        lateral_m: A, sideways offset at the far end.
        period_s: time for one forward-and-back cycle.
    """

    length_m: float
    lateral_m: float
    period_s: float

    def T_odom_base(self, t_s: float) -> np.ndarray:
        """(4, 4) pose of base_link in odom at time ``t_s`` (identity at t = 0)."""
        s = self.length_m * (1 - np.cos(2 * np.pi * t_s / self.period_s)) / 2
        k = np.pi / self.length_m
        y = self.lateral_m * (1 - np.cos(k * s)) / 2
        heading = np.arctan(self.lateral_m * k * np.sin(k * s) / 2)
        return _transform(_yaw(heading), [s, y, 0.0])

    def time_at(self, forward_m: float) -> float:
        """The first time (s) the robot is ``forward_m`` along the drive, in [0, ``length_m``]:
        the inverse of ``s(t) = D (1 - cos(2 pi t / P)) / 2`` of ``T_odom_base``.

        >>> round(RobotPath(2.0, 0.0, 8.0).time_at(1.0), 6)
        2.0
        """
        if not 0.0 <= forward_m <= self.length_m:
            raise ValueError(f"forward_m must lie in [0, {self.length_m:.2f}] m, the length of "
                             f"the drive before it turns back; got {forward_m}")
        return self.period_s / (2 * np.pi) * float(np.arccos(1 - 2 * forward_m / self.length_m))

    def points(self, step_m: float = 0.25) -> np.ndarray:
        """(N, 2) odom-frame points along the driven curve."""
        s = np.linspace(0.0, self.length_m, int(self.length_m / step_m) + 2)
        return np.stack([s, self.lateral_m * (1 - np.cos(np.pi * s / self.length_m)) / 2], 1)


def camera_mount(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(T_base_camera_link, T_camera_link_optical): 0.5-1.2 m high, pitched 0-10 deg down."""
    pitch = np.radians(rng.uniform(0.0, 10.0))
    c, s = np.cos(pitch), np.sin(pitch)
    R_pitch = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # +pitch about y looks down
    return (
        _transform(R_pitch, [0.2, 0.0, rng.uniform(0.5, 1.2)]),
        _transform(R_LINK_OPTICAL, [0.0, 0.0, 0.0]),
    )


class _BagWriter:
    """Connections and message builders for one bag."""

    def __init__(
        self, writer, typestore, topics: RobotBagTopics, compressed: bool, depth: bool = False,
        image_frame: str | None = None,
    ):
        self.writer, self.typestore, self.topics = writer, typestore, topics
        self.image_frame = image_frame or topics.optical_frame
        self.types = MessageTypes.from_typestore(typestore)
        image, info = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
        tf = "tf2_msgs/msg/TFMessage"
        self.conn = {
            "tf_static": add_connection(writer, topics.tf_static, tf, typestore, LATCHED_QOS),
            "ref_info": add_connection(
                writer, topics.reference_camera_info, info, typestore, LATCHED_QOS
            ),
            "ref_image": add_connection(
                writer, topics.reference_image, image, typestore, LATCHED_QOS
            ),
            "tf": add_connection(writer, topics.tf, tf, typestore, DEFAULT_QOS),
            "info": add_connection(writer, topics.camera_info, info, typestore, DEFAULT_QOS),
            "image": add_connection(writer, topics.image, image, typestore, DEFAULT_QOS),
        }
        if compressed:
            self.conn["compressed"] = add_connection(
                writer,
                topics.compressed_image,
                "sensor_msgs/msg/CompressedImage",
                typestore,
                DEFAULT_QOS,
            )
        if depth:
            self.conn["depth"] = add_connection(writer, topics.depth, image, typestore, DEFAULT_QOS)

    def write(self, key: str, stamp_ns: int, msg) -> None:
        write_message(self.writer, self.conn[key], stamp_ns, msg, self.typestore)

    def tf(self, key: str, stamp_ns: int, transforms: list[tuple[np.ndarray, str, str]]) -> None:
        msgs = [
            transform_stamped_msg(self.types, T, stamp_ns, parent, child)
            for T, parent, child in transforms
        ]
        self.write(key, stamp_ns, tf_message(self.types, msgs))

    def camera(
        self, info_key: str, image_key: str, rgb: np.ndarray, K: np.ndarray, stamp_ns: int,
        depth_m: np.ndarray | None = None,
    ) -> None:
        H, W = rgb.shape[:2]
        frame = self.image_frame
        self.write(info_key, stamp_ns, camera_info_msg(self.types, K, W, H, stamp_ns, frame))
        self.write(image_key, stamp_ns, rgb_to_image_msg(self.types, rgb, stamp_ns, frame))
        if image_key == "image" and "compressed" in self.conn:
            msg = rgb_to_compressed_image_msg(
                self.types, rgb, stamp_ns, frame, fmt="jpeg", quality=90
            )
            self.write("compressed", stamp_ns, msg)
        if depth_m is not None and "depth" in self.conn:
            data = np.ascontiguousarray(depth_m, dtype="<f4")
            msg = self.types.Image(
                header=header_msg(self.types, stamp_ns, frame), height=H, width=W,
                encoding="32FC1", is_bigendian=0, step=4 * W,
                data=self.types.uint8_array(data.view(np.uint8).reshape(-1)),
            )
            self.write("depth", stamp_ns, msg)


@dataclass(frozen=True)
class RobotDrive:
    """Everything that fixes a bag's content; ``plan_robot_drive`` builds it from a seed.

    Attributes:
        scene: the place driven through.
        path: base_link motion in odom.
        T_world_odom: (4, 4) odom frame in the scene's world frame (the robot's start pose).
        T_base_link: (4, 4) camera_link in base_link.
        T_link_optical: (4, 4) camera_optical_frame in camera_link.
        K: (3, 3) camera intrinsics.
        exposure: the camera's base exposure (frames add +-3 % gain and fresh noise).
    """

    scene: Scene
    path: RobotPath
    T_world_odom: np.ndarray
    T_base_link: np.ndarray
    T_link_optical: np.ndarray
    K: np.ndarray
    exposure: Exposure

    def T_odom_optical(self, t_s: float) -> np.ndarray:
        """(4, 4) ground-truth pose of the optical frame in odom at ``t_s`` seconds."""
        return self.path.T_odom_base(t_s) @ self.T_base_link @ self.T_link_optical


def plan_robot_drive(seed: int, size_wh: tuple[int, int], scene: str = "room") -> RobotDrive:
    """Scene, path, camera mount, intrinsics and exposure of the bag with this seed."""
    rng = np.random.default_rng([seed, 7])
    path = RobotPath(rng.uniform(2.5, 3.5), rng.uniform(-0.8, 0.8), rng.uniform(16.0, 24.0))
    # a long room (8-11 m) or a courtyard; the robot starts near one end, facing the far end
    half = (
        (rng.uniform(4.0, 5.5), rng.uniform(2.5, 4.0))
        if scene == "room"
        else (rng.uniform(8.0, 16.0), rng.uniform(8.0, 16.0))
    )
    start = np.array([-half[0] + 0.8, rng.uniform(-0.3, 0.3), 0.0])
    keep_clear = tuple(
        (x + start[0], y + start[1], 0.0, _PATH_CLEARANCE_M) for x, y in path.points()
    )
    place = make_scene(scene, rng, load_texture_bank(), keep_clear, half_extent=half)
    T_base_link, T_link_optical = camera_mount(rng)
    cfg = PairSamplingConfig()
    K = sample_intrinsics(rng, size_wh, cfg.focal_ratio)
    return RobotDrive(
        place,
        path,
        _transform(np.eye(3), start),
        T_base_link,
        T_link_optical,
        K,
        random_exposure(rng, cfg),
    )


def write_robot_bag(
    out_path: str | Path,
    seconds: float = 10.0,
    rate_hz: float = 5.0,
    size_wh: tuple[int, int] = (320, 240),
    storage: str = "sqlite3",
    compressed: bool = False,
    seed: int = 0,
    topics: RobotBagTopics = RobotBagTopics(),
    scene: str = "room",
    progress: bool = True,
    depth: bool = False,
    optical_frame_in_tf: bool = True,
) -> Path:
    """Render a robot drive and write it as a rosbag2 directory; returns ``out_path``.

    Args:
        out_path: bag directory to create (must not exist).
        seconds: recording length; frames at ``k / rate_hz`` for ``k < round(seconds * rate_hz)``.
        rate_hz: camera frame rate.
        size_wh: (W, H) of the camera images.
        storage: ``"sqlite3"`` or ``"mcap"``.
        compressed: also write JPEG ``CompressedImage`` on ``<image>/compressed``.
        seed: scene, mount, path and noise seed (``plan_robot_drive(seed, ...)`` gives the GT).
        topics: topic and frame names.
        scene: ``"room"`` or ``"courtyard"``.
        progress: show a tqdm bar.
        depth: also write the registered depth (32FC1 metres) on ``topics.depth``.
        optical_frame_in_tf: False leaves out camera_link -> optical; images then carry
            camera_link (a body frame), see the module doc.

    Raises:
        ValueError: non-positive duration or rate. FileExistsError: ``out_path`` exists.
    """
    from tqdm import tqdm

    count = int(round(seconds * rate_hz))
    if seconds <= 0 or rate_hz <= 0 or count < 1:
        raise ValueError(
            f"need seconds > 0 and rate_hz > 0 giving >= 1 frame, got {seconds}, {rate_hz}"
        )
    drive = plan_robot_drive(seed, size_wh, scene)
    noise_rng = np.random.default_rng([seed, 8])
    renderer = Renderer(load_texture_bank())
    renderer.set_scene(drive.scene)

    def render(t_s: float) -> tuple[np.ndarray, np.ndarray]:
        T_world_optical = drive.T_world_odom @ drive.T_odom_optical(t_s)
        gain = tuple(g * (1 + noise_rng.uniform(-0.03, 0.03)) for g in drive.exposure.gain)
        exposure = Exposure(gain, drive.exposure.noise_sigma, int(noise_rng.integers(2**32)))
        return renderer.render(np.linalg.inv(T_world_optical), drive.K, size_wh, exposure)

    try:
        with open_writer(out_path, storage) as writer:
            bag = _BagWriter(writer, make_typestore(), topics, compressed, depth,
                             None if optical_frame_in_tf else topics.camera_frame)
            static = [(drive.T_base_link, topics.base_frame, topics.camera_frame)]
            if optical_frame_in_tf:
                static.append((drive.T_link_optical, topics.camera_frame, topics.optical_frame))
            bag.tf("tf_static", START_NS, static)
            bag.camera("ref_info", "ref_image", render(0.0)[0], drive.K, START_NS)
            for k in tqdm(range(count), desc="robot bag", unit="frame", disable=not progress):
                stamp = START_NS + round(k * 1e9 / rate_hz)
                t_s = (stamp - START_NS) / 1e9
                T_odom_base = drive.path.T_odom_base(t_s)
                bag.tf("tf", stamp, [(T_odom_base, topics.odom_frame, topics.base_frame)])
                rgb, depth_m = render(t_s)
                bag.camera("info", "image", rgb, drive.K, stamp, depth_m if depth else None)
    finally:
        renderer.release()
    return Path(out_path)
