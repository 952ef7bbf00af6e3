"""The estimator's geometry end to end on a rendered pair, with an oracle in place of the network.

The oracle returns MicKey-shaped features built from the exact rendered depth: one keypoint per
14-px cell centre, its true depth, uniform scores, and a correspondence matrix P that links each
reference cell to the query cell its 3D point projects into. Everything after the network is the
real code: resize with intrinsics rescaling, back-projection with K, the probabilistic RANSAC and
Kabsch. A wrong frame convention, K scaling or pixel-centre offset shows up as a pose error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
from mickey_ros.geometry.ransac import SolverConfig
from mickey_ros.model.config import mickey_vitl14
from mickey_ros.model.mickey import MicKeyFeatures
from mickey_ros.utils.images import resize_with_intrinsics

PATCH = 14


def _cell_centres(h: int, w: int) -> torch.Tensor:
    jj, ii = torch.meshgrid(torch.arange(w), torch.arange(h), indexing="xy")
    return torch.stack([PATCH * (jj + 0.5), PATCH * (ii + 0.5)], -1).reshape(-1, 2).float()


class OracleMicKey(nn.Module):
    """Stands in for ``MicKey`` with exact features of two known views.

    Reference keypoints sit at cell centres with their rendered depth; each reference point that
    is visible in the query is placed, with its exact projection and depth, in the query cell it
    falls into, and P links the two. So X_query = T_query_ref X_ref holds exactly for every
    linked pair and any pose error comes from the code under test.
    """

    def __init__(self, views: list[dict], T_1_0: np.ndarray) -> None:
        super().__init__()
        self.config = mickey_vitl14()  # what the estimator reads: 14 px patch, 3-cell border
        self.views = views  # per view: image (3, H, W) cropped tensor, depth (H, W), K (3, 3)
        H, W = views[0]["image"].shape[1:]
        self.grid_hw = (H // PATCH, W // PATCH)
        self._build(torch.as_tensor(T_1_0, dtype=torch.float32))

    def _build(self, T_1_0: torch.Tensor) -> None:
        h, w = self.grid_hw
        kpts0 = _cell_centres(h, w)
        depth0 = self.views[0]["depth"][kpts0[:, 1].long(), kpts0[:, 0].long()]
        rays0 = torch.cat([kpts0, torch.ones(h * w, 1)], 1) @ torch.linalg.inv(self.views[0]["K"]).T
        X1 = (rays0 * depth0[:, None]) @ T_1_0[:3, :3].T + T_1_0[:3, 3]
        uvw = (self.views[1]["K"] @ X1.T).T
        uv1 = uvw[:, :2] / uvw[:, 2:]
        cell = (uv1[:, 1] // PATCH).long() * w + (uv1[:, 0] // PATCH).long()
        inside = (uv1 >= 0).all(1) & (uv1[:, 0] < w * PATCH) & (uv1[:, 1] < h * PATCH)
        seen = self.views[1]["depth"][uv1[:, 1].clamp(0, h * PATCH - 1).long(),
                                      uv1[:, 0].clamp(0, w * PATCH - 1).long()]
        unoccluded = (seen - X1[:, 2]).abs() < 0.02 * X1[:, 2]
        visible = (depth0 > 0) & (X1[:, 2] > 0.1) & inside & unoccluded
        kpts1 = _cell_centres(h, w)
        depth1 = self.views[1]["depth"][kpts1[:, 1].long(), kpts1[:, 0].long()]
        owner = torch.full((h * w,), -1)
        for i in visible.nonzero()[:, 0].tolist():  # last reference point into a cell wins
            kpts1[cell[i]], depth1[cell[i]], owner[cell[i]] = uv1[i], X1[i, 2], i
        P = torch.zeros(h * w, h * w)
        linked = (owner >= 0).nonzero()[:, 0]
        P[owner[linked], linked] = 1.0
        self.features = [(kpts0, depth0), (kpts1, depth1)]
        self.P = P

    def set_backbone_precision(self, precision: str) -> None:
        pass

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        H, W = image.shape[-2:]
        return image[..., : H - H % PATCH, : W - W % PATCH]  # the crop MicKey.encode does

    def decode(self, images: torch.Tensor) -> MicKeyFeatures:
        h, w = self.grid_hw
        views = [next(i for i, v in enumerate(self.views) if torch.equal(v["image"], im))
                 for im in images]
        kpts = torch.stack([self.features[v][0] for v in views])
        depth = torch.stack([self.features[v][1] for v in views])
        descriptors = torch.tensor(views, dtype=torch.float32)[:, None, None].expand(-1, h * w, 1)
        scores = torch.full(depth.shape, 1.0 / (h * w))
        return MicKeyFeatures(kpts, depth, scores, descriptors, (h, w))

    def match(self, ref: MicKeyFeatures, query: MicKeyFeatures) -> torch.Tensor:
        assert (ref.descriptors[:, 0, 0] == 0).all() and (query.descriptors[:, 0, 0] == 1).all()
        return self.P.expand(len(query.kpts), -1, -1)


@pytest.fixture(scope="module")
def rendered_pair():
    try:
        from mickey_ros.synth.pairs import PairRenderer

        with PairRenderer(size_wh=(448, 336), seed=11) as renderer:
            return renderer.render_pair(0)
    except Exception as err:  # noqa: BLE001 - any EGL/driver failure means: cannot render here
        pytest.skip(f"synthetic rendering unavailable ({type(err).__name__}: {err}); "
                    "install libegl1 libegl-mesa0 libgl1-mesa-dri")


def _oracle_estimator(pair, size_wh: tuple[int, int]) -> RelativePoseEstimator:
    views = []
    for rgb, depth, K in ((pair.rgb0, pair.depth0, pair.K0), (pair.rgb1, pair.depth1, pair.K1)):
        resized, K_net = resize_with_intrinsics(rgb, K, size_wh)
        depth_net, _ = resize_with_intrinsics(depth, K, size_wh)
        image = torch.from_numpy(resized).permute(2, 0, 1).float() / 255.0
        H, W = image.shape[1:]
        image = image[:, : H - H % PATCH, : W - W % PATCH]  # as the estimator will pass it
        views.append({"image": image, "depth": torch.from_numpy(depth_net).float(),
                      "K": torch.as_tensor(K_net, dtype=torch.float32)})
    solver = SolverConfig(num_samples=128, it_matches=10, it_ransac=50)
    config = EstimatorConfig(resize=size_wh, solver=solver, seed=0)
    return RelativePoseEstimator(OracleMicKey(views, pair.T_1_0), config)


class TestOracleEstimate:
    def test_recovers_metric_pose_through_resize(self, rendered_pair):
        pair = rendered_pair
        estimator = _oracle_estimator(pair, (336, 252))  # a 0.75x resize: K is rescaled
        result = estimator.estimate_pair(pair.rgb0, pair.K0, pair.rgb1, pair.K1)
        assert result.valid, result.reason
        t_err = np.linalg.norm(result.t - pair.T_1_0[:3, 3])
        R_err = np.degrees(np.arccos(np.clip((np.trace(result.R.T @ pair.T_1_0[:3, :3]) - 1) / 2,
                                             -1, 1)))
        baseline = np.linalg.norm(pair.T_1_0[:3, 3])
        assert baseline > 0.2  # a real motion, not the identity
        assert t_err < 0.01, f"translation error {t_err:.4f} m (baseline {baseline:.2f} m)"
        assert R_err < 0.5, f"rotation error {R_err:.3f} deg"
        assert result.num_inliers == result.num_samples  # every linked pair agrees exactly

    def test_wrong_intrinsics_break_the_pose(self, rendered_pair):
        """The check above can fail: unscaled K for a resized image gives a large error."""
        pair = rendered_pair
        estimator = _oracle_estimator(pair, (336, 252))
        K_wrong = pair.K0 * np.array([[1.3, 1, 1.3], [1, 1.3, 1.3], [1, 1, 1]])
        result = estimator.estimate_pair(pair.rgb0, K_wrong, pair.rgb1, pair.K1)
        assert not result.valid or np.linalg.norm(result.t - pair.T_1_0[:3, 3]) > 0.1
