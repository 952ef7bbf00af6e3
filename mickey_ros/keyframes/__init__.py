"""Keyframe library: posed keyframes on disk, chosen per live frame (ROS-free, below front-ends)."""

from mickey_ros.keyframes.library import KeyframeLibrary, feature_source
from mickey_ros.keyframes.localizer import LibraryLocalizer, Localization, LocalizerConfig
from mickey_ros.keyframes.store import FeatureSource, LibraryError

__all__ = ["FeatureSource", "KeyframeLibrary", "LibraryError", "LibraryLocalizer",
           "Localization", "LocalizerConfig", "feature_source"]
