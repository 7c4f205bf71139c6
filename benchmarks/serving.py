"""What serving costs: requests per second and p50/p99 latency of `POST /predict` for the auto-scaling policy,
one observation per request (one client, then concurrent clients, with Serve's request batching on and off)
and batched requests, against calling the same policy in-process (the ceiling), side by side in one run.

    .venv/bin/python benchmarks/serving.py [--run RUN] [--seconds 5] [--concurrency 8] [--batch 64]

Without `--run` it trains a short auto-scaling policy first (the main job's preset, 1 iteration: serving speed
does not depend on how well it learned) in a private RLO_HOME, and stops that embedded Ray at the end. The
client runs on the same machine as Serve and competes with it for the CPUs; the ceiling has the CPUs to itself.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def train_autoscale(home: Path) -> str:
    script = ROOT / "entry_scripts" / "autoscale_ppo.py"
    if script.exists():  # the project's main job, with its preset (network, observation scaling)
        job = {
            "name": "bench-serving-autoscale",
            "entry_script": str(script),
            "num_envs_per_env_runner": 16,
            "script_args": {
                "stop": {"training_iteration": 1},
                "eval_episodes": 0,
                "train_batch_size": 2048,
                "num_epochs": 1,
            },
        }
    else:
        job = {
            "name": "bench-serving-autoscale",
            "algorithm": "PPO",
            "env": "rlo/AutoScale-v0",
            "hyperparameters": {"train_batch_size_per_learner": 2048, "minibatch_size": 512, "num_epochs": 1},
            "stop": {"training_iteration": 1},
        }
    spec = home / "bench-autoscale.yaml"
    spec.write_text(yaml.safe_dump({"cluster": {"head": {"instance_type": "local"}}, "job": job}))
    res = subprocess.run(
        [PY, "-m", "orchestrator.cli", "submit", str(spec), "--wait"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RLO_HOME=str(home)),
    )
    if res.returncode != 0:
        sys.exit(f"training failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout.splitlines()[0].strip()


def observations(n: int, seed: int = 0) -> np.ndarray:
    import gymnasium as gym

    import orchestrator.autoscale  # noqa: F401  (registers rlo/AutoScale-v0)

    env = gym.make("rlo/AutoScale-v0")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(out)


class Result:
    def __init__(self, name: str, latencies: list[float], wall: float, per_call: int) -> None:
        self.name = name
        self.calls = len(latencies)
        self.rps = self.calls / wall
        self.obs_per_s = self.rps * per_call
        self.p50 = float(np.percentile(latencies, 50)) * 1000
        self.p99 = float(np.percentile(latencies, 99)) * 1000
        self.per_call = per_call


def measure(name: str, call, seconds: float, per_call: int, clients: int = 1) -> Result:
    """Run `call(i)` in `clients` threads for `seconds` (after a short warm-up); latency of every call."""
    for i in range(20):
        call(i)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    deadline = time.perf_counter() + seconds

    def worker(k: int) -> None:
        i, mine = k, latencies[k]
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            call(i)
            mine.append(time.perf_counter() - t0)
            i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(name, [x for lat in latencies for x in lat], time.perf_counter() - t0, per_call)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="an auto-scaling run to serve (default: train a short one in a private RLO_HOME)")
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per case")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    ap.add_argument("--batch", type=int, default=64, help="observations per batched request")
    args = ap.parse_args()

    tmp = None if args.run else tempfile.TemporaryDirectory(prefix="rlo-bench-serving-")
    if tmp is not None:
        os.environ["RLO_HOME"] = str(Path(tmp.name) / "home")
        Path(os.environ["RLO_HOME"]).mkdir(parents=True)
    import torch

    from orchestrator.local_ray import LocalRayManager
    from orchestrator.run import attach
    from orchestrator.serving import Predictor, undeploy

    try:
        run_id = args.run or train_autoscale(Path(os.environ["RLO_HOME"]))
        run = attach(run_id)
        obs = observations(4096)
        batches = [obs[i : i + args.batch] for i in range(0, len(obs) - args.batch, args.batch)]
        n, nb = len(obs), len(batches)

        # The ceiling: the same policy object the replica builds, in this process, on one thread as there.
        torch.set_num_threads(1)
        policy = run.policy()
        results = [
            measure("in-process, 1 observation per call", lambda i: policy.act(obs[i % n][None]), args.seconds, 1),
            measure(
                f"in-process, {args.batch} observations per call",
                lambda i: policy.act(batches[i % nb]),
                args.seconds,
                args.batch,
            ),
        ]
        ceiling_one, ceiling_batch = results

        port = free_port()
        predictor = run.deploy(name="bench-autoscale", port=port)
        local = threading.local()

        def client() -> Predictor:
            if not hasattr(local, "p"):
                local.p = Predictor(predictor.url)
                local.p.info()
            return local.p

        one = lambda i: client().predict(obs[i % n])  # noqa: E731
        results.append(measure("HTTP, 1 observation per request, 1 client", one, args.seconds, 1))
        c = args.concurrency
        results.append(measure(f"HTTP, 1 observation per request, {c} clients", one, args.seconds, 1, clients=c))
        http_batch = lambda i: client().predict(batches[i % nb])  # noqa: E731
        results.append(
            measure(f"HTTP, {args.batch} observations per request, 1 client", http_batch, args.seconds, args.batch)
        )
        # The same concurrent load with Serve's request batching off (one request per forward pass).
        run.deploy(name="bench-autoscale", port=port, max_batch_size=1, batch_wait_timeout_s=0)
        local = threading.local()
        results.append(
            measure(f"HTTP, 1 observation per request, {c} clients, no batching", one, args.seconds, 1, clients=c)
        )
        undeploy("bench-autoscale")
    finally:
        if tmp is not None:
            LocalRayManager().down()
            tmp.cleanup()

    print(f"\nauto-scaling policy ({run_id}), {os.cpu_count()} CPUs, {args.seconds:g} s per case\n")
    print(f"{'case':58} {'req/s':>8} {'obs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'obs/s vs in-process':>20}")
    for r in results:
        ceiling = ceiling_one if r.per_call == 1 else ceiling_batch
        ratio = r.obs_per_s / ceiling.obs_per_s
        print(f"{r.name:58} {r.rps:8.0f} {r.obs_per_s:9.0f} {r.p50:8.2f} {r.p99:8.2f} {ratio:19.3f}x")
    by_name = {r.name: r for r in results}
    seq = by_name["HTTP, 1 observation per request, 1 client"]
    conc = by_name[f"HTTP, 1 observation per request, {c} clients"]
    nobatch = by_name[f"HTTP, 1 observation per request, {c} clients, no batching"]
    batched = by_name[f"HTTP, {args.batch} observations per request, 1 client"]
    print(
        f"\nHTTP adds {seq.p50 - ceiling_one.p50:.2f} ms at p50 to one observation ({seq.p50 / ceiling_one.p50:.0f}x "
        f"the in-process call); {c} concurrent clients reach {conc.rps / seq.rps:.2f}x one client's req/s; "
        f"Serve's request batching gives {conc.rps / nobatch.rps:.2f}x the req/s of no batching under that load; "
        f"{args.batch} observations per request serve {batched.obs_per_s / seq.obs_per_s:.1f}x the observations/s "
        f"of one per request."
    )


if __name__ == "__main__":
    main()
