"""What serving costs: requests per second and p50/p99 latency of `POST /predict` for the auto-scaling policy,
one observation per request (one client, then concurrent clients, with Serve's request batching on and off)
and batched requests, against calling the same policy in-process (the ceiling) and against two references, side
by side in one run:

- **bare**: the same torch policy (CheckpointPolicy on the run's checkpoint) in a plain FastAPI + uvicorn app in
  its own process, no checks: what HTTP itself costs here;
- **exported**: the run exported to ONNX (`rlo export RUN --format onnx`) served by the Ray-free `rlo serve`
  (skipped, with a note, until those commands exist).

    .venv/bin/python benchmarks/serving.py [--run RUN] [--seconds 4] [--concurrency 8] [--batch 64]

Without `--run` it trains a short auto-scaling policy first (the main job's preset, 1 iteration: serving speed
does not depend on how well it learned) in a private RLO_HOME, and stops that embedded Ray at the end. The
clients are threads of this process, on the same machine as the servers, competing with them for the CPUs (every
HTTP row uses the same client, `Predictor`); the in-process ceiling has the CPUs to itself.

"Serve" is the endpoint as `rlo deploy` serves it: each replica answers on its own port (Serve's direct ingress,
the Predictor's default); "Serve via proxy" is the endpoint's stable URL through Serve's HTTP proxy. Where the
time of one request goes: benchmarks/serving_profile.py.
"""

from __future__ import annotations

import argparse
import json
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


# --- the references: a bare FastAPI app of the same policy, and the exported artifact's server -----------------


def bare_server(checkpoint: str, env_config: dict, port: int) -> None:
    """`--bare-server`: the same policy in a plain FastAPI + uvicorn app, without our checks (run as a process)."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from orchestrator.policy import CheckpointPolicy
    from orchestrator.predict_api import describe_space, served_observation_space

    torch.set_num_threads(1)  # as the replica
    policy = CheckpointPolicy.load(checkpoint, env_config)
    info = {"observation_space": describe_space(served_observation_space(policy))}
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def healthz(request):
        return JSONResponse({"status": "ok"})

    async def model_info(request):
        return JSONResponse(info)

    async def predict(request):
        payload = json.loads(await request.body())
        if "observation" in payload:
            obs = np.asarray(payload["observation"], dtype=np.float32)[None]
            return JSONResponse({"action": np.asarray(policy.act(obs)).tolist()[0]})
        actions = policy.act(np.asarray(payload["observations"], dtype=np.float32))
        return JSONResponse({"actions": np.asarray(actions).tolist()})

    # Plain Starlette routes of the FastAPI app (this module's postponed annotations hide types from FastAPI).
    app.add_route("/healthz", healthz, methods=["GET"])
    app.add_route("/info", model_info, methods=["GET"])
    app.add_route("/predict", predict, methods=["POST"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> bool:
    from orchestrator.serving import probe

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if probe(url, timeout=1):
            return True
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rlo_has(*commands: str) -> bool:
    """Whether this checkout's `rlo` has these sub-commands (the exported artifact's ones may not exist yet)."""
    res = subprocess.run([PY, "-m", "orchestrator.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    listed = {line.split()[0] for line in res.stdout.splitlines() if line.startswith("    ") and line.split()}
    return all(c in listed for c in commands)


def measure_http(label: str, predictor, obs, batches, args, results: list) -> None:
    """The HTTP rows of one server: one observation per request from 1 and from N clients, and batched requests."""
    n, nb, c = len(obs), len(batches), args.concurrency
    predictor.info()
    one = lambda i: predictor.predict(obs[i % n])  # noqa: E731  (one Predictor: a connection per thread)
    results.append(measure(f"{label}, 1 obs/request, 1 client", one, args.seconds, 1))
    results.append(measure(f"{label}, 1 obs/request, {c} clients", one, args.seconds, 1, clients=c))
    if args.batch:
        many = lambda i: predictor.predict(batches[i % nb])  # noqa: E731
        results.append(measure(f"{label}, {args.batch} obs/request, 1 client", many, args.seconds, args.batch))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="an auto-scaling run to serve (default: train a short one in a private RLO_HOME)")
    ap.add_argument("--seconds", type=float, default=4.0, help="measuring time per case")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    ap.add_argument("--batch", type=int, default=64, help="observations per batched request")
    ap.add_argument("--bare-server", nargs=3, metavar=("CHECKPOINT", "ENV_CONFIG_JSON", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        return bare_server(args.bare_server[0], json.loads(args.bare_server[1]), int(args.bare_server[2]))

    started = time.monotonic()
    tmp = None if args.run else tempfile.TemporaryDirectory(prefix="rlo-bench-serving-")
    if tmp is not None:
        os.environ["RLO_HOME"] = str(Path(tmp.name) / "home")
        Path(os.environ["RLO_HOME"]).mkdir(parents=True)
    import torch

    from orchestrator.local_ray import LocalRayManager
    from orchestrator.predictor import Predictor
    from orchestrator.run import attach
    from orchestrator.serving_ray import undeploy

    notes = []
    procs: list[subprocess.Popen] = []
    cleanups: list = []
    c = args.concurrency
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
            measure("in-process, 1 obs/call", lambda i: policy.act(obs[i % n][None]), args.seconds, 1),
            measure(
                f"in-process, {args.batch} obs/call", lambda i: policy.act(batches[i % nb]), args.seconds, args.batch
            ),
        ]

        # The bare reference starts (in its own process) while Serve deploys.
        info = run.policy_info()
        checkpoint = str(Path(run.checkpoint_path("latest")).resolve())
        bare_port = free_port()
        bare = subprocess.Popen(
            [PY, __file__, "--bare-server", checkpoint, json.dumps(info.get("env_config") or {}), str(bare_port)],
            cwd=ROOT,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        procs.append(bare)

        port = free_port()
        predictor = run.deploy(name="bench-autoscale", port=port)
        if not predictor.direct_urls:
            notes.append("Serve runs without direct ingress here (started before): the Serve rows go through its proxy")
        measure_http("Serve", predictor, obs, batches, args, results)
        via_proxy = Predictor(predictor.url)  # the endpoint's stable URL, through Serve's HTTP proxy
        via_proxy.info()
        one_proxy = lambda i: via_proxy.predict(obs[i % n])  # noqa: E731
        results.append(measure("Serve via proxy, 1 obs/request, 1 client", one_proxy, args.seconds, 1))
        results.append(measure(f"Serve via proxy, 1 obs/request, {c} clients", one_proxy, args.seconds, 1, clients=c))

        bare_url = f"http://127.0.0.1:{bare_port}"
        if wait_healthy(bare_url, bare):
            measure_http("bare FastAPI", Predictor(bare_url), obs, batches, args, results)
        else:
            notes.append("the bare FastAPI server did not start: no bare rows")
        stop(bare)

        # The same concurrent load with Serve's request batching off (one request per forward pass).
        nobatch = run.deploy(name="bench-autoscale", port=port, max_batch_size=1, batch_wait_timeout_s=0)
        one_nobatch = lambda i: nobatch.predict(obs[i % n])  # noqa: E731
        results.append(
            measure(f"Serve, 1 obs/request, {c} clients, no batching", one_nobatch, args.seconds, 1, clients=c)
        )
        undeploy("bench-autoscale")

        if rlo_has("export", "serve"):
            export_dir = tempfile.TemporaryDirectory(prefix="rlo-bench-export-")
            cleanups.append(export_dir.cleanup)
            artifact = Path(export_dir.name) / "policy.onnx"
            env = dict(os.environ, OMP_NUM_THREADS="1")
            res = subprocess.run(
                [PY, "-m", "orchestrator.cli", "export", run_id, "--format", "onnx", "-o", str(artifact)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
            )
            if res.returncode != 0:
                notes.append(f"rlo export failed, no exported rows: {(res.stderr or res.stdout).strip()[-500:]}")
            else:
                edge_port = free_port()
                edge = subprocess.Popen(
                    [PY, "-m", "orchestrator.cli", "serve", str(artifact), "--port", str(edge_port), "--name", "edge"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                procs.append(edge)
                edge_url = f"http://127.0.0.1:{edge_port}/edge"  # the Serve endpoint's URL layout
                if wait_healthy(edge_url, edge):
                    measure_http("exported (rlo serve)", Predictor(edge_url), obs, batches, args, results)
                else:
                    notes.append("`rlo serve` did not answer /healthz: no exported rows")
                stop(edge)
        else:
            notes.append("`rlo export` / `rlo serve` are not in this checkout yet: no exported-artifact rows")
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)
        for cleanup in cleanups:
            cleanup()
        if tmp is not None:
            LocalRayManager().down()
            tmp.cleanup()

    print(f"\nauto-scaling policy ({run_id}), {os.cpu_count()} CPUs, {args.seconds:g} s per case\n")
    print(f"{'case':50} {'req/s':>8} {'obs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'obs/s vs in-process':>20}")
    ceilings = {1: results[0], args.batch: results[1]}
    for r in results:
        ratio = r.obs_per_s / ceilings[r.per_call].obs_per_s
        print(f"{r.name:50} {r.rps:8.0f} {r.obs_per_s:9.0f} {r.p50:8.2f} {r.p99:8.2f} {ratio:19.3f}x")
    by_name = {r.name: r for r in results}

    def ratio_line(label: str, ours: str, ref: str, goal: float | None = None) -> None:
        a, b = by_name.get(ours), by_name.get(ref)
        if a and b:
            met = "" if goal is None else f"  (goal >= {goal:g}x: {'met' if a.rps / b.rps >= goal else 'NOT met'})"
            print(f"{label}: {a.rps / b.rps:.2f}x req/s, p50 {a.p50:.2f} vs {b.p50:.2f} ms{met}")

    print()
    for clients in (f"{c} clients", "1 client"):
        case = f"1 obs/request, {clients}"
        ratio_line(f"Serve vs bare FastAPI, {case}", f"Serve, {case}", f"bare FastAPI, {case}", 0.15)
        ratio_line(f"exported vs bare FastAPI, {case}", f"exported (rlo serve), {case}", f"bare FastAPI, {case}", 0.5)
        ratio_line(f"Serve direct vs via proxy, {case}", f"Serve, {case}", f"Serve via proxy, {case}")
    ratio_line(
        f"Serve batching vs none, {c} clients",
        f"Serve, 1 obs/request, {c} clients",
        f"Serve, 1 obs/request, {c} clients, no batching",
    )
    for note in notes:
        print(f"note: {note}")
    print(f"(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
