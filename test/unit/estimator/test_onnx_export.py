"""ONNX export of the per-image network (issue 16): position tables, parity, metadata, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from mickey_ros.estimator.export import (
    ONNX_OUTPUTS,
    ConvAsMatMul,
    ExportError,
    FeatureGraph,
    convolutions_as_matmuls,
    export_int8,
    export_onnx,
    parity_check,
    position_table_for_grid,
    read_metadata,
    relative_errors,
    traceable_position_tables,
)
from mickey_ros.estimator.relative_pose import DEMO_CHECKPOINT
from mickey_ros.model.checkpoint import load_checkpoint
from mickey_ros.model.config import mickey_tiny, mickey_vitl14
from mickey_ros.model.mickey import MicKey
from mickey_ros.model.vit import interpolate_pos_embed

TOLERANCE = 1e-4  # issue 16: ORT fp32 vs torch fp32, relative to each output's scale


def _tiny() -> MicKey:
    torch.manual_seed(0)
    return MicKey(mickey_tiny()).eval()


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: "
                               "pip install 'mickey_ros[onnx]' to test the ONNX export")


@pytest.fixture(scope="module")
def tiny_onnx(ort, tmp_path_factory):
    model = _tiny()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return model, export_onnx(model, path, (126, 112), source="unit test")


class TestPositionTableForGrid:
    @pytest.mark.parametrize("grid_hw", [(8, 9), (18, 27), (38, 51), (37, 38), (51, 38)])
    def test_matches_official_interpolation(self, grid_hw):
        table = torch.randn(1, 1 + 37 * 37, 16, generator=torch.Generator().manual_seed(1))
        expected = interpolate_pos_embed(table, grid_hw)
        got = position_table_for_grid(table, grid_hw)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5

    def test_native_square_grid_uses_the_stored_table(self):
        table = torch.randn(1, 1 + 37 * 37, 16, generator=torch.Generator().manual_seed(2))
        assert torch.equal(position_table_for_grid(table, (37, 37)), table)


class TestTraceablePositionTables:
    @pytest.mark.parametrize("hw", [(112, 126), (518, 518), (252, 378)])
    def test_same_outputs_as_the_modules(self, hw):
        model = _tiny()
        image = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(3))
        graph = FeatureGraph(model)
        with torch.inference_mode():
            expected = graph(image)
            with traceable_position_tables(model):
                got = graph(image)
        assert max(relative_errors(expected, got).values()) < 1e-5

    def test_restores_the_class_methods(self):
        model = _tiny()
        with traceable_position_tables(model):
            assert "pos_embed_for" in vars(model.backbone)
        assert "pos_embed_for" not in vars(model.backbone)
        assert all("forward" not in vars(m) for m in model.modules())


class TestExportOnnx:
    def test_parity_at_export_and_second_size(self, tiny_onnx):
        _, result = tiny_onnx
        assert sorted(result.parity) == ["126x112", "154x126"]
        for errors in result.parity.values():
            assert sorted(errors) == sorted(ONNX_OUTPUTS)
            assert max(errors.values()) <= TOLERANCE

    def test_dynamic_sizes_and_batches(self, tiny_onnx):
        model, result = tiny_onnx
        for batch in (1, 3):
            report = parity_check(model, result.path, [(98, 98), (518, 518), (322, 238)],
                                  batch=batch, seed=batch)
            assert max(max(e.values()) for e in report.values()) <= TOLERANCE

    def test_metadata(self, tiny_onnx):
        model, result = tiny_onnx
        meta = read_metadata(result.path)
        assert sorted(meta) == sorted([
            "version", "model_name", "model_config", "source", "input_size", "dynamic_size",
            "normalisation", "patch_size", "descriptor_dim", "matcher", "outputs",
            "convs_as_matmuls"])
        assert meta["model_name"] == "mickey_tiny"
        assert meta["input_size"] == "126x112"
        assert json.loads(meta["dynamic_size"]) is True
        assert meta["outputs"] == "kpts,depth,scores,descriptors"
        assert meta["descriptor_dim"] == "32" and meta["patch_size"] == "14"
        assert json.loads(meta["matcher"]) == {"temperature": 0.1, "use_dustbin": True,
                                               "dustbin_score": 1.0}
        assert json.loads(meta["model_config"]) == model.config.to_dict()
        assert json.loads(meta["convs_as_matmuls"]) is False

    def test_static_export_fixes_the_size(self, ort, tmp_path):
        model = _tiny()
        result = export_onnx(model, tmp_path / "static.onnx", (126, 112), dynamic=False)
        assert list(result.parity) == ["126x112"]
        with pytest.raises(Exception, match="dimensions"):
            parity_check(model, result.path, [(154, 126)])

    def test_failed_parity_raises(self, ort, tmp_path):
        with pytest.raises(ExportError, match="differs from torch at 126x112"):
            export_onnx(_tiny(), tmp_path / "t.onnx", (126, 112), dynamic=False, tolerance=-1.0)

    @pytest.mark.parametrize("size_wh", [(125, 112), (84, 112), (4200, 112)])
    def test_bad_size(self, size_wh, tmp_path):
        with pytest.raises(ValueError, match="must be multiples of 14 px between 98 and 4096"):
            export_onnx(_tiny(), tmp_path / "t.onnx", size_wh)

    def test_not_an_export(self, ort, tmp_path):
        import onnx

        path = tmp_path / "plain.onnx"
        onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(path))
        with pytest.raises(ExportError, match="no mickey_ros metadata"):
            read_metadata(path)

    def test_demo_model_two_sizes(self, ort, tmp_path):
        model, _ = load_checkpoint(DEMO_CHECKPOINT)
        result = export_onnx(model, tmp_path / "demo.onnx", (322, 238),
                             parity_sizes_wh=[(322, 238), (714, 532)])
        assert sorted(result.parity) == ["322x238", "714x532"]
        assert max(max(e.values()) for e in result.parity.values()) <= TOLERANCE


class TestConvAsMatMul:
    @pytest.mark.parametrize("kernel, dilation, bias", [(3, 1, False), (3, 2, True), (1, 1, False),
                                                        (5, 1, True)])
    def test_same_as_the_convolution(self, kernel, dilation, bias):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(16, 8, kernel, padding=dilation * (kernel - 1) // 2,
                               dilation=dilation, bias=bias)
        x = torch.randn(2, 16, 7, 9)
        torch.testing.assert_close(ConvAsMatMul(conv)(x), conv(x), rtol=0, atol=1e-5)


class TestConvolutionsAsMatmuls:
    def test_swaps_the_stride_one_convolutions_and_restores_them(self):
        model = _tiny()
        convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
        strided = {n for n, m in convs.items() if m.stride != (1, 1)}  # the patch embedding
        image = torch.rand(1, 3, 112, 126)
        with torch.no_grad():
            expected = FeatureGraph(model)(image)
            with convolutions_as_matmuls(model) as swapped:
                assert swapped == len(convs) - len(strided) > 0
                assert {n for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Conv2d)} == strided
                got = FeatureGraph(model)(image)
        assert {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)} == convs
        assert max(relative_errors(expected, got).values()) < 1e-5


class TestExportInt8:
    def test_heads_quantised_as_matmuls(self, ort, tmp_path):
        import onnx

        model = _tiny()
        path = export_int8(model, tmp_path / "tiny-int8linear.onnx", (126, 112), source="test")
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        assert ops.count("Conv") == 1 and "ConvInteger" not in ops  # the patch embedding only
        assert "Erf" not in ops and ops.count("Gelu") == model.config.backbone.depth
        assert ops.count("MatMulInteger") >= convs - 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-int8linear.onnx"]
        meta = read_metadata(path)
        assert meta["source"] == "test" and json.loads(meta["convs_as_matmuls"]) is True
        errors = parity_check(model, path, [(126, 112), (154, 126)])
        assert 0 < max(max(e.values()) for e in errors.values()) < 0.1


@pytest.mark.slow
def test_vitl14_parity_two_sizes(ort, tmp_path):
    """The official architecture, random weights in the official layout (minutes on one core)."""
    torch.manual_seed(0)
    model = MicKey(mickey_vitl14()).eval()
    result = export_onnx(model, tmp_path / "vitl.onnx", (378, 252), parity_sizes_wh=[])
    report = parity_check(model, result.path, [(378, 252), (714, 532)], batch=1)
    print(report)
    assert max(max(e.values()) for e in report.values()) <= TOLERANCE


class TestExportCli:
    def test_writes_file_and_prints_parity(self, ort, tmp_path, capsys):
        from mickey_ros.cli.main import main

        out = tmp_path / "cli.onnx"
        code = main(["export", "--model", "mickey_tiny", "--size", "126x112", "--out", str(out)])
        assert code == 0
        assert read_metadata(out)["source"] == "mickey_tiny (random weights, seed 0)"
        printed = capsys.readouterr().out
        assert "parity 126x112" in printed and "parity 154x126" in printed

    def test_bad_size_is_one_line(self, tmp_path, capsys):
        from mickey_ros.cli.main import main

        code = main(["export", "--model-config", "mickey_tiny", "--size", "125x112",
                     "--out", str(tmp_path / "x.onnx")])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "multiples of 14" in err[0]
