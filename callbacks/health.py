"""Fail fast when env runners cannot sample.

Plain RLlib restarts env runners that die (a missing dependency such as opencv kills them at creation) and
then trains on nothing: iterations pass with zero env steps and the job never ends. This callback (running
in the algorithm's process) fails the trial instead, with the env runner's own error in the message.
"""

from __future__ import annotations

import time

from ray.rllib.callbacks.callbacks import RLlibCallback

from orchestrator import events

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


class WaitForReplacement(SamplingHealthCheck):
    """`job.fault_tolerance.on_node_loss: wait`. After an iteration in which env runners were lost (their node
    died), training pauses until all of them are back: the Ray actors of the lost env runners are restarted as
    soon as a node with free env-runner slots joins (a replacement node: `rlo cluster join ... --pool POOL`), and
    RLlib's own restore (probe, then sync of weights and connector states) brings them back into the group. The
    wait shows in the job log (a notice) and in the iteration's metrics (`rlo/replacement_wait_s`). No
    replacement in `timeout_s`: the trial fails with the reason; its checkpoints stay for `rlo resume`."""

    timeout_s: float = 600.0
    poll_s: float = 2.0

    def on_train_result(self, *, algorithm, result, **kwargs) -> None:
        super().on_train_result(algorithm=algorithm, result=result, **kwargs)
        group = getattr(algorithm, "env_runner_group", None)
        if group is None:
            return
        total, healthy = group.num_remote_env_runners(), group.num_healthy_remote_env_runners()
        if healthy >= total:
            return

        started = time.monotonic()
        events.emit(
            "notice",
            {
                "message": f"{healthy}/{total} env runners healthy after iteration "
                f"{result.get('training_iteration')}: waiting up to {self.timeout_s:.0f}s for a replacement node "
                f"(job.fault_tolerance.on_node_loss: wait; {_slots_text()})",
                "waiting_for_replacement": True,
            },
        )
        while True:
            # What RLlib does before each training step: probe the lost ones, sync those back, fire the callbacks.
            restored = algorithm.restore_env_runners(group)
            if restored:
                algorithm._make_on_env_runners_recreated_callbacks(
                    config=algorithm.config, env_runner_group=group, restored_env_runner_indices=restored
                )
            healthy = group.num_healthy_remote_env_runners()
            waited = time.monotonic() - started
            if healthy >= total:
                result["rlo/replacement_wait_s"] = round(waited, 1)
                events.emit(
                    "notice",
                    {
                        "message": f"all {total} env runners back after {waited:.0f}s; training goes on",
                        "replacement_joined": True,
                    },
                )
                return
            if waited > self.timeout_s:
                raise RuntimeError(
                    f"{healthy}/{total} env runners healthy after waiting {waited:.0f}s for a replacement node "
                    f"({_slots_text()}): join one to the pool with `rlo cluster join ADDRESS --pool POOL` and "
                    "`rlo resume` the run, or set job.fault_tolerance.on_node_loss: continue"
                )
            time.sleep(self.poll_s)


def health_check_class(on_node_loss: str = "continue", wait_timeout_s: float = 600.0) -> type[SamplingHealthCheck]:
    """The job's health-check callback class for its `job.fault_tolerance` settings."""
    if on_node_loss != "wait":
        return SamplingHealthCheck
    return type("WaitForReplacement", (WaitForReplacement,), {"timeout_s": float(wait_timeout_s)})


def _slots_text() -> str:
    """The cluster's env-runner slots now (clusters brought up by `rlo cluster`), for the wait's messages."""
    try:
        import ray

        from orchestrator.placement import ENV_RUNNER_SLOT

        total = ray.cluster_resources().get(ENV_RUNNER_SLOT)
        free = ray.available_resources().get(ENV_RUNNER_SLOT, 0)
    except Exception:  # noqa: BLE001 - only for a message
        return "cluster resources unknown"
    if total is None:
        return "no env-runner slots: not a cluster brought up by `rlo cluster`"
    return f"the cluster has {total:.0f} env-runner slots, {free:.0f} free"


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
                found.append(last_error_line(str(e)))
    except Exception as e:
        found.append(last_error_line(str(e)))
    distinct = list(dict.fromkeys(found))
    if not distinct:
        return (
            f"{group.num_healthy_remote_env_runners()}/{group.num_remote_env_runners()} env runners healthy, "
            "but none returned samples"
        )
    return "; ".join(distinct)


def last_error_line(text: str) -> str:
    """The most telling line of a Ray error: the exception raised in the actor (e.g. `ModuleNotFoundError: ...`)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln.split(":", 1)[0] or "Exception" in ln.split(":", 1)[0]:
            return ln
    return lines[-1] if lines else text
