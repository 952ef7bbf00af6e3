"""Robot bags -> a Map-free-layout training set (``mickey-ros dataset``).

``config`` (settings), ``frames`` (keyframes streamed from the bags), ``pairs`` (co-visibility,
splits), ``layout`` (scene folders), ``summary`` (counts and plots), ``convert`` (``main``).
"""

from mickey_ros.dataset.config import DatasetConfig, DatasetError
from mickey_ros.dataset.convert import main

__all__ = ["DatasetConfig", "DatasetError", "main"]
