"""Dual-softmax matching with a learned dust-bin, and MicKey's correspondence probabilities.

``P = dual_softmax(desc_ref, desc_query) * outer(scores_ref, scores_query)`` is the
(unnormalised) matrix from which the pose solver samples correspondences
(``shared/reference/mickey.md`` section 6).
There is no mutual-nearest-neighbour test, threshold or top-k.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mickey_ros.utils.checks import check_shape


def dual_softmax(similarity: Tensor, dustbin_score: Tensor | None = None) -> Tensor:
    """``softmax over rows * softmax over columns``, optionally with a dust-bin row and column.

    Args:
        similarity: (B, N0, N1) scaled similarities.
        dustbin_score: () scalar used for the extra last row, last column and corner; None for no
            dust-bin.

    Returns:
        (B, N0, N1) match probabilities (dust-bin row and column dropped).
    """
    if dustbin_score is None:
        return similarity.softmax(dim=1) * similarity.softmax(dim=2)
    B, N0, N1 = similarity.shape
    alpha = dustbin_score.to(similarity.dtype)
    bins_col = alpha.expand(B, N0, 1)
    bins_row = alpha.expand(B, 1, N1 + 1)
    couplings = torch.cat([torch.cat([similarity, bins_col], dim=2), bins_row], dim=1)
    probs = couplings.softmax(dim=1) * couplings.softmax(dim=2)
    return probs[:, :N0, :N1]


class DualSoftmaxMatcher(nn.Module):
    """Dual softmax over descriptor dot products (official ``dualSoftmax``).

    Owns the learned scalar ``dustbin_score`` (always registered so official checkpoints load,
    used only when ``use_dustbin``).

    Example:
        >>> matcher = DualSoftmaxMatcher()
        >>> d = torch.nn.functional.normalize(torch.randn(1, 5, 8), dim=-1)
        >>> matcher(d, d).shape
        torch.Size([1, 5, 5])
    """

    def __init__(self, temperature: float = 0.1, use_dustbin: bool = True,
                 dustbin_init: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.use_dustbin = use_dustbin
        self.dustbin_score = nn.Parameter(torch.tensor(float(dustbin_init)))

    def forward(self, desc_ref: Tensor, desc_query: Tensor) -> Tensor:
        """Match probabilities.

        Args:
            desc_ref: (B, N0, D) L2-normalised descriptors of the reference image.
            desc_query: (B, N1, D) descriptors of the query; batch sizes may differ when one is 1.

        Returns:
            (B, N0, N1) dual-softmax probabilities without the dust-bin row and column.
        """
        check_shape(desc_ref, "B N0 D", "desc_ref")
        check_shape(desc_query, "B N1 D", "desc_query")
        if desc_ref.shape[-1] != desc_query.shape[-1]:
            raise ValueError(f"descriptor widths differ: desc_ref {tuple(desc_ref.shape)} vs "
                             f"desc_query {tuple(desc_query.shape)}")
        similarity = desc_ref @ desc_query.transpose(1, 2) / self.temperature
        return dual_softmax(similarity, self.dustbin_score if self.use_dustbin else None)


def correspondence_probabilities(match_probs: Tensor, scores_ref: Tensor,
                                 scores_query: Tensor) -> Tensor:
    """MicKey's correspondence matrix ``P = match_probs * outer(scores_ref, scores_query)``.

    Args:
        match_probs: (B, N0, N1) dual-softmax probabilities.
        scores_ref: (B, N0) keypoint probabilities of the reference image.
        scores_query: (B, N1) keypoint probabilities of the query image.

    Returns:
        (B, N0, N1) non-negative weights (not renormalised); pairs with a border cell are 0.

    >>> P = correspondence_probabilities(torch.ones(1, 2, 2), torch.tensor([[0.25, 0.75]]),
    ...                                  torch.tensor([[1.0, 0.0]]))
    >>> P.tolist()  # exact: products of 1, 0.25, 0.75 and 0
    [[[0.25, 0.0], [0.75, 0.0]]]
    """
    dims = check_shape(match_probs, "B N0 N1", "match_probs")
    check_shape(scores_ref, "* N0", "scores_ref", dims)
    check_shape(scores_query, "* N1", "scores_query", dims)
    keypoint_prior = scores_ref[:, :, None] * scores_query[:, None, :]  # (B, N0, N1)
    return match_probs * keypoint_prior
