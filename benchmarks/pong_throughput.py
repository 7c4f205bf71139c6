"""How fast the IMPALA Pong job samples here: env steps per second of `rlo submit` with the plan's settings,
against (a) raw ALE Pong on the same cores (the ceiling) and (b) RLlib run directly, side by side in one run.

    .venv/bin/python benchmarks/pong_throughput.py [--seconds 120] [--envs 4]

Every way runs the same problem: the seed's Pong job (`PongNoFrameskip-v4`-style ALE Pong with frame skip 4
done by RLlib's Atari wrappers, the seed's IMPALA settings: rollout fragments of 50, train batches of 1000,
`num_sgd_iter: 2`, `model.dim: 42`, a 4-frame stack), and the same network.

- ceiling: one process per core steps `ALE/Pong-v5` (frameskip 4, random actions) for a few seconds; no
  preprocessing, no policy, no learning: an upper bound no trainer can reach.
- plain RLlib: a script that builds IMPALA with RLlib's defaults plus the seed's settings and the resources a
  user would write by hand for 2 CPUs (RLlib's own defaults, 2 env runners + 1 learner actor + the driver, do not
  fit 2 CPUs and never start), trains for `--seconds`.
- rlo: `rlo submit --wait` of the same job on the embedded Ray, with the env runners the planner computes and
  `--envs` envs per env runner; trains for `--seconds` (a `time_total_s` stop).

Steps/s are env steps sampled (= agent steps: one agent) per second of training (Tune's `time_total_s` / the
sum of iteration times), and end to end (per second of wall time including start-up).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
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

# The seed's IMPALA settings (pong_rllib.py), in the names the spec takes (legacy names are mapped).
SEED_HP = {"rollout_fragment_length": 50, "train_batch_size": 1000, "num_sgd_iter": 2, "model": {"dim": 42}}


def _raw_worker(seconds: float, q) -> None:
    import gymnasium as gym
    import numpy as np

    gym.register_envs(__import__("ale_py"))
    env = gym.make("ALE/Pong-v5", frameskip=4, repeat_action_probability=0.0)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(int(rng.integers(6)))
        n += 1
        if term or trunc:
            env.reset()
    q.put(n / (time.perf_counter() - t0))


def raw_ceiling(cores: int, seconds: float) -> tuple[float, list[float]]:
    q = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(target=_raw_worker, args=(seconds, q)) for _ in range(cores)]
    for p in procs:
        p.start()
    rates = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates), rates


PLAIN = textwrap.dedent("""
    import json, sys, time
    t0 = float(sys.argv[2]); seconds = float(sys.argv[1]); envs = int(sys.argv[3])
    import gymnasium as gym, ale_py, ray
    from ray import tune
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack
    def make(cfg):
        import gymnasium as gym, ale_py
        gym.register_envs(ale_py)
        return wrap_atari_for_new_api_stack(
            gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0), dim=42, framestack=4)
    tune.register_env("pong", make)
    ray.init(num_cpus=2, include_dashboard=False)
    config = (IMPALAConfig().environment("pong", clip_rewards=True)
              .env_runners(num_env_runners=1, num_envs_per_env_runner=envs, rollout_fragment_length=50)
              .learners(num_learners=0)
              .training(train_batch_size_per_learner=1000, num_epochs=2)
              .rl_module(model_config=MODEL))
    algo = config.build_algo()
    t_build = time.time() - t0
    trained = 0.0
    while trained < seconds:
        r = algo.train()
        trained = r["time_total_s"]
    steps = r["num_env_steps_sampled_lifetime"]
    algo.stop()
    print("PLAIN " + json.dumps({"steps": steps, "train_s": trained, "wall_s": time.time() - t0,
                                 "build_s": t_build, "iters": r["training_iteration"]}), flush=True)
""")


def plain_rllib(seconds: float, envs: int, model: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PLAIN.replace("MODEL", repr(model)))
    t0 = time.time()
    res = subprocess.run([PY, f.name, str(seconds), str(t0), str(envs)], capture_output=True, text=True, cwd=ROOT)
    os.unlink(f.name)
    for line in res.stdout.splitlines():
        if line.startswith("PLAIN "):
            return json.loads(line[6:])
    raise SystemExit(f"plain RLlib failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")


def rlo_job(home: Path, seconds: float, envs: int) -> dict:
    spec = {
        "cluster": {"name": "local", "head": {"instance_type": "local"}},
        "job": {
            "name": "bench-pong-throughput",
            "algorithm": "IMPALA",
            "env": "ALE/Pong-v5",
            "num_envs_per_env_runner": envs,
            "hyperparameters": SEED_HP,
            "stop": {"time_total_s": seconds},
            "checkpoint": {"frequency": 0, "at_end": False},
        },
    }
    path = home / "pong.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = dict(os.environ, RLO_HOME=str(home))
    # Start the embedded Ray first: the warm case, as for every submission after the first.
    subprocess.run([PY, "-m", "orchestrator.cli", "up"], check=True, cwd=ROOT, env=env, capture_output=True)
    t0 = time.time()
    res = subprocess.run(
        [PY, "-m", "orchestrator.cli", "submit", str(path), "--wait"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    wall = time.time() - t0
    if res.returncode != 0:
        raise SystemExit(f"rlo job failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    run_id = res.stdout.splitlines()[0].strip()
    os.environ["RLO_HOME"] = str(home)  # the registry of this benchmark's private home
    from orchestrator import attach

    last = attach(run_id).metrics()[-1]
    plan = json.loads((attach(run_id).run_dir / "plan.json").read_text())
    return {
        "steps": last["num_env_steps_sampled_lifetime"],
        "train_s": last["time_total_s"],
        "wall_s": wall,
        "iters": last["training_iteration"],
        "env_runners": plan.get("num_env_runners"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="training seconds for each trainer")
    ap.add_argument("--envs", type=int, default=4, help="envs per env runner (both trainers)")
    ap.add_argument("--raw-seconds", type=float, default=10.0)
    args = ap.parse_args()
    cores = os.cpu_count() or 1

    total, rates = raw_ceiling(cores, args.raw_seconds)
    print(f"ceiling: raw ALE Pong, {cores} processes: {total:,.0f} steps/s ({', '.join(f'{r:,.0f}' for r in rates)})")

    sys.path.insert(0, str(ROOT))
    from orchestrator.training import preset

    model = preset("IMPALA", "atari")["model_config"]
    plain = plain_rllib(args.seconds, args.envs, model)
    print(f"plain RLlib: {plain}")

    home = Path(tempfile.mkdtemp(prefix="rlo-bench-pong-"))
    try:
        ours = rlo_job(home, args.seconds, args.envs)
    finally:
        subprocess.run([PY, "-m", "orchestrator.cli", "down"], cwd=ROOT, env=dict(os.environ, RLO_HOME=str(home)))
    print(f"rlo: {ours}")

    def rate(r, key):
        return r["steps"] / r[key]

    print()
    print(f"{'':<28}{'train steps/s':>14}{'end-to-end':>12}{'iterations':>12}")
    print(f"{'ceiling (raw ALE, no learning)':<28}{total:>14,.0f}{'':>12}{'':>12}")
    for name, r in (("plain RLlib", plain), ("rlo submit", ours)):
        print(f"{name:<28}{rate(r, 'train_s'):>14,.0f}{rate(r, 'wall_s'):>12,.0f}{r['iters']:>12}")
    print()
    print(f"rlo / ceiling:     {rate(ours, 'train_s') / total:.3f}x  (training steps/s)")
    print(
        f"rlo / plain RLlib: {rate(ours, 'train_s') / rate(plain, 'train_s'):.2f}x training, "
        f"{rate(ours, 'wall_s') / rate(plain, 'wall_s'):.2f}x end to end"
    )


if __name__ == "__main__":
    main()
