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
import time

from orchestrator.contract import job_context
from orchestrator.errors import run_main
from orchestrator.planner import plan_spec
from orchestrator.spec import Spec, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="A spec file (when run by hand; the tool passes the spec in RLO_SPEC_JSON).")
    args, rest = parser.parse_known_args(argv)
    ctx = job_context(rest)
    spec = load_spec(args.spec) if args.spec else Spec.model_validate(ctx.spec)
    # The plan's numbers: from the contract inside a job, planned here when run by hand (same attribute names).
    numbers = ctx.numbers if ctx.inside_rlo else plan_spec(spec).numbers
    for d in (ctx.run_dir, ctx.model_dir, ctx.output_dir):
        d.mkdir(parents=True, exist_ok=True)
    job_info = {"argv": [sys.executable, *sys.argv], "cwd": os.getcwd(), "pid": os.getpid(), "started": time.time()}
    (ctx.run_dir / "job.json").write_text(json.dumps(job_info, indent=2))

    import ray

    from orchestrator.jobside import train

    ray.init(log_to_driver=True)
    # A user's env module arrives with the job's working directory (`job.source_dir`), on every worker's path.
    summary = train(spec.job, ctx, numbers, sweep=spec.sweep)
    return 0 if summary["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
