"""Make test/unit collect the same with and without launch_testing's pytest plugin.

On a ROS machine launch_testing's plugin is loaded into every pytest run (also ``colcon test``'s
``unit`` target) and imports each test file as a top-level module of its directory to look for a
launch test. That breaks relative imports ("attempted relative import with no known parent
package") and files sharing a basename in two folders (``model/test_config.py`` and
``train/test_config.py``: ImportMismatchError). So: no relative imports here (this directory is
put on ``sys.path`` and the helpers import as ``import fake_ros``), and files under test/unit,
which hold no launch tests, are collected as plain pytest modules before that plugin sees them.
Log messages are asserted through the ``logged`` fixture below, never ``caplog`` (issue 28).
"""

import logging
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module:
    return pytest.Module.from_parent(parent, path=module_path)


class LogCatcher(logging.Handler):
    """Records of one logger, caught by a handler on that logger itself."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        """Every message, one a line (as ``caplog.text`` without the prefixes)."""
        return "\n".join(record.getMessage() for record in self.records)


@pytest.fixture
def logged():
    """``logged(name, level)`` -> a ``LogCatcher`` on the logger ``name`` for this test.

    Use it, never ``caplog``, to assert on log messages (issue 28). caplog listens on the root
    logger and relies on propagation, which ROS 2's ``launch.logging`` turns off for every logger
    created after its import (launch_testing's pytest plugin imports it on a ROS machine, also
    into ``colcon test``; Ubuntu's pytest 7 then sees nothing). A handler on the named logger
    itself, with that logger's level set, sees the records whatever logging setup is installed.
    Give the exact name the code logs on: a child does not propagate to it either.
    """
    attached: list[tuple[logging.Logger, LogCatcher, int]] = []

    def catch(name: str, level: int = logging.DEBUG) -> LogCatcher:
        logger, catcher = logging.getLogger(name), LogCatcher()
        attached.append((logger, catcher, logger.level))
        logger.addHandler(catcher)
        logger.setLevel(level)
        return catcher

    yield catch
    for logger, catcher, level in reversed(attached):
        logger.removeHandler(catcher)
        logger.setLevel(level)


@pytest.fixture
def dead_pid() -> int:
    """A pid no process has (a killed run's staging names carry such a pid): one above the
    kernel's largest. An exited child's pid would not do: pids wrap (32768 here) and the suite
    starts many processes, so it may belong to another process by the time it is checked."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
