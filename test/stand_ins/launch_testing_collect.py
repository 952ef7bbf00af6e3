"""pytest plugin doing what launch_testing's collection hook does to every test file.

launch_testing (loaded by pytest's entry points on a ROS machine, so also into ``colcon test``'s
unit target) imports each collected file with ``py.path.local(path).pyimport()`` to look for
``generate_test_description``: the file becomes a top-level module of its directory. Loaded with
``-p launch_testing_collect`` where launch_testing itself is not installed.
"""

from _pytest._py.path import LocalPath


def pytest_pycollect_makemodule(module_path, parent):
    LocalPath(module_path).pyimport()  # raises as launch_testing's find_launch_test_entrypoint
