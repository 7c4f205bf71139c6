"""Helpers that run inside a job (they import Ray): the env preflight and the run's summary."""

from __future__ import annotations

import math
import time
from pathlib import Path

import ray

from callbacks import MetricsLogger, health_check_class
from callbacks.health import last_error_line
from callbacks.metrics import EPISODE_KEYS, compact_result
from callbacks.mlflow_tracking import JobTracking

from . import events, metrics
from .contract import JobContext, PlanNumbers
from .envs import make_env
from .errors import UserError
from .metrics import read_records
from .placement import ENV_RUNNER_SLOT, HEAD_RESOURCE
from .spec import JobSpec, SweepSpec
from .sweep import summarize_sweep, swept_keys, trials_table, tune_setup
from .tables import print_table
from .training import build_config

# Seconds a job may run past `max_run_duration_seconds` (to write its last checkpoint) before it is killed.
HARD_KILL_GRACE_S = 120

PREFLIGHT_TIMEOUT_S = 120


@ray.remote(num_cpus=0, max_retries=0)
def _probe_env(env_id: str, env_config: dict, source_dir: str | None) -> dict:
    env = make_env(env_id, source_dir, env_config)
    obs, _ = env.reset(seed=0)
    env.step(env.action_space.sample())
    shape = getattr(obs, "shape", None)
    env.close()
    return {"observation_shape": list(shape) if shape is not None else None, "action_space": str(env.action_space)}


def uses_placement() -> bool:
    """Was this cluster brought up by `rlo cluster` (pool resources on its nodes, see orchestrator.placement)?"""

    res = ray.cluster_resources()
    return HEAD_RESOURCE in res and ENV_RUNNER_SLOT in res


def preflight_env(env_id: str, env_config: dict, source_dir: str | None, placement: bool = False) -> dict:
    """Make the env once in a Ray worker process (as an env runner would) and take one step.

    A missing dependency (opencv for Atari, a module not shipped) fails here within seconds, with the
    worker's own error, instead of killing every env runner and leaving RLlib to train on nothing. On a cluster
    with pools, the probe runs where env runners run (a node with env-runner slots)."""

    probe = _probe_env.options(resources={ENV_RUNNER_SLOT: 0.001}) if placement else _probe_env
    ref = probe.remote(env_id, dict(env_config), source_dir)
    try:
        return ray.get(ref, timeout=PREFLIGHT_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise UserError(
            f"making the env `{env_id}` on a Ray worker took more than {PREFLIGHT_TIMEOUT_S}s",
            fix="check that the cluster has a free CPU and that the env's constructor does not block",
        ) from None
    except ray.exceptions.RayError as e:
        from callbacks.health import last_error_line

        cause = getattr(e, "cause", None)
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else last_error_line(str(e))
        raise UserError(
            f"the env `{env_id}` cannot be made on a Ray worker (where env runners run): {detail}",
            fix="install what it needs on every node (Atari needs `opencv-python-headless` and `ale-py`), or "
            "ship it with the job (`job.pip`, `job.source_dir`)",
        ) from None


def _criterion_met(value, target) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value) and value >= target


def is_return_metric(name: str) -> bool:
    return "episode_return" in name


def train(
    job: JobSpec,
    ctx: JobContext,
    numbers: PlanNumbers | None = None,
    *,
    source_dir: str | None = None,
    sweep: SweepSpec | None = None,
    spec: dict | None = None,
    rllib_callbacks=None,
) -> dict:
    """Train `job` under Tune with the plan's `numbers` (default: the contract's, `ctx.numbers`); write and emit
    the summary; return it.

    The one training path of every entry script that trains a built-in algorithm. `env_config.reward_scale`
    scales rewards for learning only: stop criteria on returns are scaled to match, and every reported return
    (metrics.jsonl, log lines, summary) is in the env's own units. `spec`: the resolved spec (default: the job's,
    from the contract); its `tracking:` section logs the job to MLflow (callbacks.mlflow_tracking)."""
    import os
    import sys
    import threading

    deadline = None
    if job.max_run_duration_seconds:
        deadline = (ctx.started_at or time.time()) + job.max_run_duration_seconds

        def watchdog():
            time.sleep(max(0.0, deadline + HARD_KILL_GRACE_S - time.time()))
            print(
                "[rlo] max_run_duration_seconds exceeded and the job did not stop; killing the driver",
                file=sys.stderr,
                flush=True,
            )
            os._exit(3)

        threading.Thread(target=watchdog, daemon=True, name="rlo-deadline").start()

    if job.algorithm is None or job.env is None:
        raise UserError(
            "this job names no `algorithm` and `env`: the built-in trainer trains one of RLlib's algorithms on an env",
            fix="give `job.algorithm` and `job.env`, or run your entry script itself (`job.entry_script`)",
        )
    # 1. Can the env be made where the env runners run? (a missing dependency fails here, in seconds)
    placement = uses_placement()
    preflight_env(job.env, job.env_config, source_dir, placement=placement)

    # 2. The algorithm's config from the spec and the plan's numbers.
    numbers = numbers or ctx.numbers
    config = build_config(
        job,
        numbers,
        source_dir=source_dir,
        callbacks=health_check_class(job.fault_tolerance.on_node_loss, job.fault_tolerance.wait_timeout_s),
        placement=placement,
    )
    if rllib_callbacks:  # RLlib's callables by event ({"on_train_result": f}), e.g. a ported script's legacy ones
        config.callbacks(**rllib_callbacks)
    stop, notices = job.normalized_stop()
    for n in notices:
        events.emit("notice", {"message": n})
    scale = float(job.env_config.get("reward_scale", 1.0))

    tracker = JobTracking.start(spec or ctx.spec, ctx, numbers)
    try:
        return _train(config, job, ctx, sweep, numbers, deadline, stop, scale, tracker)
    except BaseException as e:
        if tracker is not None:
            tracker.fail(e)
        raise


def _train(config, job, ctx, sweep, numbers, deadline, stop, scale, tracker) -> dict:
    from ray import tune

    tune_stop = {k: v * scale if is_return_metric(k) else v for k, v in stop.items()}

    # 3. Train under Tune: its stop criteria, checkpoints and result files (a sweep: its trials, scheduler and
    # search space, as many at once as the plan says).
    param_space, sweep_args = config, {}
    if sweep is not None:
        setup = tune_setup(config, sweep, job, max(1, numbers.concurrent_trials), scale)
        param_space, sweep_args = setup["param_space"], setup["tune_config"]
    experiment = Path(ctx.output_dir) / "tune"
    if getattr(ctx, "attempt", 1) > 1:
        # `rlo resume`: the same experiment, each unfinished trial from its last checkpoint (Tune keeps the
        # iteration count), the same callbacks (MetricsLogger sets aside the iterations being redone).
        if not tune.Tuner.can_restore(str(experiment)):
            raise UserError(
                f"attempt {ctx.attempt} of run {ctx.run_id} has nothing to resume: no Tune experiment in {experiment}",
                fix="submit the job again as a new run",
            )
        events.emit("notice", {"message": f"attempt {ctx.attempt}: resuming {experiment} from its last checkpoint"})
        results = tune.Tuner.restore(
            str(experiment),
            trainable=config.algo_class,
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=True,
        ).fit()
    else:
        results = _fresh_tuner(
            tune, config, param_space, sweep_args, deadline, tune_stop, job, ctx, scale, sweep, tracker
        ).fit()
    return finish_training(results, job, ctx, stop, deadline, scale, sweep, tracker)


def _fresh_tuner(tune, config, param_space, sweep_args, deadline, tune_stop, job, ctx, scale, sweep, tracker=None):

    callbacks = [MetricsLogger(ctx.run_dir, reward_scale=scale)]
    if tracker is not None:  # Ray Tune's MLflow logger: a run per trial (nested under the job's run in a sweep)
        swept = swept_keys(sweep, job.algorithm) if sweep is not None else None
        callbacks.append(tracker.callback(swept=swept, reward_scale=scale))

    return tune.Tuner(
        config.algo_class,
        param_space=param_space,
        tune_config=tune.TuneConfig(time_budget_s=max(1.0, deadline - time.time()) if deadline else None, **sweep_args),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(ctx.output_dir),
            stop=tune_stop or None,
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=job.checkpoint.frequency,
                checkpoint_at_end=job.checkpoint.at_end,
                num_to_keep=job.checkpoint.keep,
            ),
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=callbacks,
            verbose=0 if sweep is not None else 1,  # a sweep: its trial table is printed at the end
        ),
    )


def finish_training(results, job, ctx, stop, deadline, scale, sweep, tracker=None) -> dict:
    import json
    import sys

    # 4. The outcome, as a file in the run's folder and one structured line for the submitting side.
    metrics_path = ctx.run_dir / "metrics.jsonl"
    if sweep is not None:
        sw = summarize_sweep(results, sweep, job, reward_scale=scale)
        ids = [t["trial_id"] for t in sw["trials"]]
        best = ids.index(sw["best_trial"]) if sw["best_trial"] in ids else 0
        summary = summarize(results, stop, deadline, reward_scale=scale, index=best, metrics_path=metrics_path)
        summary["sweep"] = sw
        failed = [t for t in sw["trials"] if t["status"] == "ERROR"]
        if failed and len(failed) < len(ids) and summary["status"] != "succeeded":
            summary.update(status="succeeded", error=None, stop_reason="sweep finished; best trial selected")
        if sw["best_trial"] is None and summary["status"] == "succeeded":
            summary["stop_reason"] = f"sweep finished; no trial reported `{sw['metric']}`"
        if failed:
            events.emit("notice", {"message": f"{len(failed)} of {len(ids)} trials failed: {failed[0]['error']}"})

        head, rows = trials_table(sw)
        print_table([tuple(head), *map(tuple, rows)])
        sys.stdout.flush()
    else:
        summary = summarize(results, stop, deadline, reward_scale=scale, metrics_path=metrics_path)
    # What evaluation and serving need to use the policy as it was trained (env and its preprocessing).
    summary["policy"] = {"algorithm": job.algorithm, "env": job.env, "env_config": job.env_config}
    if tracker is not None:
        summary["tracking"] = tracker.info
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if summary.get("final_checkpoint"):
        ctx.model_dir.mkdir(parents=True, exist_ok=True)
        (ctx.model_dir / "policy.json").write_text(
            json.dumps({"checkpoint": summary["final_checkpoint"], **summary["policy"]}, indent=2)
        )
    if tracker is not None:  # the checkpoint, plots and summary as the MLflow run's artifacts; its status
        tracker.finish(summary, stop)
    events.emit("summary", summary)
    if summary["status"] != "succeeded":
        print(f"[rlo] training failed: {summary.get('error')}", file=sys.stderr, flush=True)
    else:
        print(f"[rlo] training finished: {summary['stop_reason']}", flush=True)
    return summary


def summarize(
    results,
    stop: dict[str, float],
    deadline: float | None,
    reward_scale: float = 1.0,
    index: int = 0,
    metrics_path: Path | None = None,
) -> dict:
    """What happened: status, why it stopped, final metrics, checkpoints.

    RLlib reports episode statistics only in iterations where an episode ended; the final metrics keep the
    last ones reported (as `metrics.jsonl` does, `metrics_path`), so `rlo list`/`status` show the return mean
    the progress lines showed."""

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
    result = results[index]
    last = result.metrics or {}
    summary["final"] = compact_result(last, reward_scale) if last else None
    final = summary["final"] or {}
    trial_id = last.get("trial_id")
    if final and trial_id and metrics_path is not None and metrics_path.exists():
        rec: dict = next((r for r in reversed(read_records(metrics_path)) if r.get("trial_id") == trial_id), {})
        final.update({k: rec[k] for k in EPISODE_KEYS if k in rec and k not in final})
    if result.checkpoint is not None:
        summary["final_checkpoint"] = result.checkpoint.path
    summary["checkpoints"] = [
        {"path": c.path, "iteration": (m or {}).get("training_iteration")} for c, m in (result.best_checkpoints or [])
    ]
    if result.error is not None:
        summary.update(status="failed", error=last_error_line(str(result.error)))
        return summary
    value = {k: final.get(k, metrics.lookup(last, k)) for k in stop}  # returns in the env's own units
    met = [f"{k} = {value[k]:g} >= {v:g}" for k, v in stop.items() if _criterion_met(value[k], v)]
    if met:
        summary["stop_reason"] = "stop criterion met: " + "; ".join(met)
    elif deadline and time.time() >= deadline - 1:
        summary["stop_reason"] = "max_run_duration_seconds reached"
    else:
        summary["stop_reason"] = "training ended"
    return summary
