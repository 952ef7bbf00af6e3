"""Shared by the bag tests: rosbags messages as the plain values mcap-ros2-support encodes."""

from __future__ import annotations

import numpy as np


def plain(msg):
    """rosbags message -> dicts, lists and bytes (what mcap-ros2-support's encoder accepts)."""
    if isinstance(msg, np.ndarray):
        return msg.tobytes() if msg.dtype == np.uint8 else msg.tolist()
    if isinstance(msg, list):
        return [plain(x) for x in msg]
    if hasattr(msg, "__dataclass_fields__"):
        return {name: plain(getattr(msg, name)) for name in msg.__dataclass_fields__
                if name != "__msgtype__"}
    return msg
