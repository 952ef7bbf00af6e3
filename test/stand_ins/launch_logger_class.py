"""Stand-in (test-only) for the import side effect of ROS 2's ``launch.logging``.

On a ROS machine launch_testing's pytest plugin is loaded into every pytest run (``colcon
test``'s unit target too) and imports ``launch.logging``, which calls
``logging.setLoggerClass(LaunchLogger)``; that class sets ``propagate = False`` in its
``__init__``, so every logger created afterwards (``mickey_ros.eval``, ``mickey_ros.replay.*``
...) never reaches the root logger where pytest's ``caplog`` listens. ``launch`` has no PyPI
wheel, so this plugin does the same where it is missing: load it with ``-p launch_logger_class``
and ``test/stand_ins`` on ``PYTHONPATH`` (test/unit/test_colcon_unit_target.py does).
"""

import logging


class LaunchLogger(logging.getLoggerClass()):
    """As launch.logging.LaunchLogger (Jazzy): a logger that does not propagate."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.propagate = False


logging.setLoggerClass(LaunchLogger)


def pytest_report_header(config):
    probe = logging.getLogger("launch_logger_class.probe")
    return (f"launch_logger_class stand-in: logger class {type(probe).__name__}, "
            f"propagate {probe.propagate}")
