"""Fixtures for the synthetic-scene tests: an EGL context (or a visible skip) and tiny renderers."""

from __future__ import annotations

import pytest

from mickey_ros.synth.cameras import PairSamplingConfig
from mickey_ros.synth.render import EGLUnavailableError, shared_egl_context

SMALL_WH = (160, 120)
# Moderate motion so few pixels are occluded; the GT check compares depth on co-visible pixels.
EASY = PairSamplingConfig(
    baseline_m=(0.1, 0.8), rotation_deg=(0.0, 15.0), overlap=(0.5, 1.0), pairs_per_scene=2
)


@pytest.fixture(scope="session")
def easy_config() -> PairSamplingConfig:
    return EASY


@pytest.fixture(scope="session")
def small_wh() -> tuple[int, int]:
    return SMALL_WH


@pytest.fixture(scope="session")
def egl():
    """The shared headless context; skips (with the reason) where EGL/Mesa is missing."""
    try:
        return shared_egl_context()
    except EGLUnavailableError as err:
        pytest.skip(f"needs a headless EGL OpenGL context: {err}")


@pytest.fixture(scope="session")
def pair_renderer(egl):
    from mickey_ros.synth.pairs import PairRenderer

    renderer = PairRenderer(SMALL_WH, seed=3, config=EASY)
    yield renderer
    renderer.close()


@pytest.fixture(scope="session")
def easy_pairs(pair_renderer):
    """Four rendered pairs (indices 0, 1 in a room, 2, 3 in a courtyard), shared by the tests."""
    return [pair_renderer.render_pair(i) for i in range(4)]
