"""Helpers below every layer: image loading and resizing, shape checks, YAML configs."""
