"""Generic entry script: runs a built-in algorithm job (PPO, IMPALA, APPO on an env) under Ray Tune.

The tool submits it for every job spec without an entry script of the user's. It reads the job from the
entry-script contract (`orchestrator.contract`), so it needs no arguments:

    python -m entry_scripts.train            # inside a job submitted by `rlo submit`
    python -m entry_scripts.train --spec cluster_configs/local-cartpole.yaml   # by hand, same machine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from orchestrator import events
from orchestrator.contract import job_context
from orchestrator.planner import plan_spec
from orchestrator.spec import Spec, load_spec

# Seconds a job may run past `max_run_duration_seconds` (to write its last checkpoint) before it is killed.
HARD_KILL_GRACE_S = 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="A spec file (when run by hand; the tool passes the spec in RLO_SPEC_JSON).")
    args, rest = parser.parse_known_args(argv)
    ctx = job_context(rest)
    spec = load_spec(args.spec) if args.spec else Spec.model_validate(ctx.spec)
    job = spec.job
    # The plan's numbers: from the contract inside a job, planned here when run by hand (same attribute names).
    numbers = ctx if ctx.inside_rlo else plan_spec(spec)
    for d in (ctx.run_dir, ctx.model_dir, ctx.output_dir):
        d.mkdir(parents=True, exist_ok=True)
    (ctx.run_dir / "job.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, *sys.argv],
                "cwd": os.getcwd(),
                "pid": os.getpid(),
                "started": time.time(),
                "host": os.uname().nodename,
            },
            indent=2,
        )
    )

    deadline = None
    if job.max_run_duration_seconds:
        started = ctx.started_at or time.time()
        deadline = started + job.max_run_duration_seconds
        _hard_deadline(deadline + HARD_KILL_GRACE_S)

    import ray
    from ray import tune

    from callbacks import MetricsLogger, SamplingHealthCheck
    from orchestrator.jobside import preflight_env, summarize

    ray.init(log_to_driver=True)
    # A user's env module arrives with the job's working directory (`job.source_dir`), on every worker's path.
    source_dir = None

    # 1. Can the env be made where the env runners run? (a missing dependency fails here, in seconds)
    preflight_env(job.env, job.env_config, source_dir)

    # 2. The algorithm's config from the spec and the plan's numbers.
    from orchestrator.training import build_config

    config = build_config(
        job.model_dump(mode="json"),
        num_env_runners=numbers.num_env_runners,
        num_envs_per_env_runner=numbers.num_envs_per_env_runner,
        num_learners=numbers.num_learners,
        num_gpus_per_learner=numbers.num_gpus_per_learner,
        source_dir=source_dir,
        callbacks=SamplingHealthCheck,
    )
    stop, notices = job.normalized_stop()
    for n in notices:
        events.emit("notice", {"message": n})

    # 3. Train under Tune: its stop criteria, checkpoints and result files.
    tuner = tune.Tuner(
        config.algo_class,
        param_space=config,
        tune_config=tune.TuneConfig(
            time_budget_s=max(1.0, deadline - time.time()) if deadline else None,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(ctx.output_dir),
            stop=stop or None,
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=job.checkpoint.frequency,
                checkpoint_at_end=job.checkpoint.at_end,
                num_to_keep=job.checkpoint.keep,
            ),
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[MetricsLogger(ctx.run_dir, stop)],
            verbose=1,
        ),
    )
    results = tuner.fit()

    # 4. The outcome, as a file in the run's folder and one structured line for the submitting side.
    summary = summarize(results, stop, deadline)
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if summary.get("final_checkpoint"):
        (ctx.model_dir / "checkpoint_path.txt").write_text(summary["final_checkpoint"] + "\n")
    events.emit("summary", summary)
    if summary["status"] != "succeeded":
        print(f"[rlo] training failed: {summary.get('error')}", file=sys.stderr, flush=True)
        return 1
    print(f"[rlo] training finished: {summary['stop_reason']}", flush=True)
    return 0


def _hard_deadline(at: float) -> None:
    """Kill the driver if it outlives `max_run_duration_seconds` by more than the grace period."""

    def watchdog():
        time.sleep(max(0.0, at - time.time()))
        print(
            "[rlo] max_run_duration_seconds exceeded and the job did not stop; killing the driver",
            file=sys.stderr,
            flush=True,
        )
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True, name="rlo-deadline").start()


if __name__ == "__main__":
    from orchestrator.cli import run_main

    sys.exit(run_main(main))
