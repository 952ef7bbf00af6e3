import pytest
import torch

from mickey_ros.geometry.camera import backproject, project


def intrinsics(B: int, dtype=torch.float64) -> torch.Tensor:
    K = torch.tensor([[500.0, 0.0, 269.5], [0.0, 480.0, 359.5], [0.0, 0.0, 1.0]], dtype=dtype)
    K = K.repeat(B, 1, 1)
    K[1:, 0, 0] = 300.0  # a second camera with another focal length
    return K


class TestBackproject:
    def test_known_value(self):
        K = intrinsics(1)
        kpts = torch.tensor([[[269.5, 359.5], [769.5, 359.5], [269.5, 119.5]]], dtype=torch.float64)
        depth = torch.tensor([[2.0, 2.0, 3.0]], dtype=torch.float64)
        X = backproject(kpts, depth, K)
        expected = torch.tensor([[[0.0, 0.0, 2.0], [2.0, 0.0, 2.0], [0.0, -1.5, 3.0]]])
        assert torch.allclose(X, expected.double(), atol=1e-12)

    def test_depth_is_z_not_ray_length(self):
        g = torch.Generator().manual_seed(0)
        kpts = torch.rand(2, 50, 2, generator=g) * 500
        depth = torch.rand(2, 50, generator=g) * 10 - 1  # raw MicKey depth may be negative
        X = backproject(kpts, depth, intrinsics(2, torch.float32))
        assert torch.allclose(X[..., 2], depth, atol=1e-6)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(1)
        kpts = (torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 400).requires_grad_()
        depth = (torch.rand(2, 4, generator=g, dtype=torch.float64) + 1).requires_grad_()
        K = intrinsics(2)
        assert torch.autograd.gradcheck(lambda k, d: backproject(k, d, K), (kpts, depth))

    def test_exception(self):
        with pytest.raises(ValueError, match="depth"):
            backproject(torch.zeros(2, 5, 2), torch.zeros(2, 4), intrinsics(2))
        with pytest.raises(ValueError, match="K"):
            backproject(torch.zeros(2, 5, 2), torch.zeros(2, 5), intrinsics(3))
        with pytest.raises(ValueError, match="kpts"):
            backproject(torch.zeros(5, 2), torch.zeros(5), intrinsics(1)[0])


class TestProject:
    def test_known_value(self):
        X = torch.tensor([[[2.0, 0.0, 2.0], [0.0, -1.5, 3.0]]], dtype=torch.float64)
        uv = project(X, intrinsics(1))
        expected = torch.tensor([[[769.5, 359.5], [269.5, 119.5]]], dtype=torch.float64)
        assert torch.allclose(uv, expected, atol=1e-9)

    def test_round_trip_with_backproject(self):
        g = torch.Generator().manual_seed(2)
        kpts = torch.rand(3, 100, 2, generator=g, dtype=torch.float64) * 700
        depth = torch.rand(3, 100, generator=g, dtype=torch.float64) * 30 + 0.1
        K = intrinsics(3)
        assert (project(backproject(kpts, depth, K), K) - kpts).abs().max() < 1e-9

    def test_eps_keeps_zero_depth_finite(self):
        uv = project(torch.zeros(1, 1, 3), intrinsics(1, torch.float32))
        assert torch.isfinite(uv).all()

    def test_exception(self):
        with pytest.raises(ValueError, match="X"):
            project(torch.zeros(2, 5, 2), intrinsics(2))
        with pytest.raises(ValueError, match="K"):
            project(torch.zeros(2, 5, 3), torch.zeros(2, 3, 4))

    def test_broadcasts_leading_dims(self):
        X = torch.rand(4, 2, 7, 3) + torch.tensor([0.0, 0.0, 1.0])
        K = intrinsics(2).to(X.dtype)  # (2, 3, 3) against (4, 2, ...)
        expected = torch.stack([project(X[i], K) for i in range(4)])
        assert torch.equal(project(X, K), expected)
