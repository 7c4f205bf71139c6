"""Running an exported policy (`rlo export`) without Ray, RLlib or torch: ONNX Runtime, numpy, gymnasium, and
for the HTTP server FastAPI + uvicorn.

    from orchestrator.edge import OnnxPolicy
    policy = OnnxPolicy.load("policy.onnx")       # act / action_probabilities / value, like CheckpointPolicy
    rlo serve policy.onnx                          # the same /predict API as `rlo deploy`, on 127.0.0.1

Nothing here imports Ray or torch (tests/api/test_serving_export.py proves it with both made unimportable); `spaces`
does not even import ONNX Runtime, so the exporter can share its metadata format.
"""

from __future__ import annotations

from typing import Any

from .runtime import OnnxPolicy

__all__ = ["OnnxPolicy"]


def __getattr__(name: str) -> Any:
    if name == "OnnxPolicy":  # loaded on use: the exporter imports `edge.spaces` without ONNX Runtime
        return OnnxPolicy
    raise AttributeError(name)
