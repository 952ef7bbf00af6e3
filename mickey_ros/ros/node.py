"""The relocalisation lifecycle node: ROS entities wired to ROS-free logic.

Parameters come from ``relocalization.params``, keyframe/gating/TF from
``relocalization.session``, conversions from ``relocalization.messages``, diagnostics content
from ``relocalization.health``; the worker thread lives in ``processing.FrameProcessor``.
``mickey_ros/ros/`` is the only package importing rclpy, tf2_ros, message_filters, cv_bridge and
diagnostic_updater.

Lifecycle (as yolo_ros): parameters and the ``~/capture_reference`` and ``~/capture_keyframe``
services are created in ``__init__`` (they answer "not active" outside the active state);
``on_configure`` reads the parameters, loads and warms up the model, opens the keyframe library
(``keyframes.library``; ``keyframes.session`` runs it, as in replay) and creates publishers
(missing or wrong weights fail here with the exact problem, and ``main`` exits 1);
``on_activate`` subscribes and starts the worker; ``on_deactivate`` stops both; ``on_cleanup``
frees the model and GPU memory.
"""

from __future__ import annotations

import time
from typing import Any

import message_filters
import tf2_ros
from diagnostic_updater import Updater
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo
from std_srvs.srv import Trigger

from mickey_ros.keyframes.localizer import LocalizerConfig
from mickey_ros.keyframes.session import open_library_session
from mickey_ros.mapfree.files import intrinsics_matrix
from mickey_ros.relocalization import health, messages
from mickey_ros.relocalization.params import (
    NodeParams,
    build_estimator,
    node_params_from_flat,
    parameter_specs,
)
from mickey_ros.relocalization.session import Frame, RelocalizationSession, StampedTransform
from mickey_ros.ros.interfaces import (
    LATCHED_OVERRIDES,
    OUTPUT_QOS,
    latched_qos,
    parameter_descriptor,
    ros_message_types,
    sensor_qos,
)
from mickey_ros.ros.processing import FrameProcessor, Outputs
from mickey_ros.utils.config import ConfigError
from mickey_ros.utils.images import load_rgb

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def load_estimator(params: NodeParams, logger: Any) -> Any:
    """Build (``mickey_ros.relocalization.params.build_estimator``) and warm up the estimator."""
    estimator = build_estimator(params, warn=logger.warning)
    model = params.model
    size_wh = (model.input_width, model.input_height) if model.input_width else (640, 480)
    estimator.warmup(size_wh=size_wh, iterations=model.warmup_iterations)
    return estimator


class RelocalizeNode(LifecycleNode):
    """Metric pose of a live camera relative to a reference keyframe (MicKey)."""

    def __init__(self, node_name: str = "mickey_relocalizer", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._specs = parameter_specs()
        for spec in self._specs:
            default = list(spec.default) if spec.type is tuple else spec.default
            self.declare_parameter(spec.name, default, parameter_descriptor(spec))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._types = ros_message_types()
        self._processor: FrameProcessor | None = None
        self._outputs: Outputs | None = None
        self._extra: list[Any] = []  # static broadcaster, TF listener
        self._inputs: list[Any] = []  # subscriptions and timers of the active state
        self._latest_info: Any = None
        self._meters = {"image": health.RateMeter(), "camera_info": health.RateMeter()}
        self._topics = {"image": "", "camera_info": ""}
        # for the node's life: it answers "not active" instead of vanishing on cleanup (issue 28)
        self._capture_service = self.create_service(Trigger, "~/capture_reference",
                                                    self._on_capture)
        self._capture_keyframe_service = self.create_service(Trigger, "~/capture_keyframe",
                                                             self._on_capture_keyframe)
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(seconds=-1.0),
                          on_clock_change=False),
            post_callback=self._on_time_jump,
        )
        self._setup_diagnostics()

    @property
    def autostart(self) -> bool:
        """The ``autostart`` parameter: ``main`` configures and activates the node itself."""
        return bool(self.get_parameter("autostart").value)

    def start(self) -> bool:
        """Configure and activate; False (reason already logged) if either failed."""
        return self.trigger_configure() == SUCCESS and self.trigger_activate() == SUCCESS

    def release(self) -> None:
        """Stop processing and free everything, from any state (idempotent)."""
        self._destroy_inputs()
        self._destroy_outputs()

    # ------------------------------------------------------------------ parameters
    def _read_parameters(self, updates: dict[str, Any] | None = None) -> NodeParams:
        values = {spec.name: self.get_parameter(spec.name).value for spec in self._specs}
        values.update(updates or {})
        return node_params_from_flat(values)

    def _on_set_parameters(self, changed: list[Any]) -> SetParametersResult:
        """Validate dynamic parameter changes as a whole, then hand them to the worker."""
        ours = {spec.name for spec in self._specs}
        updates = {p.name: p.value for p in changed if p.name in ours}
        if not updates:  # qos_overrides.*, use_sim_time, diagnostic_updater.* ...
            return SetParametersResult(successful=True)
        try:
            params = self._read_parameters(updates)
        except (ConfigError, ValueError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        if self._processor is not None:
            self._processor.set_params(params)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read parameters, load + warm up the model, create publishers."""
        try:
            params = self._read_parameters()
            estimator = load_estimator(params, self.get_logger())
            session, source = self._open_session(params, estimator)
            source = self._load_disk_keyframe(params, session) or source
        except (ConfigError, ValueError, OSError, RuntimeError, ImportError) as err:
            # rclpy turns exceptions in transitions into a silent ERROR: name the problem here
            self.get_logger().fatal(f"configure failed: {type(err).__name__}: {err}")
            return FAILURE
        self._outputs = self._create_outputs(params, session)
        self._processor = FrameProcessor(self, params, session, self._outputs, self._types, source)
        run_settings = getattr(estimator, "run_settings", None)  # the threads/precision chosen
        self.get_logger().info(f"configured: model {getattr(estimator, 'model_name', '?')} on "
                               f"{params.model.device}, tf_mode "
                               f"{params.output.tf_mode}, min_confidence "
                               f"{params.gate.min_confidence}"
                               + (f"; runs with {run_settings.note}" if run_settings else ""))
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the inputs and start the worker."""
        self._create_inputs(self._processor.params)
        self._processor.start()
        self.get_logger().info(f"active: image {self._topics['image']}, "
                               f"camera_info {self._topics['camera_info']}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker; the model and keyframe stay loaded."""
        self._destroy_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy publishers and free the model and GPU memory."""
        self._destroy_outputs()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything from any state."""
        self.release()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Clean up after a failed transition and go back to unconfigured."""
        self.get_logger().error(f"error in a transition from {state.label}; cleaning up")
        self.release()
        return SUCCESS

    # ------------------------------------------------------------------ model and keyframe
    def _open_session(self, params: NodeParams, estimator: Any) -> tuple[Any, str | None]:
        """Single-keyframe session, or the library session of ``keyframes.library``."""
        root = params.keyframes.library
        if not root:
            return RelocalizationSession(estimator, params.session_config()), None
        log = self.get_logger()
        session = open_library_session(root, estimator, params,
                                       LocalizerConfig.from_node_params(params),
                                       warn=log.warning, create=True)
        library = session.localizer.library
        log.info(f"keyframe library {root}: {len(library)} keyframes in use, "
                 f"{len(library.manifest.keyframes) - len(library)} skipped, "
                 f"{library.recomputed} features recomputed")
        return session, f"keyframe library {root}"

    def _load_disk_keyframe(self, params: NodeParams, session: RelocalizationSession) -> str | None:
        ref = params.reference
        if not ref.image_path:
            return None
        fx, fy, cx, cy = ref.intrinsics
        if fx <= 0 or fy <= 0:
            raise ConfigError(f"reference.image_path is set but reference.intrinsics "
                              f"{list(ref.intrinsics)} has no positive fx, fy; give fx fy cx cy")
        frame = Frame(load_rgb(ref.image_path), intrinsics_matrix(fx, fy, cx, cy),
                      self.get_clock().now().nanoseconds, params.output.reference_frame)
        session.set_reference(frame)
        return f"file {ref.image_path}"

    # ------------------------------------------------------------------ entities
    def _create_outputs(self, params: NodeParams, session: RelocalizationSession) -> Outputs:
        types, out = self._types, params.output
        outputs = Outputs(
            relative=self.create_lifecycle_publisher(types.TransformStamped, "~/relative_pose",
                                                     OUTPUT_QOS),
            estimate=self.create_lifecycle_publisher(types.RelativePose, "~/estimate", OUTPUT_QOS),
            tf=tf2_ros.TransformBroadcaster(self),
        )
        if out.publish_pose:
            outputs.pose = self.create_lifecycle_publisher(types.PoseWithCovarianceStamped,
                                                           "~/pose", OUTPUT_QOS)
        if out.publish_debug_image:
            outputs.debug = self.create_lifecycle_publisher(types.Image, "~/debug/matches",
                                                            OUTPUT_QOS)
        library = bool(params.keyframes.library)
        if out.tf_mode == "map_to_odom" or library:  # library: map pose prior and capture
            outputs.tf_buffer = tf2_ros.Buffer()
            self._extra.append(tf2_ros.TransformListener(outputs.tf_buffer, self))
        if out.tf_mode == "map_to_odom" and not library:  # library: an anchor per keyframe
            static = tf2_ros.StaticTransformBroadcaster(self)
            anchor = StampedTransform(session.T_map_ref, out.map_frame, out.reference_frame,
                                      self.get_clock().now().nanoseconds)
            static.sendTransform([_to_msg(types, anchor)])
            self._extra.append(static)
        return outputs

    def _destroy_outputs(self) -> None:
        self._destroy_inputs()
        out, self._outputs, self._processor = self._outputs, None, None
        if out is not None:
            for publisher in (out.relative, out.estimate, out.pose, out.debug):
                if publisher is not None:
                    self.destroy_lifecycle_publisher(publisher)
            self.destroy_publisher(out.tf.pub_tf)
        for entity in self._extra:
            if isinstance(entity, tf2_ros.StaticTransformBroadcaster):
                self.destroy_publisher(entity.pub_tf)
            else:  # tf2_ros.TransformListener
                entity.unregister()
        self._extra = []
        import torch

        if torch.cuda.is_available():  # the estimator went with the processor
            torch.cuda.empty_cache()

    def _create_inputs(self, params: NodeParams) -> None:
        inp, processor = params.input, self._processor
        qos = sensor_qos(inp.qos_depth)
        image_type, image_topic = self._types.Image, "image"
        if inp.use_compressed:  # image_transport naming, applied after remapping 'image'
            image_type = self._types.CompressedImage
            image_topic = self.resolve_topic_name("image") + "/compressed"
        self._topics = {"image": self.resolve_topic_name(image_topic),
                        "camera_info": self.resolve_topic_name("camera_info")}
        if inp.camera_info_mode == "sync":
            image_sub = message_filters.Subscriber(self, image_type, image_topic, qos_profile=qos)
            info_sub = message_filters.Subscriber(self, CameraInfo, "camera_info", qos_profile=qos)
            image_sub.registerCallback(lambda _: self._tick("image"))
            info_sub.registerCallback(lambda _: self._tick("camera_info"))
            sync = message_filters.ApproximateTimeSynchronizer(
                [image_sub, info_sub], inp.sync_queue_size, inp.sync_slop_s)
            sync.registerCallback(processor.offer_live)
            self._inputs += [image_sub.sub, info_sub.sub]
        else:
            self._inputs.append(self.create_subscription(
                image_type, image_topic, self._on_image_latest_info, qos))
            self._inputs.append(self.create_subscription(
                CameraInfo, "camera_info", self._on_info, qos))
        if not params.keyframes.library:  # library mode: keyframes come from the library
            self._create_reference_inputs(params)
        out = params.output
        if out.tf_mode == "map_to_odom" and out.tf_rebroadcast_hz > 0:
            self._inputs.append(self.create_timer(1.0 / out.tf_rebroadcast_hz,
                                                  processor.rebroadcast))

    def _create_reference_inputs(self, params: NodeParams) -> None:
        ref_image = message_filters.Subscriber(self, self._types.Image, "reference/image",
                                               qos_profile=latched_qos(),
                                               qos_overriding_options=LATCHED_OVERRIDES)
        ref_info = message_filters.Subscriber(self, CameraInfo, "reference/camera_info",
                                              qos_profile=latched_qos(),
                                              qos_overriding_options=LATCHED_OVERRIDES)
        ref_sync = message_filters.ApproximateTimeSynchronizer(
            [ref_image, ref_info], 2, params.reference.sync_slop_s)
        ref_sync.registerCallback(self._processor.offer_reference)
        self._inputs += [ref_image.sub, ref_info.sub]

    def _destroy_inputs(self) -> None:
        for entity in self._inputs:
            if hasattr(entity, "cancel"):  # timer
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        self._inputs = []
        self._latest_info = None
        if self._processor is not None:
            self._processor.stop()

    # ------------------------------------------------------------------ callbacks
    def _tick(self, name: str) -> None:
        # rates on a steady clock: sim time at another playback rate is not seconds (issue 28)
        self._meters[name].tick(time.monotonic_ns())

    def _on_info(self, info: Any) -> None:
        self._tick("camera_info")
        self._latest_info = info

    def _on_image_latest_info(self, image: Any) -> None:
        self._tick("image")
        self._processor.offer_live(image, self._latest_info)

    def _not_active(self, response: Trigger.Response) -> bool:
        """Fill ``response`` with the failure and return True unless the node is active."""
        if self._processor is not None and self._processor.running:
            return False
        response.success = False
        todo = "activate" if self._processor is not None else "configure, then activate"
        response.message = f"node is not active: ros2 lifecycle set <node> {todo}"
        return True

    def _on_capture(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        if self._not_active(response):
            return response
        if self._processor.library is not None:
            response.success = False
            response.message = ("keyframe library mode: ~/capture_keyframe adds the live frame "
                                "to the library")
            return response
        self._processor.request_capture()
        response.success = True
        response.message = f"the next frame on {self._topics['image']} becomes the keyframe"
        return response

    def _on_capture_keyframe(self, request: Trigger.Request,
                             response: Trigger.Response) -> Any:
        if self._not_active(response):
            return response
        response.success, response.message = self._processor.capture_keyframe()
        if not response.success:
            self.get_logger().warning(f"~/capture_keyframe refused: {response.message}")
        return response

    def _on_time_jump(self, jump: TimeJump) -> None:
        if jump.delta.nanoseconds >= 0 or self._processor is None:
            return
        self._processor.clock_jumped_back()
        self.get_logger().warning(f"clock jumped back by {-jump.delta.nanoseconds / 1e9:.1f} s "
                                  "(bag loop?): resetting keyframe, map->odom and TF buffer")

    # ------------------------------------------------------------------ diagnostics
    def _setup_diagnostics(self) -> None:
        self._updater = Updater(self)
        self._updater.setHardwareID("mickey_ros")
        tasks = {
            "input image": lambda: self._input_entry("image"),
            "input camera_info": lambda: self._input_entry("camera_info"),
            "inference": self._inference_entry,
            "reference keyframe": lambda: self._processor_entry("keyframe_entry"),
            "pose quality": lambda: self._processor_entry("quality_entry"),
        }
        for name, make in tasks.items():
            self._updater.add(name, _diagnostic_task(make))

    def _input_entry(self, name: str) -> health.DiagnosticEntry:
        if self._processor is None or not self._processor.running:
            return health.DiagnosticEntry(f"input {name}", health.WARN, "node not active")
        topic = self._topics[name]
        return health.input_entry(
            f"input {name}", topic, self._meters[name], self.count_publishers(topic),
            time.monotonic_ns(), self._processor.params.input.no_data_timeout_s)

    def _inference_entry(self) -> health.DiagnosticEntry:
        processor = self._processor
        if processor is None:
            return health.DiagnosticEntry("inference", health.WARN, "model not loaded")
        import torch

        device = processor.params.model.device
        memory = {}
        if device.startswith("cuda") and torch.cuda.is_available():
            memory = {"allocated": torch.cuda.memory_allocated(device) / 2**20,
                      "reserved": torch.cuda.memory_reserved(device) / 2**20,
                      "max_allocated": torch.cuda.max_memory_allocated(device) / 2**20}
        return health.inference_entry(processor.latency, processor.e2e, device, memory)

    def _processor_entry(self, method: str) -> health.DiagnosticEntry:
        if self._processor is None:  # the updater sets the status name itself
            return health.DiagnosticEntry("", health.WARN, "not configured")
        return getattr(self._processor, method)()


def _to_msg(types: Any, t: StampedTransform) -> Any:
    return messages.transform_stamped_msg(types, t.T_parent_child, t.stamp_ns, t.parent, t.child)


def _diagnostic_task(make: Any) -> Any:
    """diagnostic_updater task filling the status from a ``health.DiagnosticEntry``."""

    def run(stat: Any) -> Any:
        entry = make()
        stat.summary(bytes([entry.level]), entry.message)
        for key, value in entry.values.items():
            stat.add(key, value)
        return stat

    return run
