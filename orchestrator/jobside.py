"""Helpers that run inside a job (they import Ray): the env preflight and the run's summary."""

from __future__ import annotations

import math
import time

import ray

from . import metrics
from .errors import UserError
from .training import _make_env

PREFLIGHT_TIMEOUT_S = 120


@ray.remote(num_cpus=0, max_retries=0)
def _probe_env(env_id: str, env_config: dict, source_dir: str | None) -> dict:
    env = _make_env(env_id, source_dir, env_config)
    obs, _ = env.reset(seed=0)
    env.step(env.action_space.sample())
    shape = getattr(obs, "shape", None)
    env.close()
    return {"observation_shape": list(shape) if shape is not None else None, "action_space": str(env.action_space)}


def preflight_env(env_id: str, env_config: dict, source_dir: str | None) -> dict:
    """Make the env once in a Ray worker process (as an env runner would) and take one step.

    A missing dependency (opencv for Atari, a module not shipped) fails here within seconds, with the
    worker's own error, instead of killing every env runner and leaving RLlib to train on nothing."""
    ref = _probe_env.remote(env_id, dict(env_config), source_dir)
    try:
        return ray.get(ref, timeout=PREFLIGHT_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise UserError(
            f"making the env `{env_id}` on a Ray worker took more than {PREFLIGHT_TIMEOUT_S}s",
            fix="check that the cluster has a free CPU and that the env's constructor does not block",
        ) from None
    except ray.exceptions.RayError as e:
        from callbacks.health import _last_error_line

        cause = getattr(e, "cause", None)
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else _last_error_line(str(e))
        raise UserError(
            f"the env `{env_id}` cannot be made on a Ray worker (where env runners run): {detail}",
            fix="install what it needs on every node (Atari needs `opencv-python-headless` and `ale-py`), or "
            "ship it with the job (`job.pip`, `job.source_dir`)",
        ) from None


def _criterion_met(value, target) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value) and value >= target


def summarize(results, stop: dict[str, float], deadline: float | None) -> dict:
    """What happened: status, why it stopped, final metrics, checkpoints."""
    from callbacks.metrics import compact_result

    summary: dict = {
        "status": "succeeded",
        "stop_reason": None,
        "error": None,
        "final": None,
        "final_checkpoint": None,
        "checkpoints": [],
    }
    if len(results) == 0:
        summary.update(status="failed", error="Tune returned no trial")
        return summary
    result = results[0]
    last = result.metrics or {}
    summary["final"] = compact_result(last) if last else None
    if result.checkpoint is not None:
        summary["final_checkpoint"] = result.checkpoint.path
    summary["checkpoints"] = [
        {"path": c.path, "iteration": (m or {}).get("training_iteration")} for c, m in (result.best_checkpoints or [])
    ]
    if result.error is not None:
        from callbacks.health import _last_error_line

        summary.update(status="failed", error=_last_error_line(str(result.error)))
        return summary
    met = [
        f"{k} = {metrics.lookup(last, k):g} >= {v:g}"
        for k, v in stop.items()
        if _criterion_met(metrics.lookup(last, k), v)
    ]
    if met:
        summary["stop_reason"] = "stop criterion met: " + "; ".join(met)
    elif deadline and time.time() >= deadline - 1:
        summary["stop_reason"] = "max_run_duration_seconds reached"
    else:
        summary["stop_reason"] = "training ended"
    return summary
