"""Estimator backends and speed paths (issue 16), each compared with the plain torch fp32 path."""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from mickey_ros.estimator.backends import (
    TorchBackend,
    build_backend,
    features_from_outputs,
    ort_providers,
)
from mickey_ros.estimator.bench import _test_images
from mickey_ros.estimator.export import export_onnx, relative_errors
from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
from mickey_ros.geometry.ransac import SolverConfig
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey

SOLVER = SolverConfig(it_matches=4, it_ransac=20, num_samples=512)
SIZE_WH = (224, 168)
CPU = torch.device("cpu")


def _timer(stage: str):
    return nullcontext()


def _tiny() -> MicKey:
    torch.manual_seed(0)
    return MicKey(mickey_tiny()).eval()


def _outputs(feats) -> tuple:
    return feats.kpts, feats.depth, feats.scores, feats.descriptors


def _rotation_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    # chordal form: arccos of the trace loses 1e-7 differences near the identity
    return float(np.degrees(2 * np.arcsin(min(1.0, np.linalg.norm(R_a - R_b) / 2 ** 1.5))))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 168, 224, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install "
                        "'mickey_ros[onnx]' to test the ONNX backends")
    path = tmp_path_factory.mktemp("backends") / "tiny.onnx"
    return export_onnx(_tiny(), path, SIZE_WH, source="unit test").path


def _estimator(**changes) -> RelativePoseEstimator:
    config = dataclasses.replace(EstimatorConfig(solver=SOLVER), **changes)
    return RelativePoseEstimator(_tiny(), config)


class TestOrtProviders:
    def test_cpu(self):
        assert ort_providers("onnxruntime", CPU, "fp32", ["CPUExecutionProvider"]) == [
            "CPUExecutionProvider"]

    def test_cuda(self):
        got = ort_providers("onnxruntime", torch.device("cuda:1"), "fp32",
                            ["CUDAExecutionProvider", "CPUExecutionProvider"])
        assert got == [("CUDAExecutionProvider", {"device_id": 1})]

    def test_tensorrt_fp16_engine(self):
        got = ort_providers("tensorrt", torch.device("cuda"), "fp16",
                            ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
        assert [p[0] for p in got] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
        assert got[0][1]["trt_fp16_enable"] is True and got[0][1]["device_id"] == 0

    def test_cuda_without_gpu_build_refuses(self):
        with pytest.raises(ValueError, match="needs ONNX Runtime's CUDAExecutionProvider.*"
                           "install onnxruntime-gpu"):
            ort_providers("onnxruntime", torch.device("cuda"), "fp32", ["CPUExecutionProvider"])

    def test_tensorrt_on_cpu_refuses(self):
        with pytest.raises(ValueError, match="TensorrtExecutionProvider"):
            ort_providers("tensorrt", CPU, "fp32", ["CPUExecutionProvider"])

    @pytest.mark.parametrize("backend, precision", [("onnxruntime", "fp16"),
                                                    ("onnxruntime", "bf16"), ("tensorrt", "bf16")])
    def test_reduced_precision_refuses(self, backend, precision):
        with pytest.raises(ValueError, match=f"precision '{precision}' needs backend 'tensorrt'"):
            ort_providers(backend, CPU, precision, ["CPUExecutionProvider"])


class TestBuildBackend:
    def test_unknown_backend(self):
        with pytest.raises(ValueError, match=r"backend must be one of \('torch', 'onnxruntime', "
                           r"'tensorrt'\), got 'tvm'"):
            build_backend(_tiny(), CPU, "tvm", "fp32", "", SIZE_WH)

    def test_torch_paths_refused_on_onnx_backends(self):
        with pytest.raises(ValueError, match="autocast and compile are torch-backend paths"):
            build_backend(_tiny(), CPU, "onnxruntime", "fp32", "", SIZE_WH, autocast="bf16")

    def test_io_binding_refused_on_torch(self):
        with pytest.raises(ValueError, match="io_binding is an ONNX-backend path"):
            build_backend(_tiny(), CPU, "torch", "fp32", "", SIZE_WH, io_binding=True)

    def test_unknown_autocast(self):
        with pytest.raises(ValueError, match="autocast must be one of"):
            TorchBackend(_tiny(), CPU, autocast="fp8")

    def test_tensorrt_on_cpu_refuses_before_export(self, monkeypatch):
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
        monkeypatch.setattr("mickey_ros.estimator.backends.export_for_backend",
                            lambda *a: pytest.fail("exported before refusing"))
        with pytest.raises(ValueError, match="TensorrtExecutionProvider"):
            _estimator(backend="tensorrt")


class TestOnnxRuntimeBackend:
    def test_features_match_torch(self, tiny_onnx, images):
        torch_backend = build_backend(_tiny(), CPU, "torch", "fp32", "", SIZE_WH)
        for io_binding in (False, True):
            ort_backend = build_backend(None, CPU, "onnxruntime", "fp32", str(tiny_onnx),
                                        SIZE_WH, io_binding=io_binding)
            with torch.inference_mode():
                expected = torch_backend.extract(images, _timer)
                got = ort_backend.extract(images, _timer)
                P_torch = torch_backend.match(expected, expected)
                P_ort = ort_backend.match(got, got)
            assert got.grid_hw == expected.grid_hw == (12, 16)
            assert max(relative_errors(_outputs(expected), _outputs(got)).values()) <= 1e-4
            assert float((P_ort - P_torch).abs().max() / P_torch.abs().max()) <= 1e-4

    def test_io_binding_equals_host_copy(self, tiny_onnx, images):
        host, bound = (build_backend(None, CPU, "onnxruntime", "fp32", str(tiny_onnx), SIZE_WH,
                                     io_binding=b) for b in (False, True))
        for a, b in zip(_outputs(host.extract(images, _timer)),
                        _outputs(bound.extract(images, _timer))):
            assert torch.equal(a, b)

    def test_poses_statistically_equal_to_torch(self, tiny_onnx):
        """Same seeds: per-seed pose differences tiny, and the spread over seeds the same."""
        ref, query, K = _test_images(SIZE_WH)
        t_by_backend = {}
        for backend in ("torch", "onnxruntime"):
            poses = []
            for seed in range(8):
                changes = {"seed": seed}
                if backend != "torch":
                    changes.update(backend=backend, onnx_path=str(tiny_onnx))
                est = _estimator(**changes)
                est.set_reference(ref, K)
                poses.append(est.estimate(query, K))
            assert all(p.valid for p in poses)
            t_by_backend[backend] = poses
        for p_torch, p_ort in zip(t_by_backend["torch"], t_by_backend["onnxruntime"]):
            assert _rotation_deg(p_torch.R, p_ort.R) < 1e-3
            assert np.linalg.norm(p_torch.t - p_ort.t) <= 1e-3 * np.linalg.norm(p_torch.t)
        t_torch = np.stack([p.t for p in t_by_backend["torch"]])
        t_ort = np.stack([p.t for p in t_by_backend["onnxruntime"]])
        assert np.allclose(t_torch.mean(0), t_ort.mean(0), atol=1e-3 * np.abs(t_torch).max())
        assert np.allclose(t_torch.std(0), t_ort.std(0), atol=1e-3 * np.abs(t_torch).max())

    def test_cached_keyframe_equals_pair(self, tiny_onnx):
        ref, query, K = _test_images(SIZE_WH)
        est = _estimator(backend="onnxruntime", onnx_path=str(tiny_onnx))
        pair = est.estimate_pair(ref, K, query, K)
        est.set_reference(ref, K)
        cached = est.estimate(query, K)
        assert pair.valid and cached.valid
        np.testing.assert_allclose(cached.R, pair.R, atol=1e-5)
        np.testing.assert_allclose(cached.t, pair.t, atol=1e-5)
        assert "network" in cached.timings_ms and "backbone" not in cached.timings_ms

    def test_from_onnx_keeps_no_torch_weights(self, tiny_onnx):
        est = RelativePoseEstimator.from_onnx(
            tiny_onnx, EstimatorConfig(backend="onnxruntime", solver=SOLVER))
        assert all(p.is_meta for p in est.model.parameters())
        assert est.model.config.name == "mickey_tiny"
        assert est.model_name == "tiny.onnx, exported from unit test"  # the source is kept
        ref, query, K = _test_images(SIZE_WH)
        plain = _estimator()
        plain.set_reference(ref, K)
        est.set_reference(ref, K)
        a, b = plain.estimate(query, K), est.estimate(query, K)
        assert _rotation_deg(a.R, b.R) < 1e-3

    def test_from_onnx_refuses_torch(self, tiny_onnx):
        with pytest.raises(ValueError, match="from_onnx needs EstimatorConfig.backend"):
            RelativePoseEstimator.from_onnx(tiny_onnx, EstimatorConfig())

    def test_export_at_start_up(self):
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
        model = _tiny()
        est = RelativePoseEstimator(model, EstimatorConfig(backend="onnxruntime", solver=SOLVER))
        assert est.backend.metadata["model_name"] == "mickey_tiny"
        assert not any(p.is_meta for p in model.parameters())  # the caller's model is untouched


class TestAutocast:
    # measured on this CPU for the tiny model (docs/deployment.md gives the demo/ViT-L figures)
    @pytest.mark.parametrize("precision, bound", [("bf16", 0.1), ("fp16", 0.02)])
    def test_close_to_fp32(self, images, precision, bound):
        model = _tiny()
        plain = TorchBackend(model, CPU)
        fast = TorchBackend(model, CPU, autocast=precision)
        with torch.inference_mode():
            expected, got = plain.extract(images, _timer), fast.extract(images, _timer)
        assert all(t.dtype == torch.float32 for t in _outputs(got))
        errors = relative_errors(_outputs(expected), _outputs(got))
        assert 0 < max(errors.values()) <= bound, errors  # > 0: autocast really ran


class TestCompile:
    @pytest.mark.slow  # inductor builds C++ kernels: about 2 min on a loaded 2-core machine
    def test_matches_eager(self, images):
        model = _tiny()
        with torch.inference_mode():
            expected = TorchBackend(model, CPU).extract(images, _timer)
        try:
            with torch.no_grad():
                got = TorchBackend(model, CPU, compile=True).extract(images, _timer)
        except RuntimeError as err:  # inductor needs a C++ compiler
            pytest.skip(f"torch.compile cannot build here: {str(err).splitlines()[0]}")
        assert max(relative_errors(_outputs(expected), _outputs(got)).values()) <= 1e-5


class TestPinMemory:
    def test_cpu_warns_and_copies_as_usual(self):
        ref, query, K = _test_images(SIZE_WH)
        plain = _estimator()
        with pytest.warns(UserWarning, match="pin_memory needs a CUDA device, not 'cpu'"):
            pinned = _estimator(pin_memory=True)
        for est in (plain, pinned):
            est.set_reference(ref, K)
        a, b = plain.estimate(query, K), pinned.estimate(query, K)
        np.testing.assert_array_equal(a.R, b.R)
        np.testing.assert_array_equal(a.t, b.t)

    def test_no_warning_when_off(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _estimator()


def test_features_from_outputs_maps_and_dtype():
    B, h, w = 2, 3, 4
    kpts, depth = torch.rand(B, h * w, 2).half(), torch.arange(B * h * w).reshape(B, h * w).half()
    feats = features_from_outputs(kpts, depth, depth.clone(), torch.rand(B, h * w, 8), (h, w))
    assert feats.depth.dtype == torch.float32 and feats.kpts.dtype == torch.float32
    assert torch.equal(feats.depth_map[1, 2], torch.tensor([20.0, 21.0, 22.0, 23.0]))
