"""A user's entry script (test data): reports what the entry-script contract gave it and its own arguments."""

import argparse
import json

from orchestrator.contract import job_context

parser = argparse.ArgumentParser()
parser.add_argument("--episodes", type=int)
parser.add_argument("--config", type=json.loads)
args, rest = parser.parse_known_args()
ctx = job_context(rest)
ctx.model_dir.mkdir(parents=True, exist_ok=True)
(ctx.model_dir / "model.txt").write_text("trained\n")
print(
    "CONTRACT "
    + json.dumps(
        {
            "run_id": ctx.run_id,
            "num_env_runners": ctx.num_env_runners,
            "num_gpus": ctx.num_gpus,
            "num_envs_per_env_runner": ctx.num_envs_per_env_runner,
            "model_dir": str(ctx.model_dir),
            "episodes": args.episodes,
            "config": args.config,
            "spec_job_name": ctx.spec["job"]["name"],
            "helper_module_value": __import__("helper").VALUE,
        }
    )
)
