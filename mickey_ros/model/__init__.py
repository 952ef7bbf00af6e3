"""The MicKey network: DINOv2 backbone or demo CNN, four heads, matcher, configs, checkpoint I/O."""

from mickey_ros.model.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    checkpoint_metadata,
    load_checkpoint,
    load_state_dict_file,
    save_checkpoint,
)
from mickey_ros.model.config import (
    BackboneConfig,
    HeadsConfig,
    MatcherConfig,
    MickeyConfig,
    get_model_config,
    mickey_demo_cnn,
    mickey_small,
    mickey_tiny,
    mickey_vitl14,
    mickey_vits14,
)
from mickey_ros.model.mickey import MicKey, MicKeyFeatures

__all__ = [
    "BackboneConfig",
    "CheckpointError",
    "HeadsConfig",
    "MatcherConfig",
    "MicKey",
    "MicKeyFeatures",
    "MickeyConfig",
    "UnsafeCheckpointError",
    "checkpoint_metadata",
    "get_model_config",
    "load_checkpoint",
    "load_state_dict_file",
    "mickey_demo_cnn",
    "mickey_small",
    "mickey_tiny",
    "mickey_vitl14",
    "mickey_vits14",
    "save_checkpoint",
]
