"""Model configs: frozen dataclasses and named factories (official ViT-L/14 MicKey, small variants).

Every default names its source: ``official X.Y`` is a key of the official MicKey yacs config
(``config/MicKey/curriculum_learning.yaml``, see ``shared/reference/mickey.md`` section 1.1),
``dinov2`` is the DINOv2 hub constructor, ``ours`` marks a choice of this project.

>>> get_model_config("mickey_tiny").backbone.embed_dim
32
>>> MickeyConfig.from_dict(mickey_vitl14().to_dict()) == mickey_vitl14()
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from mickey_ros.utils.config import ConfigError, config_from_dict, config_to_dict

PRECISIONS = ("fp32", "fp16", "bf16")

# DINOv2 hub architectures (dinov2/hub/backbones.py): embed_dim, depth, num_heads, ffn.
_DINOV2_ARCHS: dict[str, tuple[int, int, int, str]] = {
    "vits14": (384, 12, 6, "mlp"),
    "vitb14": (768, 12, 12, "mlp"),
    "vitl14": (1024, 24, 16, "mlp"),
    "vitg14": (1536, 40, 24, "swiglu"),
}
BACKBONE_ARCHS = (*_DINOV2_ARCHS, "custom", "conv")


@dataclass(frozen=True)
class BackboneConfig:
    """DINOv2 ViT backbone (official key names; see ``mickey_ros.model.vit``).

    ``arch='conv'`` (ours) is the demo CNN of ``mickey_ros.model.conv_encoder`` instead: it uses
    ``embed_dim`` (output channels), ``depth`` (residual blocks) and ``patch_size`` (14) only.
    """

    arch: str = "vitl14"  # official: dinov2_vitl14; 'vits14','vitb14','vitl14','vitg14','custom'
    embed_dim: int = 1024  # official MICKEY.DINOV2.CHANNEL_DIM
    depth: int = 24  # dinov2 vit_large
    num_heads: int = 16  # dinov2 vit_large
    mlp_ratio: float = 4.0  # dinov2
    ffn: str = "mlp"  # dinov2: 'mlp' (GELU), 'swiglu' for vitg14
    patch_size: int = 14  # official MICKEY.DINOV2.DOWN_FACTOR
    img_size: int = 518  # dinov2 hub: 37 x 37 position-embedding table
    trainable: bool = False  # official: frozen (requires_grad False, always eval mode)
    use_sdpa: bool = True  # ours: speed flag, F.scaled_dot_product_attention; False = plain softmax

    def __post_init__(self) -> None:
        if self.arch not in BACKBONE_ARCHS:
            raise ConfigError(f"backbone.arch must be one of {BACKBONE_ARCHS}, got {self.arch!r}")
        if self.arch in _DINOV2_ARCHS:
            expected = _DINOV2_ARCHS[self.arch]
            got = (self.embed_dim, self.depth, self.num_heads, self.ffn)
            if got != expected:
                raise ConfigError(
                    f"backbone.arch {self.arch!r} needs (embed_dim, depth, num_heads, ffn) = "
                    f"{expected}, got {got}; use backbone_config({self.arch!r}) or arch='custom'"
                )
        if self.arch == "conv" and self.patch_size != 14:
            raise ConfigError(f"backbone.arch 'conv' has a fixed 14 px cell (7 px stem, then "
                              f"stride 2); backbone.patch_size must be 14, got {self.patch_size}")
        if self.ffn not in ("mlp", "swiglu"):
            raise ConfigError(f"backbone.ffn must be 'mlp' or 'swiglu', got {self.ffn!r}")
        # bounds well above DINOv2 giant (1536 x 40): a tampered config must not hang a build
        bounds = {"embed_dim": 8192, "depth": 128, "num_heads": 128, "patch_size": 64,
                  "img_size": 8192, "mlp_ratio": 64}
        for name, high in bounds.items():
            if not 0 < getattr(self, name) <= high:
                raise ConfigError(f"backbone.{name} must be in (0, {high}], got "
                                  f"{getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"backbone.embed_dim {self.embed_dim} must be divisible by num_heads "
                f"{self.num_heads}"
            )
        if self.img_size % self.patch_size:
            raise ConfigError(
                f"backbone.img_size {self.img_size} must be a multiple of patch_size "
                f"{self.patch_size}"
            )


@dataclass(frozen=True)
class HeadsConfig:
    """The four MicKey heads (score, offset, depth, descriptor); d_model = blocks_dim[2]."""

    blocks_dim: tuple[int, int, int, int] = (512, 256, 128, 64)  # official KP_HEADS.BLOCKS_DIM
    attention_heads: int = 8  # official (hard-coded in Transformer_self_att)
    attention_layers: int = 3  # official (hard-coded in Transformer_self_att)
    use_bn: bool = True  # official KP_HEADS.BN
    pos_encoding: bool = True  # official KP_HEADS.POS_ENCODING
    score_temperature: float = 100.0  # official (hard-coded softmax temperature of det_head)
    border_cells: int = 3  # official (hard-coded border mask of det_head)
    use_depth_sigmoid: bool = False  # official KP_HEADS.USE_DEPTHSIGMOID
    max_depth: float = 60.0  # official KP_HEADS.MAX_DEPTH (used only with the depth sigmoid)

    def __post_init__(self) -> None:
        if len(self.blocks_dim) != 4 or not all(1 <= d <= 8192 for d in self.blocks_dim):
            raise ConfigError(f"heads.blocks_dim needs 4 ints in [1, 8192], got {self.blocks_dim}")
        if not (1 <= self.attention_heads <= 128 and 0 <= self.attention_layers <= 64):
            raise ConfigError(f"heads.attention_heads must be in [1, 128] and attention_layers in "
                              f"[0, 64], got {self.attention_heads}, {self.attention_layers}")
        d_model = self.blocks_dim[2]
        if d_model % self.attention_heads or d_model % 4:
            raise ConfigError(
                f"heads.blocks_dim[2] = {d_model} (attention width) must be divisible by 4 "
                f"(2D positional encoding) and by attention_heads {self.attention_heads}"
            )
        if self.border_cells < 0 or self.score_temperature <= 0:
            raise ConfigError("heads.border_cells must be >= 0 and score_temperature > 0")


@dataclass(frozen=True)
class MatcherConfig:
    """Dual-softmax matcher with a learned dust-bin."""

    temperature: float = 0.1  # official FEATURE_MATCHER.DUAL_SOFTMAX.TEMPERATURE
    use_dustbin: bool = True  # official FEATURE_MATCHER.DUAL_SOFTMAX.USE_DUSTBIN
    dustbin_init: float = 1.0  # official dualSoftmax dustbin_score init

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"matcher.temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class MickeyConfig:
    """Full network config; ``name`` is the factory it came from (or a user label)."""

    name: str = "mickey_vitl14"  # ours
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    backbone_precision: str = "fp16"  # official MICKEY.DINOV2.FLOAT16: True

    def __post_init__(self) -> None:
        if self.backbone_precision not in PRECISIONS:
            raise ConfigError(
                f"backbone_precision must be one of {PRECISIONS}, got {self.backbone_precision!r}"
            )

    @property
    def min_input_side(self) -> int:
        """Smallest side of the network input in px: the border cells on both sides plus one.

        The score head zeroes ``border_cells`` cells on each side, so a side needs at least
        ``2 * border_cells + 1`` cells (98 px for MicKey's 14 px patches and 3 border cells).
        """
        return self.backbone.patch_size * (2 * self.heads.border_cells + 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> MickeyConfig:
        """Build from a nested mapping (e.g. YAML or a checkpoint); unknown keys raise."""
        return config_from_dict(cls, data, where or "model_config")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), the inverse of :meth:`from_dict`."""
        return config_to_dict(self)


def backbone_config(arch: str, **overrides: Any) -> BackboneConfig:
    """The DINOv2 hub architecture ``arch`` ('vits14', 'vitb14', 'vitl14', 'vitg14')."""
    if arch not in _DINOV2_ARCHS:
        raise ConfigError(f"unknown DINOv2 arch {arch!r}; valid: {sorted(_DINOV2_ARCHS)}")
    embed_dim, depth, num_heads, ffn = _DINOV2_ARCHS[arch]
    base = BackboneConfig(arch=arch, embed_dim=embed_dim, depth=depth, num_heads=num_heads, ffn=ffn)
    return replace(base, **overrides)


def mickey_vitl14() -> MickeyConfig:
    """The official architecture (released ``mickey.ckpt``): 42.55 M head + 304.37 M ViT params."""
    return MickeyConfig()


def mickey_vits14() -> MickeyConfig:
    """ViT-S/14 DINOv2 backbone (384-d, needs ``dinov2_vits14_pretrain.pth``), official heads."""
    return MickeyConfig(name="mickey_vits14", backbone=backbone_config("vits14"))


def mickey_small() -> MickeyConfig:
    """CPU-trainable demo model: small custom ViT trained with the heads, fp32."""
    return MickeyConfig(
        name="mickey_small",
        backbone=BackboneConfig(
            arch="custom", embed_dim=192, depth=4, num_heads=3, trainable=True
        ),
        heads=HeadsConfig(blocks_dim=(128, 64, 64, 32), attention_heads=4, attention_layers=1),
        backbone_precision="fp32",
    )


def mickey_demo_cnn() -> MickeyConfig:
    """The bundled demo model: CNN encoder with coordinate channels, mickey_small's heads, fp32.

    Depth through the official sigmoid option (``20 * sigmoid``): close to a log-depth output for
    room depths, which the log depth loss trains faster than the raw metres of the paper's head.
    """
    return MickeyConfig(
        name="mickey_demo_cnn",
        backbone=BackboneConfig(arch="conv", embed_dim=128, depth=6, num_heads=1, trainable=True),
        heads=HeadsConfig(blocks_dim=(128, 64, 64, 32), attention_heads=4, attention_layers=1,
                          use_depth_sigmoid=True, max_depth=20.0),
        backbone_precision="fp32",
    )


def mickey_tiny() -> MickeyConfig:
    """Unit tests: a few thousand parameters per module, fp32, frozen custom backbone."""
    return MickeyConfig(
        name="mickey_tiny",
        backbone=BackboneConfig(arch="custom", embed_dim=32, depth=2, num_heads=2),
        heads=HeadsConfig(blocks_dim=(32, 32, 32, 16), attention_heads=4, attention_layers=1),
        backbone_precision="fp32",
    )


MODEL_FACTORIES = {
    "mickey_vitl14": mickey_vitl14,
    "mickey_vits14": mickey_vits14,
    "mickey_small": mickey_small,
    "mickey_demo_cnn": mickey_demo_cnn,
    "mickey_tiny": mickey_tiny,
}


def get_model_config(name: str) -> MickeyConfig:
    """The config built by the factory called ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in MODEL_FACTORIES:
        raise ValueError(f"unknown model config {name!r}; valid names: {sorted(MODEL_FACTORIES)}")
    return MODEL_FACTORIES[name]()
