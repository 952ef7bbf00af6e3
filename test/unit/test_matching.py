import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mickey_ros.model.matching import DualSoftmaxMatcher, correspondence_probabilities, dual_softmax


def _numpy_dual_softmax(S: np.ndarray, alpha: float) -> np.ndarray:
    """Explicit (N0+1) x (N1+1) couplings with the dust-bin row, column and corner = alpha."""
    N0, N1 = S.shape
    C = np.full((N0 + 1, N1 + 1), alpha)
    C[:N0, :N1] = S
    rows = np.exp(C - C.max(0, keepdims=True))
    rows /= rows.sum(0, keepdims=True)  # normalised over the row index i, per column
    cols = np.exp(C - C.max(1, keepdims=True))
    cols /= cols.sum(1, keepdims=True)  # normalised over the column index j, per row
    return (rows * cols)[:N0, :N1]


def _descriptors(B, N, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(B, N, D, generator=g, dtype=torch.float64), dim=-1)


class TestDualSoftmax:
    def test_equals_explicit_dustbin_construction(self):
        S = torch.randn(1, 6, 9, dtype=torch.float64) * 5
        out = dual_softmax(S, torch.tensor(1.3, dtype=torch.float64))
        assert np.abs(out[0].numpy() - _numpy_dual_softmax(S[0].numpy(), 1.3)).max() < 1e-14

    def test_rows_and_columns(self):
        S = torch.randn(2, 5, 7, dtype=torch.float64) * 3
        P = dual_softmax(S)
        assert torch.allclose(P, S.softmax(1) * S.softmax(2))
        # each factor is a distribution, so every row and column of P sums to at most 1
        assert (P.sum(1) <= 1 + 1e-12).all() and (P.sum(2) <= 1 + 1e-12).all()

    def test_dustbin_takes_mass_from_unmatched_points(self):
        S = torch.full((1, 3, 3), -10.0, dtype=torch.float64)
        S[0, 0, 0] = 10.0  # one good match, the rest should fall into the dust-bin
        P = dual_softmax(S, torch.tensor(1.0, dtype=torch.float64))
        assert P[0, 0, 0] > 0.99 and P[0, 1:, 1:].max() < 1e-5


class TestDualSoftmaxMatcher:
    def test_temperature_and_dustbin(self):
        matcher = DualSoftmaxMatcher(temperature=0.1, dustbin_init=1.0).double()
        d0, d1 = _descriptors(1, 6), _descriptors(1, 8, seed=1)
        S = (d0[0] @ d1[0].T / 0.1).numpy()
        P = matcher(d0, d1)
        assert P.shape == (1, 6, 8)
        assert np.abs(P[0].detach().numpy() - _numpy_dual_softmax(S, 1.0)).max() < 1e-14

    def test_dustbin_is_learned_and_optional(self):
        matcher = DualSoftmaxMatcher()
        assert list(matcher.state_dict()) == ["dustbin_score"]
        assert matcher.dustbin_score.item() == 1.0
        d0, d1 = _descriptors(1, 4).float(), _descriptors(1, 5, seed=2).float()
        matcher(d0, d1).sum().backward()
        assert matcher.dustbin_score.grad is not None and matcher.dustbin_score.grad != 0
        plain = DualSoftmaxMatcher(use_dustbin=False)
        S = d0 @ d1.transpose(1, 2) / 0.1
        assert torch.allclose(plain(d0, d1), S.softmax(1) * S.softmax(2))

    def test_broadcast_batch_of_one(self):
        matcher = DualSoftmaxMatcher().double()
        ref, query = _descriptors(1, 6), _descriptors(3, 4, seed=3)
        P = matcher(ref, query)
        assert P.shape == (3, 6, 4)
        assert torch.allclose(P[2], matcher(ref, query[2:])[0])

    def test_bad_shapes(self):
        matcher = DualSoftmaxMatcher()
        with pytest.raises(ValueError, match="desc_ref must have shape"):
            matcher(torch.zeros(4, 8), torch.zeros(1, 4, 8))
        with pytest.raises(ValueError, match="descriptor widths differ"):
            matcher(torch.zeros(1, 4, 8), torch.zeros(1, 4, 16))


class TestCorrespondenceProbabilities:
    def test_formula(self):
        match = torch.rand(2, 3, 4, dtype=torch.float64)
        s0 = torch.rand(2, 3, dtype=torch.float64)
        s1 = torch.rand(2, 4, dtype=torch.float64)
        P = correspondence_probabilities(match, s0, s1)
        assert torch.allclose(P, match * torch.einsum("bi,bj->bij", s0, s1))

    def test_zero_scores_give_zero_rows_and_columns(self):
        s0, s1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.0, 0.5]])
        P = correspondence_probabilities(torch.ones(1, 2, 3), s0, s1)
        assert P[0, 0].abs().sum() == 0 and P[0, :, 1].abs().sum() == 0 and P.sum() == 1

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="scores_query"):
            correspondence_probabilities(torch.ones(1, 2, 3), torch.ones(1, 2), torch.ones(1, 4))
