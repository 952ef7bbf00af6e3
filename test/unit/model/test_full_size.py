"""Full-size official architecture on CPU (deselected by default: ``pytest -m slow``)."""

from __future__ import annotations

import pytest
import torch

from mickey_ros.model.config import mickey_vitl14
from mickey_ros.model.mickey import MicKey

pytestmark = pytest.mark.slow


class TestOfficialSizeForward:
    def test_720x540_shapes_and_head_invariants(self):
        """reference/mickey.md §12: 51x38 grid, 1938 keypoints, 498 zero border cells."""
        torch.manual_seed(0)
        model = MicKey(mickey_vitl14()).eval()
        model.set_backbone_precision("fp32")
        with torch.inference_mode():
            feats = model.extract(torch.rand(1, 3, 720, 540))
            P = model.match(feats, feats)
        assert feats.grid_hw == (51, 38)
        assert feats.kpts.shape == (1, 1938, 2)
        assert feats.descriptors.shape == (1, 1938, 128)
        assert int((feats.scores == 0).sum()) == 1938 - 45 * 32
        assert torch.isclose(feats.scores.sum(), torch.tensor(1.0), atol=1e-5)
        assert torch.allclose(feats.descriptors.norm(dim=-1), torch.ones(1, 1938), atol=1e-5)
        assert P.shape == (1, 1938, 1938)
