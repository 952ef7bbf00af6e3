"""Inputs and outputs of ``mickey_ros.replay.run``.

Inputs: image + CameraInfo pairing, keyframes, ground truth from TF. Output: a bag with exactly
the node's topics, types, frames, stamps and QoS.

Every message is built by ``mickey_ros.relocalization.messages`` from a ``SessionResult``, the
code the node
uses, so the two cannot drift apart.
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mickey_ros.bags import writer as bags
from mickey_ros.mapfree.files import CameraIntrinsics, intrinsics_matrix
from mickey_ros.relocalization.health import matches_image
from mickey_ros.relocalization.messages import (
    MessageTypes,
    camera_info_to_intrinsics,
    check_image_size,
    image_msg_to_rgb,
    pose_with_covariance_msg,
    relative_pose_msg,
    rgb_to_image_msg,
    stamp_to_ns,
    tf_message,
    transform_stamped_msg,
)
from mickey_ros.relocalization.session import (
    Frame,
    RelocalizationSession,
    SessionResult,
    StampedTransform,
)
from mickey_ros.bags.tf_buffer import TfBuffer, TfLookupError
from mickey_ros.utils.images import ImageError, load_rgb

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
# tf2_ros.TransformBroadcaster's profile (DynamicBroadcasterQoS): reliable, volatile, keep last 100
TF_QOS = [bags.DEFAULT_QOS[0]._replace(depth=100)]


def default_info_topic(image_topic: str) -> str:
    """CameraInfo beside an image topic, as image_transport pairs them.

    >>> default_info_topic("/camera/image_raw"), default_info_topic("/cam/image_raw/compressed")
    ('/camera/camera_info', '/cam/camera_info')
    """
    namespace = image_topic.removesuffix("/compressed").rpartition("/")[0]
    return f"{namespace}/camera_info"


def output_topics(namespace: str, node_name: str) -> dict[str, str]:
    """Fully qualified names of the node's outputs (``~/relative_pose`` etc., ``/tf``).

    >>> output_topics("robot1", "mickey_relocalizer")["estimate"]
    '/robot1/mickey_relocalizer/estimate'
    """
    prefix = "/".join(p for p in (namespace.strip("/"), node_name.strip("/")) if p)
    private = ("relative_pose", "estimate", "pose", "debug/matches")
    return {**{name: f"/{prefix}/{name}" for name in private}, "tf": "/tf",
            "tf_static": "/tf_static"}


class CameraInfos:
    """The CameraInfo messages of one topic, paired with images like the node does.

    ``sync``: the CameraInfo whose header stamp is nearest to the image stamp, within ``slop_s``
    (the node's ApproximateTimeSynchronizer). ``latest``: the last one received before the
    image (by receive time), whatever its stamp.
    """

    def __init__(self, topic: str, mode: str, slop_s: float) -> None:
        self.topic, self.mode, self.slop_ns = topic, mode, int(slop_s * 1e9)
        self._stamps: list[int] = []  # header stamps, sorted
        self._by_stamp: list[CameraIntrinsics | str] = []
        self._log_times: list[int] = []  # receive times, sorted
        self._by_log: list[CameraIntrinsics | str] = []

    def add(self, log_time_ns: int, msg: Any) -> None:
        """Store one CameraInfo; an unusable one is kept as its error text (used if picked)."""
        try:
            item: CameraIntrinsics | str = camera_info_to_intrinsics(msg)
        except ImageError as err:
            item = str(err)
        for keys, values, key in ((self._stamps, self._by_stamp, stamp_to_ns(msg.header.stamp)),
                                  (self._log_times, self._by_log, log_time_ns)):
            i = bisect.bisect_right(keys, key)
            keys.insert(i, key)
            values.insert(i, item)

    def first(self) -> CameraIntrinsics | None:
        """The first usable CameraInfo (for a keyframe file without intrinsics)."""
        return next((x for x in self._by_log if isinstance(x, CameraIntrinsics)), None)

    def for_image(self, stamp_ns: int, log_time_ns: int) -> CameraIntrinsics:
        """The CameraInfo for an image. Raises ImageError (naming the topic) when none fits."""
        if self.mode == "latest":
            i = bisect.bisect_right(self._log_times, log_time_ns) - 1
            if i < 0:
                raise ImageError(f"no CameraInfo received on {self.topic} before this image")
            item = self._by_log[i]
        else:
            i = bisect.bisect_left(self._stamps, stamp_ns)
            near = [j for j in (i - 1, i) if 0 <= j < len(self._stamps)]
            if not near:
                raise ImageError(f"no CameraInfo on {self.topic} at all")
            j = min(near, key=lambda k: abs(self._stamps[k] - stamp_ns))
            gap_ns = abs(self._stamps[j] - stamp_ns)
            if gap_ns > self.slop_ns:
                raise ImageError(
                    f"no CameraInfo on {self.topic} within {self.slop_ns / 1e9:g} s of the image "
                    f"stamp (nearest {gap_ns / 1e9:.3f} s away); set input.camera_info_mode "
                    "latest or raise input.sync_slop_s"
                )
            item = self._by_stamp[j]
        if isinstance(item, str):
            raise ImageError(item)
        return item


def decode_frame(msg: Any, infos: CameraInfos, log_time_ns: int) -> Frame:
    """``sensor_msgs/Image`` or ``CompressedImage`` + its CameraInfo -> ``Frame``.

    Raises:
        ImageError: undecodable image, no CameraInfo, or image size != CameraInfo size.
    """
    rgb = image_msg_to_rgb(msg)
    stamp_ns = stamp_to_ns(msg.header.stamp)
    intrinsics = infos.for_image(stamp_ns, log_time_ns)
    check_image_size(rgb, intrinsics, where=f"image of frame {msg.header.frame_id!r}")
    return Frame(rgb=rgb, K=intrinsics.K, stamp_ns=stamp_ns, frame_id=str(msg.header.frame_id))


def load_reference_image(
    path: str, intrinsics: tuple[float, ...], live: CameraInfos, stamp_ns: int, frame_id: str
) -> Frame:
    """A keyframe from an image file; K from ``intrinsics`` (fx fy cx cy) or the live camera.

    The node stamps such a keyframe with its clock at configure and names it
    ``output.reference_frame``; replay passes the bag's start time and the same frame.

    Raises:
        ImageError: without intrinsics, when the live camera's CameraInfo size differs.
    """
    rgb = load_rgb(path, note=log.warning)
    if intrinsics:
        K = intrinsics_matrix(*intrinsics)
    else:
        live_info = live.first()
        if live_info is None:
            raise ImageError(f"no usable CameraInfo on {live.topic}; pass --reference-K")
        check_image_size(rgb, live_info, where=f"reference image {path}")
        K = live_info.K
    return Frame(rgb=rgb, K=np.asarray(K, dtype=np.float64), stamp_ns=stamp_ns, frame_id=frame_id)


class GroundTruth:
    """Ground-truth relative poses from the TF of the recording.

    ``T_ref_query_gt = inv(T_world_refcam) @ T_world_querycam``, both camera poses looked up in
    ``world_frame`` at the image stamps (the keyframe's at its own stamp).
    """

    def __init__(self, tf: TfBuffer, world_frame: str, camera_frame: str = "") -> None:
        self.tf, self.world_frame, self.camera_frame = tf, world_frame, camera_frame
        self.T_world_ref: np.ndarray | None = None

    def _camera_pose(self, frame: Frame) -> np.ndarray:
        return self.tf.lookup(self.world_frame, self.camera_frame or frame.frame_id, frame.stamp_ns)

    def set_reference(self, frame: Frame) -> str | None:
        """Look up the keyframe camera pose; returns why it failed (None on success)."""
        try:
            self.T_world_ref = self._camera_pose(frame)
        except TfLookupError as err:
            self.T_world_ref = None
            return f"no ground truth for the keyframe at {frame.stamp_ns / 1e9:.3f} s: {err}"
        return None

    def relative(self, frame: Frame) -> tuple[np.ndarray | None, str | None]:
        """``(T_ref_query_gt, None)``, ``(None, reason)``; ``(None, None)`` if no keyframe GT."""
        if self.T_world_ref is None:
            return None, None
        try:
            T_world_query = self._camera_pose(frame)
        except TfLookupError as err:
            return None, str(err)
        return np.linalg.inv(self.T_world_ref) @ T_world_query, None


class OutputWriter:
    """The output bag: the node's topics with its QoS, written from ``SessionResult`` objects.

    As the node: ``~/estimate`` gets every processed frame; ``~/relative_pose``, ``/tf``,
    ``~/pose`` (``output.publish_pose``) and ``~/debug/matches`` (``output.publish_debug_image``)
    only poses that passed the gate. With ``tf_mode: map_to_odom``, ``/tf_static`` carries the
    map -> reference anchor (stamped ``start_ns``, the node's configure time) and the last
    map->odom is re-broadcast at ``output.tf_rebroadcast_hz`` of bag time, as the node's timer.
    """

    def __init__(self, path: Path, cfg: Any, typestore: Any, start_ns: int = 0) -> None:
        self.path, self.cfg, self.typestore, self.start_ns = path, cfg, typestore, start_ns
        self.types = MessageTypes.from_typestore(typestore)
        self.topics = output_topics(cfg.namespace, cfg.node_name)
        self.written: dict[str, int] = {}
        out = cfg.node.output
        self._rebroadcast_ns = int(1e9 / out.tf_rebroadcast_hz) if out.tf_rebroadcast_hz else 0
        self._next_rebroadcast_ns: int | None = None

    def __enter__(self) -> OutputWriter:
        self._context = bags.open_writer(self.path, storage=self.cfg.storage)
        self._writer = self._context.__enter__()
        out, tf_type = self.cfg.node.output, "tf2_msgs/msg/TFMessage"
        wanted = [("relative_pose", "geometry_msgs/msg/TransformStamped", bags.DEFAULT_QOS),
                  ("estimate", "mickey_ros/msg/RelativePose", bags.DEFAULT_QOS)]
        if out.tf_mode != "none":
            wanted.append(("tf", tf_type, TF_QOS))
        if out.tf_mode == "map_to_odom":
            wanted.append(("tf_static", tf_type, bags.LATCHED_QOS))
        if out.publish_pose:
            wanted.append(("pose", "geometry_msgs/msg/PoseWithCovarianceStamped", bags.DEFAULT_QOS))
        if out.publish_debug_image:
            wanted.append(("debug/matches", "sensor_msgs/msg/Image", bags.DEFAULT_QOS))
        self._connections = {
            key: bags.add_connection(self._writer, self.topics[key], msgtype, self.typestore, qos)
            for key, msgtype, qos in wanted
        }
        return self

    def write_anchor(self, session: RelocalizationSession) -> None:
        """The node's static map -> reference_frame TF (``tf_mode: map_to_odom`` only)."""
        if "tf_static" in self._connections:
            cfg = session.config
            anchor = StampedTransform(session.T_map_ref, cfg.map_frame, cfg.reference_frame,
                                      self.start_ns)
            self._write("tf_static", self.start_ns, self._tf([anchor]))

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(None, None, None)  # always close: a partial bag must stay valid

    def _write(self, key: str, log_time_ns: int, msg: Any) -> None:
        connection = self._connections[key]
        bags.write_message(self._writer, connection, log_time_ns, msg, self.typestore)
        self.written[self.topics[key]] = self.written.get(self.topics[key], 0) + 1

    def _tf(self, edges: list[StampedTransform]) -> Any:
        return tf_message(self.types, [
            transform_stamped_msg(self.types, e.T_parent_child, e.stamp_ns, e.parent, e.child)
            for e in edges
        ])

    def rebroadcast_until(self, stamp_ns: int, session: RelocalizationSession) -> None:
        """Write the map->odom re-broadcast timer ticks that fall before ``stamp_ns``.

        Call it before the session processes the frame at ``stamp_ns``, so the ticks carry the
        previous estimate, as the node's timer does.
        """
        if not self._rebroadcast_ns or self._next_rebroadcast_ns is None:
            return
        while self._next_rebroadcast_ns < stamp_ns:
            edges = session.rebroadcast(self._next_rebroadcast_ns)
            if edges:
                self._write("tf", self._next_rebroadcast_ns, self._tf(edges))
            self._next_rebroadcast_ns += self._rebroadcast_ns

    def write_result(
        self, result: SessionResult, session: RelocalizationSession, frame: Frame
    ) -> None:
        """Write what the node publishes for ``result``, logged at the image stamp."""
        stamp = result.stamp_ns
        self._write("estimate", stamp, relative_pose_msg(self.types, result))
        if not result.publish:
            return
        rel = result.relative
        self._write("relative_pose", stamp, transform_stamped_msg(
            self.types, rel.T_parent_child, rel.stamp_ns, rel.parent, rel.child))
        if result.transforms and "tf" in self._connections:
            self._write("tf", stamp, self._tf(result.transforms))
            if self._next_rebroadcast_ns is None and session.rebroadcast(stamp):
                self._next_rebroadcast_ns = stamp + self._rebroadcast_ns
        if "pose" in self._connections:
            self._write("pose", stamp, pose_with_covariance_msg(self.types, result))
        matches, reference = result.estimate.matches, session.reference
        if "debug/matches" in self._connections and matches and reference is not None:
            canvas = matches_image(reference.rgb, frame.rgb, matches["kpts_ref"],
                                   matches["kpts_query"])
            self._write("debug/matches", stamp, rgb_to_image_msg(self.types, canvas, stamp,
                                                                 frame.frame_id))
