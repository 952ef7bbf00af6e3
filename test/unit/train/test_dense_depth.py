import math

import pytest
import torch

from mickey_ros.train.dense_depth import INITIAL_LOG_DEPTH, DenseDepthHead


def _cells(B: int = 2, C: int = 8, h: int = 3, w: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, C, h, w, generator=torch.Generator().manual_seed(seed))


class TestDenseDepthHead:
    def test_one_log_depth_per_pixel_of_the_cells(self):
        head = DenseDepthHead(8, patch_size=5)
        assert head(_cells()).shape == (2, 15, 20)

    def test_starts_at_the_initial_depth_and_sends_the_backbone_no_gradient(self):
        head = DenseDepthHead(8, patch_size=5)
        cells = _cells().requires_grad_(True)
        out = head(cells)
        assert torch.equal(out, torch.full_like(out, INITIAL_LOG_DEPTH))
        head.loss(cells, torch.full((2, 15, 20), 2.0)).backward()
        assert torch.count_nonzero(cells.grad) == 0
        assert head.to_pixels.weight.grad.abs().sum() > 0

    def test_loss_is_the_mean_abs_log_error_over_known_pixels(self):
        head = DenseDepthHead(8, patch_size=5)
        depth = torch.full((2, 15, 20), 2.0)
        depth[0, :5] = 0.0  # no depth (a hole): ignored
        depth[1, :, :10] = 150.0  # beyond max_depth_m (sky): ignored
        loss = head.loss(_cells(), depth, max_depth_m=100.0)
        assert loss.item() == pytest.approx(abs(INITIAL_LOG_DEPTH - math.log(2.0)), abs=1e-6)

    def test_only_the_pixels_the_cells_cover_are_scored(self):
        """The backbone sees the top-left crop to a multiple of the patch: so does the loss."""
        head = DenseDepthHead(8, patch_size=5)
        depth = torch.full((2, 17, 23), math.exp(INITIAL_LOG_DEPTH))
        depth[:, 15:] = 9.0
        depth[:, :, 20:] = 9.0
        assert head.loss(_cells(), depth).item() == pytest.approx(0.0, abs=1e-6)

    def test_depth_map_smaller_than_the_cells_is_refused(self):
        with pytest.raises(ValueError, match="smaller than"):
            DenseDepthHead(8, patch_size=5).loss(_cells(), torch.ones(2, 14, 20))

    def test_learns_a_depth_the_cells_encode(self):
        """Per-pixel depth linear in the features is read off to < 0.01 log error."""
        torch.manual_seed(0)
        cells = _cells(B=4)
        mixing = torch.randn(25, 8) * 0.3
        log_z = torch.einsum("pc,bchw->bphw", mixing, cells) + 1.5
        depth = torch.nn.functional.pixel_shuffle(log_z, 5)[:, 0].exp()
        head = DenseDepthHead(8, patch_size=5)
        opt = torch.optim.Adam(head.parameters(), lr=0.05)
        first = head.loss(cells, depth).item()
        for _ in range(300):
            opt.zero_grad()
            loss = head.loss(cells, depth)
            loss.backward()
            opt.step()
        assert first > 0.3 and head.loss(cells, depth).item() < 0.01
