"""driver.py runs under the ROS venv's python (rclpy), never in this pytest process.

test/unit goes on ``sys.path`` for its plain helper modules (``colcon_targets``).
"""

import sys
from pathlib import Path

collect_ignore = ["driver.py"]

_UNIT = str(Path(__file__).resolve().parents[1] / "unit")
if _UNIT not in sys.path:
    sys.path.insert(0, _UNIT)
