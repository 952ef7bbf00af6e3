"""Offline replay of a rosbag2 recording: what the node would have published, and how good it was.

``main(cfg, bag, out) -> Path`` (the hloc way) reads the live camera, its CameraInfo, the keyframe
and TF from a recording, runs the same ``RelocalizationSession`` the node runs and writes the
node's outputs into a new bag through the same ``messages`` code, so replay and node cannot
drift. With ground-truth TF in the bag it also scores every pose; ``replay`` returns the records
and summary for callers that want more than the path (the CLI, the demo, tests).

Time: outputs carry the image stamps; each output message is logged at its image stamp; the
``e2e_ms`` latency is decode + inference (what the node sees under ``ros2 bag play --clock``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mickey_ros.bags.reader import BagReader, ReadIssues
from mickey_ros.estimator.result import PoseEstimator
from mickey_ros.keyframes.localizer import LocalizerConfig
from mickey_ros.keyframes.session import open_library_session
from mickey_ros.relocalization.params import NodeParams, build_estimator
from mickey_ros.relocalization.session import Frame, RelocalizationSession, SessionResult
from mickey_ros.replay.replay_io import (
    IMAGE_TYPES,
    CameraInfos,
    GroundTruth,
    OutputWriter,
    decode_frame,
    default_info_topic,
    load_reference_image,
)
from mickey_ros.bags.tf_buffer import TfBuffer, TfLookupError
from mickey_ros.replay.trajectory_metrics import (
    FrameRecord,
    format_summary,
    partial_note,
    plot_report,
    pose_errors,
    summarize,
    write_csv,
    write_tum,
)
from mickey_ros.utils.config import config_to_dict
from mickey_ros.utils.images import ImageError
from mickey_ros.utils.outputs import discard_staging, publish_directory, staging_path

log = logging.getLogger(__name__)
STORAGES = ("sqlite3", "mcap")


@dataclass(frozen=True)
class ReplayConfig:
    """What to read from the bag, which node parameters to replay with and what to write.

    Exactly one keyframe source is set: ``reference_topic``, ``reference_frame_index`` (>= 0) or
    ``reference_image``. ``node`` is the node's parameter schema (e.g. from
    ``config/relocalize.yaml``): model, solver, tf_mode, frames and the quality gate.
    """

    camera_topic: str = "/camera/image_raw"  # sensor_msgs/Image or CompressedImage
    camera_info_topic: str = ""  # '' = <camera namespace>/camera_info (image_pipeline layout)
    reference_topic: str = ""  # keyframe image topic (latched reference/image on the robot)
    reference_camera_info_topic: str = ""  # '' = derived from reference_topic like camera_info
    reference_frame_index: int = -1  # use the N-th live frame as keyframe (-1 = off)
    reference_image: str = ""  # keyframe image file ('' = off)
    reference_intrinsics: tuple[float, ...] = ()  # fx fy cx cy of reference_image ('' = live K)
    keyframes: str = ""  # keyframe library directory: library mode (docs/keyframes.md; '' = off)
    keyframes_options: LocalizerConfig = field(default_factory=LocalizerConfig)  # library mode
    every: int = 1  # process every N-th live frame
    max_frames: int = 0  # stop after this many processed frames (0 = all)
    node: NodeParams = field(default_factory=NodeParams)  # the node's parameters
    namespace: str = ""  # node namespace: output topics are /<ns>/<node_name>/...
    node_name: str = "mickey_relocalizer"  # default of relocalize.launch.py
    storage: str = "sqlite3"  # output bag storage: sqlite3 | mcap
    overwrite: bool = False  # replace an existing output bag
    ground_truth_tf: bool = False  # score poses against TF (world -> camera) in the bag
    world_frame: str = "odom"  # fixed frame of the ground-truth TF
    camera_frame: str = ""  # camera frame of the ground truth ('' = image header frame_id)
    tum: str = ""  # TUM trajectory path ('' = none); ground truth goes to <stem>.gt.txt
    csv: str = ""  # per-frame CSV path ('' = none)
    plot: str = ""  # PNG report path ('' = none; needs ground_truth_tf for the error panels)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        sources = [bool(self.reference_topic), self.reference_frame_index >= 0,
                   bool(self.reference_image), bool(self.keyframes)]
        if sum(sources) != 1:
            raise ValueError(
                "choose exactly one keyframe source: reference_topic (--reference-topic), "
                "reference_frame_index (--reference-frame-index), reference_image "
                f"(--reference-image) or keyframes (--keyframes); got {sum(sources)}"
            )
        if self.every < 1 or self.max_frames < 0:
            raise ValueError(f"every must be >= 1 and max_frames >= 0, got {self.every}, "
                             f"{self.max_frames}")
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {self.storage!r}")
        if self.reference_intrinsics and len(self.reference_intrinsics) != 4:
            raise ValueError(f"reference_intrinsics must be fx fy cx cy, got "
                             f"{list(self.reference_intrinsics)}")
        self.node.validate()


@dataclass
class ReplayResult:
    """Everything a replay produced."""

    out_bag: Path
    records: list[FrameRecord]
    summary: dict[str, Any]
    read_issues: ReadIssues  # undecodable messages, truncated file
    frame_issues: ReadIssues  # frames that never reached the estimator (image, CameraInfo)
    tf_issues: ReadIssues  # TF lookups that failed (ground truth, map_to_odom)
    files: dict[str, Path] = field(default_factory=dict)
    interrupted: bool = False
    fps: float = 0.0
    model: str = ""  # which weights produced the poses (the estimator's model_name)

    def report(self) -> str:
        """The text the CLI prints."""
        lines = [f"model: {self.model}"] if self.model else []
        lines.append(f"output bag: {self.out_bag}" + (" (interrupted: partial)"
                                                       if self.interrupted else ""))
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        lines.append(format_summary(self.summary) + f"\nspeed: {self.fps:.2f} frames/s")
        for title, issues in (("bag", self.read_issues), ("frames", self.frame_issues),
                              ("tf", self.tf_issues)):
            if issues.count or issues.stopped:
                lines.append(f"{title}: {issues.summary()}")
        return "\n".join(lines)


def _recording(bag: Path) -> Path:
    """The recording ``bag`` names: its rosbag2 directory for a storage file inside one."""
    bag = bag.resolve()  # '.' inside a bag directory names that directory
    if bag.is_file() and (bag.parent / "metadata.yaml").is_file():
        return bag.parent
    return bag


def default_output(cfg: ReplayConfig, bag: Path) -> Path:
    """``<recording>-replay-<model>-<tf_mode>`` beside the input recording, or the first free one.

    Beside, never inside: for a ``.mcap``/``.db3`` file of a rosbag2 directory the output goes
    next to that directory, not into it. If that bag exists (an earlier replay) and
    ``cfg.overwrite`` is off, the first free ``<name>-2``, ``<name>-3``, ... is chosen, so a
    second replay never collides.
    """
    model = cfg.node.model
    tag = Path(model.checkpoint).stem if model.checkpoint else (model.config or "custom")
    recording = _recording(bag)
    stem = recording.name.removesuffix(".mcap").removesuffix(".db3")
    out = recording.parent / f"{stem}-replay-{tag}-{cfg.node.output.tf_mode}"
    number = 2
    while not cfg.overwrite and out.exists():
        out = out.with_name(f"{stem}-replay-{tag}-{cfg.node.output.tf_mode}-{number}")
        number += 1
    return out


class _Replayer:
    """One replay run: bag in, session, outputs and records out."""

    def __init__(self, cfg: ReplayConfig, bag: BagReader) -> None:
        self.cfg, self.bag = cfg, bag
        self.session: RelocalizationSession  # set by start_session, once the inputs are known
        self.frame_issues = ReadIssues("frame(s) never reached the estimator")
        self.tf_issues = ReadIssues("TF lookup(s) failed")
        self.records: list[FrameRecord] = []
        self.tf = TfBuffer()
        self.gt: GroundTruth | None = None
        self.infos: dict[str, CameraInfos] = {}
        self.decode_ns = 0  # decode time of the last frame, part of the e2e latency

    # ------------------------------------------------------------------ inputs
    def resolve_topics(self) -> None:
        cfg, bag = self.cfg, self.bag
        bag.require(cfg.camera_topic, IMAGE_TYPES, "camera")
        slop = {cfg.camera_topic: cfg.node.input.sync_slop_s}
        topics = {cfg.camera_topic: cfg.camera_info_topic or default_info_topic(cfg.camera_topic)}
        if cfg.reference_topic:
            bag.require(cfg.reference_topic, IMAGE_TYPES, "reference")
            topics[cfg.reference_topic] = (cfg.reference_camera_info_topic
                                           or default_info_topic(cfg.reference_topic))
            slop[cfg.reference_topic] = cfg.node.reference.sync_slop_s
        for image_topic, info_topic in topics.items():
            bag.require(info_topic, ("sensor_msgs/msg/CameraInfo",), f"CameraInfo of {image_topic}")
            self.infos[image_topic] = CameraInfos(info_topic, cfg.node.input.camera_info_mode,
                                                  slop[image_topic])

    def load_side_data(self) -> None:
        """CameraInfo and TF first, so images can be paired by stamp and TF interpolated."""
        by_topic = {ci.topic: ci for ci in self.infos.values()}
        tf_topics = []
        if self.cfg.ground_truth_tf or self.cfg.node.output.tf_mode == "map_to_odom":
            tf_topics = [t for t in ("/tf", "/tf_static") if t in self.bag.topics]
            if not tf_topics:
                self.bag.require("/tf", ("tf2_msgs/msg/TFMessage",), "TF")
        for m in self.bag.messages([*by_topic, *tf_topics]):
            if m.topic in by_topic:
                by_topic[m.topic].add(m.log_time_ns, m.msg)
                continue
            try:
                self.tf.add_tf_message(m.msg, static=m.topic == "/tf_static")
            except ValueError as err:
                self.bag.issues.add(f"{m.topic} @ {m.log_time_ns / 1e9:.3f} s", str(err))
        if self.cfg.ground_truth_tf:
            self._check_ground_truth_frames()
            self.gt = GroundTruth(self.tf, self.cfg.world_frame, self.cfg.camera_frame)
            if self.cfg.keyframes:  # library poses are in the map: the world frame is the map
                self.gt.T_world_ref = np.eye(4)

    def _check_ground_truth_frames(self) -> None:
        """Refuse a world/camera frame the recorded TF never names, before any frame is run."""
        known = self.tf.frames
        for field_name, flag, frame in (("world_frame", "--world", self.cfg.world_frame),
                                        ("camera_frame", "--camera-frame",
                                         self.cfg.camera_frame)):
            if frame and frame.lstrip("/") not in known:
                raise ValueError(
                    f"ground-truth {field_name} {frame!r} ({flag}) is not in the bag's TF; "
                    f"its frames are {sorted(known)}; pass one of them")

    def start_session(self, estimator: PoseEstimator | None) -> None:
        """Load the model (after the bag was checked: a wrong topic fails before a long load)."""
        estimator = estimator or build_estimator(self.cfg.node, warn=log.warning)
        if self.cfg.keyframes:
            self.session = open_library_session(self.cfg.keyframes, estimator, self.cfg.node,
                                                self.cfg.keyframes_options, log.warning)
            return
        self.session = RelocalizationSession(estimator, self.cfg.node.session_config())

    def frame(self, m: Any) -> Frame | None:
        """Decoded frame of a bag image message, or None (counted) when unusable."""
        start = time.perf_counter()
        try:
            return decode_frame(m.msg, self.infos[m.topic], m.log_time_ns)
        except ImageError as err:
            where = f"{m.topic} @ {m.log_time_ns / 1e9:.3f} s"
            self.frame_issues.add(where, str(err))
            self.session.reject(str(err))
            return None
        finally:
            self.decode_ns = int((time.perf_counter() - start) * 1e9)

    def set_reference(self, frame: Frame, source: str) -> bool:
        """Make ``frame`` the keyframe; False (counted, as the node does) if it is refused."""
        try:
            self.session.set_reference(frame)
        except ValueError as err:  # ImageError included: the estimator refuses image or K
            reason = f"keyframe from {source} rejected: {err}"
            self.frame_issues.add(f"keyframe @ {frame.stamp_ns / 1e9:.3f} s", reason)
            self.session.reject(reason)
            return False
        if self.gt is not None:
            reason = self.gt.set_reference(frame)
            if reason:
                self.tf_issues.add("reference keyframe", reason)
        return True

    def reference_from_frames(self) -> None:
        """The ``reference_frame_index``-th decodable live frame becomes the keyframe.

        A look-ahead pass: damage is counted by the main pass, which reads these frames again.
        """
        index = 0
        for m in self.bag.messages([self.cfg.camera_topic], report=False):
            try:
                frame = decode_frame(m.msg, self.infos[m.topic], m.log_time_ns)
            except ImageError:
                continue
            if index == self.cfg.reference_frame_index:
                if not self.set_reference(frame, f"live frame {index}"):
                    raise ValueError(self.frame_issues.examples[-1])
                return
            index += 1
        raise ValueError(f"reference_frame_index {self.cfg.reference_frame_index} is beyond the "
                         f"{index} decodable frames of {self.cfg.camera_topic}")

    # ------------------------------------------------------------------ processing
    def process(self, frame: Frame, out: OutputWriter) -> None:
        T_odom_camera = None
        if self.cfg.node.output.tf_mode == "map_to_odom":
            try:
                T_odom_camera = self.tf.lookup(self.session.config.odom_frame, frame.frame_id,
                                               frame.stamp_ns)
            except TfLookupError:
                pass  # the session reports it as tf_error and skips map->odom, as the node does
        out.rebroadcast_until(frame.stamp_ns, self.session)
        result = self.session.process(frame, now_ns=frame.stamp_ns + self.decode_ns,
                                      T_odom_camera=T_odom_camera)
        if result.tf_error:
            self.tf_issues.add(f"frame @ {frame.stamp_ns / 1e9:.3f} s", result.tf_error)
        out.write_result(result, self.session, frame)
        self.records.append(self.record(frame, result))

    def record(self, frame: Frame, result: SessionResult) -> FrameRecord:
        est = result.estimate
        rec = FrameRecord(
            stamp_ns=result.stamp_ns, valid=result.has_pose, published=result.publish,
            T_ref_query=(result.pose if self.cfg.keyframes else result.relative).T_parent_child
            if result.has_pose else None,  # library mode: the live camera in the map
            confidence=float(est.confidence), inlier_ratio=float(est.inlier_ratio),
            num_inliers=int(est.num_inliers), inference_ms=result.inference_ms,
            e2e_ms=result.e2e_ms, reason=result.status, keyframe=result.keyframe_id,
        )
        if result.keyframe_id:  # library mode; the CSV leaves the column empty otherwise
            rec.runner_up_confidence = result.runner_up_confidence
        if self.gt is not None:
            T_gt, reason = self.gt.relative(frame)
            if reason:
                self.tf_issues.add(f"frame @ {frame.stamp_ns / 1e9:.3f} s", reason)
            rec.T_ref_query_gt = T_gt
            if T_gt is not None and rec.T_ref_query is not None:
                rec.t_err_m, rec.r_err_deg = pose_errors(rec.T_ref_query, T_gt)
        return rec

    def run(self, out: OutputWriter) -> bool:
        """Process the live frames (and keyframe messages); False when interrupted."""
        from tqdm import tqdm

        cfg = self.cfg
        total = self.bag.topics[cfg.camera_topic].count
        topics = [cfg.camera_topic] + ([cfg.reference_topic] if cfg.reference_topic else [])
        bar = tqdm(total=total, unit="frame", desc="replay", disable=not cfg.progress)
        seen = 0
        try:
            for m in self.bag.messages(topics):
                if m.topic == cfg.reference_topic and m.topic != cfg.camera_topic:
                    frame = self.frame(m)
                    if frame is not None:
                        self.set_reference(frame, f"topic {m.topic}")
                    continue
                seen += 1
                bar.update()
                if (seen - 1) % cfg.every:
                    continue
                frame = self.frame(m)
                if frame is not None:
                    self.process(frame, out)
                if cfg.max_frames and len(self.records) >= cfg.max_frames:
                    break
        except KeyboardInterrupt:
            return False
        finally:
            bar.close()
        return True


def _is_bag(path: Path) -> bool:
    return (path / "metadata.yaml").is_file()


def _check_output(cfg: ReplayConfig, out: Path) -> None:
    """Before the work: an existing ``out`` is replaced (at the end) only with ``overwrite``."""
    if not out.exists():
        return
    if not cfg.overwrite:
        raise FileExistsError(f"output bag {out} exists; remove it or pass --overwrite")
    if not _is_bag(out):
        raise FileExistsError(f"{out} exists and is not a rosbag2 directory; not overwriting it")


def _publish(cfg: ReplayConfig, staging: Path, out: Path, default: bool, bag: Path) -> Path:
    """Move the closed output bag into place; a default name taken meanwhile gets the next one."""
    try:
        return publish_directory(staging, out, replace=cfg.overwrite, replaceable=_is_bag)
    except FileExistsError:
        if not default or cfg.overwrite:
            raise
        return publish_directory(staging, default_output(cfg, bag), replaceable=_is_bag)


def _write_files(cfg: ReplayConfig, result: ReplayResult, title: str) -> None:
    records, has_gt = result.records, any(r.T_ref_query_gt is not None for r in result.records)
    if cfg.tum:
        result.files["tum"] = write_tum(Path(cfg.tum), records)
        if has_gt:
            gt_path = Path(cfg.tum).with_suffix(".gt.txt")
            result.files["tum ground truth"] = write_tum(gt_path, records, ground_truth=True)
    if cfg.csv:
        result.files["csv"] = write_csv(Path(cfg.csv), records)
    if cfg.plot:
        partial = partial_note(len(records), result.interrupted, cfg.max_frames,
                               result.read_issues.stopped)
        result.files["plot"] = plot_report(Path(cfg.plot), records, title,
                                           cfg.node.gate.min_confidence, partial)


def replay(
    cfg: ReplayConfig, bag: Path, out: Path | None = None, estimator: PoseEstimator | None = None
) -> ReplayResult:
    """Replay ``bag`` through a relocalisation session; see ``main``. Returns everything made."""
    default = out is None
    bag, out = Path(bag), Path(out) if out is not None else default_output(cfg, Path(bag))
    log.info("replay %s -> %s with %s", bag, out, config_to_dict(cfg))
    _check_output(cfg, out)
    staging = staging_path(out)  # unique to this process: concurrent replays never share it
    with BagReader(bag) as reader:
        run = _Replayer(cfg, reader)
        run.resolve_topics()
        run.load_side_data()
        run.start_session(estimator)
        if cfg.reference_image:
            keyframe = load_reference_image(
                cfg.reference_image, cfg.reference_intrinsics, run.infos[cfg.camera_topic],
                reader.start_time_ns, cfg.node.output.reference_frame)
            if not run.set_reference(keyframe, f"file {cfg.reference_image}"):
                raise ValueError(run.frame_issues.examples[-1])
        elif cfg.reference_frame_index >= 0:
            run.reference_from_frames()
        start = time.perf_counter()
        try:
            with OutputWriter(staging, cfg, reader.default_typestore,
                              reader.start_time_ns) as writer:
                writer.write_anchor(run.session)
                finished = run.run(writer)
        except BaseException:
            discard_staging(staging)  # nothing half-written under any name
            raise
        elapsed = time.perf_counter() - start
    out = _publish(cfg, staging, out, default, bag)  # closed: complete, or partial after Ctrl-C
    result = ReplayResult(
        out_bag=out, records=run.records, summary=summarize(run.records),
        read_issues=reader.issues, frame_issues=run.frame_issues, tf_issues=run.tf_issues,
        interrupted=not finished, fps=len(run.records) / elapsed if elapsed > 0 else 0.0,
        model=getattr(run.session.estimator, "model_name", "custom estimator"),
    )
    _write_files(cfg, result, f"mickey-ros replay of {bag.name} (tf_mode "
                 f"{cfg.node.output.tf_mode}), model: {result.model}")
    return result


def main(
    cfg: ReplayConfig, bag: Path, out: Path | None = None, estimator: PoseEstimator | None = None
) -> Path:
    """Replay ``bag`` and write the node's outputs to the bag ``out``; returns ``out``.

    Args:
        cfg: topics, keyframe source, node parameters and the extra outputs.
        bag: rosbag2 directory (sqlite3 or MCAP) or bare ``.mcap`` file.
        out: output rosbag2 directory; None = ``default_output(cfg, bag)``.
        estimator: any ``PoseEstimator``; None builds the one ``cfg.node.model`` names.

    Raises:
        BagError: unreadable bag or missing topic (the message lists the bag's topics).
        FileExistsError: ``out`` exists and ``cfg.overwrite`` is off.
    """
    return replay(cfg, bag, out, estimator).out_bag
