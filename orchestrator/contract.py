"""The entry-script contract: what every job's script receives (like SageMaker's ``SM_*`` variables).

The tool sets these environment variables for the job; a script reads them with one call:

    from orchestrator.contract import job_context
    ctx = job_context()            # also accepts --run-id, --model-dir, ... on the command line
    config.env_runners(num_env_runners=ctx.num_env_runners)
    ...save the model under ctx.model_dir...

| variable                      | meaning                                                     |
|-------------------------------|-------------------------------------------------------------|
| RLO_RUN_ID                    | the run id (also the Ray job's submission id)               |
| RLO_RUN_DIR                   | the run's folder: spec, command, metrics, checkpoints       |
| RLO_MODEL_DIR                 | where the final model/checkpoint goes (SM_MODEL_DIR)        |
| RLO_OUTPUT_DIR                | other outputs: results, TensorBoard files (SM_OUTPUT_DATA_DIR) |
| RLO_NUM_ENV_RUNNERS           | env runners computed by the planner                         |
| RLO_NUM_ENVS_PER_ENV_RUNNER   | vectorized envs per runner                                  |
| RLO_NUM_LEARNERS              | remote learners (0: the learner runs in the driver)         |
| RLO_NUM_GPUS                  | GPUs for learning in total (SM_NUM_GPUS)                    |
| RLO_NUM_GPUS_PER_LEARNER      | GPUs per learner                                            |
| RLO_SPEC_JSON                 | the resolved spec, as JSON                                  |
| RLO_JOB_STARTED_AT            | when the job was submitted (epoch seconds)                  |
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Variable -> (CLI flag, SageMaker alias)
_VARS = {
    "RLO_RUN_ID": ("--run-id", None),
    "RLO_RUN_DIR": ("--run-dir", None),
    "RLO_MODEL_DIR": ("--model-dir", "SM_MODEL_DIR"),
    "RLO_OUTPUT_DIR": ("--output-dir", "SM_OUTPUT_DATA_DIR"),
    "RLO_NUM_ENV_RUNNERS": ("--num-env-runners", None),
    "RLO_NUM_ENVS_PER_ENV_RUNNER": ("--num-envs-per-env-runner", None),
    "RLO_NUM_LEARNERS": ("--num-learners", None),
    "RLO_NUM_GPUS": ("--num-gpus", "SM_NUM_GPUS"),
    "RLO_NUM_GPUS_PER_LEARNER": ("--num-gpus-per-learner", None),
    "RLO_CONCURRENT_TRIALS": ("--concurrent-trials", None),
    "RLO_ATTEMPT": ("--attempt", None),
}


@dataclass(frozen=True)
class PlanNumbers:
    """The planner's numbers a job trains with: `Plan.numbers` on the submitting side (or when a script runs by
    hand), `JobContext.numbers` inside a job (from the RLO_NUM_* variables)."""

    num_env_runners: int
    num_envs_per_env_runner: int
    num_learners: int
    num_gpus_per_learner: float
    concurrent_trials: int = 1  # a sweep: trials at once

    @classmethod
    def of(cls, source: Any) -> PlanNumbers:
        """The numbers of a Plan or a JobContext (both carry them under these names)."""
        return cls(
            source.num_env_runners,
            source.num_envs_per_env_runner,
            source.num_learners,
            source.num_gpus_per_learner,
            source.concurrent_trials,
        )


@dataclass(frozen=True)
class JobContext:
    run_id: str
    run_dir: Path
    model_dir: Path
    output_dir: Path
    num_env_runners: int
    num_envs_per_env_runner: int
    num_learners: int
    num_gpus: float
    num_gpus_per_learner: float
    spec: dict
    started_at: float | None
    concurrent_trials: int = 1
    attempt: int = 1  # > 1: `rlo resume` -- continue the run's experiment from its last checkpoint

    @property
    def inside_rlo(self) -> bool:
        return bool(os.environ.get("RLO_RUN_ID"))

    @property
    def numbers(self) -> PlanNumbers:
        return PlanNumbers.of(self)


def contract_env(run_id: str, run_dir: str, plan_env: dict[str, str], spec_json: str, started_at: float) -> dict:
    """The variables the submitting side sets for a job (plus SageMaker aliases for ported scripts)."""
    env = {
        "RLO_RUN_ID": run_id,
        "RLO_RUN_DIR": run_dir,
        "RLO_MODEL_DIR": f"{run_dir}/model",
        "RLO_OUTPUT_DIR": f"{run_dir}/output",
        "RLO_SPEC_JSON": spec_json,
        "RLO_JOB_STARTED_AT": f"{started_at:.3f}",
        **plan_env,
    }
    for var, (_, alias) in _VARS.items():
        if alias and var in env:
            env[alias] = env[var]
    # SageMaker passes a script's hyperparameters twice: as `--key value` arguments and as JSON in SM_HPS.
    args = (json.loads(spec_json).get("job") or {}).get("script_args")
    if isinstance(args, dict):
        env["SM_HPS"] = json.dumps(args)
    return env


def job_context(argv: list[str] | None = None) -> JobContext:
    """Read the contract from the environment; `--run-id`, `--model-dir`, ... on the command line win.

    Outside the tool (a script run by hand) it falls back to a local folder and one env runner, so the same
    script runs both ways. Unknown command-line arguments are left for the script's own parser."""
    parser = argparse.ArgumentParser(add_help=False)
    for var, (flag, _) in _VARS.items():
        parser.add_argument(flag, dest=var, default=None)
    known, _ = parser.parse_known_args(argv if argv is not None else [])

    def get(var: str, default: str) -> str:
        cli = getattr(known, var)
        if cli is not None:
            return cli
        alias = _VARS[var][1]
        return os.environ.get(var) or (os.environ.get(alias) if alias else None) or default

    run_id = get("RLO_RUN_ID", "manual")
    run_dir = Path(get("RLO_RUN_DIR", str(Path.cwd() / "rlo-output" / run_id)))
    started = os.environ.get("RLO_JOB_STARTED_AT")
    return JobContext(
        run_id=run_id,
        run_dir=run_dir,
        model_dir=Path(get("RLO_MODEL_DIR", str(run_dir / "model"))),
        output_dir=Path(get("RLO_OUTPUT_DIR", str(run_dir / "output"))),
        num_env_runners=int(get("RLO_NUM_ENV_RUNNERS", "1")),
        num_envs_per_env_runner=int(get("RLO_NUM_ENVS_PER_ENV_RUNNER", "1")),
        num_learners=int(get("RLO_NUM_LEARNERS", "0")),
        num_gpus=float(get("RLO_NUM_GPUS", "0")),
        num_gpus_per_learner=float(get("RLO_NUM_GPUS_PER_LEARNER", "0")),
        spec=json.loads(os.environ.get("RLO_SPEC_JSON") or "{}"),
        started_at=float(started) if started else None,
        concurrent_trials=int(get("RLO_CONCURRENT_TRIALS", "1")),
        attempt=int(get("RLO_ATTEMPT", "1")),
    )
