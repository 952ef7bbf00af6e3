"""MicKey: image -> metric keypoints (pixel position, depth, probability, descriptor) and matching.

Module tree (the official state_dict keys, ``reference/mickey_state_dict_keys.tsv``)::

    MicKey
    └── compute_matches
        ├── extractor: dinov2_<arch>, depth_head, det_offset, dsc_head, det_head
        └── matcher
            └── matching_mat: DualSoftmaxMatcher (dustbin_score)

Example:
    >>> from mickey_ros.model.config import mickey_tiny
    >>> model = MicKey(mickey_tiny()).eval()
    >>> feats = model.extract(torch.rand(1, 3, 112, 126))
    >>> feats.grid_hw, tuple(feats.kpts.shape), round(feats.scores.sum().item(), 5)
    ((8, 9), (1, 72, 2), 1.0)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from mickey_ros.model.config import PRECISIONS, MickeyConfig
from mickey_ros.model.conv_encoder import ConvEncoder
from mickey_ros.model.heads import (
    ConvAttentionHead,
    ScoreHead,
    depth_from_logits,
    keypoints_from_offsets,
    normalize_descriptors,
    score_probabilities,
)
from mickey_ros.model.matching import DualSoftmaxMatcher, correspondence_probabilities
from mickey_ros.model.vit import DinoVisionTransformer
from mickey_ros.utils.checks import check_shape
from mickey_ros.utils.images import crop_to_multiple

PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class MicKeyFeatures:
    """Per-image MicKey outputs; ``N = h*w`` cells in row-major order (row = image y).

    Attributes:
        kpts: (B, N, 2) pixel (x, y) in the cropped network-input image,
            ``14 * (j + sigmoid(o_x))``, ``14 * (i + sigmoid(o_y))`` for cell (row i, column j).
        depth: (B, N) metres along the optical axis (raw head output).
        scores: (B, N) keypoint probability; 0 on the border cells, sums to 1.
        descriptors: (B, N, D) L2-normalised.
        grid_hw: (h, w) feature grid.
        depth_map: (B, h, w) the depth as a map (visualisation), or None.
        score_map: (B, h, w) the scores as a map (visualisation), or None.
    """

    kpts: Tensor
    depth: Tensor
    scores: Tensor
    descriptors: Tensor
    grid_hw: tuple[int, int]
    depth_map: Tensor | None = None
    score_map: Tensor | None = None


class MicKeyExtractor(nn.Module):
    """Backbone plus the four heads; registration order = official key order."""

    def __init__(self, config: MickeyConfig) -> None:
        super().__init__()
        conv = config.backbone.arch == "conv"  # ours: the demo CNN, key prefix conv_encoder.
        self.backbone_name = "conv_encoder" if conv else f"dinov2_{config.backbone.arch}"
        self.trainable_backbone = config.backbone.trainable
        encoder = ConvEncoder(config.backbone) if conv else DinoVisionTransformer(config.backbone)
        self.add_module(self.backbone_name, encoder)
        C = config.backbone.embed_dim
        self.depth_head = ConvAttentionHead(C, config.heads, "depth", 1)
        self.det_offset = ConvAttentionHead(C, config.heads, "xy_offset", 2)
        self.dsc_head = ConvAttentionHead(C, config.heads, None)
        self.det_head = ScoreHead(C, config.heads)
        if not self.trainable_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    @property
    def backbone(self) -> DinoVisionTransformer | ConvEncoder:
        """The DINOv2 ViT (attribute ``dinov2_<arch>``) or the demo CNN (``conv_encoder``)."""
        return getattr(self, self.backbone_name)

    def train(self, mode: bool = True) -> MicKeyExtractor:
        """As ``nn.Module.train`` but a frozen backbone always stays in eval mode (official)."""
        super().train(mode)
        if not self.trainable_backbone:
            self.backbone.eval()
        return self


class _MatcherHolder(nn.Module):
    """Official ``featureMatcher`` level (key ``matcher.matching_mat.*``)."""

    def __init__(self, config: MickeyConfig) -> None:
        super().__init__()
        m = config.matcher
        self.matching_mat = DualSoftmaxMatcher(m.temperature, m.use_dustbin, m.dustbin_init)


class _ComputeMatches(nn.Module):
    """Official ``ComputeCorrespondences`` level (key prefix ``compute_matches.``)."""

    def __init__(self, config: MickeyConfig) -> None:
        super().__init__()
        self.extractor = MicKeyExtractor(config)
        self.matcher = _MatcherHolder(config)


class MicKey(nn.Module):
    """The MicKey network: frozen (or trainable) DINOv2 + four heads + dual-softmax matcher.

    The backbone precision (``config.backbone_precision``) is applied by casting the ViT module
    lazily, on the first :meth:`encode` or by :meth:`set_backbone_precision`, so weights loaded in
    fp32 are never rounded before the caller picks a precision.
    """

    def __init__(self, config: MickeyConfig) -> None:
        super().__init__()
        self.config = config
        self.compute_matches = _ComputeMatches(config)

    @property
    def extractor(self) -> MicKeyExtractor:
        """Backbone + heads (``compute_matches.extractor``)."""
        return self.compute_matches.extractor

    @property
    def backbone(self) -> DinoVisionTransformer | ConvEncoder:
        """The backbone (``compute_matches.extractor.dinov2_<arch>`` or ``.conv_encoder``)."""
        return self.compute_matches.extractor.backbone

    @property
    def matcher(self) -> DualSoftmaxMatcher:
        """The dual-softmax matcher (``compute_matches.matcher.matching_mat``)."""
        return self.compute_matches.matcher.matching_mat

    def set_backbone_precision(self, precision: str) -> None:
        """Cast the ViT to 'fp32', 'fp16' or 'bf16' now (weights and later inputs; not autocast).

        Up-casting a backbone that already ran in fp16/bf16 keeps the rounded weights; load with
        ``load_checkpoint(..., backbone_precision='fp32')`` for exact fp32 weights.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.config = replace(self.config, backbone_precision=precision)
        self._apply_backbone_precision()

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze (official: no grad, always eval) or unfreeze the ViT; updates ``config``."""
        self.config = replace(self.config, backbone=replace(self.config.backbone,
                                                            trainable=trainable))
        self.extractor.trainable_backbone = trainable
        self.backbone.requires_grad_(trainable)
        self.backbone.train(trainable and self.training)

    def _backbone_dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def _apply_backbone_precision(self) -> None:
        target = PRECISION_DTYPES[self.config.backbone_precision]
        current = self._backbone_dtype()
        if current == target:
            return
        if current != torch.float32 and target == torch.float32:
            warnings.warn(f"backbone weights were already rounded to {current}; casting them back "
                          "to fp32 does not restore the fp32 values", stacklevel=3)
        self.backbone.to(target)

    def encode(self, image: Tensor) -> Tensor:
        """Backbone features of the top-left crop to a multiple of the patch size.

        Args:
            image: (B, 3, H, W) float RGB in [0, 1], no mean/std normalisation.

        Returns:
            (B, C, H // 14, W // 14) fp32 feature map.
        """
        check_shape(image, "B 3 H W", "image")
        if not image.is_floating_point():
            raise ValueError(f"image must be a float tensor in [0, 1], got {image.dtype}")
        p, min_side = self.config.backbone.patch_size, self.config.min_input_side
        if min(image.shape[-2:]) < min_side:
            raise ValueError(f"image is {tuple(image.shape[-2:])} (H, W) but MicKey needs at "
                             f"least {min_side} px per side; resize it (and its K) up")
        self._apply_backbone_precision()
        image = crop_to_multiple(image, p).to(self._backbone_dtype())
        grad = self.extractor.trainable_backbone and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            return self.backbone(image).float()

    def decode(self, feats: Tensor) -> MicKeyFeatures:
        """Run the four heads on a (B, C, h, w) feature map and post-process their outputs."""
        check_shape(feats, f"B {self.config.backbone.embed_dim} h w", "feats")
        ex, heads_cfg = self.extractor, self.config.heads
        score_map = score_probabilities(
            ex.det_head(feats), heads_cfg.score_temperature, heads_cfg.border_cells,
            ex.det_head.eps,
        )
        depth_map = depth_from_logits(ex.depth_head(feats), heads_cfg)
        B, h, w = score_map.shape
        return MicKeyFeatures(
            kpts=keypoints_from_offsets(ex.det_offset(feats), self.config.backbone.patch_size),
            depth=depth_map.reshape(B, h * w),
            scores=score_map.reshape(B, h * w),
            descriptors=normalize_descriptors(ex.dsc_head(feats)),
            grid_hw=(h, w),
            depth_map=depth_map,
            score_map=score_map,
        )

    def extract(self, image: Tensor) -> MicKeyFeatures:
        """``decode(encode(image))`` for a (B, 3, H, W) float [0, 1] image batch."""
        return self.decode(self.encode(image))

    def match(self, ref: MicKeyFeatures, query: MicKeyFeatures) -> Tensor:
        """Correspondence probabilities P (B, N0, N1) = dual softmax * outer(scores).

        N0 and N1 may differ (different image sizes); one batch may be 1 (broadcast).
        """
        match_probs = self.matcher(ref.descriptors, query.descriptors)
        return correspondence_probabilities(match_probs, ref.scores, query.scores)

    def forward(self, image_ref: Tensor, image_query: Tensor) -> tuple[Tensor, MicKeyFeatures,
                                                                     MicKeyFeatures]:
        """Both images -> (P (B, N0, N1), reference features, query features)."""
        ref, query = self.extract(image_ref), self.extract(image_query)
        return self.match(ref, query), ref, query
