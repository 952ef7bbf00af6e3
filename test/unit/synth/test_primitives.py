from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.synth.primitives import VERTEX_FLOATS, Material, MeshBuilder


class TestMeshBuilder:
    def test_empty(self):
        assert MeshBuilder().vertices().shape == (0, VERTEX_FLOATS)

    def test_quad_normal_uv_and_attributes(self):
        mesh = MeshBuilder()
        wall = np.array([[0, 0, 2], [3, 0, 2], [3, 0, 0], [0, 0, 0]], float)  # seen from -y
        mesh.quad(wall, Material(5.0, (0.5, 0.6, 0.7), metres=1.5))
        v = mesh.vertices()
        assert v.shape == (6, VERTEX_FLOATS) and v.dtype == np.float32
        np.testing.assert_allclose(v[:, 3:6], np.tile([0, -1, 0], (6, 1)), atol=1e-7)
        assert v[:, 6].max() == pytest.approx(2.0) and v[:, 7].max() == pytest.approx(2 / 1.5)
        np.testing.assert_allclose(v[:, 8:12], np.tile([5.0, 0.5, 0.6, 0.7], (6, 1)), rtol=1e-6)

    def test_poster_uv_stretches_once(self):
        mesh = MeshBuilder()
        mesh.quad(
            np.array([[0, 0, 2], [3, 0, 2], [3, 0, 0], [0, 0, 0]], float),
            Material(1.0, metres=None),
        )
        uv = mesh.vertices()[:, 6:8]
        assert uv.min() == 0.0 and uv.max() == 1.0

    @pytest.mark.parametrize("bottom, count", [(False, 30), (True, 36)])
    def test_box_faces(self, bottom, count):
        mesh = MeshBuilder()
        mesh.box((1.0, 2.0), 0.5, (2.0, 1.0, 3.0), np.pi / 2, Material(0.0), bottom=bottom)
        v = mesh.vertices()
        assert len(v) == count
        # yaw 90 deg swaps the footprint: x extent 1 m, y extent 2 m, z from 0.5 to 3.5
        np.testing.assert_allclose(v[:, 0].min(), 0.5, atol=1e-9)
        np.testing.assert_allclose(v[:, 1].max(), 3.0, atol=1e-9)
        assert v[:, 2].min() == 0.5 and v[:, 2].max() == 3.5

    def test_box_normals_point_outwards(self):
        mesh = MeshBuilder()
        mesh.box((0.0, 0.0), 0.0, (2.0, 2.0, 2.0), 0.3, Material(0.0))
        v = mesh.vertices()
        centre = np.array([0.0, 0.0, 1.0])
        assert np.all(np.einsum("ij,ij->i", v[:, 0:3] - centre, v[:, 3:6]) > 0)

    def test_cylinder(self):
        mesh = MeshBuilder()
        mesh.cylinder((1.0, -1.0), 0.0, 0.5, 2.0, Material(0.0), segments=12)
        v = mesh.vertices()
        assert len(v) == 12 * 6 + 12 * 3
        side = v[: 12 * 6]
        radial = side[:, 0:2] - [1.0, -1.0]
        np.testing.assert_allclose(np.linalg.norm(radial, axis=1), 0.5, rtol=1e-6)
        assert np.all(np.einsum("ij,ij->i", radial, side[:, 3:5]) > 0)
        np.testing.assert_allclose(v[12 * 6 :, 2], 2.0)

    def test_slanted_plane(self):
        mesh = MeshBuilder()
        mesh.slanted_plane(
            np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 1.0]), Material(0.0)
        )
        normal = mesh.vertices()[0, 3:6]
        np.testing.assert_allclose(np.abs(normal), [0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
