"""Stand-in for tf2_ros (no PyPI wheel): only the broadcasters the node's TF modes except
map_to_odom use, on the same topics with the same QoS as tf2_ros Jazzy.

``TransformBroadcaster``: ``/tf``, keep last 100, reliable, volatile.
``StaticTransformBroadcaster``: ``/tf_static``, keep last 1, reliable, transient local, sending
every static edge so far in one message. ``Buffer``/``TransformListener`` (map_to_odom) need
tf2's time-interpolating buffer and are not stood in for: they raise.
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
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("tf2_ros stand-in: map_to_odom needs the real tf2_ros Buffer")


class TransformListener(Buffer):
    pass
