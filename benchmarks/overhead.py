"""What the orchestration costs: the same PPO job through `rlo submit --wait` and as a plain script that calls
RLlib directly, side by side in one run.

    .venv/bin/python benchmarks/overhead.py [--iterations 50]

Prints, for each way: wall time end to end, time to the first iteration's result, and the ratios. `rlo` is
measured twice: cold (it also starts the embedded Ray) and warm (the embedded Ray is up, as it is for every
submission after the first). Goal: the orchestration adds under 10% to a 2-minute job.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

JOB = {
    "algorithm": "PPO",
    "env": "CartPole-v1",
    "num_envs_per_env_runner": 8,
    "seed": 0,
    "hyperparameters": {"train_batch_size_per_learner": 4000, "minibatch_size": 512, "num_epochs": 6, "lr": 0.0003},
    "checkpoint": {"frequency": 0, "at_end": True},
}

PLAIN = textwrap.dedent("""
    import sys, time
    t0 = float(sys.argv[2])
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    ray.init(num_cpus=2, include_dashboard=False)
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=8)
              .training(train_batch_size_per_learner=4000, minibatch_size=512, num_epochs=6, lr=0.0003)
              .debugging(seed=0))
    algo = config.build_algo()
    for i in range(int(sys.argv[1])):
        result = algo.train()
        if i == 0:
            print(f"FIRST_RESULT {time.time() - t0:.3f}", flush=True)
    algo.save(sys.argv[3])
    print(f"STEPS {result['num_env_steps_sampled_lifetime']}", flush=True)
    algo.stop()
    ray.shutdown()
""")


def run_streaming(cmd: list[str], env: dict, first_marker) -> tuple[float, float | None, str]:
    """Run `cmd`; return (wall seconds, seconds to the first line matching `first_marker`, output)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    first, out = None, []
    for line in proc.stdout:
        out.append(line)
        if first is None and first_marker(line):
            first = time.time() - t0
    proc.wait()
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{''.join(out[-30:])}")
    return time.time() - t0, first, "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=50, help="training iterations (~2 s each here)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="rlo-bench-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, RLO_HOME=str(tmp / "home"))
        spec = tmp / "spec.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "cluster": {"head": {"instance_type": "local"}},
                    "job": JOB | {"stop": {"training_iteration": args.iterations}},
                }
            )
        )
        script = tmp / "plain.py"
        script.write_text(PLAIN)

        results = {}
        try:
            rlo = [PY, "-m", "orchestrator.cli", "submit", str(spec), "--wait"]
            is_first = lambda line: line.startswith("[rlo] iter 1 ")  # noqa: E731
            results["rlo (cold: starts the embedded Ray)"] = run_streaming(rlo, env, is_first)
            results["rlo (warm: embedded Ray already up)"] = run_streaming(rlo, env, is_first)
            t0 = time.time()
            plain = [PY, str(script), str(args.iterations), str(t0), str(tmp / "plain-ckpt")]
            wall, _, out = run_streaming(plain, env, lambda line: False)
            first = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("FIRST_RESULT")))
            results["plain RLlib script"] = (wall, first, out)
        finally:
            subprocess.run([PY, "-m", "orchestrator.cli", "down"], env=env, capture_output=True)

    ref_wall, ref_first, _ = results["plain RLlib script"]
    print(f"\nPPO CartPole-v1, {args.iterations} iterations x 4000 env steps, 1 env runner x 8 envs, 2 CPUs\n")
    print(f"{'way':40} {'wall (s)':>9} {'to 1st result (s)':>18} {'wall vs plain':>14}")
    for name, (wall, first, _) in results.items():
        ratio = wall / ref_wall
        print(f"{name:40} {wall:9.1f} {first:18.1f} {ratio:13.3f}x")
    warm = results["rlo (warm: embedded Ray already up)"][0]
    print(
        f"\norchestration overhead (warm): {100 * (warm / ref_wall - 1):+.1f}% of a {ref_wall:.0f} s job "
        f"(goal: under +10%)"
    )


if __name__ == "__main__":
    main()
