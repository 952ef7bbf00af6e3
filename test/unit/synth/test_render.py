from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from mickey_ros.synth.cameras import look_at
from mickey_ros.synth.primitives import SKY_LAYER, Material, MeshBuilder
from mickey_ros.synth.render import (
    EGL_PACKAGES,
    EGLUnavailableError,
    Exposure,
    Renderer,
    create_egl_context,
    projection_from_K,
    shared_egl_context,
)
from mickey_ros.synth.scene import Light, Scene
from mickey_ros.synth.textures import load_texture_bank

W, H = 160, 120
K = np.array([[200.0, 0.0, 79.5], [0.0, 180.0, 59.5], [0.0, 0.0, 1.0]])


def flat_scene(mesh: MeshBuilder) -> Scene:
    light = Light(np.array([0.0, 0.0, 1.0, 0.0]), (1.0, 1.0, 1.0), 1.0)
    return Scene("room", mesh.vertices(), light, (-5, 5, -5, 5), 3.0, np.zeros((0, 4)), np.zeros(3))


def camera_quad(mesh: MeshBuilder, centre_cam: np.ndarray, half: float, layer: float = 0.0):
    """A fronto-parallel square in camera coordinates (identity camera pose = world frame)."""
    x, y, z = centre_cam
    corners = np.array(
        [
            [x - half, y - half, z],
            [x + half, y - half, z],
            [x + half, y + half, z],
            [x - half, y + half, z],
        ]
    )
    mesh.quad(corners, Material(layer, metres=None))


@pytest.fixture(scope="module")
def renderer(egl):
    r = Renderer(load_texture_bank(), ctx=egl)
    yield r
    r.release()


class TestProjectionFromK:
    def test_known_point_hits_pixel_centre_convention(self):
        X = np.array([0.3, -0.2, 2.0, 1.0])  # u = 200*0.15 + 79.5 = 109.5, v = -18 + 59.5 = 41.5
        clip = projection_from_K(K, W, H, 0.1, 10.0) @ X
        ndc = clip[:3] / clip[3]
        window = (ndc[:2] + 1) / 2 * np.array([W, H])  # GL: pixel (i, j) has its centre at i + 0.5
        np.testing.assert_allclose(window - 0.5, [109.5, 41.5], atol=1e-9)

    def test_near_far_map_to_ndc_range(self):
        P = projection_from_K(K, W, H, 0.1, 10.0)
        for z, expected in ((0.1, -1.0), (10.0, 1.0)):
            clip = P @ np.array([0.0, 0.0, z, 1.0])
            assert clip[2] / clip[3] == pytest.approx(expected)


class TestRenderer:
    def test_point_lands_on_expected_pixel(self, renderer):
        # centre projects to pixel (100, 40); half-size 1.4 px covers exactly columns 99..101 and
        # rows 39..41 with OpenCV's pixel-centre convention (a half-pixel error covers 2 or 4)
        z = 2.5
        centre = np.array([(100 - K[0, 2]) * z / K[0, 0], (40 - K[1, 2]) * z / K[1, 1], z])
        mesh = MeshBuilder()
        mesh.quad(
            np.array(
                [
                    [centre[0] - 1.4 * z / 200, centre[1] - 1.4 * z / 180, z],
                    [centre[0] + 1.4 * z / 200, centre[1] - 1.4 * z / 180, z],
                    [centre[0] + 1.4 * z / 200, centre[1] + 1.4 * z / 180, z],
                    [centre[0] - 1.4 * z / 200, centre[1] + 1.4 * z / 180, z],
                ]
            ),
            Material(0.0, metres=None),
        )
        renderer.set_scene(flat_scene(mesh))
        _, depth = renderer.render(np.eye(4), K, (W, H))
        rows, cols = np.nonzero(depth > 0)
        assert sorted(set(cols.tolist())) == [99, 100, 101]
        assert sorted(set(rows.tolist())) == [39, 40, 41]
        np.testing.assert_allclose(depth[depth > 0], z, rtol=1e-6)

    def test_depth_is_metric_camera_z_on_a_tilted_plane(self, renderer):
        # plane through (0, 0, 3) with normal n; per pixel z = 3 n.z / (n . K^-1 [u, v, 1])
        n = np.array([0.3, -0.2, 1.0])
        n /= np.linalg.norm(n)
        a = np.cross(n, [0.0, 1.0, 0.0])
        a /= np.linalg.norm(a)
        b = np.cross(n, a)
        p0 = np.array([0.0, 0.0, 3.0])
        mesh = MeshBuilder()
        mesh.quad(
            np.array(
                [p0 - 9 * a - 9 * b, p0 + 9 * a - 9 * b, p0 + 9 * a + 9 * b, p0 - 9 * a + 9 * b]
            ),
            Material(3.0),
        )
        renderer.set_scene(flat_scene(mesh))
        _, depth = renderer.render(np.eye(4), K, (W, H))
        v, u = np.mgrid[0:H, 0:W]
        rays = np.linalg.solve(K, np.stack([u.ravel(), v.ravel(), np.ones(H * W)]))
        expected = (n @ p0) / (n @ rays)
        np.testing.assert_allclose(depth.ravel(), expected, rtol=1e-5)

    def test_sky_and_empty_pixels_have_zero_depth(self, renderer):
        mesh = MeshBuilder()
        mesh.box((0.0, 0.0), -50.0, (100.0, 100.0, 100.0), 0.0, Material(SKY_LAYER), bottom=True)
        renderer.set_scene(flat_scene(mesh))
        rgb, depth = renderer.render(look_at(np.zeros(3), np.array([1.0, 0.0, 0.2])), K, (W, H))
        assert np.all(depth == 0.0)
        assert rgb[0].mean() != rgb[-1].mean()  # sky gradient from horizon to zenith

    def test_byte_identical_and_noise_seed_matters(self, renderer):
        mesh = MeshBuilder()
        camera_quad(mesh, np.array([0.0, 0.0, 2.0]), 5.0, layer=4.0)
        renderer.set_scene(flat_scene(mesh))
        exposure = Exposure((1.1, 1.0, 0.9), 2.0, 7)
        rgb_a, depth_a = renderer.render(np.eye(4), K, (W, H), exposure)
        rgb_b, depth_b = renderer.render(np.eye(4), K, (W, H), exposure)
        assert rgb_a.tobytes() == rgb_b.tobytes() and depth_a.tobytes() == depth_b.tobytes()
        rgb_c, _ = renderer.render(np.eye(4), K, (W, H), Exposure((1.1, 1.0, 0.9), 2.0, 8))
        assert rgb_a.tobytes() != rgb_c.tobytes()
        noise = rgb_a.astype(float) - rgb_c.astype(float)
        assert 1.5 < noise.std() < 4.5  # difference of two sigma-2 noises: std 2 * sqrt(2)

    def test_exposure_gain_scales_colour(self, renderer):
        mesh = MeshBuilder()
        camera_quad(mesh, np.array([0.0, 0.0, 2.0]), 5.0, layer=4.0)
        renderer.set_scene(flat_scene(mesh))
        dark, _ = renderer.render(np.eye(4), K, (W, H), Exposure((0.5, 0.5, 0.5)))
        bright, _ = renderer.render(np.eye(4), K, (W, H), Exposure((1.0, 1.0, 1.0)))
        ratio = dark.astype(float).mean() / bright.astype(float).mean()
        assert ratio == pytest.approx(0.5, abs=0.02)

    def test_exceptions(self, egl):
        fresh = Renderer(load_texture_bank(), ctx=egl)
        with pytest.raises(RuntimeError, match="set_scene"):
            fresh.render(np.eye(4), K, (W, H))
        bad = flat_scene(MeshBuilder())
        with pytest.raises(ValueError, match="scene.vertices"):
            fresh.set_scene(dataclasses.replace(bad, vertices=np.zeros((4, 5), np.float32)))
        fresh.release()


class TestSharedEglContext:
    def test_one_context_per_process(self, egl):
        assert shared_egl_context() is egl

    def test_forked_child_gets_a_clear_error(self, egl, monkeypatch):
        # after fork the parent's llvmpipe threads are gone and GL calls would hang
        monkeypatch.setattr(os, "getpid", lambda: -1)
        with pytest.raises(EGLUnavailableError, match="spawn"):
            shared_egl_context()


class TestCreateEglContext:
    def test_missing_egl_names_the_debian_packages(self, monkeypatch):
        import moderngl

        def no_egl(*args, **kwargs):
            raise Exception("libEGL.so.1: cannot open shared object file")

        monkeypatch.setattr(moderngl, "create_standalone_context", no_egl)
        with pytest.raises(EGLUnavailableError) as info:
            create_egl_context()
        assert EGL_PACKAGES in str(info.value) and "apt-get install" in str(info.value)
        assert EGL_PACKAGES == "libegl1 libegl-mesa0 libgl1-mesa-dri"
