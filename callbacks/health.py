"""Fail fast when env runners cannot sample.

Plain RLlib restarts env runners that die (a missing dependency such as opencv kills them at creation) and
then trains on nothing: iterations pass with zero env steps and the job never ends. This callback (running
in the algorithm's process) fails the trial instead, with the env runner's own error in the message.
"""

from __future__ import annotations

import time

from ray.rllib.callbacks.callbacks import RLlibCallback

# How long an algorithm may go without sampling a single env step before the job is failed.
GRACE_S = 45.0


class SamplingHealthCheck(RLlibCallback):
    def __init__(self) -> None:
        super().__init__()
        self._started = time.monotonic()
        self._sampled_any = False

    def on_algorithm_init(self, *, algorithm, **kwargs) -> None:
        self._started = time.monotonic()
        group = getattr(algorithm, "env_runner_group", None)
        if group is not None and group.num_remote_env_runners() > 0 and group.num_healthy_remote_env_runners() == 0:
            raise RuntimeError("no env runner could start: " + env_runner_errors(algorithm))

    def on_train_result(self, *, algorithm, result, **kwargs) -> None:
        steps = (result.get("env_runners") or {}).get("num_env_steps_sampled") or 0
        if steps > 0 or result.get("num_env_steps_sampled_lifetime", 0) > 0:
            self._sampled_any = True
            return
        waited = time.monotonic() - self._started
        if not self._sampled_any and waited > GRACE_S:
            raise RuntimeError(
                f"env runners sampled 0 env steps in {waited:.0f}s ({result.get('training_iteration')} iterations): "
                + env_runner_errors(algorithm)
            )


def env_runner_errors(algorithm) -> str:
    """The errors of the env runners that are down, as their own messages (one per distinct error)."""
    group = getattr(algorithm, "env_runner_group", None)
    if group is None:
        return "(no env runner group)"
    import ray

    found: list[str] = []
    try:
        refs = group.foreach_env_runner(
            lambda r: True, local_env_runner=False, healthy_only=False, return_obj_refs=True, timeout_seconds=None
        )
        for ref in refs:
            try:
                ray.get(ref, timeout=15)
            except Exception as e:  # the actor's death cause carries its creation traceback
                found.append(_last_error_line(str(e)))
    except Exception as e:
        found.append(_last_error_line(str(e)))
    distinct = list(dict.fromkeys(found))
    if not distinct:
        return (
            f"{group.num_healthy_remote_env_runners()}/{group.num_remote_env_runners()} env runners healthy, "
            "but none returned samples"
        )
    return "; ".join(distinct)


def _last_error_line(text: str) -> str:
    """The most telling line of a Ray error: the exception raised in the actor (e.g. `ModuleNotFoundError: ...`)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln.split(":", 1)[0] or "Exception" in ln.split(":", 1)[0]:
            return ln
    return lines[-1] if lines else text
