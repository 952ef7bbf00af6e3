"""Fuzzing of checkpoint loading: key mapping, shapes, metadata and damaged files (issue 9).

Property of ``load_checkpoint`` on any file: a model (only when every key and shape matches), or
one ``CheckpointError`` naming the file and listing the offending keys; never another exception,
never a hang. Tensors are saved as stride-0 views (one stored element each) so every example
stays tiny.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mickey_ros.model.checkpoint import (
    MAX_LISTED_KEYS,
    CheckpointError,
    checkpoint_metadata,
    load_checkpoint,
)
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey

with torch.device("meta"):
    _MODEL = MicKey(mickey_tiny())
SHAPES = {k: tuple(v.shape) for k, v in _MODEL.state_dict().items()}
KEYS = sorted(SHAPES)
SLOW = max(8, settings.default.max_examples // 4)
_SCRATCH = tempfile.TemporaryDirectory(prefix="mickey_fuzz_ckpt_")  # removed at exit


def _tensor(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.ones(1).expand(*shape) if shape else torch.ones(())


def _save(obj: object) -> Path:
    path = Path(_SCRATCH.name) / "fuzz.ckpt"
    torch.save(obj, path)
    return path


@st.composite
def damage(draw) -> dict:
    """How to damage the tiny model's state_dict: keys dropped, added or reshaped, a wrapper
    prefix, a non-string key, a non-tensor value (kept small so failures print readably)."""
    dropped = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=14))
    return {
        "dropped": dropped,
        "added": draw(st.lists(st.one_of(st.text(min_size=1, max_size=12),
                                         st.sampled_from(KEYS).map(lambda k: k + ".extra")),
                               unique=True, max_size=3)),
        "reshaped": [k for k in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))
                     if k not in dropped],
        "bad_key": draw(st.sampled_from([None, None, None, 3, ("a",)])),
        "bad_value": draw(st.sampled_from([None] * 4 + [1, "w", [1.0]])),
        "prefix": draw(st.sampled_from(["", "", "model.", "net.module."])),
    }


def _damaged_state(spec: dict) -> dict:
    state = {k: _tensor(s) for k, s in SHAPES.items() if k not in spec["dropped"]}
    state.update({k: _tensor(SHAPES[k] + (2,)) for k in spec["reshaped"]})
    for key in spec["added"]:
        state.setdefault(key, _tensor((2,)))
    if spec["bad_key"] is not None:
        state[spec["bad_key"]] = _tensor((1,))
    if spec["bad_value"] is not None:
        state[KEYS[0]] = spec["bad_value"]
    return {(spec["prefix"] + k if isinstance(k, str) else k): v for k, v in state.items()}


GENUINE_SPEC = {"dropped": [], "added": [], "reshaped": [], "bad_key": None, "bad_value": None,
                "prefix": ""}


class TestLoadCheckpointKeys:
    @settings(max_examples=SLOW)
    @given(damage())
    @example(GENUINE_SPEC)
    @example({**GENUINE_SPEC, "prefix": "model."})  # a LightningModule wrapper: still loads
    def test_model_or_error_listing_keys(self, spec):
        path = _save({"state_dict": _damaged_state(spec)})
        damaged = any(spec[k] for k in ("dropped", "added", "reshaped")) or (
            spec["bad_key"] is not None or spec["bad_value"] is not None)
        try:
            model, config = load_checkpoint(path, model_config=mickey_tiny())
        except CheckpointError as err:
            message = str(err)
            assert damaged and str(path) in message
            assert any(text in message for text in (
                "missing key", "unexpected key", "wrong shape", "not tensors", "no DINOv2"))
            plain = not spec["prefix"] and spec["bad_key"] is None and spec["bad_value"] is None
            backbone = any("dinov2" in k for k in KEYS if k not in spec["dropped"])
            if plain and backbone and not any("dinov2" in k for k in spec["added"]):
                for kind, keys in (("missing", spec["dropped"]),
                                   ("wrong shape", spec["reshaped"])):
                    if 0 < len(keys) <= MAX_LISTED_KEYS:
                        assert kind in message and all(k in message for k in keys), message
            return
        assert not damaged, "a damaged state_dict was accepted"
        assert config == mickey_tiny() and not model.training


META_VALUES = st.one_of(st.none(), st.integers(-2, 3), st.text(max_size=3), st.floats(),
                        st.lists(st.integers(), max_size=2))
MODEL_CONFIGS = st.one_of(
    META_VALUES,
    st.just(mickey_tiny().to_dict()),
    st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.text(max_size=4), META_VALUES),
        "backbone_precision": st.sampled_from(["fp32", "fp64", 1]),
        "backbone": st.fixed_dictionaries({}, optional={
            "arch": st.sampled_from(["custom", "vits14", "nope"]),
            "embed_dim": st.integers(-1, 96), "depth": st.one_of(st.integers(-1, 3),
                                                                 st.just(10**9)),
            "num_heads": st.integers(-1, 4), "patch_size": st.integers(0, 16)}),
        "heads": st.fixed_dictionaries({}, optional={
            "blocks_dim": st.lists(st.integers(-1, 64), max_size=5),
            "attention_heads": st.integers(0, 4)}),
        "bogus": META_VALUES,
    }),
)


class TestEmbeddedMetadata:
    @settings(max_examples=SLOW)
    @given(st.fixed_dictionaries({}, optional={"format": META_VALUES,
                                               "model_config": MODEL_CONFIGS,
                                               "includes_backbone": META_VALUES}))
    @example({"format": "1", "model_config": mickey_tiny().to_dict()})  # was a TypeError
    @example({"format": 1, "model_config": {"bogus": 1}})  # was a bare ConfigError
    @example({"format": 1, "model_config": {"backbone": {"arch": "custom", "depth": 10**9}}})
    def test_bad_metadata_is_a_checkpoint_error(self, meta):
        path = _save({"state_dict": {k: _tensor(s) for k, s in SHAPES.items()},
                      "mickey_ros": meta})
        genuine = checkpoint_metadata(_MODEL, True)
        try:
            model, config = load_checkpoint(path)
        except CheckpointError as err:
            assert str(path) in str(err)
            return
        assert config == mickey_tiny() and meta.get("model_config") == genuine["model_config"]


def _genuine_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {k: _tensor(s) for k, s in SHAPES.items()},
                "mickey_ros": checkpoint_metadata(_MODEL, True), "epoch": 3}, buffer)
    return buffer.getvalue()


GENUINE = _genuine_bytes()


class TestDamagedFile:
    @settings(max_examples=SLOW)
    @given(st.integers(0, len(GENUINE)),
           st.lists(st.tuples(st.integers(0, len(GENUINE) - 1), st.integers(0, 255)),
                    max_size=6))
    def test_truncated_or_flipped_bytes(self, cut, flips):
        data = bytearray(GENUINE[:cut] if cut else GENUINE)
        for index, value in flips:
            if index < len(data):
                data[index] = value
        path = Path(_SCRATCH.name) / "damaged.ckpt"
        path.write_bytes(bytes(data))
        try:
            model, config = load_checkpoint(path)
        except CheckpointError as err:
            assert str(path) in str(err)
            return
        assert config == mickey_tiny()  # the flips hit bytes that do not matter (tensor data)

    @settings(max_examples=SLOW)
    @given(st.binary(max_size=200))
    @example(b"\x95")  # a pickle FRAME cut short: struct.error escaped
    @example(b"J")  # BININT cut short, in torch's weights-only unpickler
    def test_random_bytes(self, data):
        path = Path(_SCRATCH.name) / "random.ckpt"
        path.write_bytes(data)
        try:
            load_checkpoint(path, model_config=mickey_tiny())
        except CheckpointError as err:
            assert str(path) in str(err)
            return
        raise AssertionError("random bytes loaded as a checkpoint")
