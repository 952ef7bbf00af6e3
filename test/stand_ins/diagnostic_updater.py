"""Stand-in for diagnostic_updater (no PyPI wheel): ``Updater`` as the node uses it.

As diagnostic_updater Jazzy: declares ``diagnostic_updater.period``, publishes one
``diagnostic_msgs/DiagnosticArray`` with every task on ``/diagnostics`` (keep last 1, reliable,
volatile) each period, status names prefixed with the node name, hardware id from
``setHardwareID``; tasks get a ``DiagnosticStatusWrapper`` (``summary``, ``add``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class DiagnosticStatusWrapper(DiagnosticStatus):
    def summary(self, lvl: bytes, msg: str) -> None:
        self.level, self.message = lvl, msg

    def add(self, key: str, val: Any) -> None:
        self.values.append(KeyValue(key=key, value=str(val)))


class Updater:
    def __init__(self, node: Any, period: float = 1.0) -> None:
        self.node, self.hwid = node, ""
        self.tasks: list[tuple[str, Callable]] = []
        self.period = node.declare_parameter("diagnostic_updater.period", period).value
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 1)
        self.timer = node.create_timer(self.period, self.update)

    def setHardwareID(self, hwid: str) -> None:  # noqa: N802 - API name
        self.hwid = hwid

    def add(self, name: str, fn: Callable) -> None:
        self.tasks.append((name, fn))

    def update(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        for name, fn in self.tasks:
            stat = DiagnosticStatusWrapper(level=DiagnosticStatus.STALE, name=name,
                                           message="No message was set", hardware_id=self.hwid)
            stat = fn(stat)
            # a plain DiagnosticStatus: rosidl's C conversion checks the element's class name
            array.status.append(DiagnosticStatus(
                level=stat.level, name=f"{self.node.get_name()}: {name}", message=stat.message,
                hardware_id=stat.hardware_id, values=stat.values))
        self.publisher.publish(array)
