"""Checks at public boundaries (never ``assert`` for user input): tensor shapes, input files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def check_shape(x: Any, spec: str, name: str, dims: dict[str, int] | None = None) -> dict[str, int]:
    """Check that ``x.shape`` matches a space-separated spec and return the named sizes.

    Each token of ``spec`` is an integer (exact size), a name (any size, but the same name must have
    the same size everywhere, also across calls sharing ``dims``) or ``*`` (any size).

    Args:
        x: a tensor or array with a ``shape`` attribute.
        spec: e.g. ``"B N 2"``.
        name: the argument name used in the error message.
        dims: sizes already bound by earlier checks; updated in place.

    Returns:
        The dict of bound sizes.

    Raises:
        ValueError: naming the argument, the expected spec and the actual shape.

    >>> import numpy as np
    >>> check_shape(np.zeros((2, 5, 3)), "B N 3", "X_ref")
    {'B': 2, 'N': 5}
    """
    dims = {} if dims is None else dims
    shape = tuple(getattr(x, "shape", ()))
    tokens = spec.split()
    if len(shape) != len(tokens):
        raise ValueError(f"{name} must have shape ({', '.join(tokens)}), got {shape}")
    for token, size in zip(tokens, shape):
        if token == "*":
            continue
        if token.isdigit():
            if int(token) != size:
                raise ValueError(f"{name} must have shape ({', '.join(tokens)}), got {shape}")
            continue
        if dims.setdefault(token, size) != size:
            raise ValueError(
                f"{name} has {token}={size} but {token}={dims[token]} elsewhere; "
                f"expected shape ({', '.join(tokens)}), got {shape}"
            )
    return dims


def check_file(path: str | Path, what: str, suffixes: tuple[str, ...] = (), hint: str = "") -> Path:
    """``path`` as a ``Path`` if it is an existing regular file, else an error saying what it is.

    The one path check of every loader (images, checkpoints, DINOv2 weights, intrinsics, ONNX
    files), so a directory is never reported as missing.

    Args:
        path: the file the user named.
        what: the noun for messages, e.g. ``"checkpoint file"``.
        suffixes: the file types expected (``(".ckpt", ".pth")``); a directory's message names
            the matching files inside it.
        hint: appended to the "does not exist" message, e.g. ``"; check the path"``.

    Raises:
        FileNotFoundError: nothing at ``path``.
        IsADirectoryError: ``path`` is a directory; names the files of ``suffixes`` inside it.
        OSError: something else (a device, a socket).
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        kinds = f"a {'/'.join(suffixes)}" if suffixes else "a"
        inside = sorted(p.name for p in path.iterdir() if p.is_file()
                        and p.name.lower().endswith(tuple(s.lower() for s in suffixes)))
        found = (f"; it holds {', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''}"
                 if suffixes and inside else "")
        raise IsADirectoryError(f"{what} {path} is a directory; pass {kinds} file{found}")
    if path.exists():
        raise OSError(f"{what} {path} is not a regular file; pass a file")
    raise FileNotFoundError(f"{what} {path} does not exist{hint}")


def check_writable(path: str | Path, what: str, directory: bool = False) -> Path:
    """``path`` if an output can be written there; checked before the work, so none is lost.

    Missing parent directories are fine where an existing ancestor is a writable directory
    (the writer creates them).

    Args:
        path: the output the user named.
        what: the noun or flag for messages, e.g. ``"--viz"``.
        directory: the output is a directory (else a file).

    Raises:
        IsADirectoryError / NotADirectoryError: a directory where a file goes, the reverse, or
            a file on the way.
        PermissionError: the place is not writable.
    """
    path = Path(path)
    if path.exists():
        if path.is_dir() != directory:
            error = IsADirectoryError if path.is_dir() else NotADirectoryError
            raise error(f"{what} {path} is a {'directory' if path.is_dir() else 'file'}; pass a "
                        f"{'directory' if directory else 'file'} path")
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{what} {path} is not writable; choose another path")
        return path
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"cannot write {what} {path}: {ancestor} is a file, not a "
                                 "directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {what} {path}: {ancestor} is not writable; choose "
                              "another path")
    return path
