import pytest
import torch

from mickey_ros.model.config import HeadsConfig
from mickey_ros.model.heads import (
    ConvAttentionHead,
    ResBlock,
    ScoreHead,
    border_mask,
    depth_from_logits,
    keypoints_from_offsets,
    normalize_descriptors,
    score_probabilities,
)

TINY = HeadsConfig(blocks_dim=(16, 16, 8, 4), attention_heads=2, attention_layers=1)


class TestResBlock:
    def test_keys_with_and_without_shortcut(self):
        bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
        body = ["conv1.weight", *[f"bn1.{n}" for n in bn],
                "conv2.weight", *[f"bn2.{n}" for n in bn]]
        assert list(ResBlock(8, 4).state_dict()) == [*body, "shortcut.0.weight"]
        assert list(ResBlock(4, 4).state_dict()) == body
        assert list(ResBlock(4, 4, use_bn=False).state_dict()) == ["conv1.weight", "conv2.weight"]

    def test_formula_and_final_relu(self):
        torch.manual_seed(0)
        block = ResBlock(3, 5, final_relu=False).eval()
        x = torch.randn(2, 3, 6, 7)
        inner = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        expected = inner + block.shortcut(x)
        out = block(x)
        assert (out - expected).abs().max().item() < 1e-6 and out.min() < 0
        block.final_relu = True
        assert torch.equal(block(x), torch.relu(expected))


class TestConvAttentionHead:
    def test_output_shapes(self):
        x = torch.randn(2, 12, 7, 9)
        assert ConvAttentionHead(12, TINY, "depth", 1)(x).shape == (2, 1, 7, 9)
        assert ConvAttentionHead(12, TINY, None)(x).shape == (2, 8, 7, 9)

    def test_key_order(self):
        top = [k.split(".")[0] for k in ConvAttentionHead(12, TINY, "xy_offset", 2).state_dict()]
        assert list(dict.fromkeys(top)) == [
            "resblock1", "resblock2", "resblock3", "resblock4", "xy_offset", "att_layer"]
        dsc = ConvAttentionHead(12, TINY, None).state_dict()
        assert "resblock4.shortcut.0.weight" not in dsc and dsc["resblock4.conv1.weight"].shape == (
            8, 8, 3, 3)


class TestScoreHead:
    def test_fixed_parameters(self):
        head = ScoreHead(12, TINY)
        assert list(head.state_dict())[:4] == ["eps", "offset_par1", "offset_par2", "ones_kernel"]
        assert (head.eps.item(), head.offset_par1.item(), head.offset_par2.item()) == (
            pytest.approx(1e-16), 0.5, 2.0)
        assert torch.equal(head.ones_kernel, torch.ones(1, 1, 3, 3))
        frozen = [n for n, p in head.named_parameters() if not p.requires_grad]
        assert frozen == ["eps", "offset_par1", "offset_par2", "ones_kernel"]


class TestBorderMask:
    def test_counts(self):
        mask = border_mask((51, 38), 3)
        assert mask.sum().item() == 45 * 32 and (~mask).sum().item() == 498


class TestScoreProbabilities:
    @pytest.mark.parametrize("h, w", [(7, 7), (12, 16), (51, 38)])
    def test_sums_to_one_with_zero_border(self, h, w):
        logits = 50 * torch.randn(3, 1, h, w)
        p = score_probabilities(logits, 100.0, 3)
        assert p.shape == (3, h, w)
        assert (p.sum(dim=(1, 2)) - 1).abs().max().item() < 1e-6
        assert [(p_b == 0).sum().item() for p_b in p] == [h * w - (h - 6) * (w - 6)] * 3
        assert (p[:, 3:-3, 3:-3] > 0).all()

    def test_equals_interior_softmax(self):
        logits = 30 * torch.randn(2, 1, 10, 11, dtype=torch.float64)
        p = score_probabilities(logits, 100.0, 3)
        interior = (logits[:, 0, 3:-3, 3:-3] / 100).flatten(1).softmax(dim=1)
        assert (p[:, 3:-3, 3:-3].flatten(1) - interior).abs().max().item() < 1e-12

    def test_mean_shift_is_detached(self):
        logits = torch.randn(1, 1, 8, 8, requires_grad=True)
        score_probabilities(logits, 100.0, 3)[0, 4, 4].backward()
        interior = torch.zeros(8, 8, dtype=torch.bool)
        interior[3:5, 3:5] = True
        assert (logits.grad[0, 0][~interior] == 0).all() and logits.grad[0, 0, 4, 4] > 0


class TestKeypointsFromOffsets:
    def test_cell_centres_and_row_major(self):
        kpts = keypoints_from_offsets(torch.zeros(1, 2, 3, 4), 14)
        assert kpts.shape == (1, 12, 2)
        assert kpts[0, 1 * 4 + 2].tolist() == [14 * 2.5, 14 * 1.5]  # row 1, column 2

    def test_strictly_inside_cell(self):
        offsets = 5 * torch.randn(2, 2, 6, 9)
        kpts = keypoints_from_offsets(offsets, 14)
        cells = torch.stack(torch.meshgrid(torch.arange(6), torch.arange(9), indexing="ij"))
        cell_xy = cells.flip(0).flatten(1).T.float()  # (N, 2) (column, row)
        inside = (kpts > 14 * cell_xy) & (kpts < 14 * (cell_xy + 1))
        assert inside.all()
        x_expected = 14 * (cell_xy[:, 0] + torch.sigmoid(offsets[1, 0]).flatten())
        assert torch.allclose(kpts[1, :, 0], x_expected)


class TestDepthFromLogits:
    def test_raw_and_sigmoid(self):
        logits = torch.tensor([[[[-2.0, 3.0]]]])
        assert depth_from_logits(logits, HeadsConfig()).tolist() == [[[-2.0, 3.0]]]
        sig = depth_from_logits(logits, HeadsConfig(use_depth_sigmoid=True, max_depth=60.0))
        assert torch.allclose(sig, 60 * torch.sigmoid(logits[:, 0]))


class TestNormalizeDescriptors:
    def test_unit_norm_and_layout(self):
        d = torch.randn(2, 8, 3, 4)
        out = normalize_descriptors(d)
        assert out.shape == (2, 12, 8)
        assert (out.norm(dim=-1) - 1).abs().max().item() < 1e-6
        assert torch.allclose(out[1, 1 * 4 + 3], d[1, :, 1, 3] / d[1, :, 1, 3].norm())

    def test_zero_vector_stays_finite(self):
        out = normalize_descriptors(torch.zeros(1, 4, 1, 1))
        assert torch.equal(out, torch.zeros(1, 1, 4))
