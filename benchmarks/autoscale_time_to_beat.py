"""How long the auto-scaling job takes, on this machine, to beat the best tuned rule-based autoscaler on held-out
seeds.

    .venv/bin/python benchmarks/autoscale_time_to_beat.py [--iterations 150] [--checkpoint-every 10] [--episodes 50]
        [--spec local-autoscale-full.yaml] [--set FIELD=JSON ...]

Runs the main job (cluster_configs/local-autoscale.yaml's preset) through `rlo` on the embedded Ray with a
checkpoint every N iterations, then evaluates every checkpoint against the tuned baselines on the same held-out
seeds. Prints, per checkpoint: wall-clock minutes since submission, env steps, profit vs the best baseline with
a 95% CI (paired, same seeds), the share of the headroom up to the clairvoyant reference it captures (0% = the
best baseline, 100% = the planner that knows the future load), downtime, and the first checkpoint that beats
the baseline (CI above zero and no more downtime minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=50, help="held-out episodes per checkpoint")
    ap.add_argument("--keep-ray", action="store_true", help="leave the embedded Ray running afterwards")
    ap.add_argument("--spec", default="local-autoscale.yaml", help="a spec in cluster_configs/ (its preset)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="a preset field for this run, e.g. --set train_episode_minutes=10000 (repeatable)",
    )
    args = ap.parse_args()

    home = Path(os.environ.get("RLO_HOME") or tempfile.mkdtemp(prefix="rlo-bench-home-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["RLO_HOME"] = str(home)
    spec = yaml.safe_load((ROOT / "cluster_configs" / args.spec).read_text())
    spec["job"]["entry_script"] = str(ROOT / "entry_scripts" / "autoscale_ppo.py")
    script_args = {**(spec["job"].get("script_args") or {}), **dict(_field(kv) for kv in args.set)}
    script_args.update({"stop": {"training_iteration": args.iterations}, "eval_episodes": args.episodes})
    spec["job"]["script_args"] = script_args
    spec["job"]["checkpoint"] = {"frequency": args.checkpoint_every, "at_end": True, "keep": None}
    spec["job"]["max_run_duration_seconds"] = 3 * 3600
    spec_path = home / "time-to-beat.yaml"
    spec_path.write_text(yaml.safe_dump(spec))

    try:
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "submit", str(spec_path), "--wait"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            sys.exit(f"the job failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        run_id = res.stdout.splitlines()[0].strip()
        report(run_id, args.episodes)
    finally:
        if not args.keep_ray:
            subprocess.run([sys.executable, "-m", "orchestrator.cli", "down"], capture_output=True)


def _field(kv: str) -> tuple[str, object]:
    name, sep, value = kv.partition("=")
    if not sep:
        sys.exit(f"--set {kv!r}: write FIELD=JSON, e.g. --set lr=3e-4")
    return name, json.loads(value)


def report(run_id: str, episodes: int) -> None:
    import torch

    from orchestrator import attach
    from orchestrator.autoscale.baselines import default_baselines
    from orchestrator.autoscale.ceiling import default_references
    from orchestrator.autoscale.evaluation import EVAL_SEEDS, EvaluationReport, evaluate
    from orchestrator.cli.autoscale import evaluation_env_config
    from orchestrator.policy import CheckpointPolicy

    torch.set_num_threads(1)
    run = attach(run_id)
    rec = run.refresh()
    info = run.policy_info()
    env_config = evaluation_env_config(info["env_config"], None)
    by_iter = {m["training_iteration"]: m for m in run.metrics()}
    seeds = list(EVAL_SEEDS[:episodes])
    best = default_baselines(env_config)
    references = default_references(env_config)
    base_report = evaluate({**best, **references}, seeds=seeds, env_config=env_config)
    best_name, ceiling = base_report.best_baseline, base_report.ceiling
    base_profit = base_report.summary[best_name]["profit"].mean
    ceiling_profit = base_report.summary[ceiling]["profit"].mean

    print(
        f"\nrun {run_id}: PPO on rlo/AutoScale-v0, {episodes} held-out episodes of 10,000 minutes (max_time_steps) "
        "per checkpoint"
    )
    print(f"best tuned baseline: {best_name}, profit {base_profit:,.0f} $/episode")
    print(
        f"reference (not deployable): {ceiling}, profit {ceiling_profit:,.0f} $/episode: headroom "
        f"{ceiling_profit - base_profit:+,.0f} $/episode\n"
    )
    print(
        f"{'iter':>5} {'minutes':>8} {'env steps':>10} {'ppo profit':>11} {'vs best baseline [95% CI]':>34} "
        f"{'headroom share [95% CI]':>24} {'downtime':>9} {'beats':>6}"
    )
    first = None
    for cp in run.checkpoints():
        m = by_iter.get(cp.iteration, {})
        minutes = (m.get("timestamp", rec.ended_at) - rec.created_at) / 60
        policy = CheckpointPolicy.load(cp.path, info["env_config"])
        # Only the policy is played per checkpoint; the rule and the reference, on the same seeds, once above.
        ppo = evaluate({"ppo": policy}, seeds=seeds, env_config=env_config, baselines=[]).episodes["ppo"]
        fixed = {n: base_report.episodes[n] for n in (best_name, ceiling)}
        r = EvaluationReport(base_report.env_config, seeds, [best_name], {"ppo": ppo, **fixed}, [ceiling])
        c = r.comparisons["ppo"]
        beats = c.profit_diff.low > 0 and c.no_more_downtime
        if beats and first is None:
            first = (cp.iteration, minutes)
        print(
            f"{cp.iteration:>5} {minutes:>8.1f} {int(m.get('num_env_steps_sampled_lifetime', 0)):>10,} "
            f"{r.summary['ppo']['profit'].mean:>11,.0f} {c.profit_diff.format(0, signed=True):>24} "
            f"({c.profit_diff_percent.mean:+.1f}%) {c.headroom_share.scaled(100).format(0, signed=True) + ' %':>24} "
            f"{r.summary['ppo']['downtime_minutes'].mean:>9.1f} "
            f"{'yes' if beats else 'no':>6}"
        )
    if first:
        print(
            f"\ntime to beat the best baseline on held-out seeds: {first[1]:.1f} wall-clock minutes "
            f"(iteration {first[0]}, submission to checkpoint, on this machine)"
        )
    else:
        print("\nno checkpoint beat the best baseline within this budget")
    print(json.dumps({"run": run_id, "first_beating": first}))


if __name__ == "__main__":
    main()
