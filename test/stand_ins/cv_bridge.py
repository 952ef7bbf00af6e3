"""Stand-in for cv_bridge (no PyPI wheel): ``imgmsg_to_cv2`` for the colour encodings of the test.

rgb8, bgr8 and mono8 are converted to ``desired_encoding`` rgb8 with OpenCV; any other encoding
raises ``CvBridgeError`` (the real one converts more, e.g. Bayer, and also raises for 16UC1 ->
rgb8), so the node's rosbags-image fallback runs for them.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "mono8": cv2.COLOR_GRAY2RGB}


class CvBridgeError(TypeError):
    """cv_bridge's error type."""


class CvBridge:
    def imgmsg_to_cv2(self, img_msg: Any, desired_encoding: str = "passthrough") -> np.ndarray:
        if desired_encoding != "rgb8" or img_msg.encoding not in _CHANNELS:
            raise CvBridgeError(f"cv_bridge stand-in: [{img_msg.encoding}] -> "
                                f"[{desired_encoding}] not supported")
        channels = _CHANNELS[img_msg.encoding]
        rows = np.frombuffer(bytes(img_msg.data), np.uint8).reshape(img_msg.height, img_msg.step)
        pixels = rows[:, : img_msg.width * channels].reshape(img_msg.height, img_msg.width,
                                                            channels)
        if img_msg.encoding == "rgb8":
            return pixels.copy()
        return cv2.cvtColor(pixels, _TO_RGB[img_msg.encoding])
