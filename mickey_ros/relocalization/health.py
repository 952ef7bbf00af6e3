"""What the node reports about itself, ROS-free: input rates, latency, diagnostics, debug image.

The node turns each ``DiagnosticEntry`` into a ``diagnostic_msgs/DiagnosticStatus`` through
diagnostic_updater; keeping the levels and messages here lets unit tests check them without ROS
(e.g. WARN when an input topic has publishers but no data arrives, the classic QoS mismatch).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mickey_ros.relocalization.session import SessionStats

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


@dataclass
class DiagnosticEntry:
    """One diagnostic status: level (OK/WARN/ERROR), one-line message, key/value details."""

    name: str
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


class RateMeter:
    """Message rate over a sliding time window of receive times in ns.

    The node ticks it with ``time.monotonic_ns()``: under sim time at another playback rate the
    ROS clock is not seconds, and it moves in /clock steps (issue 28).
    """

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_ns = int(window_s * 1e9)
        self._times: collections.deque[int] = collections.deque()
        self.count = 0
        self.last_ns: int | None = None

    def tick(self, now_ns: int) -> None:
        """Record one message received at ``now_ns``."""
        if self.last_ns is not None and now_ns < self.last_ns:  # clock jumped back (bag loop)
            self._times.clear()  # stamps from the "future" would never be trimmed
        self._times.append(now_ns)
        self.count += 1
        self.last_ns = now_ns
        self._trim(now_ns)

    def _trim(self, now_ns: int) -> None:
        while self._times and self._times[0] < now_ns - self.window_ns:
            self._times.popleft()

    def rate_hz(self, now_ns: int) -> float:
        """Messages per second over the window ending at ``now_ns``.

        >>> meter = RateMeter(window_s=1.0)
        >>> for k in range(11): meter.tick(k * 100_000_000)
        >>> round(meter.rate_hz(1_000_000_000), 6)
        10.0
        """
        self._trim(now_ns)
        span_s = (self._times[-1] - self._times[0]) / 1e9 if self._times else 0.0
        if len(self._times) < 2 or span_s <= 0:  # one stamp for all (sim time between ticks)
            return 0.0
        return (len(self._times) - 1) / span_s

    def silent_for_s(self, now_ns: int) -> float | None:
        """Seconds since the last message, None if none ever arrived."""
        return None if self.last_ns is None else (now_ns - self.last_ns) / 1e9


class LatencyStats:
    """Mean and max of the last ``window`` latencies, in milliseconds."""

    def __init__(self, window: int = 50) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, ms: float) -> None:
        """Record one latency."""
        self._values.append(float(ms))

    @property
    def mean_ms(self) -> float:
        """Mean over the window (0 when empty)."""
        return float(np.mean(self._values)) if self._values else 0.0

    @property
    def max_ms(self) -> float:
        """Max over the window (0 when empty)."""
        return max(self._values, default=0.0)


def input_entry(
    name: str, topic: str, meter: RateMeter, publishers: int, now_ns: int, timeout_s: float
) -> DiagnosticEntry:
    """Input topic health; WARN for "publishers but no data" (QoS mismatch) and for silence."""
    rate = meter.rate_hz(now_ns)
    silent = meter.silent_for_s(now_ns)
    values = {"topic": topic, "publishers": str(publishers), "rate_hz": f"{rate:.2f}",
              "received": str(meter.count)}
    if publishers == 0:
        return DiagnosticEntry(name, WARN, f"no publisher on {topic}; check the remapping", values)
    if silent is None or silent > timeout_s:
        since = "ever" if silent is None else f"for {silent:.1f} s"
        return DiagnosticEntry(
            name, WARN,
            f"{publishers} publisher(s) on {topic} but no data {since}: QoS mismatch "
            "(reliability/durability) or the publisher stopped; see `ros2 topic info -v`", values,
        )
    return DiagnosticEntry(name, OK, f"{rate:.1f} Hz", values)


def inference_entry(
    latency: LatencyStats, e2e: LatencyStats, device: str, gpu_memory_mb: dict[str, float]
) -> DiagnosticEntry:
    """Inference and end-to-end latency, device and GPU memory."""
    values = {"device": device, "inference_mean_ms": f"{latency.mean_ms:.1f}",
              "inference_max_ms": f"{latency.max_ms:.1f}", "e2e_mean_ms": f"{e2e.mean_ms:.1f}"}
    values.update({f"gpu_{k}_mb": f"{v:.0f}" for k, v in gpu_memory_mb.items()})
    return DiagnosticEntry("inference", OK, f"{latency.mean_ms:.0f} ms mean on {device}", values)


def keyframe_entry(
    reference_frame_id: str | None, age_s: float | None, source: str | None
) -> DiagnosticEntry:
    """Keyframe presence and age; WARN without one (no pose can be computed)."""
    if reference_frame_id is None:
        return DiagnosticEntry(
            "reference keyframe", WARN,
            "no keyframe: publish reference/image + reference/camera_info (latched), call "
            "~/capture_reference or set reference.image_path",
        )
    values = {"frame_id": reference_frame_id, "age_s": f"{age_s:.1f}", "source": source or ""}
    message = f"set from {source}, {age_s:.0f} s old"
    return DiagnosticEntry("reference keyframe", OK, message, values)


def library_entry(root: str, usable: int, on_disk: int, last: Any = None) -> DiagnosticEntry:
    """Keyframe library mode: size, skipped keyframes and the keyframe the last frame used.

    Args:
        root: the library directory.
        usable: keyframes loaded; ``on_disk``: keyframes its manifest names.
        last: the last frame's ``mickey_ros.keyframes.Localization`` (None before one).
    """
    values = {"library": root, "keyframes": str(usable), "skipped": str(on_disk - usable),
              "keyframe": "", "selection": "", "confidence": "", "runner_up": "",
              "runner_up_confidence": ""}
    if last is not None and last.keyframe is not None:
        values.update(keyframe=last.keyframe.id, selection=last.mode,
                      confidence=f"{last.estimate.confidence:.1f}", runner_up=last.runner_up_id,
                      runner_up_confidence=f"{last.runner_up_confidence:.1f}")
    name = "reference keyframe"
    if usable == 0:
        return DiagnosticEntry(name, ERROR, f"keyframe library {root} has no usable keyframe: "
                               "build one (mickey-ros keyframes build) or call "
                               "~/capture_keyframe", values)
    used = (f"; last frame: {values['keyframe']} ({values['selection']}), runner-up "
            f"{values['runner_up'] or '-'} at {values['runner_up_confidence'] or '0'}"
            if values["keyframe"] else "")
    if usable < on_disk:
        return DiagnosticEntry(name, WARN, f"library {root}: {on_disk - usable} of {on_disk} "
                               "keyframes skipped (missing or corrupt files, see the log)" + used,
                               values)
    return DiagnosticEntry(name, OK, f"library {root}: {usable} keyframes" + used, values)


def quality_entry(stats: SessionStats, dropped: int, min_confidence: float) -> DiagnosticEntry:
    """Pose quality and frame counters; WARN when the last processed frame was not published."""
    values = {
        "processed": str(stats.processed), "published": str(stats.published),
        "rejected": str(stats.rejected), "bad_frames": str(stats.bad_frames),
        "dropped_while_busy": str(dropped), "last_inlier_ratio": f"{stats.last_inlier_ratio:.3f}",
        "min_confidence": f"{min_confidence:.3f}", "last_reason": stats.last_reason or "",
        "resets": str(stats.resets),
    }
    if stats.processed == 0:
        return DiagnosticEntry("pose quality", OK, "no frame processed yet", values)
    if stats.last_published:
        return DiagnosticEntry(
            "pose quality", OK, f"inlier ratio {stats.last_inlier_ratio:.2f}", values
        )
    return DiagnosticEntry("pose quality", WARN, f"last pose rejected: {stats.last_reason}", values)


def matches_image(
    rgb_ref: np.ndarray, rgb_query: np.ndarray, kpts_ref: np.ndarray, kpts_query: np.ndarray,
    max_lines: int = 200,
) -> np.ndarray:
    """Keyframe and live frame side by side with inlier matches drawn (RGB uint8).

    Args:
        rgb_ref: (H0, W0, 3) keyframe.
        rgb_query: (H1, W1, 3) live frame.
        kpts_ref: (M, 2) pixel positions in the keyframe.
        kpts_query: (M, 2) matching pixel positions in the live frame.
        max_lines: draw at most this many matches (evenly subsampled, deterministic).
    """
    import cv2

    H = max(rgb_ref.shape[0], rgb_query.shape[0])
    canvas = np.zeros((H, rgb_ref.shape[1] + rgb_query.shape[1], 3), dtype=np.uint8)
    canvas[: rgb_ref.shape[0], : rgb_ref.shape[1]] = rgb_ref
    canvas[: rgb_query.shape[0], rgb_ref.shape[1]:] = rgb_query
    idx = np.linspace(0, len(kpts_ref) - 1, min(max_lines, len(kpts_ref))).astype(int)
    for (x0, y0), (x1, y1) in zip(np.asarray(kpts_ref)[idx], np.asarray(kpts_query)[idx]):
        p0 = (int(round(x0)), int(round(y0)))
        p1 = (int(round(x1)) + rgb_ref.shape[1], int(round(y1)))
        cv2.line(canvas, p0, p1, (0, 255, 0), 1, cv2.LINE_AA)
    return canvas
