#!/usr/bin/env python3
"""Soak benchmark (issue 9): hours of robot life compressed into minutes, watching memory.

Replays ``--frames`` synthetic camera frames through the node's ROS-free path with the REAL
network (``mickey_tiny``, random weights, one CPU thread, a small image):
ROS ``Image``/``CameraInfo`` messages -> ``LatestFrameSlot`` (two frames offered per frame
processed, so half are dropped as when the GPU is busy) -> decoding (``messages``) ->
``RelocalizationSession`` (``tf_mode: map_to_odom``) -> every output message and diagnostics
entry the node builds. Faults are mixed in on a schedule: a truncated image every 500 frames, an
injected GPU out-of-memory every 700 estimator calls, a new keyframe every 1,000 frames and a
clock jump back (bag loop: session reset, keyframe re-captured) every 2,500 frames.

It samples the process RSS every ``--sample-every`` frames (psutil if installed, else
/proc/self/status) and the number of live Python objects, and checks that every queue and cache
stays bounded. Pass: RSS growth after warm-up below ``--bound-mb`` and bounded containers
(exit code 0), else exit code 1. Not a test: the figures go into docs/reliability.md.

    python scripts/soak.py --frames 10000 --plot docs/img/soak_rss.png
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rosbags.typesys import Stores, get_typestore

from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
from mickey_ros.geometry.ransac import SolverConfig
from mickey_ros.model.config import mickey_tiny
from mickey_ros.relocalization import health, messages
from mickey_ros.relocalization.session import (
    Frame,
    LatestFrameSlot,
    RelocalizationSession,
    SessionConfig,
)
from mickey_ros.utils.images import ImageError

FRAME_PERIOD_NS = 10_000_000  # a 100 Hz camera
BAD_FRAME_EVERY, OOM_EVERY, KEYFRAME_EVERY, JUMP_EVERY = 500, 700, 1000, 2500


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("cannot read the RSS: install psutil")


class OomInjector:
    """Wraps an estimator; every ``every``-th ``estimate`` raises a CUDA out-of-memory error."""

    def __init__(self, estimator: RelativePoseEstimator, every: int) -> None:
        self.estimator, self.every, self.calls = estimator, every, 0

    def __getattr__(self, name: str):
        return getattr(self.estimator, name)

    def estimate(self, image: np.ndarray, K: np.ndarray):
        """The wrapped estimate, or the injected error on every ``every``-th call."""
        self.calls += 1
        if self.calls % self.every == 0:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by scripts/soak.py)")
        return self.estimator.estimate(image, K)


@dataclass
class Soak:
    """One run: the pipeline objects, counters and samples."""

    args: argparse.Namespace
    types: messages.MessageTypes = field(init=False)
    session: RelocalizationSession = field(init=False)
    slot: LatestFrameSlot = field(default_factory=LatestFrameSlot)
    rate: health.RateMeter = field(default_factory=health.RateMeter)
    latency: health.LatencyStats = field(default_factory=health.LatencyStats)
    samples: list[tuple[int, float, int]] = field(default_factory=list)  # frame, RSS, objects
    sizes: list[dict[str, int]] = field(default_factory=list)  # container sizes at each sample
    events: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.types = messages.MessageTypes.from_typestore(get_typestore(Stores.ROS2_JAZZY))
        solver = SolverConfig(it_matches=4, it_ransac=20, num_samples=16, num_refinements=2)
        estimator = RelativePoseEstimator.from_model_config(
            mickey_tiny(), EstimatorConfig(seed=self.args.seed, solver=solver))
        self.session = RelocalizationSession(OomInjector(estimator, OOM_EVERY),
                                             SessionConfig(tf_mode="map_to_odom"))
        size = self.args.size
        rng = np.random.default_rng(self.args.seed)
        self.textures = rng.integers(0, 256, (16, size, 2 * size, 3), dtype=np.uint8)
        self.K = np.array([[size, 0.0, size / 2], [0.0, size, size / 2], [0.0, 0.0, 1.0]])

    # ------------------------------------------------------------------ inputs
    def messages_for(self, k: int, stamp_ns: int) -> tuple[object, object]:
        """A camera moving over a texture: the k-th Image + CameraInfo pair."""
        size = self.args.size
        shift = (3 * k) % size
        rgb = self.textures[k % 16][:, shift : shift + size]
        image = messages.rgb_to_image_msg(self.types, rgb, stamp_ns, "camera_optical", "bgr8")
        info = messages.camera_info_msg(self.types, self.K, size, size, stamp_ns,
                                        "camera_optical")
        return image, info

    def decode(self, image: object, info: object) -> Frame | None:
        """Messages -> Frame as the node's worker does; a bad frame is counted, None."""
        try:
            intrinsics = messages.camera_info_to_intrinsics(info)
            rgb = messages.image_msg_to_rgb(image)
            messages.check_image_size(rgb, intrinsics, "live image")
        except ImageError as err:
            self.session.reject(str(err))
            self._count("bad frames")
            return None
        return Frame(rgb, intrinsics.K, messages.stamp_to_ns(image.header.stamp), "camera_optical")

    # ------------------------------------------------------------------ outputs
    def publish(self, result, now_ns: int) -> None:
        """Build every message the node would publish for ``result`` (then drop them)."""
        out = [messages.relative_pose_msg(self.types, result)]
        if result.publish:
            rel = result.relative
            out.append(messages.transform_stamped_msg(self.types, rel.T_parent_child,
                                                      rel.stamp_ns, rel.parent, rel.child))
            out.append(messages.pose_with_covariance_msg(self.types, result))
        edges = result.transforms + self.session.rebroadcast(now_ns)
        out.append(messages.tf_message(self.types, [messages.transform_stamped_msg(
            self.types, e.T_parent_child, e.stamp_ns, e.parent, e.child) for e in edges]))
        self.latency.add(result.inference_ms)

    def diagnostics(self, now_ns: int) -> list[health.DiagnosticEntry]:
        """The node's diagnostics entries (built, then dropped)."""
        reference = self.session.reference
        return [
            health.input_entry("input image", "image", self.rate, 1, now_ns, 3.0),
            health.inference_entry(self.latency, self.latency, "cpu", {}),
            health.keyframe_entry(reference.frame_id if reference else None,
                                  self.session.keyframe_age_s(now_ns), "soak"),
            health.quality_entry(self.session.stats, self.slot.dropped, 0.05),
        ]

    # ------------------------------------------------------------------ loop
    def _count(self, name: str) -> None:
        self.events[name] = self.events.get(name, 0) + 1

    def step(self, k: int, stamp_ns: int) -> None:
        """Offer two frames, process the newest (the other one is dropped)."""
        for offset in (0, FRAME_PERIOD_NS // 2):
            image, info = self.messages_for(k, stamp_ns + offset)
            if k % BAD_FRAME_EVERY == BAD_FRAME_EVERY - 1 and offset:
                image.data = image.data[:-7]  # a truncated message from a flaky link
            self.slot.put((image, info))
            self.rate.tick(stamp_ns + offset)
        frame = self.decode(*self.slot.take())
        if frame is None:
            return
        if self.session.reference is None or k % KEYFRAME_EVERY == 0:
            self.session.set_reference(frame)
            self._count("keyframes")
            return
        T_odom_camera = np.eye(4)
        T_odom_camera[0, 3] = 0.001 * k
        result = self.session.process(frame, now_ns=frame.stamp_ns, T_odom_camera=T_odom_camera)
        self.publish(result, frame.stamp_ns)
        if k % 100 == 0:
            self.diagnostics(frame.stamp_ns)

    def run(self) -> None:
        """All frames, with the clock jumping back every ``JUMP_EVERY`` frames."""
        from tqdm import tqdm

        stamp_ns = 1_700_000_000 * 10**9
        for k in tqdm(range(self.args.frames), unit="frame", desc="soak", mininterval=2.0):
            if k and k % JUMP_EVERY == 0:  # the bag loops: time jumps back 20 s
                stamp_ns -= 20 * 10**9
                self.session.reset()
                self.slot.clear()
                self._count("clock jumps")
            self.step(k, stamp_ns)
            stamp_ns += FRAME_PERIOD_NS
            if k % self.args.sample_every == 0 or k == self.args.frames - 1:
                self.samples.append((k, rss_mb(), len(gc.get_objects())
                                     if k % (5 * self.args.sample_every) == 0 else -1))
                self.sizes.append(self.container_sizes())

    def container_sizes(self) -> dict[str, int]:
        """Sizes of everything that could grow: the slot, meters, session and estimator state."""
        estimator = self.session.estimator.estimator
        sizes = {"slot items waiting": int(self.slot._item is not None),
                 "rate meter window": len(self.rate._times),
                 "latency window": len(self.latency._values),
                 "cached keyframes": int(estimator._reference is not None)}
        for name, value in vars(self.session).items():
            if isinstance(value, (list, dict, set, tuple)):
                sizes[f"session.{name}"] = len(value)
        return sizes


def container_limits() -> dict[str, int]:
    """Steady-state maximum of each container (a 5 s rate window at 200 offers/s)."""
    return {"slot items waiting": 1, "rate meter window": int(5 * 2e9 / FRAME_PERIOD_NS) + 1,
            "latency window": 50, "cached keyframes": 1}


def summarize(soak: Soak, seconds: float) -> dict:
    """Figures for docs/reliability.md; ``passed`` applies the bound."""
    args = soak.args
    frames = np.array([s[0] for s in soak.samples])
    rss = np.array([s[1] for s in soak.samples])
    after = frames >= args.warmup
    base = rss[after][0]
    objects_after = [n for f, _, n in soak.samples if n >= 0 and f >= args.warmup]
    slope = np.polyfit(frames[after], rss[after], 1)[0] * 1000 if after.sum() > 1 else 0.0
    stats = soak.session.stats
    growth = float(rss[after].max() - base)
    limits = container_limits()
    largest = {name: max(s.get(name, 0) for s in soak.sizes) for name in soak.sizes[-1]}
    over = {name: n for name, n in largest.items() if n > limits.get(name, 1)}
    return {
        "frames": args.frames, "offered": soak.slot.received, "dropped": soak.slot.dropped,
        "processed": stats.processed, "published": stats.published, "rejected": stats.rejected,
        "bad_frames": stats.bad_frames, "resets": stats.resets, "events": soak.events,
        "image": f"{args.size}x{args.size}", "seconds": round(seconds, 1),
        "ms_per_frame": round(1000 * seconds / args.frames, 2),
        "rss_start_mb": round(float(rss[0]), 1), "rss_after_warmup_mb": round(float(base), 1),
        "rss_end_mb": round(float(rss[-1]), 1), "rss_growth_after_warmup_mb": round(growth, 2),
        "rss_slope_mb_per_1000_frames": round(float(slope), 3),
        "python_objects_after_warmup": [min(objects_after), max(objects_after)]
        if objects_after else [],
        "containers_max": largest, "containers_limit": limits, "containers_over": over,
        "bound_mb": args.bound_mb, "memory_passed": bool(growth < args.bound_mb),
        "passed": bool(growth < args.bound_mb and not over),
    }


def plot(soak: Soak, summary: dict, path: Path) -> None:
    """PNG of RSS over frames with the warm-up, the bound and the clock jumps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [s[0] for s in soak.samples]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 5.5), dpi=110, sharex=True,
                                  gridspec_kw={"height_ratios": [3, 2]})
    ax.plot(frames, [s[1] for s in soak.samples], lw=1.2, label="RSS")
    base = summary["rss_after_warmup_mb"]
    ax.axhspan(base, base + soak.args.bound_mb, color="green", alpha=0.08,
               label=f"bound: +{soak.args.bound_mb:g} MB after warm-up")
    ax.set_ylabel("RSS [MB]")
    ax.set_title(f"soak: {summary['frames']} frames, mickey_tiny {summary['image']}, growth "
                 f"{summary['rss_growth_after_warmup_mb']:+.1f} MB after warm-up")
    for name in ("rate meter window", "latency window"):
        ax2.plot(frames, [s[name] for s in soak.sizes], lw=1.0, label=name)
    ax2.axhline(container_limits()["rate meter window"], color="C0", ls=":", lw=0.8,
                label="rate window steady size")
    ax2.set_ylabel("entries")
    ax2.set_xlabel("frame (orange: clock jumps back, session reset)")
    for axis in (ax, ax2):
        axis.axvline(soak.args.warmup, color="grey", ls="--", lw=0.8)
        for k in range(JUMP_EVERY, soak.args.frames, JUMP_EVERY):
            axis.axvline(k, color="orange", lw=0.6)
        axis.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames processed")
    parser.add_argument("--size", type=int, default=112, help="square image side, px (>= 98)")
    parser.add_argument("--sample-every", type=int, default=100, help="RSS sample period")
    parser.add_argument("--warmup", type=int, default=1000, help="frames before the baseline")
    parser.add_argument("--bound-mb", type=float, default=20.0, help="allowed RSS growth")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="PNG of RSS over frames")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit code 0 when memory stayed within the bound."""
    args = parse_args(argv)
    if args.warmup >= args.frames:
        print(f"--warmup ({args.warmup}) must be below --frames ({args.frames})", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    soak = Soak(args)
    start = time.perf_counter()
    soak.run()
    summary = summarize(soak, time.perf_counter() - start)
    summary["command"] = "python scripts/soak.py " + " ".join(sys.argv[1:] if argv is None
                                                              else argv)
    if args.plot:
        plot(soak, summary, args.plot)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print("PASS" if summary["passed"] else "FAIL: memory or a container grew", file=sys.stderr)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
