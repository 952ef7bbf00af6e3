"""Plain-rclpy driver of the installed ``relocalize_node`` (run by test_node_real_rclpy.py).

Runs with the ROS venv's python inside the caller's loopback-only network namespace, after
``source build-ros/<distro>/install/setup.bash``. Starts the node as its own process, drives it
over DDS and writes one JSON object ``{check: [ok, detail]}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
import traceback
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from mickey_ros.relocalization import messages
from mickey_ros.ros.interfaces import ros_message_types

NODE = "/mickey_relocalizer"
H, W = 168, 224
K = np.array([[200.0, 0.0, W / 2], [0.0, 200.0, H / 2], [0.0, 0.0, 1.0]])
OVERRIDES = {  # on top of config/relocalize.yaml, read by rcl's YAML parser
    "model.config": "mickey_tiny",  # random weights: frames, stamps and wiring, not accuracy
    "model.device": "cpu",
    "model.warmup_iterations": "0",
    "solver.num_samples": "256",
    "solver.it_matches": "4",
    "solver.it_ransac": "400",
    "gate.min_confidence": "0.0",
    # network input 3x the image (K rescaled): ~0.2 s of inference, so that Ctrl-C meets a frame
    # in flight; larger images instead get lost in pieces over the best-effort input under load
    "model.input_width": str(3 * W),
    "model.input_height": str(3 * H),
    # the keyframe image alone made volatile: its camera_info must stay latched (issue 14)
    "qos_overrides./reference/image.subscription.durability": "volatile",
}


def texture(seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)


class Probe(Node):
    """Publishers, subscriptions and service clients of the test side."""

    def __init__(self) -> None:
        super().__init__("mickey_probe")
        self.types = ros_message_types()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.ref_image = self.create_publisher(Image, "/reference/image", latched)
        self.ref_info = self.create_publisher(CameraInfo, "/reference/camera_info", latched)
        # a volatile keyframe publisher: what a robot user sees of the mismatch (node's log)
        self.volatile_info = self.create_publisher(CameraInfo, "/reference/camera_info", 10)
        self.live = {
            "best_effort": (self.create_publisher(Image, "/image", qos_profile_sensor_data),
                            self.create_publisher(CameraInfo, "/camera_info",
                                                  qos_profile_sensor_data)),
            "reliable": (self.create_publisher(Image, "/image", 10),
                         self.create_publisher(CameraInfo, "/camera_info", 10)),
        }
        self.got: dict[str, list] = {"relative": [], "estimate": [], "tf": [], "diag": [],
                                     "pose": []}
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 100)
        self.create_subscription(PoseWithCovarianceStamped, f"{NODE}/pose",
                                 self.got["pose"].append, 10)
        self.create_subscription(TransformStamped, f"{NODE}/relative_pose",
                                 self.got["relative"].append, 10)
        self.create_subscription(self.types.RelativePose, f"{NODE}/estimate",
                                 self.got["estimate"].append, 10)
        self.create_subscription(TFMessage, "/tf", self.got["tf"].append, 100)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.got["diag"].append, 10)
        self.clients_ = {
            "get_state": self.create_client(GetState, f"{NODE}/get_state"),
            "change_state": self.create_client(ChangeState, f"{NODE}/change_state"),
            "get_parameters": self.create_client(GetParameters, f"{NODE}/get_parameters"),
            "set_parameters": self.create_client(SetParameters, f"{NODE}/set_parameters"),
            "capture_reference": self.create_client(Trigger, f"{NODE}/capture_reference"),
            "capture_keyframe": self.create_client(Trigger, f"{NODE}/capture_keyframe"),
        }

    def spin_until(self, predicate, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not predicate():
            rclpy.spin_once(self, timeout_sec=0.05)
        return bool(predicate())

    def call(self, name: str, request, timeout_s: float = 10.0):
        client = self.clients_[name]
        if not client.wait_for_service(timeout_sec=timeout_s):
            return None
        future = client.call_async(request)
        self.spin_until(future.done, timeout_s)
        return future.result() if future.done() else None

    def state(self) -> str | None:
        response = self.call("get_state", GetState.Request())
        return None if response is None else response.current_state.label

    def transition(self, transition_id: int) -> bool:
        response = self.call("change_state", ChangeState.Request(
            transition=Transition(id=transition_id)))
        return bool(response is not None and response.success)

    def get_param(self, name: str):
        response = self.call("get_parameters", GetParameters.Request(names=[name]))
        return None if response is None or not response.values else response.values[0]

    def set_double(self, name: str, value: float):
        param = Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                          double_value=value))
        response = self.call("set_parameters", SetParameters.Request(parameters=[param]))
        return None if response is None else response.results[0]

    def set_string(self, name: str, value: str):
        param = Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                          string_value=value))
        response = self.call("set_parameters", SetParameters.Request(parameters=[param]))
        return None if response is None else response.results[0]

    def frame(self, stream: str, stamp_ns: int, image=None, info=None) -> None:
        image_pub, info_pub = self.live[stream]
        info_pub.publish(info or messages.camera_info_msg(self.types, K, W, H, stamp_ns, "cam"))
        image_pub.publish(image or messages.rgb_to_image_msg(self.types, texture(stamp_ns % 97),
                                                             stamp_ns, "cam"))

    def estimate_for(self, stamp_ns: int):
        for msg in self.got["estimate"]:
            if messages.stamp_to_ns(msg.header.stamp) == stamp_ns:
                return msg
        return None

    def quality(self, name: str = "pose quality") -> dict[str, str]:
        """Values of the newest diagnostics status ``name`` (+ ``_msg``: its message)."""
        for array in reversed(self.got["diag"]):
            for status in array.status:
                if status.name.endswith(name):
                    return {kv.key: kv.value for kv in status.values} | {"_msg": status.message}
        return {}


class Checks:
    def __init__(self) -> None:
        self.results: dict[str, list] = {}

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results[name] = [bool(ok), detail]
        return bool(ok)


def start_node(install: Path, log_path: Path, overrides: dict[str, str] = OVERRIDES
               ) -> subprocess.Popen:
    exe = install / "lib" / "mickey_ros" / "relocalize_node"
    params = install / "share" / "mickey_ros" / "config" / "relocalize.yaml"
    cmd = [str(exe), "--ros-args", "--params-file", str(params)]
    for name, value in overrides.items():
        cmd += ["-p", f"{name}:={value}"]
    log = open(log_path, "w")  # noqa: SIM115 - kept open for the process's lifetime
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def run(probe: Probe, node: subprocess.Popen, checks: Checks) -> None:
    types = probe.types
    # latched keyframe, published before the node exists
    ref_stamp = 1_000_000_000
    ref_image = messages.rgb_to_image_msg(types, texture(0), ref_stamp, "ref_cam")
    probe.ref_info.publish(messages.camera_info_msg(types, K, W, H, ref_stamp, "ref_cam"))
    probe.ref_image.publish(ref_image)
    active = probe.spin_until(lambda: probe.state() == "active", 120.0)
    if not checks.add("node_active", active, f"state {probe.state()}"):
        return
    # the image subscription is volatile (override), camera_info must still be transient local
    qos = {topic: [i.qos_profile.durability for i in probe.get_subscriptions_info_by_topic(topic)]
           for topic in ("/reference/image", "/reference/camera_info")}
    checks.add("keyframe_qos_override_per_topic",
               qos == {"/reference/image": [DurabilityPolicy.VOLATILE],
                       "/reference/camera_info": [DurabilityPolicy.TRANSIENT_LOCAL]}, str(qos))
    probe.ref_image.publish(ref_image)  # the volatile image subscription gets it now

    stamp = [2_000_000_000]

    def good_frame(stream: str = "best_effort", timeout_s: float = 30.0):
        stamp[0] += 100_000_000
        s = stamp[0]
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:  # re-send: best effort and discovery may lose the first
            probe.frame(stream, s)
            if probe.spin_until(lambda: probe.estimate_for(s) is not None, 1.0):
                return probe.estimate_for(s)
        return None

    def stamped(s: int) -> tuple[list, list]:
        rel = [r for r in probe.got["relative"] if messages.stamp_to_ns(r.header.stamp) == s]
        tf = [t for m in probe.got["tf"] for t in m.transforms
              if messages.stamp_to_ns(t.header.stamp) == s]
        return rel, tf

    for stream in ("best_effort", "reliable"):
        for _ in range(3):  # each topic is discovered on its own: /tf may match after ~/estimate
            est = good_frame(stream)
            if est is None:
                break
            s = messages.stamp_to_ns(est.header.stamp)
            if probe.spin_until(lambda s=s: all(stamped(s)), 3.0):
                break
        if not checks.add(f"{stream}_stream_estimate", est is not None, "no ~/estimate"):
            continue
        rel, tf = stamped(s)
        checks.add(f"{stream}_stream_estimate_fields",
                   (est.header.frame_id, est.child_frame_id, est.valid, est.accepted, est.status,
                    messages.stamp_to_ns(est.reference_stamp))
                   == ("mickey_reference_optical", "mickey_query_optical", True, True, "ok",
                       ref_stamp), str(est))
        checks.add(f"{stream}_stream_relative_pose",
                   len(rel) == 1 and (rel[0].header.frame_id, rel[0].child_frame_id)
                   == ("mickey_reference_optical", "mickey_query_optical")
                   and np.allclose(messages.transform_stamped_to_matrix(rel[0]),
                                   messages.transform_to_matrix(est.transform), atol=1e-9),
                   str(rel))
        checks.add(f"{stream}_stream_tf",
                   [(t.header.frame_id, t.child_frame_id) for t in tf]
                   == [("mickey_reference_optical", "mickey_query_optical")], str(tf))

    bad = {
        "unknown_encoding": ("unsupported image encoding 'weird'", lambda im, info: (
            setattr(im, "encoding", "weird"), im, info)),
        "zero_size": ("0x0", lambda im, info: (
            setattr(im, "height", 0), setattr(im, "width", 0), setattr(im, "step", 0),
            setattr(im, "data", []), im, info)),
        "k_zeros": ("K = ", lambda im, info: (setattr(info, "k", [0.0] * 9), im, info)),
        "k_nan": ("nan", lambda im, info: (
            setattr(info, "k", [float("nan")] + list(info.k)[1:]), im, info)),
        "size_mismatch": ("but its CameraInfo says 112x84", lambda im, info: (
            setattr(info, "width", 112), setattr(info, "height", 84), im, info)),
    }
    for name, (text, spoil) in bad.items():
        before = int(probe.quality().get("bad_frames", "0"))
        stamp[0] += 100_000_000
        s = stamp[0]
        image = messages.rgb_to_image_msg(types, texture(1), s, "cam")
        info = messages.camera_info_msg(types, K, W, H, s, "cam")
        *_, image, info = spoil(image, info)
        probe.frame("reliable", s, image, info)
        counted = probe.spin_until(
            lambda before=before: int(probe.quality().get("bad_frames", "0")) > before, 10.0)
        reason = probe.quality().get("last_reason", "")
        alive = node.poll() is None and probe.get_param("gate.min_confidence") is not None
        after = good_frame("reliable")
        checks.add(f"bad_frame_{name}", counted and text in reason and alive and after is not None,
                   f"counted {counted}, last_reason {reason!r}, alive {alive}, "
                   f"next frame {'ok' if after is not None else 'missing'}")

    # lifecycle through the real lifecycle services
    deactivated = probe.transition(Transition.TRANSITION_DEACTIVATE)
    state = probe.state()
    stamp[0] += 100_000_000
    s = stamp[0]
    for _ in range(5):
        probe.frame("reliable", s)
        probe.spin_until(lambda: False, 0.3)
    silent = probe.estimate_for(s) is None
    activated = probe.transition(Transition.TRANSITION_ACTIVATE)
    back = good_frame("reliable")
    checks.add("lifecycle_deactivate_activate",
               deactivated and state == "inactive" and silent and activated and back is not None,
               f"deactivate {deactivated}, state {state}, silent {silent}, activate {activated}, "
               f"estimate after {'ok' if back is not None else 'missing'}")

    # parameters through the real parameter services
    value = probe.get_param("gate.min_confidence")
    ok = probe.set_double("gate.min_confidence", 0.25)
    read_back = probe.get_param("gate.min_confidence")
    read_only = probe.set_string("model.device", "cuda")
    out_of_range = probe.set_double("gate.min_confidence", 1.5)
    after = probe.get_param("gate.min_confidence")
    checks.add("parameter_get_set",
               value is not None and value.double_value == 0.0 and ok is not None
               and ok.successful and read_back.double_value == 0.25, f"{value} {ok} {read_back}")
    checks.add("parameter_read_only_refused",
               read_only is not None and not read_only.successful
               and probe.get_param("model.device").string_value == "cpu", str(read_only))
    checks.add("parameter_out_of_range_refused",
               out_of_range is not None and not out_of_range.successful
               and after.double_value == 0.25, f"{out_of_range} {after}")
    probe.set_double("gate.min_confidence", 0.0)

    diag = probe.quality()
    names = sorted({st.name for a in probe.got["diag"] for st in a.status})
    checks.add("diagnostics",
               names == sorted(f"mickey_relocalizer: {n}" for n in (
                   "inference", "input camera_info", "input image", "pose quality",
                   "reference keyframe"))
               and int(diag.get("bad_frames", "0")) == len(bad), f"{names} {diag}")

    # ~/capture_reference lives as long as the node: while not active it answers with what to
    # do (issue 28: it went with cleanup, and a call waited forever)
    answers = {}
    for transition, state in ((Transition.TRANSITION_DEACTIVATE, "inactive"),
                              (Transition.TRANSITION_CLEANUP, "unconfigured")):
        probe.transition(transition)
        response = probe.call("capture_reference", Trigger.Request())
        answers[state] = None if response is None else (response.success, response.message)
    back = probe.transition(Transition.TRANSITION_CONFIGURE) and probe.transition(
        Transition.TRANSITION_ACTIVATE)
    est = None
    for _ in range(10):  # the volatile keyframe image subscription is new: publish it again
        probe.ref_image.publish(ref_image)
        est = good_frame("reliable", timeout_s=5.0)
        if est is not None and est.status == "ok":
            break
    checks.add("capture_reference_while_not_active",
               answers == {
                   "inactive": (False, "node is not active: ros2 lifecycle set <node> activate"),
                   "unconfigured": (False, "node is not active: ros2 lifecycle set <node> "
                                           "configure, then activate")}
               and back and est is not None and est.status == "ok",
               f"{answers}, configure + activate {back}, "
               f"estimate after: {None if est is None else est.status}")

    # Ctrl-C with a frame in flight: the frame is still published, no ERROR, exit 0
    # Ctrl-C must meet a frame in flight: a first frame measures transport + inference under the
    # current load, and SIGINT follows the second one by its transport time + half its inference
    for _ in range(3):
        t0 = time.monotonic()
        stamp[0] += 100_000_000
        s = stamp[0]
        probe.frame("reliable", s)
        if probe.spin_until(lambda s=s: probe.estimate_for(s) is not None, 10.0):
            break
    latency_s = time.monotonic() - t0
    inference_s = probe.estimate_for(s).inference_ms / 1e3 if probe.estimate_for(s) else 0.0
    stamp[0] += 100_000_000
    s = stamp[0]
    probe.frame("reliable", s)
    probe.spin_until(lambda: False, max(latency_s - inference_s / 2, 0.0))
    node.send_signal(signal.SIGINT)
    probe.spin_until(lambda: node.poll() is not None, 30.0)
    probe.spin_until(lambda: probe.estimate_for(s) is not None, 2.0)
    checks.add("sigint_with_frame_in_flight",
               node.poll() == 0 and probe.estimate_for(s) is not None,
               f"exit code {node.poll()}, in-flight estimate "
               f"{'published' if probe.estimate_for(s) is not None else 'missing'}, inference "
               f"{[round(e.inference_ms) for e in probe.got['estimate'][-3:]]} ms")


# ---------------------------------------------------------------------------- keyframe library
LIBRARY_SEEDS = (10, 11, 12)  # keyframe textures, at x = 0, 5, 10 m in the map


def stop(node: subprocess.Popen) -> None:
    """SIGINT, then kill after 30 s."""
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()


def build_library(root: Path) -> None:
    """Three posed keyframes made with the node's model: ``mickey_tiny``, seeded random init."""
    from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
    from mickey_ros.keyframes import KeyframeLibrary, feature_source
    from mickey_ros.model.config import get_model_config

    est = RelativePoseEstimator.from_model_config(get_model_config("mickey_tiny"),
                                                  EstimatorConfig(device="cpu"))
    lib = KeyframeLibrary.create(root, est, feature_source(est))
    for i, seed in enumerate(LIBRARY_SEEDS):
        T = np.eye(4)
        T[0, 3] = 5.0 * i
        lib.add(texture(seed), K, T)


def library_overrides(root: Path) -> dict[str, str]:
    keep = ("model.config", "model.device", "model.warmup_iterations", "solver.num_samples",
            "solver.it_matches", "solver.it_ransac", "gate.min_confidence")
    return {name: OVERRIDES[name] for name in keep} | {
        "keyframes.library": str(root), "output.publish_pose": "true", "output.tf_mode": "none"}


def run_library(probe: Probe, node: subprocess.Popen, checks: Checks, root: Path) -> None:
    """Library mode on the wire: a frame localised in the map, a keyframe captured at its TF
    map pose and written to the library."""
    types = probe.types
    active = probe.spin_until(lambda: probe.state() == "active", 120.0)
    if not checks.add("library_node_active", active, f"state {probe.state()}"):
        return
    s = 50_000_000_000
    pose = None
    for _ in range(30):  # re-send: discovery may lose the first
        image = messages.rgb_to_image_msg(types, texture(LIBRARY_SEEDS[1]), s, "cam")
        probe.frame("reliable", s, image)
        if probe.spin_until(lambda: any(messages.stamp_to_ns(p.header.stamp) == s
                                        for p in probe.got["pose"]), 1.0):
            pose = [p for p in probe.got["pose"] if messages.stamp_to_ns(p.header.stamp) == s][0]
            break
    position = None if pose is None else pose.pose.pose.position
    checks.add("library_pose_in_map",
               pose is not None and pose.header.frame_id == "map"
               and abs(position.x - 5.0) < 0.5 and abs(position.y) < 0.5, str(pose))
    probe.spin_until(lambda: probe.quality("reference keyframe").get("keyframe"), 5.0)
    diag = probe.quality("reference keyframe")
    checks.add("library_diagnostics_name_keyframe",
               diag.get("keyframe") == "kf00001" and diag.get("keyframes") == "3"
               and diag.get("runner_up", "") not in ("", "kf00001")
               and float(diag.get("runner_up_confidence", "-1")) >= 0.0, str(diag))
    est = probe.estimate_for(s)  # ~/estimate names the keyframe and the runner-up's confidence
    checks.add("library_estimate_names_keyframe",
               est is not None and est.keyframe_id == "kf00001"
               and est.runner_up_confidence >= 0.0,
               "no estimate" if est is None else f"{est.keyframe_id} {est.runner_up_confidence}")
    # capture: the newest live frame at its map pose from TF, written to disk
    T_map_cam = np.eye(4)
    T_map_cam[:3, 3] = [20.0, 1.0, 0.0]
    probe.tf_pub.publish(TFMessage(transforms=[
        messages.transform_stamped_msg(types, T_map_cam, s, "map", "cam")]))
    probe.spin_until(lambda: False, 0.5)
    response = probe.call("capture_keyframe", Trigger.Request())
    manifest = json.loads((root / "manifest.json").read_text())
    checks.add("capture_keyframe_persisted",
               response is not None and response.success
               and response.message == (f"keyframe kf00003 added to {root} at (20.00, 1.00, "
                                        "0.00) in map: 4 keyframes")
               and [k["id"] for k in manifest["keyframes"]][-1] == "kf00003"
               and (root / "features" / "kf00003.npz").exists(),
               f"{response} {[k['id'] for k in manifest['keyframes']]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--install", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--node-log", type=Path, required=True)
    args = parser.parse_args()
    checks = Checks()
    rclpy.init()
    probe = Probe()
    node = start_node(args.install, args.node_log)
    try:
        run(probe, node, checks)
        stop(node)
        root = args.out.parent / "keyframe_library"
        build_library(root)
        node = start_node(args.install, args.node_log.with_name("library_node.log"),
                          library_overrides(root))
        run_library(probe, node, checks, root)
    except Exception:  # noqa: BLE001 - reported to the pytest side as a failed check
        checks.add("driver", False, traceback.format_exc())
    finally:
        stop(node)
        probe.destroy_node()
        rclpy.try_shutdown()
        args.out.write_text(json.dumps(checks.results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
