"""mickey_ros: metric relative pose of a live camera to a reference keyframe with MicKey.

Kept free of heavy imports: under colcon, rosidl installs its generated ``mickey_ros.msg`` package
beside this file, and this module replaces rosidl's empty ``__init__.py``.
Never define ``msg`` here.
"""

__version__ = "0.1.0"
