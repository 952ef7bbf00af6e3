"""Shared by the model and demo-script tests: model configs at test size."""

from __future__ import annotations

from dataclasses import replace

from mickey_ros.model.config import MickeyConfig, mickey_demo_cnn


def small_demo_cnn() -> MickeyConfig:
    """mickey_demo_cnn's layout at test size (a few thousand parameters per module)."""
    cfg = mickey_demo_cnn()
    return replace(cfg, backbone=replace(cfg.backbone, embed_dim=16, depth=4),
                   heads=replace(cfg.heads, blocks_dim=(16, 16, 16, 8)))
