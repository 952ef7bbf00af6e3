"""Thread and precision choices of the estimator (issues 28 and 30), both paths forced."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from mickey_ros.estimator import runtime
from mickey_ros.estimator.bench import BenchConfig, format_table, run_benchmark
from mickey_ros.estimator.export import export_onnx, relative_errors
from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
from mickey_ros.estimator.runtime import choose_precision, choose_threads, cpu_flags
from mickey_ros.geometry.ransac import SolverConfig
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
VITL_PARAMS = 346_919_437  # mickey_vitl14
DEMO_PARAMS = 3_496_781  # mickey_demo_cnn
SOLVER = SolverConfig(it_matches=4, it_ransac=20, num_samples=512)
NO_UNITS = frozenset({"avx2", "fma"})


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _tiny() -> MicKey:
    torch.manual_seed(0)
    return MicKey(mickey_tiny()).eval()


def _estimator(monkeypatch, flags: frozenset[str], **changes) -> RelativePoseEstimator:
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    config = dataclasses.replace(EstimatorConfig(solver=SOLVER), **changes)
    return RelativePoseEstimator(_tiny(), config)


class TestCpuFlags:
    def test_reads_the_flags_line(self, tmp_path):
        info = tmp_path / "cpuinfo"
        info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n"
                        "bogus\t: 1\n")
        assert cpu_flags(info) == {"fpu", "avx512f", "avx512_bf16", "amx_tile"}

    def test_missing_file_is_no_flags(self, tmp_path):
        assert cpu_flags(tmp_path / "absent") == frozenset()


class TestChooseThreads:
    def test_explicit_wins(self):
        got = choose_threads(3, VITL_PARAMS, 16, {"OMP_NUM_THREADS": "7"})
        assert got == (3, "threads 3 (set)")

    def test_omp_num_threads_is_honoured(self):
        torch.set_num_threads(2)
        assert choose_threads(0, DEMO_PARAMS, 16, {"OMP_NUM_THREADS": "2"}) == (
            2, "threads 2 (OMP_NUM_THREADS)")

    def test_small_model_one_thread(self):
        n, note = choose_threads(0, DEMO_PARAMS, 16, {})
        assert (n, note) == (1, "threads 1 (auto: small model; more threads lose under load)")

    @pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (16, 8)])
    def test_large_model_half_the_cores(self, cores, expected):
        assert choose_threads(0, VITL_PARAMS, cores, {})[0] == expected

    def test_negative_refused(self):
        with pytest.raises(ValueError, match=r"threads must be >= 0 \(0 = auto\), got -1"):
            choose_threads(-1, DEMO_PARAMS, 2, {})


class TestChoosePrecision:
    @pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
    def test_auto_bf16_on_matrix_units(self, flag):
        got = choose_precision("auto", "", CPU, "torch", frozenset({flag, "avx2"}))
        assert got == ("bf16", "bf16", f"precision auto -> bf16 backbone + heads (CPU has {flag})")

    def test_auto_fp32_without(self):
        got = choose_precision("auto", "", CPU, "torch", NO_UNITS)
        assert got == ("fp32", "", "precision auto -> fp32 (cpu: no amx_bf16 or avx512_bf16)")

    def test_auto_cuda_fp16(self):
        assert choose_precision("auto", "", CUDA, "torch", NO_UNITS)[:2] == ("fp16", "fp16")

    @pytest.mark.parametrize("backend, expected", [("onnxruntime", "fp32"), ("tensorrt", "fp16")])
    def test_auto_onnx_backends(self, backend, expected):
        got = choose_precision("auto", "", CPU, backend, frozenset({"avx512_bf16"}))
        assert got[:2] == (expected, "")

    def test_explicit_kept(self):
        got = choose_precision("fp32", "bf16", CPU, "torch", frozenset({"avx512_bf16"}))
        assert got == ("fp32", "bf16", "precision fp32, autocast bf16")


class TestEstimatorRunSettings:
    def test_threads_set_for_torch(self, monkeypatch):
        torch.set_num_threads(2)
        est = _estimator(monkeypatch, NO_UNITS, threads=1)
        assert torch.get_num_threads() == 1 and est.config.threads == 1

    def test_auto_threads_small_model(self, monkeypatch):
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        est = _estimator(monkeypatch, NO_UNITS)
        assert torch.get_num_threads() == 1
        assert est.run_settings.note.endswith("threads 1 (auto: small model; more threads "
                                              "lose under load)")

    def test_onnxruntime_gets_the_same_threads(self, monkeypatch, tmp_path):
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install "
                            "'mickey_ros[onnx]'")
        path = export_onnx(_tiny(), tmp_path / "tiny.onnx", (224, 168), parity_sizes_wh=[],
                           source="unit test").path
        torch.set_num_threads(1)
        est = _estimator(monkeypatch, NO_UNITS, backend="onnxruntime", onnx_path=str(path),
                         threads=2)
        assert est.backend.session.get_session_options().intra_op_num_threads == 2

    def test_auto_without_units_is_the_fp32_path(self, monkeypatch):
        est = _estimator(monkeypatch, NO_UNITS, precision="auto")
        plain = _estimator(monkeypatch, NO_UNITS)
        assert (est.config.precision, est.config.autocast) == ("fp32", "")
        image = torch.rand(1, 3, 168, 224, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            a = est.backend.extract(image, lambda s: nullcontext())
            b = plain.backend.extract(image, lambda s: nullcontext())
        assert torch.equal(a.descriptors, b.descriptors) and torch.equal(a.depth, b.depth)

    def test_auto_with_units_runs_bf16_and_stays_close(self, monkeypatch):
        est = _estimator(monkeypatch, frozenset({"avx512_bf16"}), precision="auto")
        plain = _estimator(monkeypatch, NO_UNITS)
        assert (est.config.precision, est.config.autocast) == ("bf16", "bf16")
        assert next(est.model.backbone.parameters()).dtype == torch.bfloat16
        image = torch.rand(1, 3, 168, 224, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            a = est.backend.extract(image, lambda s: nullcontext())
            b = plain.backend.extract(image, lambda s: nullcontext())
        assert a.descriptors.dtype == torch.float32  # the matcher and solver stay fp32
        errors = relative_errors((b.kpts, b.depth, b.scores, b.descriptors),
                                 (a.kpts, a.depth, a.scores, a.descriptors))
        # bf16 keeps 8 bits of mantissa (2**-8 = 3.9e-3 per rounding); the differences stay
        # within a few roundings and are not zero (the bf16 path really ran)
        assert all(0 < e < 0.05 for e in errors.values()), errors

    def test_pose_valid_on_both_paths(self, monkeypatch):
        rgb = np.random.default_rng(0).integers(0, 255, (168, 224, 3), dtype=np.uint8)
        K = np.array([[200.0, 0, 112], [0, 200, 84], [0, 0, 1]])
        for flags in (NO_UNITS, frozenset({"amx_bf16"})):
            est = _estimator(monkeypatch, flags, precision="auto")
            est.set_reference(rgb, K)
            assert est.estimate(rgb, K).R.shape == (3, 3)


class TestBenchReportsSettings:
    def test_precision_and_threads_printed(self, monkeypatch):
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
        report = run_benchmark(BenchConfig(model="mickey_tiny", size_wh=(224, 168), iterations=1,
                                           warmup=0, modes=("cached",), precision="auto",
                                           threads=1))
        assert report["ran_with"] == {
            "precision": "bf16", "autocast": "bf16", "threads": 1,
            "note": "precision auto -> bf16 backbone + heads (CPU has avx512_bf16); "
                    "threads 1 (set)"}
        assert format_table(report).splitlines()[0] == (
            "ran with precision auto -> bf16 backbone + heads (CPU has avx512_bf16); "
            "threads 1 (set)")
