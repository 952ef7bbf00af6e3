"""Writing rosbag2 recordings without ROS (rosbags): type store, QoS profiles and writer helpers.

``ros2 bag play`` republishes each topic with the QoS recorded in ``offered_qos_profiles``. A
topic written with no profile replays VOLATILE, so a late subscriber to ``/tf_static`` or to a
reference keyframe published once would never get it; such topics use ``LATCHED_QOS``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from mickey_ros.relocalization.messages import RELATIVE_POSE_TYPE as RELATIVE_POSE_TYPE

logger = logging.getLogger(__name__)


STORAGES = ("sqlite3", "mcap")

_DEFAULT_TIME = QosTime(sec=0, nsec=0)  # rmw "unspecified": deadline/lifespan infinite


def _qos(
    history: QosHistory, depth: int, reliability: QosReliability, durability: QosDurability
) -> list[Qos]:
    return [
        Qos(
            history,
            depth,
            reliability,
            durability,
            _DEFAULT_TIME,
            _DEFAULT_TIME,
            QosLiveliness.AUTOMATIC,
            _DEFAULT_TIME,
            False,
        )
    ]


# Published once, kept for late joiners (like /tf_static): reliable, transient local, keep last 1.
LATCHED_QOS = _qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL)
# rclpy's qos_profile_sensor_data: best effort, volatile, keep last 5.
SENSOR_QOS = _qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE)
# rclpy's default publisher profile: reliable, volatile, keep last 10.
DEFAULT_QOS = _qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE)

def make_typestore() -> Any:
    """A rosbags ROS 2 Jazzy type store with ``mickey_ros/msg/RelativePose`` registered.

    The message text is ``mickey_ros.relocalization.messages.RELATIVE_POSE_MSG``, kept equal to
    ``msg/RelativePose.msg`` by a test, so pip installs without the ``msg/`` folder work too.
    """
    from rosbags.typesys import Stores, get_typestore

    from mickey_ros.relocalization.messages import register_relative_pose

    typestore = get_typestore(Stores.ROS2_JAZZY)
    register_relative_pose(typestore)
    return typestore


@contextlib.contextmanager
def open_writer(path: str | Path, storage: str = "sqlite3") -> Iterator[Any]:
    """Context manager yielding an open ``rosbags.rosbag2.Writer`` (metadata version 9).

    Args:
        path: the bag directory to create (it must not exist).
        storage: ``"sqlite3"`` (``.db3``) or ``"mcap"``.

    Raises:
        ValueError: unknown storage. FileExistsError: ``path`` exists.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(
            f"{path} already exists; rosbag2 writes a new directory, choose "
            "another path or delete it"
        )
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    writer = Writer(path, version=9, storage_plugin=plugin)
    writer.open()
    try:
        yield writer
    finally:
        writer.close()


def add_connection(
    writer: Any, topic: str, msgtype: str, typestore: Any, qos: list[Qos] = DEFAULT_QOS
) -> Any:
    """Add a topic with its message type and offered QoS profiles; returns the connection."""
    return writer.add_connection(topic, msgtype, typestore=typestore, offered_qos_profiles=qos)


def write_message(writer: Any, connection: Any, stamp_ns: int, msg: Any, typestore: Any) -> None:
    """CDR-serialise ``msg`` and write it at bag time ``stamp_ns``."""
    writer.write(connection, int(stamp_ns), typestore.serialize_cdr(msg, connection.msgtype))
