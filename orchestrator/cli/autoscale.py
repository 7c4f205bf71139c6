"""`rlo evaluate` and `rlo load-profile`: the auto-scaling workflow's commands.

rlo evaluate RUN [--checkpoint best|latest|PATH] [--episodes 100] [--seeds 1000000-1000099] [--json out.json]
rlo evaluate --baselines-only --episodes 200
rlo load-profile --days 3 --seed 7 --out load.png
"""

import json
from pathlib import Path
from typing import Annotated

from ..errors import UserError
from ..outputs import output_file
from .common import arg, command, new_app, opt

app = new_app()

TRAINING_ONLY_KEYS = ("reward_scale", "observation_scale")


def parse_seeds(text: str) -> list[int]:
    """`1000000-1000099`, `1,2,3`, or a mix: `5,10-12`."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if last < first or first < 0:
                raise ValueError
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise UserError(
            f"`--seeds {text}` is not a list of seeds", fix="write e.g. `1000000-1000099` or `1,2,3`"
        ) from None
    if not seeds:
        raise UserError("`--seeds` is empty", fix="give at least one seed")
    return seeds


def evaluation_env_config(train_env_config: dict, minutes: int | None) -> dict:
    """The env config to evaluate on: the training job's dynamics settings, without the training-side
    preprocessing, at the env's default episode length (or `minutes`)."""
    cfg = {k: v for k, v in (train_env_config or {}).items() if k not in TRAINING_ONLY_KEYS}
    cfg.pop("max_time_steps", None)
    if minutes is not None:
        cfg["max_time_steps"] = minutes
    return cfg


@command(app, "evaluate", "evaluate an auto-scaling policy against tuned rule-based autoscalers")
def evaluate_cmd(
    target: Annotated[str | None, arg("RUN|CHECKPOINT", help="a run id or a checkpoint folder")] = None,
    checkpoint: Annotated[
        str, opt("--checkpoint", help="for a RUN: latest, best, or a path (default: latest)")
    ] = "latest",
    episodes: Annotated[int | None, opt("--episodes", help="held-out episodes (default 100)")] = None,
    seeds_text: Annotated[
        str | None,
        opt("--seeds", help="explicit seeds, e.g. 1000000-1000099 (default: held-out evaluation seeds)"),
    ] = None,
    minutes: Annotated[int | None, opt("--minutes", help="episode length (default: the env's, 10,000)")] = None,
    json_path: Annotated[
        str | None, opt("--json", help="where to write the report (default: the run's folder/evaluation.json)")
    ] = None,
    env_config: Annotated[
        str | None, opt("--env-config", help="for a CHECKPOINT folder: the training env_config as JSON")
    ] = None,
    baselines_only: Annotated[bool, opt("--baselines-only", help="evaluate only the baselines")] = False,
    allow_training_seeds: Annotated[bool, opt("--allow-training-seeds", hidden=True)] = False,
) -> int:
    from ..autoscale import ENV_ID
    from ..autoscale.baselines import default_baselines
    from ..autoscale.ceiling import default_references
    from ..autoscale.evaluation import EVAL_SEEDS, TRAIN_SEEDS, evaluate
    from ..policy import CheckpointPolicy
    from ..run import attach

    if episodes is not None and episodes < 1:
        raise UserError("`--episodes` must be at least 1", fix="e.g. `--episodes 100`")
    seeds = parse_seeds(seeds_text) if seeds_text else list(EVAL_SEEDS[: episodes or 100])
    overlap = [s for s in seeds if s in TRAIN_SEEDS]
    if overlap and not allow_training_seeds:
        raise UserError(
            f"{len(overlap)} of the seeds are training seeds (0..{TRAIN_SEEDS.stop - 1}); a policy looks better on "
            "the episodes it was tuned on",
            fix=f"use held-out seeds (from {EVAL_SEEDS.start}), or pass `--allow-training-seeds` on purpose",
        )

    json_out = output_file(json_path, flag="--json", example="evaluation.json") if json_path else None
    policies: dict = {}
    train_env_config: dict = {}
    out_dir = Path.cwd()
    if not baselines_only:
        if not target:
            raise UserError("give a RUN id or a CHECKPOINT folder", fix="`rlo list` shows runs; or `--baselines-only`")
        if Path(target).exists():
            train_env_config = json.loads(env_config) if env_config else {}
            policy = CheckpointPolicy.load(target, train_env_config)
            label = "policy"
        else:
            run = attach(target)
            info = run.policy_info()
            if info.get("env") != ENV_ID:
                raise UserError(
                    f"run {run.id} trained on `{info.get('env')}`; `rlo evaluate` compares auto-scaling policies "
                    f"(`{ENV_ID}`) with the rule-based baselines",
                    fix="evaluate a run of cluster_configs/local-autoscale.yaml",
                )
            train_env_config = info.get("env_config") or {}
            policy = run.policy(checkpoint)
            label = info.get("algorithm", "policy").lower() if info.get("algorithm") else "policy"
            if run.run_dir and run.run_dir.is_dir():
                out_dir = run.run_dir
        policies[label] = policy
    eval_config = evaluation_env_config(train_env_config, minutes)
    policies.update(default_baselines(eval_config))
    policies.update(default_references(eval_config))

    import torch

    torch.set_num_threads(1)  # small batched forward passes: threads only add overhead on 2 cores
    report = evaluate(policies, seeds=seeds, env_config=eval_config)
    print(report.to_table())
    path = json_out or out_dir / "evaluation.json"
    path.write_text(report.to_json())
    print(f"\n[rlo] report written to {path}")
    return 0


# A year of minutes is ~0.5 M points: a second or two to simulate, still a readable figure.
MAX_PROFILE_DAYS = 366


@command(app, "load-profile", "plot the auto-scaling simulator's load over some days (PNG)")
def load_profile(
    days: Annotated[int, opt("--days")] = 3,
    seed: Annotated[int, opt("--seed")] = 0,
    out: Annotated[str, opt("--out")] = "load-profile.png",
) -> int:
    from ..autoscale.plot import plot_load_profile

    if not 0 < days <= MAX_PROFILE_DAYS:
        raise UserError(
            f"`--days {days}`: the load profile is drawn for 1 to {MAX_PROFILE_DAYS} days (one point a minute)",
            fix="e.g. `--days 3` (the blog's figure)",
        )
    path = plot_load_profile(output_file(out, flag="--out", example="load-profile.png"), days=days, seed=seed)
    print(f"[rlo] load profile ({days} days, seed {seed}) written to {path}")
    return 0
