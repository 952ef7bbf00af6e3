"""Checkpoint I/O: official Lightning ``mickey.ckpt`` + DINOv2 weight file, and our own checkpoints.

Formats (see ``docs/model.md``):
    * official: ``{'state_dict': {compute_matches.* without any 'dinov2' key}, ...}``; the backbone
      comes from the DINOv2 hub file (keys without prefix), injected under
      ``compute_matches.extractor.dinov2_<arch>.``; the model config is ``mickey_vitl14`` unless
      one is given;
    * ours: the same layout plus ``checkpoint['mickey_ros'] = {'format': 1, 'model_config': ...}``
      (and the backbone keys when it was trained or is a custom ViT).

Loading is strict (one :class:`CheckpointError` lists every missing, unexpected and wrongly
shaped key and names the file at fault) and never runs code from the file:
``torch.load(weights_only=True)`` first; if that refuses a foreign global (Lightning files carry
hyper-parameter objects), a restricted unpickler rebuilds tensors and plain containers, turns
unknown classes into inert :class:`ForeignObject` stubs and refuses to call any other global,
to plant ``__setstate__``-like attributes with BUILD, or to build huge ``bytes``/``range``
objects (docs/reliability.md section 3).
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import datetime
import os
import pathlib
import pickle
import struct
import types
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mickey_ros.model.config import MickeyConfig, mickey_vitl14
from mickey_ros.model.mickey import MicKey
from mickey_ros.utils.checks import check_file
from mickey_ros.utils.config import ConfigError

FORMAT_VERSION = 1
BACKBONE_MARKER = "dinov2"  # official: every key containing it is stripped on save
MAX_LISTED_KEYS = 12
WEIGHT_SUFFIXES = (".ckpt", ".pth", ".pt")  # named when a directory is given instead of a file
DEMO_NAME = "demo"  # the checkpoint name of the bundled model, in every entry point
DEMO_CHECKPOINT = Path(__file__).parents[1] / "data" / "demo_model.ckpt"


class CheckpointError(ValueError):
    """A checkpoint or weight file cannot be loaded into the requested model."""


class UnusedWeightsWarning(UserWarning):
    """A weight file was given that the checkpoint does not need (it carries its backbone)."""


class UnsafeCheckpointError(CheckpointError):
    """The file asks the unpickler to call a global that is not on the allow-list."""


# ----------------------------------------------------------------------------- safe unpickling
class ForeignObject:
    """Inert stand-in for an instance of a class that is not imported (e.g. a yacs ``CfgNode``).

    Keeps constructor args, ``__setstate__`` state, items and list entries as plain attributes.
    """

    foreign_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> ForeignObject:  # noqa: D102
        obj = object.__new__(cls)
        obj.__dict__.update(foreign_args=args, foreign_items={}, foreign_list=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["foreign_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.foreign_items[key] = value

    def append(self, value: Any) -> None:  # noqa: D102
        self.foreign_list.append(value)

    def extend(self, values: Any) -> None:  # noqa: D102
        self.foreign_list.extend(values)

    def __repr__(self) -> str:
        return f"<ForeignObject {self.foreign_name}>"


def _safe_rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Tensor:
    """``torch._tensor._rebuild_from_type_v2`` restricted to plain tensors and parameters."""
    if func not in _SAFE_CALLABLES or new_type not in (Tensor, torch.nn.Parameter):
        raise UnsafeCheckpointError(f"refusing tensor rebuild with {func!r} / {new_type!r}")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects) for stub classes only."""
    if isinstance(cls, type) and issubclass(cls, ForeignObject):
        return cls.__new__(cls, state)
    raise UnsafeCheckpointError(f"refusing copyreg._reconstructor for {cls!r}")


MAX_PICKLED_RANGE = 4096  # range()s in hyper-parameters are short; a long one only amplifies


def _safe_bytes_type(kind: type) -> Any:
    """``bytes``/``bytearray`` without the ``kind(n)`` form (n zero bytes: a memory bomb)."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise UnsafeCheckpointError(f"refusing {kind.__name__}({args[0]!r}) from the file")
        return kind(*args)

    return build


def _safe_range(*args: Any) -> range:
    """``range`` capped at ``MAX_PICKLED_RANGE`` items (set(range(10**12)) would fill memory)."""
    value = range(*args)
    if len(value) > MAX_PICKLED_RANGE:
        raise UnsafeCheckpointError(f"refusing {value!r} from the file: longer than "
                                    f"{MAX_PICKLED_RANGE} items")
    return value


_SAFE_CALLABLES: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _safe_rebuild_from_type_v2,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "Tensor"): Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("_codecs", "encode"): codecs.encode,  # protocol-2 bytes
    **{("builtins", n): getattr(builtins, n) for n in ("set", "frozenset", "slice", "complex")},
    ("builtins", "range"): _safe_range,
    ("builtins", "bytes"): _safe_bytes_type(bytes),
    ("builtins", "bytearray"): _safe_bytes_type(bytearray),
    **{("pathlib", n): getattr(pathlib, n)
       for n in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
                 "PureWindowsPath")},
    **{("datetime", n): getattr(datetime, n)
       for n in ("datetime", "date", "time", "timedelta", "timezone")},
}
_SAFE_IDS = {id(v) for v in _SAFE_CALLABLES.values()}
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_SPECIAL_ATTRIBUTES = frozenset({"__setstate__", "__class__", "__dict__", "__reduce__",
                                 "__reduce_ex__", "__getattr__", "__getattribute__"})


def _numpy_global(module: str, name: str) -> Any | None:
    """Allow-listed numpy array/scalar/dtype rebuilders (arrays in callback states), else None."""
    if not module.startswith("numpy"):
        return None
    import numpy as np

    if (module.endswith("multiarray") and name in ("_reconstruct", "scalar")) or (
        module == "numpy" and name in ("ndarray", "dtype")
    ):
        core = getattr(np, "_core", None) or np.core
        return getattr(core.multiarray, name, None) or getattr(np, name)
    value = getattr(np.dtypes, name, None) if module == "numpy.dtypes" else None
    return value if isinstance(value, type) and issubclass(value, np.dtype) else None


class _RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler: allow-listed globals, stubs for classes, no foreign calls."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # protocol 2 writes Python 2 names (xrange)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        module = _MODULE_ALIASES.get(module, module)
        if (module, name) in _SAFE_CALLABLES:
            return _SAFE_CALLABLES[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        value = _numpy_global(module, name)
        if value is not None:
            _SAFE_IDS.add(id(value))
            return value
        return type(name, (ForeignObject,), {"foreign_name": f"{module}.{name}",
                                             "__module__": "mickey_ros.foreign"})

    def _check_callable(self, func: Any) -> None:
        if id(func) not in _SAFE_IDS:
            name = getattr(func, "foreign_name", None) or repr(func)
            raise UnsafeCheckpointError(
                f"checkpoint asks to call {name}, which is not on the allow-list of tensor "
                "rebuild functions and containers; refusing to execute code from the file"
            )

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self._check_callable(self.stack[-1])
        self.stack[-1] = self.stack[-1](*args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_build(self) -> None:
        """BUILD, refusing states that set ``__setstate__``/``__class__``/``__dict__``.

        pickle calls ``inst.__setstate__(state)`` when the instance has one, so a first BUILD
        that plants ``__setstate__`` turns the next BUILD into a call of the attacker's choice.
        """
        state = self.stack[-1]
        parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        special = sorted({k for part in parts if isinstance(part, dict) for k in part
                          if k in _SPECIAL_ATTRIBUTES})
        if special:
            raise UnsafeCheckpointError(
                f"checkpoint sets the special attribute(s) {special} of an object while "
                "unpickling, a known code-execution trick; refusing to load the file"
            )
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="mickey_ros_restricted_pickle", Unpickler=_RestrictedUnpickler, load=_restricted_load
)
_READ_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError, TypeError,
                AttributeError, IndexError, ImportError, OSError, struct.error, OverflowError)


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """The file a checkpoint argument names: ``'demo'`` is the bundled model, else the path.

    Every entry point (CLI, node, ``RelativePoseEstimator.from_checkpoint``) loads through here,
    so ``demo`` means the same everywhere (a file called ``demo`` is ``./demo``).

    Raises:
        FileNotFoundError: ``'demo'`` while the bundled file is missing (says how to get it).
    """
    if str(checkpoint) != DEMO_NAME:
        return Path(checkpoint)
    if not DEMO_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"the bundled demo model {DEMO_CHECKPOINT} is missing; reinstall mickey_ros or "
            "train it with `mickey-train --config config/train/demo_cnn.yaml`, then "
            "`--config config/train/demo_cnn_continue.yaml`, then "
            "`config/train/demo_cnn_s5.yaml`, each with `--init` the weights before "
            "(docs/demo_model.md)"
        )
    return DEMO_CHECKPOINT


def _read_checkpoint(path: Path, map_location: Any = "cpu") -> Any:
    """Unpickle a torch file without executing foreign code (see module docstring)."""
    check_file(path, "checkpoint file", WEIGHT_SUFFIXES)
    corrupt = f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?)"
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise CheckpointError(f"{corrupt}: {err}") from None
    except _READ_ERRORS as err:
        raise CheckpointError(f"{corrupt}: {err}") from None
    try:
        return torch.load(path, map_location=map_location, pickle_module=_RESTRICTED_PICKLE,
                          weights_only=False)
    except CheckpointError as err:
        raise type(err)(f"{path}: {err}") from None
    except _READ_ERRORS as err:
        raise CheckpointError(f"{corrupt}: {type(err).__name__}: {err}") from None


def _state_dict_of(obj: Any, path: Path) -> dict[str, Tensor]:
    """``obj['state_dict']`` (Lightning) or ``obj`` itself (hub weight file), checked."""
    state = obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {bad[:5]}")
    return dict(state)


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Safely read a state_dict from a Lightning checkpoint or a plain weight file (on CPU)."""
    path = Path(path)
    return _state_dict_of(_read_checkpoint(path), path)


# ----------------------------------------------------------------------------- key checking
def _cap(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


def _key_problems(actual: dict[str, Tensor], expected: dict[str, Tensor], where: str) -> list[str]:
    """Human-readable list of missing, unexpected and wrongly shaped keys (empty if all match)."""
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    wrong = [f"{k} {tuple(actual[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in actual and actual[k].shape != expected[k].shape]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            problems.append(f"{where}: {len(keys)} {label} key(s) {_cap(keys)}")
    return problems


def _embedded_config(ckpt: Any, path: Path) -> MickeyConfig | None:
    meta = ckpt.get("mickey_ros") if isinstance(ckpt, dict) else None
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: checkpoint['mickey_ros'] must be a mapping")
    version = meta.get("format", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: checkpoint['mickey_ros']['format'] must be an int, got "
                              f"{version!r}; the file is damaged or not from mickey_ros")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer mickey_ros (checkpoint format "
                              f"{version}); upgrade mickey_ros to load it")
    if not isinstance(meta.get("model_config"), dict):
        raise CheckpointError(f"{path}: checkpoint['mickey_ros'] has no model_config mapping")
    try:
        return MickeyConfig.from_dict(meta["model_config"], f"{path}:mickey_ros.model_config")
    except ConfigError as err:
        raise CheckpointError(f"{path}: invalid embedded model config: {err}") from None


def _strip_wrapper_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop a common prefix before ``compute_matches.`` (e.g. ``model.`` of a LightningModule)."""
    first = next(iter(state), "")
    prefix = first[: first.find("compute_matches.")] if "compute_matches." in first else ""
    if prefix and all(k.startswith(prefix + "compute_matches.") for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _inject_backbone(state: dict[str, Tensor], model: MicKey, path: Path,
                     dinov2_weights: str | Path | None) -> list[str]:
    """Add the DINOv2 file's weights under the backbone prefix; returns its key problems."""
    prefix = f"compute_matches.extractor.{model.extractor.backbone_name}."
    own_backbone = model.config.backbone.arch == "conv" or any(BACKBONE_MARKER in k
                                                                for k in state)
    if own_backbone:  # conv: no hub file exists; its missing keys are listed later
        if dinov2_weights is not None:
            warnings.warn(f"{path.name} carries its own backbone weights: the DINOv2 weight "
                          f"file {dinov2_weights} is not used", UnusedWeightsWarning,
                          stacklevel=3)
        return []
    if dinov2_weights is None:
        arch = model.config.backbone.arch
        raise CheckpointError(
            f"{path} has no DINOv2 backbone weights (official checkpoints strip them): pass the "
            f"DINOv2 weight file dinov2_{arch}_pretrain.pth with --dinov2-weights "
            "(dinov2_weights=...); it is never downloaded"
        )
    dino_path = Path(dinov2_weights)
    dino = load_state_dict_file(dino_path)
    state.update({prefix + k: v for k, v in dino.items()})
    return _key_problems(dino, model.backbone.state_dict(), f"DINOv2 weight file {dino_path}")


# ----------------------------------------------------------------------------- public API
def checkpoint_metadata(model: MicKey, includes_backbone: bool) -> dict[str, Any]:
    """The ``checkpoint['mickey_ros']`` entry (also for Lightning's ``on_save_checkpoint``)."""
    return {"format": FORMAT_VERSION, "model_config": model.config.to_dict(),
            "includes_backbone": includes_backbone}


def load_checkpoint(
    path: str | Path,
    dinov2_weights: str | Path | None = None,
    model_config: MickeyConfig | None = None,
    map_location: str | torch.device = "cpu",
    backbone_precision: str | None = None,
) -> tuple[MicKey, MickeyConfig]:
    """Build a :class:`MicKey` from an official or mickey_ros checkpoint (strict, in eval mode).

    Args:
        path: ``mickey.ckpt`` (official Lightning file), a file from :func:`save_checkpoint`, or
            ``'demo'`` (the bundled model, :func:`resolve_checkpoint`).
        dinov2_weights: DINOv2 hub weight file, required when the checkpoint has no backbone;
            must exist when given (a warning says when the checkpoint does not use it).
        model_config: architecture; default: the embedded one, else ``mickey_vitl14()``.
        map_location: device the model is built on.
        backbone_precision: override of ``config.backbone_precision`` (applied lazily, so the
            fp32 weights are kept until the first forward pass).

    Returns:
        (model, config) with ``model.config == config``.

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not match (one error listing all
            of them and naming the file at fault); ``UnsafeCheckpointError`` for code in the file.
    """
    path = resolve_checkpoint(path)
    if dinov2_weights is not None:  # a file given must exist, even where it is not needed
        check_file(dinov2_weights, "DINOv2 weight file", WEIGHT_SUFFIXES)
    ckpt = _read_checkpoint(path, map_location)
    state = _strip_wrapper_prefix(_state_dict_of(ckpt, path))
    config = model_config or _embedded_config(ckpt, path) or mickey_vitl14()
    if backbone_precision is not None:
        config = replace(config, backbone_precision=backbone_precision)
    with torch.device("meta"):
        model = MicKey(config)
    problems = _inject_backbone(state, model, path, dinov2_weights)
    expected = {k: v for k, v in model.state_dict().items()}
    problems += _key_problems(state, expected, f"checkpoint {path} (model {config.name})")
    if problems:
        raise CheckpointError(  # first line: what and what to do; then one line per problem
            f"cannot load {path.name} into model {config.name}: the weights are for another "
            "architecture (pass its model config) or the file is damaged:\n  "
            + "\n  ".join(problems))
    model = model.to_empty(device=map_location)
    model.load_state_dict(state, strict=True)
    return model.eval(), model.config


def save_checkpoint(
    path: str | Path,
    model: MicKey,
    extra: dict | None = None,
    include_backbone: bool | None = None,
) -> Path:
    """Write ``model`` in the official layout plus ``checkpoint['mickey_ros']`` (atomic rename).

    Args:
        path: output file (parent folders are created).
        model: the network; its ``config`` is embedded.
        extra: more top-level entries (epoch, optimizer states, ...).
        include_backbone: keep the ``dinov2`` keys; default True for a trainable or custom
            backbone (no hub file exists for it), False for a frozen hub backbone (official).

    Returns:
        The written path.
    """
    path = Path(path)
    extra = dict(extra or {})
    clash = sorted({"state_dict", "mickey_ros"} & set(extra))
    if clash:
        raise ValueError(f"extra must not contain the reserved key(s) {clash}")
    backbone = model.config.backbone
    if include_backbone is None:
        include_backbone = backbone.trainable or backbone.arch in ("custom", "conv")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if include_backbone or BACKBONE_MARKER not in k}
    meta = checkpoint_metadata(model, include_backbone)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**extra, "state_dict": state, "mickey_ros": meta}, tmp)
    os.replace(tmp, path)
    return path
