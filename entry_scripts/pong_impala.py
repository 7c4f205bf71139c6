"""The seeds' Azure ML entry script (`pong_rllib.py`), on RLlib's current API.

Same arguments as the original: `--run IMPALA --env PongNoFrameskip-v4 --config '{"num_gpus": 1,
"num_workers": 13}' --stop '{"episode_reward_mean": 18, "time_total_s": 3600}'`. What the original hard-coded
(Ray address, log dir, metric callback) now comes from the entry-script contract: the run's folders and the
planned number of env runners and GPUs (`orchestrator.contract.job_context`). Legacy config and metric names
are mapped to the current ones, with a notice.

    rlo submit cluster_configs/local-pong-impala-script.yaml      # as a job (entry_script: this file)
    python entry_scripts/pong_impala.py --stop '{"training_iteration": 2}'   # by hand
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

from orchestrator.contract import PlanNumbers, job_context
from orchestrator.errors import run_main
from orchestrator.spec import CheckpointConfig, JobSpec


@dataclass
class Args:
    run: str = "IMPALA"
    """Algorithm: IMPALA (the seed's), APPO or PPO."""
    env: str = "PongNoFrameskip-v4"
    """Gymnasium id of the Atari game (`ALE/Pong-v5` works too)."""
    config: dict = field(default_factory=dict)
    """RLlib settings as JSON; the seed's `num_workers`/`num_gpus` override the plan's numbers."""
    stop: dict = field(default_factory=lambda: {"episode_reward_mean": 18, "time_total_s": 3600})
    """Stop criteria as JSON; the first one reached ends training."""


def parse_args(argv: list[str] | None = None) -> tuple[Args, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=Args.run)
    p.add_argument("--env", default=Args.env)
    p.add_argument("--config", type=_json, default={})
    p.add_argument("--stop", type=_json, default=None)
    ns, rest = p.parse_known_args(argv)
    return Args(run=ns.run, env=ns.env, config=ns.config, stop=ns.stop or Args().stop), rest


def _json(text: str) -> dict:
    # The seed wrapped the JSON in extra single quotes for Azure's shell; accept that too.
    return json.loads(text.strip().strip("'"))


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(argv)

    import ray

    from orchestrator.jobside import train

    ctx = job_context(rest)
    for d in (ctx.run_dir, ctx.model_dir, ctx.output_dir):
        d.mkdir(parents=True, exist_ok=True)
    settings = dict(args.config)
    # The seed's resource keys, if given, win over the plan (whose numbers the contract passes).
    num_env_runners = int(settings.pop("num_workers", settings.pop("num_env_runners", ctx.num_env_runners)))
    num_gpus = float(settings.pop("num_gpus", ctx.num_gpus))
    job = JobSpec(
        algorithm=args.run,
        env=args.env,
        hyperparameters=settings,
        stop=args.stop,
        num_envs_per_env_runner=ctx.num_envs_per_env_runner,
        checkpoint=CheckpointConfig(frequency=20, at_end=True),
    )
    numbers = PlanNumbers(num_env_runners, job.num_envs_per_env_runner, 0, 1.0 if num_gpus >= 1 else 0.0)
    ray.init()
    summary = train(job, ctx, numbers)
    return 0 if summary["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
