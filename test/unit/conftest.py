"""Make test/unit collect the same with and without launch_testing's pytest plugin.

On a ROS machine launch_testing's plugin is loaded into every pytest run (also ``colcon test``'s
``unit`` target) and imports each test file as a top-level module of its directory to look for a
launch test. That breaks relative imports ("attempted relative import with no known parent
package") and files sharing a basename in two folders (``model/test_config.py`` and
``train/test_config.py``: ImportMismatchError). So: no relative imports here (this directory is
put on ``sys.path`` and the helpers import as ``import fake_ros``), and files under test/unit,
which hold no launch tests, are collected as plain pytest modules before that plugin sees them.
"""

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module:
    return pytest.Module.from_parent(parent, path=module_path)
