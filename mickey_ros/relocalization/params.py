"""Parameter schema of the relocalisation node, ROS-free.

``NodeParams`` is the single source of truth for every node parameter: its default, description,
range or choices, and whether it may change at run time. The node declares and reads all of them
in one loop over ``parameter_specs()``; ``config/relocalize.yaml`` and the launch-argument mapping
are checked against it by unit tests without ROS.

Groups become dotted ROS names (``model.checkpoint``) and nested YAML mappings under
``/**: ros__parameters:``. ROS parameters cannot hold tuples or None, so tuples are declared as
lists and "unset" is ``''`` / ``0``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mickey_ros.relocalization.session import TF_MODES, SessionConfig
from mickey_ros.utils.config import ConfigError, config_from_dict

PRECISIONS = ("fp32", "fp16", "bf16", "auto")  # mickey_ros.estimator.relative_pose.PRECISIONS
BACKENDS = ("torch", "onnxruntime", "tensorrt")  # mickey_ros.estimator.backends.BACKENDS
AUTOCAST = ("", "fp16", "bf16")  # mickey_ros.estimator.backends.AUTOCAST ('' = off)
CAMERA_INFO_MODES = ("sync", "latest")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def _param(default: Any, description: str, *, range: tuple[float, float] | None = None,
           choices: tuple[str, ...] | None = None, dynamic: bool = False) -> Any:
    """A dataclass field carrying the ROS parameter descriptor (read-only unless ``dynamic``)."""
    meta = {"description": description, "range": range, "choices": choices, "dynamic": dynamic}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelParams:
    """Network and device (read at configure; change them with cleanup + configure)."""

    checkpoint: str = _param("", "MicKey checkpoint: official mickey.ckpt or one of ours; "
                             "'demo' = the bundled demo model. Never downloaded.")
    dinov2_weights: str = _param("", "DINOv2 ViT weight file for an official checkpoint that does "
                                 "not embed the backbone ('' if it does)")
    config: str = _param("", "Model factory in mickey_ros.model.config (e.g. mickey_tiny) for "
                         "RANDOM weights when checkpoint is '': launch tests only")
    device: str = _param("cuda", "Torch device: cuda, cuda:1 or cpu")
    precision: str = _param("fp32", "Backbone precision; auto = bf16 backbone and heads on a CPU "
                            "with bf16 matrix units, fp16 on CUDA, else fp32 "
                            "(docs/deployment.md#precision)", choices=PRECISIONS)
    threads: int = _param(0, "CPU threads of torch and ONNX Runtime (process-wide); 0 = auto: 1 "
                          "for small models, half the cores for ViT (docs/performance.md#threads)",
                          range=(0, 256))
    input_width: int = _param(0, "Network input width in px (0 = image width); K is rescaled",
                              range=(0, 4096))
    input_height: int = _param(0, "Network input height in px (0 = image height)", range=(0, 4096))
    warmup_iterations: int = _param(2, "Dummy estimates at configure so the first frame is fast",
                                    range=(0, 100))
    seed: int = _param(0, "Solver seed: same frames + seed = same pose", range=(0, 2**31 - 1))
    cache_reference: bool = _param(True, "Reuse the keyframe features for every live frame")
    backend: str = _param("torch", "Network runtime: torch, onnxruntime (CPU/CUDA provider) or "
                          "tensorrt (ONNX Runtime's TensorRT provider); docs/deployment.md",
                          choices=BACKENDS)
    onnx_path: str = _param("", "File from `mickey-ros export` for onnxruntime/tensorrt (then no "
                            "checkpoint is loaded); '' = export the checkpoint at configure")
    autocast: str = _param("", "torch backend: '' (off), fp16 or bf16 autocast of backbone and "
                           "heads", choices=AUTOCAST)
    compile: bool = _param(False, "torch backend: torch.compile backbone and heads")
    pin_memory: bool = _param(False, "CUDA: copy the live image from pinned host memory")
    io_binding: bool = _param(False, "onnxruntime/tensorrt: outputs written in place on the "
                              "device (no host round trip)")


@dataclass(frozen=True)
class SolverParams:
    """Probabilistic RANSAC + Kabsch settings (defaults: official PROCRUSTES test-time values)."""

    it_matches: int = _param(20, "Correspondence draws per pair", range=(1, 1000))
    it_ransac: int = _param(100, "Hypotheses per draw", range=(1, 10000))
    num_samples: int = _param(2048, "Correspondences sampled per draw", range=(16, 100000))
    num_refinements: int = _param(4, "Inlier refit rounds", range=(0, 100))
    th_inlier: float = _param(0.15, "Inlier threshold of refinement and confidence, metres",
                              range=(1e-4, 10.0))
    th_soft_inlier: float = _param(0.3, "Soft-inlier threshold of hypothesis scoring, metres",
                                   range=(1e-4, 10.0))


@dataclass(frozen=True)
class InputParams:
    """Live camera subscription."""

    camera_info_mode: str = _param("sync", "sync: pair image and camera_info by stamp; latest: "
                                   "use the last camera_info", choices=CAMERA_INFO_MODES)
    use_compressed: bool = _param(False, "Subscribe to <image>/compressed (CompressedImage)")
    qos_depth: int = _param(2, "History depth of the sensor-data QoS inputs", range=(1, 100))
    sync_queue_size: int = _param(5, "ApproximateTimeSynchronizer queue size", range=(1, 100))
    sync_slop_s: float = _param(0.03, "Max stamp difference image/camera_info, s (> 0)",
                                range=(1e-6, 10.0))
    expected_camera_frame: str = _param("", "Reject live frames whose header.frame_id differs "
                                        "('' = accept any)")
    max_rate_hz: float = _param(0.0, "Process at most this many frames/s (0 = as fast as the GPU)",
                                range=(0.0, 1000.0), dynamic=True)
    no_data_timeout_s: float = _param(3.0, "Diagnostics WARN when an input has publishers but "
                                      "no message for this long", range=(0.1, 3600.0))


@dataclass(frozen=True)
class ReferenceParams:
    """Keyframe sources besides the latched reference/* topics and ~/capture_reference."""

    image_path: str = _param("", "Keyframe image file loaded at configure ('' = none)")
    intrinsics: tuple[float, ...] = _param((0.0, 0.0, 0.0, 0.0), "fx fy cx cy of image_path, px")
    sync_slop_s: float = _param(0.05, "Max stamp difference reference image/camera_info, s",
                                range=(1e-6, 3600.0))


@dataclass(frozen=True)
class OutputParams:
    """Frames, TF and optional outputs."""

    tf_mode: str = _param("relative", "relative | attach_reference | map_to_odom | none",
                          choices=TF_MODES)
    reference_frame: str = _param("mickey_reference_optical", "TF frame of the keyframe camera")
    query_frame: str = _param("mickey_query_optical", "TF frame of the live camera (relative)")
    map_frame: str = _param("map", "REP-105 map frame (map_to_odom)")
    odom_frame: str = _param("odom", "REP-105 odom frame (map_to_odom)")
    map_to_reference: tuple[float, ...] = _param(
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0), "Keyframe camera pose in map: x y z qx qy qz qw")
    transform_tolerance_s: float = _param(0.1, "Future-dating of map->odom, s (as AMCL)",
                                          range=(0.0, 10.0))
    tf_rebroadcast_hz: float = _param(10.0, "Re-broadcast rate of the last map->odom (0 = off)",
                                      range=(0.0, 1000.0))
    tf_timeout_s: float = _param(0.05, "Wait for odom->camera at the image stamp, s",
                                 range=(0.0, 10.0))
    publish_pose: bool = _param(False, "Also publish ~/pose (PoseWithCovarianceStamped)")
    publish_debug_image: bool = _param(False, "Publish ~/debug/matches (inlier matches image)")


@dataclass(frozen=True)
class GateParams:
    """Quality gate and covariance (changeable at run time)."""

    min_confidence: float = _param(0.05, "Minimum inlier ratio (soft inliers / sampled matches) "
                                   "for a pose to be published", range=(0.0, 1.0), dynamic=True)
    covariance_translation_m: float = _param(0.05, "1-sigma position at inlier ratio 1 (scaled by "
                                             "1/ratio)", range=(1e-6, 100.0), dynamic=True)
    covariance_rotation_rad: float = _param(0.02, "1-sigma rotation at inlier ratio 1",
                                            range=(1e-6, 10.0), dynamic=True)


@dataclass(frozen=True)
class KeyframesParams:
    """Keyframe library mode (docs/keyframes.md); selection settings are dynamic."""

    library: str = _param("", "Keyframe library directory (mickey-ros keyframes build): localise "
                          "in the map against its best keyframes; created empty if missing; '' = "
                          "single-keyframe mode")
    k: int = _param(3, "Library: keyframes MicKey runs against per live frame (one batch)",
                    range=(1, 64), dynamic=True)
    retrieval: bool = _param(True, "Library: appearance retrieval when there is no usable pose "
                             "prior (start-up, lost, kidnapped)", dynamic=True)
    prior_radius_m: float = _param(3.0, "Library: keyframes farther than this from the pose "
                                   "prior are not tried, metres", range=(1e-3, 1e4), dynamic=True)
    recheck_interval: int = _param(0, "Library: while tracking, frames between full top-k "
                                   "checks (0 = full check every frame)", range=(0, 10000),
                                   dynamic=True)


@dataclass(frozen=True)
class NodeParams:
    """Every parameter of the relocalize node (``ros2 param describe`` shows the descriptions)."""

    autostart: bool = _param(True, "Configure and activate at start-up (else drive the lifecycle "
                             "with ros2 lifecycle set)")
    model: ModelParams = field(default_factory=ModelParams)
    solver: SolverParams = field(default_factory=SolverParams)
    input: InputParams = field(default_factory=InputParams)
    reference: ReferenceParams = field(default_factory=ReferenceParams)
    output: OutputParams = field(default_factory=OutputParams)
    gate: GateParams = field(default_factory=GateParams)
    keyframes: KeyframesParams = field(default_factory=KeyframesParams)

    def validate(self) -> NodeParams:
        """Check choices and ranges (ROS checks ranges itself; YAML in replay does not)."""
        for spec in parameter_specs():
            spec.check(spec.get(self))
        self.session_config()
        return self

    def session_config(self) -> SessionConfig:
        """The ROS-free session settings (also what ``mickey-ros replay`` builds)."""
        out, gate = self.output, self.gate
        return SessionConfig(
            tf_mode=out.tf_mode, reference_frame=out.reference_frame, query_frame=out.query_frame,
            map_frame=out.map_frame, odom_frame=out.odom_frame,
            map_to_reference=tuple(out.map_to_reference),
            transform_tolerance_s=out.transform_tolerance_s, min_confidence=gate.min_confidence,
            expected_camera_frame=self.input.expected_camera_frame,
            covariance_translation_m=gate.covariance_translation_m,
            covariance_rotation_rad=gate.covariance_rotation_rad,
        )

    def estimator_config(self) -> Any:
        """``mickey_ros.estimator.relative_pose.EstimatorConfig`` of these parameters."""
        from mickey_ros.estimator.backends import SPEED_FIELDS
        from mickey_ros.estimator.relative_pose import EstimatorConfig
        from mickey_ros.geometry.ransac import SolverConfig

        m = self.model
        resize = (m.input_width, m.input_height) if m.input_width and m.input_height else None
        solver = dataclasses.replace(SolverConfig(), **dataclasses.asdict(self.solver))
        return EstimatorConfig(device=m.device, precision=m.precision, resize=resize, seed=m.seed,
                               cache_reference=m.cache_reference, solver=solver,
                               keep_matches=self.output.publish_debug_image,
                               **{name: getattr(m, name) for name in SPEED_FIELDS})


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: dotted name, type, default and descriptor fields."""

    name: str
    type: type
    default: Any
    description: str
    range: tuple[float, float] | None
    choices: tuple[str, ...] | None
    dynamic: bool

    def get(self, params: NodeParams) -> Any:
        """This parameter's value in ``params``."""
        value: Any = params
        for part in self.name.split("."):
            value = getattr(value, part)
        return value

    def check(self, value: Any) -> None:
        """Raise ConfigError for a value outside the range or choices."""
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"parameter {self.name} must be one of {self.choices}, got {value!r}")
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise ConfigError(f"parameter {self.name} must be in {list(self.range)}, got {value}")


def parameter_specs(cls: type = NodeParams, prefix: str = "") -> list[ParamSpec]:
    """All leaf parameters of ``cls`` in declaration order, with dotted names."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            specs += parameter_specs(hints[f.name], f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = tuple if typing.get_origin(hints[f.name]) is tuple else hints[f.name]
        specs.append(ParamSpec(
            name=prefix + f.name, type=kind, default=default,
            description=f.metadata["description"], range=f.metadata["range"],
            choices=f.metadata["choices"], dynamic=f.metadata["dynamic"],
        ))
    return specs


def node_params_from_flat(values: dict[str, Any]) -> NodeParams:
    """Build ``NodeParams`` from dotted names (what the node reads back after declaring)."""
    nested: dict[str, Any] = {}
    for name, value in values.items():
        *groups, leaf = name.split(".")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
        target[leaf] = list(value) if isinstance(value, (list, tuple)) else value
    return config_from_dict(NodeParams, nested, "node parameters").validate()


_ROS_OWNED_KEYS = ("use_sim_time", "qos_overrides", "diagnostic_updater")


def load_params_yaml(path: str | Path, node_key: str = "/**") -> NodeParams:
    """Read a ROS 2 params file (``<node_key>: ros__parameters: ...``) into ``NodeParams``.

    Keys ROS itself handles (``use_sim_time``, ``qos_overrides``, ``diagnostic_updater``) are
    skipped; every other unknown key is an error naming the valid ones.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, ValueError) as err:  # ValueError: bad dates, !!int x, not UTF-8
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    section = data.get(node_key) if isinstance(data, dict) else None
    params = section.get("ros__parameters") if isinstance(section, dict) else None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} has no '{node_key}: ros__parameters:' section (a mapping)")
    params = {k: v for k, v in params.items() if k not in _ROS_OWNED_KEYS}
    config = config_from_dict(NodeParams, params, str(path))
    try:
        return config.validate()
    except ConfigError:
        raise
    except ValueError as err:  # SessionConfig's checks (frames, map_to_reference)
        raise ConfigError(f"{path}: {err}") from None


def build_estimator(params: NodeParams, warn: Callable[[str], Any] | None = None) -> Any:
    """The ``RelativePoseEstimator`` of ``params.model``, or an error naming the exact problem.

    ``checkpoint``: a file (official or ours), or ``'demo'`` for the bundled model; with an empty
    checkpoint, ``config`` names a model factory for random weights (launch tests). Weights are
    never downloaded. ``onnx_path`` with an ONNX ``backend`` loads only that file.

    Raises:
        ConfigError: empty checkpoint and config, or a CUDA device that torch cannot see.
        FileNotFoundError / CheckpointError (ValueError): from loading the checkpoint.
    """
    import torch

    from mickey_ros.estimator.relative_pose import RelativePoseEstimator
    from mickey_ros.model.config import get_model_config

    model, config = params.model, params.estimator_config()
    if model.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"model.device is {model.device!r} but torch {torch.__version__} sees no CUDA GPU; "
            "set device:=cpu or install the torch build for this GPU (docs/ros.md)"
        )
    if model.onnx_path and model.backend != "torch":
        return RelativePoseEstimator.from_onnx(model.onnx_path, config)
    if model.checkpoint == "demo":
        return RelativePoseEstimator.from_demo(config)
    if model.checkpoint:
        return RelativePoseEstimator.from_checkpoint(model.checkpoint,
                                                     model.dinov2_weights or None, config)
    if model.config:
        if warn is not None:
            warn(f"model.checkpoint is empty: RANDOM weights of model.config {model.config!r}; "
                 "poses are meaningless (launch tests only)")
        return RelativePoseEstimator.from_model_config(get_model_config(model.config), config)
    raise ConfigError(
        "model.checkpoint is empty: set it to a MicKey checkpoint (launch argument "
        "checkpoint:=/path/to/mickey.ckpt, plus dinov2_weights:= for the official one) or "
        "'demo'; the node never downloads weights"
    )


# --------------------------------------------------------------------------- launch arguments
@dataclass(frozen=True)
class LaunchArg:
    """A ``relocalize.launch.py`` argument: a parameter override, a remapping or a launch setting.

    An empty value means "keep the params file's value" for parameters and "no remapping" for
    topics.
    """

    name: str
    default: str
    description: str
    parameter: str | None = None  # dotted NodeParams name it overrides
    remap_from: str | None = None  # relative topic name of the node it remaps
    choices: tuple[str, ...] | None = None


LAUNCH_ARGUMENTS = (
    LaunchArg("namespace", "", "Namespace of the node (one per camera)"),
    LaunchArg("node_name", "mickey_relocalizer", "Node name"),
    LaunchArg("params_file", "", "Params YAML ('' = share/mickey_ros/config/relocalize.yaml)"),
    LaunchArg("use_sim_time", "false", "Use /clock (bag replay)", choices=("true", "false")),
    LaunchArg("log_level", "info", "Logger level", choices=LOG_LEVELS),
    LaunchArg("image_topic", "", "Live image topic", remap_from="image"),
    LaunchArg("camera_info_topic", "", "Live CameraInfo topic", remap_from="camera_info"),
    LaunchArg("reference_image_topic", "", "Keyframe image topic", remap_from="reference/image"),
    LaunchArg("reference_camera_info_topic", "", "Keyframe CameraInfo topic",
              remap_from="reference/camera_info"),
    LaunchArg("checkpoint", "", "MicKey checkpoint path", parameter="model.checkpoint"),
    LaunchArg("dinov2_weights", "", "DINOv2 weight file", parameter="model.dinov2_weights"),
    LaunchArg("device", "", "Torch device (cuda, cuda:1, cpu)", parameter="model.device"),
    LaunchArg("tf_mode", "", "TF output mode", parameter="output.tf_mode",
              choices=("", *TF_MODES)),
    LaunchArg("use_compressed", "", "Subscribe to <image_topic>/compressed",
              parameter="input.use_compressed", choices=("", "true", "false")),
    LaunchArg("keyframes", "", "Keyframe library directory (library mode)",
              parameter="keyframes.library"),
)


def _parse(value: str, spec: ParamSpec) -> Any:
    if spec.type is bool:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"launch argument {spec.name} must be true or false, got {value!r}")
        return value.lower() == "true"
    try:
        return spec.type(value)
    except ValueError:
        raise ConfigError(
            f"launch argument for {spec.name} must be {spec.type.__name__}, got {value!r}"
        ) from None


def launch_parameter_overrides(values: dict[str, str]) -> dict[str, Any]:
    """Typed parameter overrides from launch-argument strings (empty strings are skipped).

    >>> launch_parameter_overrides({"tf_mode": "map_to_odom", "device": "", "use_sim_time": "true"})
    {'output.tf_mode': 'map_to_odom', 'use_sim_time': True}
    """
    specs = {spec.name: spec for spec in parameter_specs()}
    overrides: dict[str, Any] = {}
    for arg in LAUNCH_ARGUMENTS:
        value = values.get(arg.name, "")
        if arg.parameter is None or value == "":
            continue
        spec = specs[arg.parameter]
        overrides[arg.parameter] = _parse(value, spec)
        spec.check(overrides[arg.parameter])
    if "use_sim_time" in values:
        overrides["use_sim_time"] = values["use_sim_time"].lower() == "true"
    return overrides


def launch_remappings(values: dict[str, str]) -> list[tuple[str, str]]:
    """``(node topic, target)`` remappings for the non-empty topic arguments.

    >>> launch_remappings({"image_topic": "/cam/image_raw", "camera_info_topic": ""})
    [('image', '/cam/image_raw')]
    """
    return [(arg.remap_from, values[arg.name]) for arg in LAUNCH_ARGUMENTS
            if arg.remap_from is not None and values.get(arg.name, "")]
