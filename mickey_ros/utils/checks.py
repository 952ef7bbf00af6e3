"""Shape checks for tensors and arrays at public boundaries (never ``assert`` for user input)."""

from __future__ import annotations

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
