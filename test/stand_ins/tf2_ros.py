"""Stand-in for tf2_ros (no PyPI wheel): the broadcasters, on the same topics with the same QoS
as tf2_ros Jazzy, and a much smaller buffer.

``TransformBroadcaster``: ``/tf``, keep last 100, reliable, volatile.
``StaticTransformBroadcaster``: ``/tf_static``, keep last 1, reliable, transient local, sending
every static edge so far in one message. ``Buffer``/``TransformListener``: the latest transform
of each edge as received, looked up only as that direct edge (no chaining, no inversion, no
time interpolation, no waiting): enough for a test that publishes the very edge the node asks
for (the keyframe library's map pose); tf2's real buffer is tested on a ROS machine.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from tf2_msgs.msg import TFMessage


class TransformException(Exception):  # noqa: N818 - tf2_ros name
    """tf2's base error."""


def _as_list(transform: Any) -> list:
    return list(transform) if isinstance(transform, (list, tuple)) else [transform]


class TransformBroadcaster:
    """``/tf`` publisher."""

    def __init__(self, node: Any, qos: QoSProfile | int = 100) -> None:
        self.pub_tf = node.create_publisher(TFMessage, "/tf", qos)

    def sendTransform(self, transform: Any) -> None:  # noqa: N802 - tf2_ros API
        self.pub_tf.publish(TFMessage(transforms=_as_list(transform)))


class StaticTransformBroadcaster:
    """``/tf_static`` latched publisher; every edge sent so far, keyed by child frame."""

    def __init__(self, node: Any, qos: QoSProfile | int | None = None) -> None:
        if qos is None:
            qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             history=HistoryPolicy.KEEP_LAST)
        self.pub_tf = node.create_publisher(TFMessage, "/tf_static", qos)
        self._edges: dict[str, Any] = {}

    def sendTransform(self, transform: Any) -> None:  # noqa: N802 - tf2_ros API
        for t in _as_list(transform):
            self._edges[t.child_frame_id] = t
        self.pub_tf.publish(TFMessage(transforms=list(self._edges.values())))


class Buffer:
    """Latest transform per (parent, child); ``lookup_transform`` of a direct edge only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.edges: dict[tuple[str, str], Any] = {}

    def set_transform(self, transform: Any, authority: str) -> None:
        self.edges[(transform.header.frame_id, transform.child_frame_id)] = transform

    set_transform_static = set_transform

    def lookup_transform(self, target_frame: str, source_frame: str, time: Any,
                         timeout: Any = None) -> Any:
        edge = self.edges.get((target_frame, source_frame))
        if edge is None:
            raise TransformException(f"tf2_ros stand-in: no direct edge {target_frame} -> "
                                     f"{source_frame} received (it neither chains nor inverts)")
        return edge

    def clear(self) -> None:
        self.edges.clear()


class TransformListener:
    """Feeds ``buffer`` from ``/tf`` and ``/tf_static`` (the node's executor spins it)."""

    def __init__(self, buffer: Buffer, node: Any, **kwargs: Any) -> None:
        latched = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             history=HistoryPolicy.KEEP_LAST)
        self.node = node
        self.tf_sub = node.create_subscription(
            TFMessage, "/tf", lambda m: [buffer.set_transform(t, "") for t in m.transforms], 100)
        self.tf_static_sub = node.create_subscription(
            TFMessage, "/tf_static",
            lambda m: [buffer.set_transform_static(t, "") for t in m.transforms], latched)

    def unregister(self) -> None:
        self.node.destroy_subscription(self.tf_sub)
        self.node.destroy_subscription(self.tf_static_sub)
