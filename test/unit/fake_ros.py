"""A minimal in-process stand-in for the ROS 2 Python APIs the node uses (no DDS, no rclpy).

Only for exercising the wiring of ``mickey_ros.ros`` where ROS is not installed: message classes
are rosbags' ROS 2 Jazzy classes (same field names), publishers record what they publish,
subscriptions are callables the test invokes. The API surface mirrors rclpy/tf2_ros/
message_filters/diagnostic_updater as used by the node (signatures read from their Jazzy
sources); behaviour beyond that is not modelled, except that ``qos_overrides`` are written into
the given QoS profile as rclpy does. The real thing is tested by test/ros_wheels/ (real rclpy from
PyPI wheels) and test/ros/ (on a ROS machine).
"""

from __future__ import annotations

import enum
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rosbags.typesys import Stores, get_typestore

from mickey_ros.relocalization import messages

TS = get_typestore(Stores.ROS2_JAZZY)
messages.register_relative_pose(TS)


class Duration:
    def __init__(self, *, seconds: float = 0.0, nanoseconds: int = 0):
        self.nanoseconds = int(seconds * 1e9) + int(nanoseconds)


class Time:
    def __init__(self, *, seconds: float = 0.0, nanoseconds: int = 0, clock_type: Any = None):
        self.nanoseconds = int(seconds * 1e9) + int(nanoseconds)


@dataclass
class TimeJump:
    clock_change: Any
    delta: Duration


class JumpThreshold:
    def __init__(self, *, min_forward, min_backward, on_clock_change=True):
        assert min_backward is None or min_backward.nanoseconds < 0
        self.min_backward = min_backward


class Clock:
    def __init__(self):
        self.ns = 1_000_000_000
        self.ros_time_is_active = False  # rclpy's ROSClock property: True under use_sim_time
        self.jump_callbacks: list[Callable] = []

    def now(self) -> Time:
        return Time(nanoseconds=self.ns)

    def create_jump_callback(self, threshold, *, pre_callback=None, post_callback=None):
        self.jump_callbacks.append(post_callback)
        return object()

    def jump_to(self, ns: int) -> None:
        delta, self.ns = ns - self.ns, ns
        for callback in self.jump_callbacks:
            callback(TimeJump(None, Duration(nanoseconds=delta)))


class Logger:
    def __init__(self):
        self.records: list[tuple[str, str]] = []

    def _log(self, level: str, msg: str, **kwargs: Any) -> None:
        assert set(kwargs) <= {"throttle_duration_sec", "once"}
        self.records.append((level, msg))

    def info(self, msg, **kw):
        self._log("info", msg, **kw)

    def warning(self, msg, **kw):
        self._log("warn", msg, **kw)

    def error(self, msg, **kw):
        self._log("error", msg, **kw)

    def fatal(self, msg, **kw):
        self._log("fatal", msg, **kw)


class TransitionCallbackReturn(enum.Enum):
    SUCCESS = 0
    FAILURE = 1
    ERROR = 2


@dataclass
class LifecycleState:
    label: str = "unconfigured"
    state_id: int = 0


@dataclass
class Publisher:
    msg_type: Any
    topic: str
    qos: Any
    sent: list = field(default_factory=list)
    active: bool = True

    def publish(self, msg: Any) -> None:
        assert isinstance(msg, self.msg_type), (type(msg), self.msg_type)
        if msg.__msgtype__ != "sensor_msgs/msg/Image":  # rclpy-style array.array data
            TS.serialize_cdr(msg, msg.__msgtype__)  # every published message is well formed
        if self.active:
            self.sent.append(msg)


@dataclass
class Subscription:
    msg_type: Any
    topic: str
    callback: Callable
    qos: Any
    kwargs: dict


class Timer:
    def __init__(self, period, callback):
        self.period, self.callback = period, callback

    def cancel(self):
        pass


class LifecycleNode:
    def __init__(self, node_name: str, *, parameter_overrides: dict | None = None, **kwargs):
        self.name, self.namespace = node_name, "/ns"
        self.overrides = dict(parameter_overrides or {})
        self.params: dict[str, Any] = {}
        self.descriptors: dict[str, Any] = {}
        self.set_callbacks: list[Callable] = []
        self.clock, self.logger = Clock(), Logger()
        self.publishers: list[Publisher] = []
        self.subscriptions: list[Subscription] = []
        self.services: dict[str, Callable] = {}
        self.timers: list[Timer] = []
        self.publisher_counts: dict[str, int] = {}
        self.state = "unconfigured"

    # parameters
    def declare_parameter(self, name, value, descriptor=None):
        assert name not in self.params, f"{name} declared twice"
        chosen = self.overrides.get(name, value)
        if type(chosen) is not type(value):  # rclpy refuses a value of another type
            raise TypeError(f"{name}: {chosen!r} is not {type(value).__name__}")
        self.params[name], self.descriptors[name] = chosen, descriptor
        return types.SimpleNamespace(value=chosen)

    def get_parameter(self, name):
        return types.SimpleNamespace(name=name, value=self.params[name])

    def add_on_set_parameters_callback(self, callback):
        self.set_callbacks.append(callback)

    def set_parameters(self, values: dict) -> list:
        changed = [types.SimpleNamespace(name=k, value=v) for k, v in values.items()]
        for name in values:
            if self.descriptors[name].read_only:
                return [types.SimpleNamespace(successful=False, reason="read-only")]
        results = [cb(changed) for cb in self.set_callbacks]
        if all(r.successful for r in results):
            self.params.update(values)
        return results

    # basics
    def get_name(self):
        return self.name

    def get_clock(self):
        return self.clock

    def get_logger(self):
        return self.logger

    def resolve_topic_name(self, topic: str, *, only_expand: bool = False) -> str:
        if topic.startswith("/"):
            return topic
        if topic.startswith("~/"):
            return f"{self.namespace}/{self.name}/{topic[2:]}"
        return f"{self.namespace}/{topic}"

    def count_publishers(self, topic: str) -> int:
        return self.publisher_counts.get(topic, 0)

    # entities
    def create_publisher(self, msg_type, topic, qos, **kwargs):
        publisher = Publisher(msg_type, self.resolve_topic_name(topic), qos)
        self.publishers.append(publisher)
        return publisher

    def create_lifecycle_publisher(self, msg_type, topic, qos, **kwargs):
        publisher = self.create_publisher(msg_type, topic, qos)
        publisher.active = False
        return publisher

    def destroy_publisher(self, publisher):
        self.publishers.remove(publisher)

    destroy_lifecycle_publisher = destroy_publisher

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        assert not isinstance(qos_profile, int) or qos_profile > 0
        topic = self.resolve_topic_name(topic)
        options = kwargs.get("qos_overriding_options")
        for kind in options.args[0] if options is not None else ():
            # as rclpy's _declare_qos_parameters: the override is written INTO the given profile
            name = kind.name.lower()
            value = self.overrides.get(f"qos_overrides.{topic}.subscription.{name}")
            if value is not None:
                current = getattr(qos_profile, name)
                setattr(qos_profile, name,
                        value if isinstance(value, int) else type(current)[value.upper()])
        sub = Subscription(msg_type, topic, callback, qos_profile, kwargs)
        self.subscriptions.append(sub)
        return sub

    def destroy_subscription(self, sub):
        self.subscriptions.remove(sub)

    def create_service(self, srv_type, name, callback):
        self.services[self.resolve_topic_name(name)] = callback
        return name

    def destroy_service(self, name):
        del self.services[self.resolve_topic_name(name)]

    def create_timer(self, period, callback):
        timer = Timer(period, callback)
        self.timers.append(timer)
        return timer

    def destroy_timer(self, timer):
        self.timers.remove(timer)

    # lifecycle
    def _transition(self, callback, target):
        result = callback(LifecycleState(self.state))
        if result == TransitionCallbackReturn.SUCCESS:
            self.state = target
        return result

    def trigger_configure(self):
        return self._transition(self.on_configure, "inactive")

    def trigger_activate(self):
        return self._transition(self.on_activate, "active")

    def trigger_deactivate(self):
        return self._transition(self.on_deactivate, "inactive")

    def trigger_cleanup(self):
        return self._transition(self.on_cleanup, "unconfigured")

    def on_activate(self, state):
        for publisher in self.publishers:
            publisher.active = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state):
        for publisher in self.publishers:
            publisher.active = False
        return TransitionCallbackReturn.SUCCESS

    def topic(self, name: str) -> list:
        return [p for p in self.publishers if p.topic == name]

    def subscribed(self, name: str) -> list[Subscription]:
        return [s for s in self.subscriptions if s.topic == name]


# ---------------------------------------------------------------------------- message_filters
class SimpleFilter:
    def __init__(self):
        self.callbacks: list[Callable] = []

    def registerCallback(self, cb, *args):  # noqa: N802 - message_filters API
        self.callbacks.append(cb)

    def signalMessage(self, *msgs):  # noqa: N802
        for cb in self.callbacks:
            cb(*msgs)


class MfSubscriber(SimpleFilter):
    def __init__(self, node, msg_type, topic, **kwargs):
        super().__init__()
        kwargs.setdefault("qos_profile", 10)
        self.sub = node.create_subscription(msg_type, topic, self.signalMessage, **kwargs)


class ApproximateTimeSynchronizer(SimpleFilter):
    """Pairs messages with equal stamps (enough for the wiring tests)."""

    def __init__(self, fs, queue_size, slop):
        super().__init__()
        assert slop > 0, "message_filters needs slop > 0 (it compares with a strict <)"
        self.queues = [{} for _ in fs]
        for i, f in enumerate(fs):
            f.registerCallback(lambda msg, i=i: self._add(i, msg))

    def _add(self, i, msg):
        stamp = messages.stamp_to_ns(msg.header.stamp)
        self.queues[i][stamp] = msg
        if all(stamp in q for q in self.queues):
            self.signalMessage(*[q.pop(stamp) for q in self.queues])


# ---------------------------------------------------------------------------- tf2_ros
class TransformException(Exception):  # noqa: N818 - tf2_ros name
    pass


class Buffer:
    def __init__(self, *args, **kwargs):
        self.transforms: dict[tuple[str, str], Any] = {}
        self.cleared = 0

    def lookup_transform(self, target, source, time, timeout=None):
        if (target, source) not in self.transforms:
            raise TransformException(f"{target} -> {source} unknown")
        return self.transforms[(target, source)]

    def clear(self):
        self.cleared += 1


class TransformBroadcaster:
    def __init__(self, node, qos=100):
        self.pub_tf = node.create_publisher(TS.types["tf2_msgs/msg/TFMessage"], "/tf", qos)

    def sendTransform(self, transforms):  # noqa: N802 - tf2_ros API
        self.pub_tf.publish(TS.types["tf2_msgs/msg/TFMessage"](transforms=list(transforms)))


class StaticTransformBroadcaster(TransformBroadcaster):
    def __init__(self, node, qos=1):
        self.pub_tf = node.create_publisher(TS.types["tf2_msgs/msg/TFMessage"], "/tf_static", qos)


class TransformListener:
    def __init__(self, buffer, node, **kwargs):
        tf_type = TS.types["tf2_msgs/msg/TFMessage"]
        self.tf_sub = node.create_subscription(tf_type, "/tf", lambda m: None, 100)
        self.tf_static_sub = node.create_subscription(tf_type, "/tf_static", lambda m: None, 1)
        self.node = node

    def unregister(self):
        self.node.destroy_subscription(self.tf_sub)
        self.node.destroy_subscription(self.tf_static_sub)


# ---------------------------------------------------------------------------- others
class CvBridgeError(TypeError):
    pass


class CvBridge:
    """cv_bridge stand-in: decodes through messages (the ROS test compares the real one)."""

    def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
        assert desired_encoding == "rgb8"
        if msg.encoding == "16UC1":
            raise CvBridgeError("[16UC1] is not a color format. but [rgb8] is.")
        return messages.image_msg_to_rgb(msg)


class Updater:
    def __init__(self, node, period=1.0):
        node.declare_parameter("diagnostic_updater.period", period)
        self.tasks: dict[str, Callable] = {}

    def setHardwareID(self, hwid):  # noqa: N802 - diagnostic_updater API
        self.hwid = hwid

    def add(self, name, fn):
        self.tasks[name] = fn

    def run(self) -> dict[str, Any]:
        out = {}
        for name, fn in self.tasks.items():
            stat = DiagnosticStatusWrapper()
            out[name] = fn(stat)
        return out


class DiagnosticStatusWrapper:
    def __init__(self):
        self.level, self.message, self.values = b"\x02", "", {}

    def summary(self, level, message):
        assert isinstance(level, bytes)
        self.level, self.message = level, message

    def add(self, key, value):
        assert isinstance(value, str)
        self.values[key] = value


def _kwargs_class(name: str) -> type:
    def __init__(self, *args, **kwargs):  # noqa: N807
        self.args = args
        self.__dict__.update(kwargs)

    return type(name, (), {"__init__": __init__})


def install(monkeypatch) -> None:
    """Put the fake modules into ``sys.modules`` (undone by ``monkeypatch``)."""
    t = TS.types
    qos = types.SimpleNamespace(
        DurabilityPolicy=enum.Enum("DurabilityPolicy", "VOLATILE TRANSIENT_LOCAL"),
        HistoryPolicy=enum.Enum("HistoryPolicy", "KEEP_LAST KEEP_ALL"),
        ReliabilityPolicy=enum.Enum("ReliabilityPolicy", "RELIABLE BEST_EFFORT"),
        QoSPolicyKind=enum.Enum("QoSPolicyKind", "HISTORY DEPTH RELIABILITY DURABILITY"),
        QoSProfile=_kwargs_class("QoSProfile"),
    )
    trigger = types.SimpleNamespace(Request=_kwargs_class("Request"),
                                    Response=_kwargs_class("Response"))
    modules = {
        "rclpy": types.SimpleNamespace(),
        "rclpy.clock": types.SimpleNamespace(JumpThreshold=JumpThreshold, TimeJump=TimeJump),
        "rclpy.duration": types.SimpleNamespace(Duration=Duration),
        "rclpy.time": types.SimpleNamespace(Time=Time),
        "rclpy.lifecycle": types.SimpleNamespace(
            LifecycleNode=LifecycleNode, LifecycleState=LifecycleState,
            TransitionCallbackReturn=TransitionCallbackReturn),
        "rclpy.qos": qos,
        "rclpy.qos_overriding_options": types.SimpleNamespace(
            QoSOverridingOptions=_kwargs_class("QoSOverridingOptions")),
        "rcl_interfaces": types.SimpleNamespace(),
        "rcl_interfaces.msg": types.SimpleNamespace(
            FloatingPointRange=_kwargs_class("FloatingPointRange"),
            IntegerRange=_kwargs_class("IntegerRange"),
            ParameterDescriptor=_kwargs_class("ParameterDescriptor"),
            SetParametersResult=_kwargs_class("SetParametersResult")),
        "message_filters": types.SimpleNamespace(
            Subscriber=MfSubscriber, ApproximateTimeSynchronizer=ApproximateTimeSynchronizer),
        "tf2_ros": types.SimpleNamespace(
            Buffer=Buffer, TransformBroadcaster=TransformBroadcaster,
            StaticTransformBroadcaster=StaticTransformBroadcaster,
            TransformListener=TransformListener, TransformException=TransformException),
        "cv_bridge": types.SimpleNamespace(CvBridge=CvBridge, CvBridgeError=CvBridgeError),
        "diagnostic_updater": types.SimpleNamespace(Updater=Updater),
        "std_srvs": types.SimpleNamespace(),
        "std_srvs.srv": types.SimpleNamespace(Trigger=trigger),
        "builtin_interfaces.msg": types.SimpleNamespace(Time=t["builtin_interfaces/msg/Time"]),
        "std_msgs.msg": types.SimpleNamespace(Header=t["std_msgs/msg/Header"]),
        "tf2_msgs.msg": types.SimpleNamespace(TFMessage=t["tf2_msgs/msg/TFMessage"]),
        "mickey_ros.msg": types.SimpleNamespace(RelativePose=t[messages.RELATIVE_POSE_TYPE]),
        "sensor_msgs.msg": types.SimpleNamespace(**{
            n: t[f"sensor_msgs/msg/{n}"]
            for n in ("CameraInfo", "CompressedImage", "Image", "RegionOfInterest")}),
        "geometry_msgs.msg": types.SimpleNamespace(**{
            n: t[f"geometry_msgs/msg/{n}"]
            for n in ("Point", "Pose", "PoseWithCovariance", "PoseWithCovarianceStamped",
                      "Quaternion", "Transform", "TransformStamped", "Vector3")}),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in [n for n in sys.modules if n.startswith("mickey_ros.ros.")]:
        monkeypatch.delitem(sys.modules, name)


def forget_node_modules() -> None:
    """Drop ``mickey_ros.ros.*`` modules imported against the fakes (after a test)."""
    import mickey_ros.ros

    for name in [n for n in sys.modules if n.startswith("mickey_ros.ros.")]:
        del sys.modules[name]
        if hasattr(mickey_ros.ros, name.rsplit(".", 1)[1]):
            delattr(mickey_ros.ros, name.rsplit(".", 1)[1])


def rosbags_types() -> messages.MessageTypes:
    """The rosbags classes the fake node publishes (for building input messages)."""
    return messages.MessageTypes.from_typestore(TS)

