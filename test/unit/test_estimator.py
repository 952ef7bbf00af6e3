"""RelativePoseEstimator with random-init tiny models (behaviour, not accuracy)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mickey_ros.estimator.relative_pose import (
    DEMO_MODEL_NOTE,
    EstimatorConfig,
    RelativePoseEstimator,
    onnx_model_label,
)
from mickey_ros.geometry.ransac import SolverConfig
from mickey_ros.model.config import mickey_tiny
from mickey_ros.utils.images import ImageError

H, W = 168, 224
# 224x168 gives a 16x12 grid: 10x6 interior cells, 3600 non-zero pairs >= 2048 samples
FAST_SOLVER = SolverConfig(it_matches=4, it_ransac=20, num_samples=512)


def _textured(seed: int, shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (H // 7 + 4, W // 7 + 4, 3)).astype(np.uint8)
    big = np.kron(coarse, np.ones((7, 7, 1), np.uint8))
    return np.ascontiguousarray(big[shift : shift + H, shift : shift + W])


K = np.array([[200.0, 0, W / 2], [0, 200, H / 2], [0, 0, 1]])


@pytest.fixture(scope="module")
def estimator() -> RelativePoseEstimator:
    return RelativePoseEstimator.from_model_config(
        mickey_tiny(), EstimatorConfig(solver=FAST_SOLVER)
    )


def _with_config(est: RelativePoseEstimator, **changes) -> RelativePoseEstimator:
    return RelativePoseEstimator(est.model, dataclasses.replace(est.config, **changes))


class TestEstimate:
    def test_no_reference_is_invalid_with_reason(self, estimator):
        est = _with_config(estimator)
        result = est.estimate(_textured(0), K)
        assert not result.valid
        assert "reference" in result.reason

    def test_result_is_finite_rotation(self, estimator):
        est = _with_config(estimator)
        est.set_reference(_textured(0), K)
        result = est.estimate(_textured(0, shift=3), K)
        if result.valid:
            assert np.allclose(result.R @ result.R.T, np.eye(3), atol=1e-5)
            assert np.isclose(np.linalg.det(result.R), 1.0, atol=1e-5)
            assert np.all(np.isfinite(result.t))
            assert 0.0 <= result.confidence <= FAST_SOLVER.num_samples
        else:
            assert isinstance(result.reason, str) and result.reason
        for stage in ("preprocess", "backbone", "heads", "matching", "solver", "total"):
            assert result.timings_ms[stage] >= 0.0

    def test_same_seed_same_pose(self, estimator):
        est = _with_config(estimator, seed=7)
        est.set_reference(_textured(0), K)
        a, b = est.estimate(_textured(0, shift=3), K), est.estimate(_textured(0, shift=3), K)
        assert a.valid == b.valid
        np.testing.assert_array_equal(a.R, b.R)
        np.testing.assert_array_equal(a.t, b.t)

    def test_cached_reference_equals_uncached(self, estimator):
        results = []
        for cache in (True, False):
            est = _with_config(estimator, cache_reference=cache)
            est.set_reference(_textured(0), K)
            results.append(est.estimate(_textured(0, shift=3), K))
        assert results[0].valid == results[1].valid
        np.testing.assert_allclose(results[0].R, results[1].R, atol=1e-5)
        np.testing.assert_allclose(results[0].t, results[1].t, atol=1e-5)
        assert "backbone" in results[1].timings_ms

    def test_bad_intrinsics_raise_with_fix(self, estimator):
        est = _with_config(estimator)
        with pytest.raises(ValueError, match="positive fx"):
            est.set_reference(_textured(0), np.zeros((3, 3)))
        with pytest.raises(ValueError, match=r"\(3, 3\)"):
            est.set_reference(_textured(0), np.eye(4))

    def test_bad_image_raises_image_error(self, estimator):
        est = _with_config(estimator)
        with pytest.raises(ImageError, match="uint8"):
            est.set_reference(_textured(0).astype(np.float32), K)
        with pytest.raises(ImageError, match="RGB"):
            est.set_reference(_textured(0)[:, :, 0], K)


class TestEstimateBatch:
    def test_batch_returns_one_per_query(self, estimator):
        est = _with_config(estimator)
        est.set_reference(_textured(0), K)
        results = est.estimate_batch([_textured(0, 2), _textured(0, 3), _textured(1)], [K] * 3)
        assert len(results) == 3

    def test_pose_does_not_depend_on_batch(self, estimator):
        """Regression (issue 6 review): same query and seed give the same pose at any batch size."""
        est = _with_config(estimator, seed=3)
        est.set_reference(_textured(0), K)
        single = est.estimate(_textured(0, 3), K)
        batched = est.estimate_batch([_textured(1), _textured(0, 3)], [K, K])[1]
        assert single.valid == batched.valid
        np.testing.assert_allclose(single.R, batched.R, atol=1e-4)
        np.testing.assert_allclose(single.t, batched.t, atol=1e-4)

    def test_mismatched_lengths_raise(self, estimator):
        est = _with_config(estimator)
        est.set_reference(_textured(0), K)
        with pytest.raises(ValueError, match="2 images but 1 intrinsics"):
            est.estimate_batch([_textured(0), _textured(1)], [K])


class TestEstimatePair:
    def test_pair_does_not_touch_cached_reference(self, estimator):
        est = _with_config(estimator)
        assert not est.has_reference
        est.estimate_pair(_textured(0), K, _textured(0, 3), K)
        assert not est.has_reference

    def test_resize_and_matches_in_original_pixels(self, estimator):
        est = _with_config(estimator, resize=(W, H), keep_matches=True)
        big = np.kron(_textured(0), np.ones((2, 2, 1), np.uint8))  # 448x336 -> resized to 224x168
        K_big = np.array([[400.0, 0, W], [0, 400, H], [0, 0, 1]])
        result = est.estimate_pair(big, K_big, big, K_big)
        if result.valid:
            kpts = result.matches["kpts_ref"]
            assert kpts.shape[1] == 2
            assert (
                np.all(kpts >= -0.5) and np.all(kpts[:, 0] <= 2 * W) and np.all(kpts[:, 1] <= 2 * H)
            )
            assert result.matches["depth_ref"].shape == (H // 14, W // 14)


class TestRealPair:
    def test_middlebury_pair_runs_end_to_end(self, estimator):
        """Middlebury motorcycle pair (GT t = (-0.193, 0, 0) m) from skimage, random weights."""
        data = pytest.importorskip("skimage.data")
        left, right, _ = data.stereo_motorcycle()
        K_left = np.array([[994.978, 0, 311.193], [0, 994.978, 254.877], [0, 0, 1]])
        K_right = K_left.copy()
        K_right[0, 2] = 342.279
        est = _with_config(estimator, resize=(W, round(W * 500 / 741)))  # the 741x500 aspect
        result = est.estimate_pair(left, K_left, right, K_right)
        if result.valid:
            assert np.all(np.isfinite(result.R)) and np.all(np.isfinite(result.t))
        else:
            assert result.reason


DEMO_LABEL = f"demo_model.ckpt ({DEMO_MODEL_NOTE})"


class TestOnnxModelLabel:
    def test_names_file_and_source(self):
        assert onnx_model_label("/m/demo.onnx", {"source": DEMO_LABEL}) == (
            f"demo.onnx, exported from {DEMO_LABEL}")

    def test_older_files_get_the_demo_note(self):
        assert onnx_model_label("d.onnx", {"source": "demo_model.ckpt"}) == (
            f"d.onnx, exported from {DEMO_LABEL}")

    def test_no_source(self):
        assert onnx_model_label("m.onnx", {}) == "m.onnx"


class TestEstimatorDevice:
    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
    def test_cuda_on_cpu_torch_is_a_value_error(self):
        with pytest.raises(ValueError) as info:
            RelativePoseEstimator.from_model_config(mickey_tiny(), EstimatorConfig(device="cuda"))
        assert str(info.value) == (
            f"device='cuda' but torch {torch.__version__} sees no CUDA GPU; pass device='cpu', "
            "or install the torch build for your GPU")

    def test_not_a_device(self):
        with pytest.raises(ValueError, match="^device='gpu' is not a torch device; use cpu"):
            RelativePoseEstimator.from_model_config(mickey_tiny(), EstimatorConfig(device="gpu"))


class TestResizeAspectWarning:
    K = np.array([[200.0, 0, 112], [0, 200, 84], [0, 0, 1]])

    def test_stretching_resize_warns(self):
        est = RelativePoseEstimator.from_model_config(mickey_tiny(),
                                                      EstimatorConfig(resize=(224, 224)))
        with pytest.warns(UserWarning) as caught:
            est.set_reference(np.zeros((168, 224, 3), np.uint8), self.K)
        assert [str(w.message) for w in caught] == [
            "network input 224x224 (resize, --size) changes the aspect of the reference image "
            "(224x168): it is stretched, and the poses with it; 224x168 keeps it"]

    def test_aspect_kept_is_silent(self, recwarn):
        est = RelativePoseEstimator.from_model_config(mickey_tiny(),
                                                      EstimatorConfig(resize=(140, 105)))
        est.set_reference(np.zeros((168, 224, 3), np.uint8), self.K)
        assert [str(w.message) for w in recwarn if "aspect" in str(w.message)] == []
