"""The artifact's metadata format (its key and version) and its form for spaces: exact (every bound), so a
runtime rebuilds the very space the policy was trained with. `predict_api.describe_space` is the short form
`/info` shows (it elides large bounds)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The key of the artifact's metadata in the ONNX model's metadata_props (a JSON object), its `format` and the
# newest `format_version` this code reads and writes.
METADATA_KEY = "rlo"
ARTIFACT_FORMAT = "rlo-policy-onnx"
ARTIFACT_VERSION = 1


def _number(v: float) -> float | str:
    f = float(v)
    return f if math.isfinite(f) else ("inf" if f > 0 else "-inf")


def _bounds(a: np.ndarray) -> Any:
    """One number when every element has it, else the full nested list (infinities as "inf"/"-inf": JSON has none)."""
    flat = np.unique(a)
    if flat.size == 1:
        return _number(flat[0])
    return np.vectorize(_number, otypes=[object])(a).tolist()


def _array(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    a = np.asarray(value, dtype=object)
    a = np.vectorize(float, otypes=[np.float64])(a) if a.size else a.astype(np.float64)
    return np.broadcast_to(a, shape).astype(dtype)


def space_to_json(space) -> dict:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bounds(space.low),
            "high": _bounds(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist(), "dtype": str(space.dtype)}
    raise ValueError(f"no artifact form for the space {space}")


def space_from_json(d: dict):
    """The gymnasium space of `space_to_json`'s output (ValueError for anything else)."""
    from gymnasium import spaces

    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "Box":
        shape, dtype = tuple(int(n) for n in d["shape"]), np.dtype(d["dtype"])
        return spaces.Box(_array(d["low"], shape, dtype), _array(d["high"], shape, dtype), shape, dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(d["nvec"], dtype=np.int64), dtype=np.dtype(d.get("dtype", "int64")))
    raise ValueError(f"not a space of an rlo artifact: {str(d)[:200]}")
