"""Stand-in for message_filters (no PyPI wheel): ``Subscriber`` and a two-or-more input
``ApproximateTimeSynchronizer``, as the node uses them.

``Subscriber(node, type, topic, **kwargs)`` creates ``node.create_subscription(type, topic, cb,
**kwargs)`` (``qos_profile`` defaults to 10, i.e. reliable, as in message_filters Jazzy) and keeps
it in ``.sub``. The synchroniser emits one tuple when every input has a message whose stamp lies
within ``slop`` s (strictly) of the newest one, removing the emitted messages; each input keeps at
most ``queue_size`` messages. Simpler than message_filters' search, same outcome for the node's
paired image/CameraInfo streams.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def _stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class SimpleFilter:
    def __init__(self) -> None:
        self.callbacks: list[Callable] = []

    def registerCallback(self, cb: Callable, *args: Any) -> None:  # noqa: N802 - API name
        self.callbacks.append(lambda *msgs: cb(*(msgs + args)))

    def signalMessage(self, *msgs: Any) -> None:  # noqa: N802 - API name
        for cb in self.callbacks:
            cb(*msgs)


class Subscriber(SimpleFilter):
    def __init__(self, node: Any, msg_type: Any, topic: str, **kwargs: Any) -> None:
        super().__init__()
        kwargs.setdefault("qos_profile", 10)
        self.sub = node.create_subscription(msg_type, topic, self.signalMessage, **kwargs)


class ApproximateTimeSynchronizer(SimpleFilter):
    def __init__(self, fs: list, queue_size: int, slop: float) -> None:
        super().__init__()
        self.queue_size, self.slop_ns = queue_size, int(slop * 1e9)
        self.queues: list[dict[int, Any]] = [{} for _ in fs]
        self.lock = threading.Lock()
        for i, f in enumerate(fs):
            f.registerCallback(self.add, i)

    def add(self, msg: Any, index: int) -> None:
        stamp = _stamp_ns(msg)
        with self.lock:
            queue = self.queues[index]
            queue[stamp] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
            chosen = []
            for q in self.queues:
                near = [s for s in q if abs(s - stamp) < self.slop_ns]
                if not near:
                    return
                chosen.append(min(near, key=lambda s: abs(s - stamp)))
            msgs = [q.pop(s) for q, s in zip(self.queues, chosen)]
        self.signalMessage(*msgs)
