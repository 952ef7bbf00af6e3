"""The node's run-time pipeline: latest-frame hand-over, a worker thread, outputs.

Subscription callbacks (executor thread) only ``offer_*`` raw messages; ``LatestFrameSlot`` keeps
the newest one and counts the dropped ones. The worker thread decodes (cv_bridge), runs the
``RelocalizationSession`` and publishes, so inference never blocks the executor and frames are
never queued behind the GPU.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tf2_ros
from cv_bridge import CvBridge, CvBridgeError
from rclpy.duration import Duration
from rclpy.time import Time

from mickey_ros.keyframes.localizer import LocalizerConfig
from mickey_ros.keyframes.session import LibrarySession
from mickey_ros.relocalization import health, messages
from mickey_ros.relocalization.params import NodeParams
from mickey_ros.relocalization.session import (
    Frame,
    LatestFrameSlot,
    RelocalizationSession,
    SessionResult,
    StampedTransform,
)
from mickey_ros.utils.images import ImageError

THROTTLE_S = 5.0  # seconds between repeated warnings from one call site


class Received(NamedTuple):
    """Raw messages for the worker; decoding happens there, only for frames it keeps."""

    image: Any
    info: Any
    received_ns: int  # node (ROS) clock at receipt
    received_steady_ns: int  # time.monotonic_ns() at receipt


@dataclass
class Outputs:
    """Publishers and TF helpers the worker writes to (``pose``/``debug`` optional)."""

    relative: Any
    estimate: Any
    tf: Any  # tf2_ros.TransformBroadcaster
    pose: Any = None
    debug: Any = None
    tf_buffer: Any = None  # tf2_ros.Buffer, for map_to_odom


class FrameProcessor:
    """Owns the session and the worker thread of one configured node."""

    def __init__(self, node: Any, params: NodeParams, session: RelocalizationSession,
                 outputs: Outputs, types: messages.MessageTypes, keyframe_source: str | None):
        self.node, self.params, self.session = node, params, session
        self.outputs, self.types = outputs, types
        self.keyframe_source = keyframe_source
        self.lock = threading.Lock()  # session access: worker, timer, parameter updates
        self.live = LatestFrameSlot[Received]()
        self.reference = LatestFrameSlot[Received]()
        self.latency, self.e2e = health.LatencyStats(), health.LatencyStats()
        self.rate_skipped = 0
        self._bridge = CvBridge()
        self._capture_next = threading.Event()
        self._jumped_back = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_accepted_ns = 0
        self._log = node.get_logger()
        self.last_frame: Frame | None = None  # the newest decoded live frame (capture_keyframe)

    # ------------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        """Whether the worker thread runs (node active)."""
        return self._thread is not None

    def start(self) -> None:
        """Start the worker (on_activate)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mickey_worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker and drop pending frames (on_deactivate, shutdown)."""
        self._stop.set()  # the worker polls every 0.1 s; an inference in flight completes
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None
        self.live.clear()
        self.reference.clear()
        self._capture_next.clear()

    @property
    def library(self) -> LibrarySession | None:
        """The session in keyframe library mode, None in single-keyframe mode."""
        return self.session if isinstance(self.session, LibrarySession) else None

    def set_params(self, params: NodeParams) -> None:
        """Apply changed dynamic parameters (gate, covariance, rate limit, keyframe choice)."""
        with self.lock:
            self.session.set_config(params.session_config())
            if self.library is not None:
                self.library.set_options(LocalizerConfig.from_node_params(params))
            self.params = params

    def now_ns(self) -> int:
        """Node clock (sim time under replay)."""
        return self.node.get_clock().now().nanoseconds

    # ------------------------------------------------------------------ executor side
    def offer_live(self, image: Any, info: Any) -> None:
        """A live image + CameraInfo: keep it if the rate limit allows (replaces a waiting one)."""
        now_ns = self.now_ns()
        if info is None:
            self.bad_frame("no CameraInfo received yet on camera_info")
            return
        max_rate = self.params.input.max_rate_hz
        if max_rate > 0 and now_ns - self._last_accepted_ns < 1e9 / max_rate:
            self.rate_skipped += 1
            return
        self._last_accepted_ns = now_ns
        self.live.put(Received(image, info, now_ns, time.monotonic_ns()))

    def offer_reference(self, image: Any, info: Any) -> None:
        """A keyframe image + CameraInfo from the reference topics."""
        self.reference.put(Received(image, info, self.now_ns(), time.monotonic_ns()))

    def request_capture(self) -> None:
        """Make the next live frame the keyframe (~/capture_reference)."""
        self._capture_next.set()

    def clock_jumped_back(self) -> None:
        """Drop pending frames and clear TF now; the worker resets the session next.

        Clock jump callbacks must not block, so the session reset waits for the worker.
        """
        self.live.clear()
        self.reference.clear()
        if self.outputs.tf_buffer is not None:
            self.outputs.tf_buffer.clear()
        self._jumped_back.set()

    def rebroadcast(self) -> None:
        """Timer: re-send the last map->odom, future-dated."""
        with self.lock:
            transforms = self.session.rebroadcast(self.now_ns())
        if transforms:
            self._send_tf(transforms)

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        while not self._stop.is_set():
            if self._jumped_back.is_set():
                self._jumped_back.clear()
                self._reset_after_jump()
            live = self.live.take(timeout=0.1)
            reference = self.reference.take()  # a keyframe that came in meanwhile goes first
            if reference is not None:
                self._guarded(self._process_reference, reference)
            if live is not None:
                self._guarded(self._process_live, live)

    def _reset_after_jump(self) -> None:
        keep = (self.keyframe_source or "").startswith("file")  # a disk keyframe stays valid
        with self.lock:
            self.session.reset(keep_reference=keep)  # library: the track, never the library
            if not keep and self.library is None:
                self.keyframe_source = None

    def _guarded(self, step: Any, item: Received) -> None:
        """Last resort for bugs: log type and traceback, count, keep the node alive."""
        try:
            step(item)
        except Exception as err:  # noqa: BLE001 - nothing hidden: type + traceback are logged
            reason = f"unexpected {type(err).__name__}: {err}"
            self._log.error(f"{reason}; frame dropped\n{traceback.format_exc()}",
                            throttle_duration_sec=THROTTLE_S)
            self.bad_frame(reason, log=False)

    def bad_frame(self, reason: str, log: bool = True) -> None:
        """Count a frame that never reached the estimator, with a throttled warning."""
        if log:
            self._log.warning(f"frame dropped: {reason}", throttle_duration_sec=THROTTLE_S)
        with self.lock:
            self.session.reject(reason)

    def _decode(self, item: Received, where: str) -> Frame | None:
        """Messages -> Frame, or None (counted and warned) for a bad frame."""
        image, info = item.image, item.info
        try:
            intrinsics = messages.camera_info_to_intrinsics(info)
            messages.check_image_msg(image)
            if hasattr(image, "format"):  # CompressedImage: cv2.imdecode, as cv_bridge does
                rgb = messages.image_msg_to_rgb(image)
            else:
                rgb = self._cv_bridge_rgb(image)
            messages.check_image_size(rgb, intrinsics, where)
        except ImageError as err:
            self.bad_frame(str(err))
            return None
        return Frame(rgb, intrinsics.K, messages.stamp_to_ns(image.header.stamp),
                     image.header.frame_id)

    def _cv_bridge_rgb(self, image: Any) -> np.ndarray:
        try:
            return np.ascontiguousarray(self._bridge.imgmsg_to_cv2(image, desired_encoding="rgb8"))
        except CvBridgeError:
            # encodings cv_bridge cannot turn into rgb8 (e.g. 16UC1): rosbags-image decodes
            # them or raises ImageError with the reason
            return messages.image_msg_to_rgb(image)

    def _process_reference(self, item: Received) -> None:
        frame = self._decode(item, "reference image")
        if frame is not None:
            self.set_reference(frame, "topic reference/image")

    def set_reference(self, frame: Frame, source: str) -> bool:
        """Make ``frame`` the keyframe; False (warned, counted) if the estimator refuses it."""
        try:
            with self.lock:
                self.session.set_reference(frame)
                self.keyframe_source = source
        except ValueError as err:  # ImageError included
            self.bad_frame(f"keyframe from {source} rejected: {err}")
            return False
        H, W = frame.rgb.shape[:2]
        self._log.info(f"keyframe set from {source}: {W}x{H}, frame {frame.frame_id!r}")
        return True

    def _process_live(self, item: Received) -> None:
        frame = self._decode(item, "live image")
        if frame is None:
            return
        self.last_frame = frame
        if self._capture_next.is_set():
            self._capture_next.clear()
            self.set_reference(frame, "~/capture_reference")
            return
        out = self.params.output
        T_odom_camera = None
        if out.tf_mode == "map_to_odom":
            T_odom_camera = self._lookup(out.odom_frame, frame, out.tf_timeout_s)
        T_map_prior = self._map_prior(frame) if self.library is not None else None
        with self.lock:  # the age counts the wait for the lock as well
            now_ns = frame.stamp_ns + self._age_ns(item, frame)
            if self.library is None:
                result = self.session.process(frame, now_ns, T_odom_camera)
            else:
                result = self.library.process(frame, now_ns, T_odom_camera, T_map_prior)
        self.latency.add(result.inference_ms)
        self.e2e.add(result.e2e_ms)
        self._publish(result, frame)

    def _age_ns(self, item: Received, frame: Frame) -> int:
        """How old the frame is now, for ``e2e_ms``: stamp to receipt, then receipt to now.

        Receipt to now is measured on a steady clock. Stamp to receipt is on the ROS clock, and
        left out under sim time: a bag played at 5x advances that clock 5 s per second, and
        ``ros2 bag play --clock`` sets it to about the stamp anyway (issue 28).
        """
        waited_ns = time.monotonic_ns() - item.received_steady_ns
        if self.node.get_clock().ros_time_is_active:
            return waited_ns
        return item.received_ns - frame.stamp_ns + waited_ns

    def _lookup(self, parent: str, frame: Frame, timeout_s: float,
                warn: bool = True) -> np.ndarray | None:
        """``T_parent_camera`` (4, 4) from TF at the image stamp, or None (warned if ``warn``)."""
        try:
            tf = self.outputs.tf_buffer.lookup_transform(
                parent, frame.frame_id, Time(nanoseconds=frame.stamp_ns),
                timeout=Duration(seconds=timeout_s))
        except tf2_ros.TransformException as err:
            if warn:
                self._log.warning(f"no {parent} -> {frame.frame_id!r} at the image stamp: {err}",
                                  throttle_duration_sec=THROTTLE_S)
            return None
        return messages.transform_stamped_to_matrix(tf)

    def _map_prior(self, frame: Frame) -> np.ndarray | None:
        """The live camera's map pose from TF (e.g. AMCL's map -> odom), a hint: no wait.

        Not in ``map_to_odom`` mode: there map -> odom is this node's own output, which the
        session already carries forward by odometry (as replay does, so both agree).
        """
        if self.params.output.tf_mode == "map_to_odom":
            return None
        return self._lookup(self.params.output.map_frame, frame, 0.0, warn=False)

    def capture_keyframe(self) -> tuple[bool, str]:
        """Add the newest live frame at its TF map pose to the library (~/capture_keyframe).

        Returns:
            (success, the message for the service response; logged as well).
        """
        frame, out, library = self.last_frame, self.params.output, self.library
        if library is None:
            return False, ("single-keyframe mode: set keyframes.library to a library directory "
                           "(then cleanup + configure) to capture keyframes")
        if frame is None:
            return False, "no live frame received yet: a keyframe is the newest live frame"
        T_map_camera = self._lookup(out.map_frame, frame, out.tf_timeout_s, warn=False)
        if T_map_camera is None:
            return False, (f"no {out.map_frame} -> {frame.frame_id!r} transform in TF at the "
                           f"frame's stamp {frame.stamp_ns / 1e9:.3f} s: the keyframe needs the "
                           "camera's map pose (is a localiser publishing map -> odom?)")
        try:
            with self.lock:
                entry = library.capture(frame, T_map_camera)
        except (ValueError, OSError) as err:  # ImageError is a ValueError
            return False, f"keyframe not added: {type(err).__name__}: {err}"
        x, y, z = T_map_camera[:3, 3]
        message = (f"keyframe {entry.id} added to {library.localizer.library.root} at "
                   f"({x:.2f}, {y:.2f}, {z:.2f}) in {out.map_frame}: "
                   f"{len(library.localizer.library)} keyframes")
        self._log.info(message)
        return True, message

    # ------------------------------------------------------------------ outputs
    def _send_tf(self, transforms: list[StampedTransform]) -> None:
        self.outputs.tf.sendTransform([
            messages.transform_stamped_msg(self.types, t.T_parent_child, t.stamp_ns, t.parent,
                                           t.child)
            for t in transforms
        ])

    def _publish(self, result: SessionResult, frame: Frame) -> None:
        types, out = self.types, self.outputs
        out.estimate.publish(messages.relative_pose_msg(types, result))
        if not result.publish:
            self._log.warning(f"pose not published: {result.gate_reason}",
                              throttle_duration_sec=THROTTLE_S)
            return
        rel = result.relative
        out.relative.publish(messages.transform_stamped_msg(
            types, rel.T_parent_child, rel.stamp_ns, rel.parent, rel.child))
        if result.transforms:
            self._send_tf(result.transforms)
        if result.tf_error:
            self._log.warning(result.tf_error, throttle_duration_sec=THROTTLE_S)
        if out.pose is not None:
            out.pose.publish(messages.pose_with_covariance_msg(types, result))
        matches, reference = result.estimate.matches, self.session.reference
        if out.debug is not None and matches and reference is not None:
            canvas = health.matches_image(reference.rgb, frame.rgb, matches["kpts_ref"],
                                          matches["kpts_query"])
            out.debug.publish(messages.rgb_to_image_msg(types, canvas, frame.stamp_ns,
                                                        frame.frame_id))

    # ------------------------------------------------------------------ diagnostics
    def keyframe_entry(self) -> health.DiagnosticEntry:
        """Keyframe presence and age; in library mode the library and the keyframe last used."""
        if self.library is not None:
            lib = self.library.localizer.library
            return health.library_entry(str(lib.root), len(lib), len(lib.manifest.keyframes),
                                        self.library.last)
        reference = self.session.reference
        if reference is None:
            return health.keyframe_entry(None, None, None)
        age_s = self.session.keyframe_age_s(self.now_ns())
        return health.keyframe_entry(reference.frame_id, age_s, self.keyframe_source)

    def quality_entry(self) -> health.DiagnosticEntry:
        """Pose quality and every frame counter."""
        entry = health.quality_entry(self.session.stats, self.live.dropped,
                                     self.session.config.min_confidence)
        entry.values["skipped_by_max_rate"] = str(self.rate_skipped)
        return entry
