from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.synth.primitives import SKY_LAYER, VERTEX_FLOATS
from mickey_ros.synth.scene import SCENE_KINDS, make_scene
from mickey_ros.synth.textures import load_texture_bank


@pytest.fixture(scope="module")
def bank():
    return load_texture_bank()


class TestMakeScene:
    @pytest.mark.parametrize("kind", SCENE_KINDS)
    def test_geometry(self, bank, kind):
        scene = make_scene(kind, np.random.default_rng(0), bank)
        v = scene.vertices
        assert v.dtype == np.float32 and v.shape[1] == VERTEX_FLOATS and len(v) % 3 == 0
        assert np.isfinite(v).all() and len(scene.obstacles) >= 3
        layers = set(np.unique(v[:, 8]).tolist())
        assert (SKY_LAYER in layers) == (kind == "courtyard")
        assert layers - {SKY_LAYER} <= set(range(len(bank.infos)))
        assert scene.kind == kind and scene.light.vector[3] == (1.0 if kind == "room" else 0.0)

    @pytest.mark.parametrize("kind", SCENE_KINDS)
    def test_deterministic_in_the_generator_seed(self, bank, kind):
        a = make_scene(kind, np.random.default_rng(5), bank)
        b = make_scene(kind, np.random.default_rng(5), bank)
        c = make_scene(kind, np.random.default_rng(6), bank)
        assert a.vertices.tobytes() == b.vertices.tobytes()
        assert a.vertices.tobytes() != c.vertices.tobytes()

    @pytest.mark.parametrize("kind", SCENE_KINDS)
    def test_keep_clear_annulus_has_no_objects(self, bank, kind):
        annulus = (0.0, 0.0, 1.5, 4.0)
        for seed in range(3):
            scene = make_scene(kind, np.random.default_rng(seed), bank, (annulus,), monument=True)
            d = np.hypot(scene.obstacles[:, 0], scene.obstacles[:, 1])
            r = scene.obstacles[:, 2]
            assert np.all((d + r <= annulus[2]) | (d - r >= annulus[3]))

    def test_half_extent_and_monument(self, bank):
        scene = make_scene(
            "room", np.random.default_rng(0), bank, monument=True, half_extent=(5.0, 3.0)
        )
        assert scene.bounds_xy == pytest.approx((-4.7, 4.7, -2.7, 2.7))
        np.testing.assert_allclose(scene.poi, [0.0, 0.0, 1.4])

    def test_exceptions(self, bank):
        with pytest.raises(ValueError, match="scene kind"):
            make_scene("forest", np.random.default_rng(0), bank)


class TestSceneIsFree:
    def test_walls_height_and_obstacles(self, bank):
        scene = make_scene("room", np.random.default_rng(0), bank, half_extent=(4.0, 3.0))
        x, y, r, top = scene.obstacles[0]
        points = np.array([[0.0, 0.0, -1.0], [10.0, 0.0, 1.5], [x, y, top / 2], [x, y, top + 0.5]])
        assert scene.is_free(points).tolist()[:3] == [False, False, False]
        assert scene.is_free(points[3:])[0] == (top + 0.5 < scene.max_camera_z)
