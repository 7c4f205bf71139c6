"""What every node of an Azure ML rendering runs (see `orchestrator.render.azureml`): join one Ray cluster across
the pipeline's steps, run the job on the head, leave when it is done.

    python -m orchestrator.render.azureml_node --pool head --rendezvous DIR --run-dir DIR -- ENTRYPOINT
    python -m orchestrator.render.azureml_node --pool worker-cpu --rendezvous DIR

The spec arrives in RLO_SPEC_JSON (the entry-script contract), so each node computes its own `ray start`
resources with `placement.node_params`, exactly as `rlo cluster start-head` / `join` do. The rendezvous folder
(a datastore folder every step mounts) carries the head's address, the cluster's auth token and `done`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tenacity import Retrying, stop_after_delay, wait_fixed

from ..local_ray import free_port
from ..nodes import node_params
from ..placement import HEAD_POOL
from ..planner import plan_spec
from ..polling import poll
from ..spec import Spec

HEAD_FILE = "head.json"
TOKEN_FILE = "auth_token"
DONE_FILE = "done"
POLL_S = 2.0
# How long the head waits, after the job, for the pool nodes to leave before it stops.
LEAVE_TIMEOUT_S = 60.0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _spec() -> Spec:
    raw = os.environ.get("RLO_SPEC_JSON")
    if not raw:
        raise SystemExit("[rlo] RLO_SPEC_JSON is not set: this runs inside an Azure ML job rendered by rlo")
    return Spec.model_validate(json.loads(raw))


def ray_env(token: str) -> dict[str, str]:
    """The environment Ray's processes get: token auth on, and the job's code (the cwd) on every worker's path."""
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN"] = token
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
    return env


def run_dir_env(run_dir: str) -> dict[str, str]:
    return {
        "RLO_RUN_DIR": run_dir,
        "RLO_MODEL_DIR": f"{run_dir}/model",
        "RLO_OUTPUT_DIR": f"{run_dir}/output",
        "SM_MODEL_DIR": f"{run_dir}/model",
        "SM_OUTPUT_DATA_DIR": f"{run_dir}/output",
    }


def wait_for(path: Path, timeout_s: float, what: str) -> None:
    if not poll(path.exists, bool, timeout_s, POLL_S):
        raise SystemExit(f"[rlo] gave up after {timeout_s:.0f} s waiting for {what} ({path})")


def _pip(env: dict[str, str]) -> None:
    pkgs = os.environ.get("RLO_PIP", "").split()
    if pkgs:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pkgs], env=env, check=True)


def _port_flags(head: bool) -> list[str]:
    """A free port for every port Ray would otherwise take at a fixed default (only needed where another Ray
    may run on the same machine, e.g. tests; an Azure ML node is the job's alone)."""

    flags = [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]
    if head:
        flags += [f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    return flags


def _ray(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`ray start ... --block` in a session of its own: stopping its process group stops exactly this node's
    Ray (never `ray stop`, which stops every Ray of the machine)."""
    ray = str(Path(sys.executable).parent / "ray")
    return subprocess.Popen(
        [ray if Path(ray).exists() else "ray", "start", "--block", "--disable-usage-stats", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started on SIGTERM
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _connect(address: str, proc: subprocess.Popen, timeout_s: float):
    import ray

    def attempt():
        if proc.poll() is not None:  # SystemExit is no Exception: not retried
            raise SystemExit(f"[rlo] the Ray head exited with code {proc.returncode} before it was up")
        # Ray annotates logging_level as int, but its own default is "info": setup_logger takes level names too
        return ray.init(address=address, logging_level="WARNING", log_to_driver=False)  # type: ignore[arg-type]

    # Any error is "not up yet" until the time is up.
    retrying = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(1.0), reraise=True)
    try:
        return retrying(attempt)
    except Exception as e:
        raise SystemExit(f"[rlo] the Ray head did not come up in {timeout_s:.0f} s: {e}") from None


def head(args, spec: Spec) -> int:
    token = secrets.token_hex(32)
    # Before Ray is imported: it reads the token once, and this process connects to count the nodes.
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    import ray

    plan = plan_spec(spec)
    expected = 1 + sum(p.node_count for p in plan.pools)
    rv = Path(args.rendezvous)
    rv.mkdir(parents=True, exist_ok=True)
    for stale in (HEAD_FILE, DONE_FILE):
        (rv / stale).unlink(missing_ok=True)
    _write_atomic(rv / TOKEN_FILE, token)
    env = ray_env(token)
    _pip(env)
    ip = ray.util.get_node_ip_address()
    address = f"{ip}:{args.port}"
    flags = node_params(plan, HEAD_POOL).ray_start_flags()
    extra = _port_flags(head=True) if args.free_ports else []
    if args.temp_dir:
        extra.append(f"--temp-dir={args.temp_dir}")
    proc = _ray(["--head", f"--port={args.port}", "--dashboard-host=127.0.0.1", *extra, *flags], env)

    def alive_nodes() -> int:
        return sum(1 for n in ray.nodes() if n.get("Alive"))

    rc = 1
    try:
        _connect(address, proc, 120.0)
        _write_atomic(rv / HEAD_FILE, json.dumps({"address": address}))
        alive = poll(alive_nodes, lambda n: n >= expected, args.join_timeout, POLL_S)
        if alive < expected:
            print(f"[rlo] only {alive} of {expected} nodes joined in {args.join_timeout:.0f} s", file=sys.stderr)
            return 1
        print(f"[rlo] Ray cluster up: {expected} nodes; running: {args.entrypoint}", flush=True)
        job_env = {
            **env,
            **run_dir_env(args.run_dir),
            "RLO_JOB_STARTED_AT": f"{time.time():.3f}",
            "RAY_ADDRESS": address,
        }
        rc = subprocess.call(args.entrypoint, shell=True, env=job_env)
        return rc
    finally:
        _write_atomic(rv / DONE_FILE, str(rc))
        # The pool nodes drain through the head when they stop: let them go first.
        with contextlib.suppress(Exception):
            poll(alive_nodes, lambda n: n <= 1, LEAVE_TIMEOUT_S, 1.0)
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop(proc)


def worker(args, spec: Spec) -> int:
    plan = plan_spec(spec)
    rv = Path(args.rendezvous)
    wait_for(rv / HEAD_FILE, args.join_timeout, "the head's address")
    address = json.loads((rv / HEAD_FILE).read_text())["address"]
    env = ray_env((rv / TOKEN_FILE).read_text().strip())
    _pip(env)
    flags = node_params(plan, args.pool).ray_start_flags()
    extra = _port_flags(head=False) if args.free_ports else []
    proc = _ray([f"--address={address}", *extra, *flags], env)
    try:
        done = poll(lambda: (rv / DONE_FILE).exists(), lambda d: d or proc.poll() is not None, args.job_timeout, POLL_S)
        if not done:
            if proc.poll() is not None:
                print(f"[rlo] this node's Ray exited with code {proc.returncode}", file=sys.stderr)
            else:
                print(f"[rlo] the job did not end in {args.job_timeout:.0f} s", file=sys.stderr)
            return 1
    finally:
        _stop(proc)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="`head` or a worker pool's name")
    parser.add_argument("--rendezvous", required=True, help="folder shared by every step")
    parser.add_argument("--run-dir", help="(head) the run's folder: the step's output")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--join-timeout", type=float, default=1800.0, help="seconds to wait for the other nodes")
    parser.add_argument("--job-timeout", type=float, default=float("inf"), help="(workers) seconds to wait for done")
    parser.add_argument("--free-ports", action="store_true", help="free ports instead of Ray's fixed defaults")
    parser.add_argument("--temp-dir", help="(head) Ray's temp dir (default: Ray's)")
    parser.add_argument("entrypoint", nargs=argparse.REMAINDER, help="(head) after `--`: the job's command")
    args = parser.parse_args(argv)
    spec = _spec()
    if args.pool == HEAD_POOL:
        cmd = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
        if not cmd or not args.run_dir:
            parser.error("the head needs --run-dir and `-- ENTRYPOINT`")
        args.entrypoint = shlex.join(cmd)
        return head(args, spec)
    node_params(plan_spec(spec), args.pool)  # an unknown pool fails here, before Ray starts
    return worker(args, spec)


if __name__ == "__main__":
    sys.exit(main())
