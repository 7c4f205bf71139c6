"""Training throughput of our auto-scaling job against Stable-Baselines3 PPO on the same env, side by side.

    .venv/bin/python benchmarks/autoscale_vs_sb3.py [--iterations 10]

Same work on both sides: PPO, 64 envs x 128 steps = 8192 env steps per update, minibatch 512, 10 epochs, two
64-unit tanh layers for policy and value, lr 3e-4, the same reward and observation scaling, 1000-minute episodes.
Ours runs as a real `rlo submit --wait` job on the embedded Ray (1 env runner with the NumPy-batched env, the
learner in the driver); SB3 runs in one process with its DummyVecEnv of 64 scalar envs. Prints env steps per
second of the training loop and end to end, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BATCH, ENVS, MINIBATCH, EPOCHS = 8192, 64, 512, 10

SB3 = """
import sys, time, json
t0 = float(sys.argv[2])
import numpy as np, torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv
from orchestrator.envs import make_env
from entry_scripts.autoscale_ppo import Preset
p = Preset()
cfg = {"max_time_steps": p.train_episode_minutes, "reward_scale": p.reward_scale,
       "observation_scale": p.observation_scale}
venv = DummyVecEnv([lambda: make_env("rlo/AutoScale-v0", None, cfg) for _ in range(%(envs)d)])
model = PPO("MlpPolicy", venv, n_steps=%(batch)d // %(envs)d, batch_size=%(minibatch)d, n_epochs=%(epochs)d,
            learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, seed=0, device="cpu",
            policy_kwargs=dict(net_arch=[64, 64], activation_fn=torch.nn.Tanh), verbose=0)
t1 = time.time()
model.learn(total_timesteps=int(sys.argv[1]))
t2 = time.time()
print("SB3 " + json.dumps({"steps": model.num_timesteps, "learn_s": t2 - t1, "threads": torch.get_num_threads()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=10, help="PPO updates of 8192 env steps")
    args = ap.parse_args()
    steps = args.iterations * BATCH

    import json

    with tempfile.TemporaryDirectory(prefix="rlo-bench-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, RLO_HOME=str(tmp / "home"), PYTHONPATH=str(ROOT))
        spec = yaml.safe_load((ROOT / "cluster_configs" / "local-autoscale.yaml").read_text())
        spec["job"]["entry_script"] = str(ROOT / "entry_scripts" / "autoscale_ppo.py")
        spec["job"]["script_args"] = {
            "stop": {"training_iteration": args.iterations},
            "eval_episodes": 0,
            "minibatch_size": MINIBATCH,
            "num_epochs": EPOCHS,
            "train_batch_size": BATCH,
        }
        spec["job"]["num_envs_per_env_runner"] = ENVS
        spec["job"]["checkpoint"] = {"frequency": 0, "at_end": True}
        (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
        (tmp / "sb3.py").write_text(SB3 % {"envs": ENVS, "batch": BATCH, "minibatch": MINIBATCH, "epochs": EPOCHS})
        rlo = [sys.executable, "-m", "orchestrator.cli"]
        try:
            subprocess.run([*rlo, "up"], env=env, check=True, capture_output=True)  # warm, as after a first job
            t0 = time.time()
            res = subprocess.run(
                [*rlo, "submit", str(tmp / "spec.yaml"), "--wait"], env=env, capture_output=True, text=True, cwd=ROOT
            )
            ours_wall = time.time() - t0
            if res.returncode != 0:
                sys.exit(f"our job failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
            run_id = res.stdout.splitlines()[0].strip()
            out = subprocess.run(
                [*rlo, "metrics", run_id, "--json"], env=env, capture_output=True, text=True, check=True
            )
            last = json.loads(out.stdout)[-1]
            ours_steps, ours_loop = last["num_env_steps_sampled_lifetime"], last["time_total_s"]
        finally:
            subprocess.run([*rlo, "down"], env=env, capture_output=True)
        t0 = time.time()
        res = subprocess.run(
            [sys.executable, str(tmp / "sb3.py"), str(steps), str(t0)],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        sb3_wall = time.time() - t0
        if res.returncode != 0:
            sys.exit(f"SB3 failed:\n{res.stderr[-3000:]}")
        sb3 = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("SB3 "))[4:])

    rows = [
        ("rl-orchestrator (rlo submit, RLlib)", ours_steps, ours_loop, ours_wall),
        (f"Stable-Baselines3 PPO ({sb3['threads']} torch threads)", sb3["steps"], sb3["learn_s"], sb3_wall),
    ]
    print(
        f"\nPPO on rlo/AutoScale-v0, {args.iterations} updates x {BATCH} env steps, minibatch {MINIBATCH}, "
        f"{EPOCHS} epochs, 64x64 tanh, 2 CPUs\n"
    )
    print(f"{'':44} {'env steps':>10} {'loop (s)':>9} {'loop steps/s':>13} {'wall (s)':>9} {'e2e steps/s':>12}")
    for name, n, loop, wall in rows:
        print(f"{name:44} {int(n):>10,} {loop:>9.1f} {n / loop:>13,.0f} {wall:>9.1f} {n / wall:>12,.0f}")
    (_, n1, l1, w1), (_, n2, l2, w2) = rows
    print(
        f"\nours / SB3: training loop {(n1 / l1) / (n2 / l2):.2f}x, end to end {(n1 / w1) / (n2 / w2):.2f}x "
        "(goal: >= 1.0x)"
    )


if __name__ == "__main__":
    main()
