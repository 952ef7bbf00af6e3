"""Weight loading never runs code from the file (issue 9).

Crafted checkpoints carry the classic pickle payloads; each is refused with
``UnsafeCheckpointError`` before anything runs (a marker file proves nothing was executed),
while genuine official-layout and own checkpoints still load. The model helper's own variants
(``os.system`` / ``eval`` via ``__reduce__``, truncated and garbage files) are in
``test/unit/model/test_checkpoint.py::TestSafeUnpickling``; these add the payload nested in
``hyper_parameters``, other non-allow-listed globals called with REDUCE, BUILD-time payloads,
a tampered ``data.pkl`` inside the zip container, the legacy container and memory bombs.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import types
import zipfile
from pathlib import Path

import pytest
import torch

from mickey_ros.model.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey

PLACEHOLDER = "MICKEY_PAYLOAD_PLACEHOLDER"
P = pickle


def _text(value: str) -> bytes:
    data = value.encode()
    return P.BINUNICODE + len(data).to_bytes(4, "little") + data


def _long(value: int) -> bytes:
    data = pickle.encode_long(value)
    return P.LONG1 + bytes([len(data)]) + data


def _global(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def _call(module: str, name: str, *args: str) -> bytes:
    """Pickle ops leaving ``module.name(*args)`` on the stack (GLOBAL + REDUCE)."""
    return _global(module, name) + P.MARK + b"".join(_text(a) for a in args) + P.TUPLE + P.REDUCE


def _plant_setstate(cls_ops: bytes, command: str) -> bytes:
    """BUILD-time payload: an object gets ``__setstate__ = os.system``, a second BUILD calls it."""
    return (cls_ops + P.EMPTY_TUPLE + P.NEWOBJ + P.EMPTY_DICT + _text("__setstate__")
            + _global("os", "system") + P.SETITEM + P.BUILD + _text(command) + P.BUILD)


def _tampered(path: Path, payload_ops: bytes) -> Path:
    """A genuine ``torch.save`` zip whose ``data.pkl`` gets ``payload_ops`` spliced in at
    ``checkpoint['hyper_parameters']['cfg']`` (what an attacker editing a download does)."""
    torch.save({"state_dict": {"w": torch.zeros(2)},
                "hyper_parameters": {"cfg": PLACEHOLDER}}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    (pkl,) = [name for name in entries if name.endswith("/data.pkl")]
    needle = _text(PLACEHOLDER)
    assert entries[pkl].count(needle) == 1
    entries[pkl] = entries[pkl].replace(needle, payload_ops)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "code from the checkpoint was executed"


def _refused(path: Path, match: str) -> None:
    with pytest.raises(UnsafeCheckpointError, match=match) as err:
        load_checkpoint(path, model_config=mickey_tiny())
    assert str(path) in str(err.value) and "\n" not in str(err.value)


class TestPayloadNestedInHyperParameters:
    def test_reduce_payload_deep_inside(self, tmp_path, marker):
        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        torch.save({"state_dict": {"w": torch.zeros(2)},
                    "hyper_parameters": {"cfg": {"MODEL": [1, {"hook": Payload()}]}}},
                   tmp_path / "evil.ckpt")
        _refused(tmp_path / "evil.ckpt", r"asks to call (posix|os)\.system")

    def test_legacy_container(self, tmp_path, marker):
        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        torch.save({"state_dict": {}, "hyper_parameters": Payload()}, tmp_path / "old.ckpt",
                   _use_new_zipfile_serialization=False)
        _refused(tmp_path / "old.ckpt", r"asks to call (posix|os)\.system")


class TestNonAllowListedGlobals:
    @pytest.mark.parametrize("module, name, args", [
        ("os", "system", ("touch {marker}",)),
        ("subprocess", "check_call", ("touch", "{marker}")),
        ("builtins", "exec", ("open({marker!r}, 'w').close()",)),
        ("builtins", "eval", ("open({marker!r}, 'w').close()",)),
        ("builtins", "getattr", ("os", "system")),
        ("builtins", "__import__", ("os",)),
        ("importlib", "import_module", ("os",)),
        ("pickle", "loads", ("x",)),
        ("torch", "load", ("{marker}",)),
        ("numpy", "load", ("{marker}",)),
    ])
    def test_reduce_with_foreign_callable_in_tampered_data_pkl(self, tmp_path, marker, module,
                                                               name, args):
        filled = [a.format(marker=str(marker)) for a in args]
        path = _tampered(tmp_path / "evil.ckpt", _call(module, name, *filled))
        _refused(path, rf"asks to call {module}\.{name}, which is not on the allow-list")

    def test_whole_data_pkl_replaced(self, tmp_path, marker):
        path = tmp_path / "evil.ckpt"
        torch.save({"state_dict": {}}, path)
        with zipfile.ZipFile(path) as archive:
            entries = {n: archive.read(n) for n in archive.namelist()}
        (pkl,) = [n for n in entries if n.endswith("/data.pkl")]
        entries[pkl] = P.PROTO + b"\x02" + _call("os", "system", f"touch {marker}") + P.STOP
        with zipfile.ZipFile(path, "w") as archive:
            for n, data in entries.items():
                archive.writestr(n, data)
        _refused(path, r"asks to call os\.system")


class TestBuildTimePayload:
    @pytest.mark.parametrize("cls_ops", [
        _global("collections", "OrderedDict"),  # an allow-listed class
        _global("yacs.config", "CfgNode"),  # an unknown class (becomes an inert stub)
    ], ids=["allow-listed", "stub"])
    def test_planted_setstate_refused(self, tmp_path, marker, cls_ops):
        path = _tampered(tmp_path / "evil.ckpt", _plant_setstate(cls_ops, f"touch {marker}"))
        _refused(path, r"special attribute\(s\) \['__setstate__'\]")

    def test_class_swap_refused(self, tmp_path, marker):
        ops = (_global("collections", "OrderedDict") + P.EMPTY_TUPLE + P.NEWOBJ + P.NONE
               + P.EMPTY_DICT + _text("__class__") + _global("os", "system") + P.SETITEM
               + P.TUPLE2 + P.BUILD)
        _refused(_tampered(tmp_path / "evil.ckpt", ops), r"\['__class__'\]")


class TestMemoryBombs:
    @pytest.mark.parametrize("ops, match", [
        (_global("builtins", "bytes") + P.MARK + _long(10**11) + P.TUPLE + P.REDUCE,
         r"refusing bytes\(100000000000\)"),
        (_global("builtins", "set") + P.MARK + _global("builtins", "range") + P.MARK
         + _long(10**12) + P.TUPLE + P.REDUCE + P.TUPLE + P.REDUCE,
         r"refusing range\(0, 1000000000000\)"),
    ], ids=["bytes(1e11)", "set(range(1e12))"])
    def test_refused_without_allocating(self, tmp_path, ops, match):
        path = _tampered(tmp_path / "bomb.ckpt", ops)
        start = time.perf_counter()
        _refused(path, match)
        assert time.perf_counter() - start < 5.0


def _yacs_like_module(tmp_name: str):
    """A CfgNode with yacs' own dunder-named attributes, in a module gone at load time."""

    class CfgNode(dict):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.__dict__.update({"__immutable__": True, "__deprecated_keys__": set(),
                                  "__renamed_keys__": {}, "__new_allowed__": False})

    module = types.ModuleType(tmp_name)
    CfgNode.__module__, CfgNode.__qualname__ = tmp_name, "CfgNode"
    module.CfgNode = CfgNode
    return module


@pytest.fixture(scope="module")
def model() -> MicKey:
    torch.manual_seed(0)
    return MicKey(mickey_tiny()).eval()


class TestGenuineCheckpointsStillLoad:
    def test_official_layout_with_yacs_config(self, model, tmp_path):
        module = _yacs_like_module("yacs_gone_config")
        sys.modules[module.__name__] = module
        try:
            cfg = module.CfgNode(MODEL="MicKey", DINOV2=module.CfgNode(FLOAT16=True))
            torch.save({"state_dict": model.state_dict(), "epoch": 3, "global_step": 1200,
                        "pytorch-lightning_version": "2.1.0", "hyper_parameters": {"cfg": cfg}},
                       tmp_path / "mickey.ckpt")
        finally:
            del sys.modules[module.__name__]
        loaded, _ = load_checkpoint(tmp_path / "mickey.ckpt", model_config=mickey_tiny())
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key

    def test_own_checkpoint(self, model, tmp_path):
        path = save_checkpoint(tmp_path / "own.ckpt", model, extra={"epoch": 1,
                                                                   "range": range(10)})
        loaded, config = load_checkpoint(path)
        assert config == mickey_tiny()
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())

    def test_damaged_metadata_is_a_checkpoint_error(self, model, tmp_path):
        torch.save({"state_dict": model.state_dict(), "mickey_ros": {"format": "1"}},
                   tmp_path / "m.ckpt")
        with pytest.raises(CheckpointError, match="format'\\] must be an int"):
            load_checkpoint(tmp_path / "m.ckpt")
