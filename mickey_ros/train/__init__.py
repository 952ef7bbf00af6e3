"""Offline MicKey training (``mickey-train``, docs/training.md).

Importing this package stays light; ``mickey_ros.train.main`` and ``.module`` import Lightning.
"""

from mickey_ros.train.config import TrainConfig, load_train_config

__all__ = ["TrainConfig", "load_train_config"]
