"""A real multi-node Ray cluster on this machine, brought up the way a user would on their own VMs (`rlo cluster
start-head` + `rlo cluster join` per pool, token authentication on), and jobs submitted to it from elsewhere
(`rlo submit --address`, a registry of the submitting side's own). Where each env runner and the learner ran is
read from Ray's own state API."""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.request
from pathlib import Path

import pytest
import support
import yaml
from support import ok

from orchestrator.local_ray import free_port
from orchestrator.placement import pool_resource

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data"

SPEC = {
    "cluster": {
        "name": "mn",
        "head": {"vcpus": 1},
        "workers": [{"name": "sim", "vcpus": 1, "node_count": 2}],
    },
    "job": {
        "name": "mn-corridor",
        "algorithm": "PPO",
        "env": "corridor_env:Corridor",
        "env_config": {"length": 4},
        "source_dir": str(DATA / "user_job"),
        "hyperparameters": {"train_batch_size_per_learner": 400, "minibatch_size": 200, "num_epochs": 2},
        "stop": {"training_iteration": 3},
        "checkpoint": {"frequency": 0, "at_end": True},
        "max_run_duration_seconds": 300,
    },
}


def run_rlo(home, *args, env_extra=None, timeout=400):
    # The cluster's own token, never one this environment has.
    drop = ["RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"]
    return support.run_rlo(*args, home=home, env=env_extra, drop_env=drop, timeout=timeout)


class Cluster:
    def __init__(self, home: Path, spec_path: Path, gcs: str, dashboard: str, token: str):
        self.home, self.spec_path, self.gcs, self.dashboard, self.token = home, spec_path, gcs, dashboard, token

    def get(self, path: str):
        req = urllib.request.Request(self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["data"]["result"]["result"]

    def join(self, name: str) -> None:
        """A `sim` node, as a user joins one: the address, the pool and the token (the spec comes from the head)."""
        token_file = token_file_of(self.home)
        ok(run_rlo(self.home, "cluster", "join", self.gcs, "--pool", "sim", "--token-file", token_file, "--name", name))

    def kill(self, name: str) -> None:
        """SIGKILL to a node's whole process group (its raylet and workers), as when its machine dies."""
        import signal

        os.killpg(json.loads((self.home / "cluster" / name / "state.json").read_text())["pid"], signal.SIGKILL)

    def status_rows(self) -> dict[str, list[str]]:
        """`rlo cluster status` as pool -> columns (nodes x/y is column 1, env-runner slots column 4)."""
        res = ok(run_rlo(self.home, "cluster", "status"))
        return {line.split()[0]: line.split() for line in res.stdout.splitlines()[2:] if line.strip()}


def token_file_of(home: Path) -> Path:
    return home / "cluster" / "head" / "auth_token"


def wait_for_iterations(metrics: Path, n: int, timeout: float = 240) -> None:
    """Until the job's metrics.jsonl (its folder on the cluster, on this machine) has n iterations."""
    import time

    deadline = time.monotonic() + timeout
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= n):
        assert time.monotonic() < deadline, f"the job did not reach {n} iterations"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("cluster-home")  # the cluster machines' RLO_HOME
    spec_path = home / "mn.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    port, dash = free_port(), free_port()
    try:
        res = ok(run_rlo(home, "cluster", "start-head", spec_path, "--port", port, "--dashboard-port", dash))
        gcs = f"127.0.0.1:{port}"
        assert f"rlo cluster join {gcs} --pool sim" in res.stdout
        cluster = Cluster(home, spec_path, gcs, f"http://127.0.0.1:{dash}", token_file_of(home).read_text().strip())
        for name in ("sim-a", "sim-b"):
            cluster.join(name)
        yield cluster
    finally:
        run_rlo(home, "cluster", "stop", timeout=180)


def test_status_shows_each_pools_nodes_against_the_spec(cluster):
    rows = cluster.status_rows()
    assert rows["head"][1] == "1/1" and rows["sim"][1] == "2/2"
    # The env-runner slots are the plan's: 1 (head) + 2 x 1 (sim) - 1 reserved = 2 env runners, both on `sim`.
    assert rows["sim"][4] == "2" and rows["head"][4] == "0"


def test_joining_an_unknown_pool_is_a_user_error(cluster, tmp_path):
    res = run_rlo(
        tmp_path, "cluster", "join", cluster.gcs, "--pool", "simm", "--token-file", token_file_of(cluster.home)
    )
    assert res.returncode == 2 and "no pool `simm`" in res.stderr and "did you mean `sim`" in res.stderr
    assert "Traceback" not in res.stderr


def test_remote_job_places_env_runners_on_the_pool_and_the_learner_on_the_head(cluster, tmp_path):
    client = tmp_path / "laptop"  # the submitting side: its own registry, far from the cluster's
    res = ok(
        run_rlo(client, "submit", cluster.spec_path, "--address", cluster.dashboard, "--token", cluster.token, "--wait")
    )
    run_id = res.stdout.splitlines()[0].strip()
    assert f"run {run_id} SUCCEEDED" in res.stderr + res.stdout

    nodes = {n["node_id"]: n for n in cluster.get("/api/v0/nodes?detail=true&limit=100")}
    pool = {nid: next(k[9:] for k in n["resources_total"] if k.startswith("rlo_pool_")) for nid, n in nodes.items()}
    actors = [a for a in cluster.get("/api/v0/actors?detail=true&limit=1000") if run_id in json.dumps(a)] or [
        a for a in cluster.get("/api/v0/actors?detail=true&limit=1000")
    ]
    runners = [a for a in actors if a["class_name"] == "SingleAgentEnvRunner"]
    learners = [a for a in actors if a["class_name"] == "PPO"]
    assert len(runners) == 2 and learners, [a["class_name"] for a in actors]
    # One env runner on each `sim` node, as the plan spreads them; the PPO trial (driver + learner) on the head.
    assert sorted(pool[a["node_id"]] for a in runners) == ["sim", "sim"]
    assert len({a["node_id"] for a in runners}) == 2
    assert {pool[a["node_id"]] for a in learners} == {"head"}

    # The registry is the submitting side's; status, logs and metrics work from there with the token.
    db = sqlite3.connect(client / "registry.db")
    assert db.execute("SELECT status, backend FROM runs WHERE id=?", (run_id,)).fetchone() == ("SUCCEEDED", "ray")
    assert (
        not (cluster.home / "registry.db").exists()
        or not sqlite3.connect(cluster.home / "registry.db")
        .execute("SELECT 1 FROM runs WHERE id=?", (run_id,))
        .fetchone()
    )
    env = {"RAY_AUTH_TOKEN": cluster.token}
    assert "SUCCEEDED" in ok(run_rlo(client, "status", run_id, env_extra=env)).stdout
    logs = ok(run_rlo(client, "logs", run_id, env_extra=env)).stdout
    assert "[rlo:metrics]" in logs and "training finished" in logs


@pytest.mark.parametrize(
    "token,words",
    [(None, "no authentication token was sent"), ("0" * 64, "the authentication token is wrong")],
)
def test_missing_or_wrong_token_is_a_clear_user_error(cluster, tmp_path, token, words):
    client = tmp_path / "laptop"
    args = ["submit", cluster.spec_path, "--address", cluster.dashboard] + (["--token", token] if token else [])
    res = run_rlo(client, *args, env_extra={"HOME": str(tmp_path)})  # no ~/.ray/auth_token to fall back on
    assert res.returncode == 2, res.stderr
    assert words in res.stderr and "--token" in res.stderr and "Traceback" not in res.stderr
    # Nothing half-submitted: no run left pending or running in the submitting side's registry.
    if (client / "registry.db").exists():
        rows = sqlite3.connect(client / "registry.db").execute("SELECT status FROM runs").fetchall()
        assert all(s in ("SUBMIT_FAILED",) for (s,) in rows)


def test_worker_node_killed_mid_training_the_job_goes_on(cluster, tmp_path):
    """It kills one of the pool's two nodes (SIGKILL to the node's whole process group)."""
    spec = {**SPEC, "job": {**SPEC["job"], "name": "mn-node-loss", "stop": {"training_iteration": 10}}}
    path = tmp_path / "node-loss.yaml"
    path.write_text(yaml.safe_dump(spec))
    client = tmp_path / "laptop"
    run_id = ok(run_rlo(client, "submit", path, "--address", cluster.dashboard, "--token", cluster.token)).stdout
    run_id = run_id.splitlines()[0].strip()
    metrics = Path("/tmp/rlo-runs") / run_id / "metrics.jsonl"  # the job's folder on the cluster (this machine)
    wait_for_iterations(metrics, 2)
    cluster.kill("sim-b")

    # The job goes on with the env runner that is left, and succeeds.
    res = run_rlo(client, "attach", run_id, "--token", cluster.token, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["training_iteration"] for r in records] == list(range(1, 11))
    healthy = [r.get("fault_tolerance/num_healthy_workers") for r in records]
    assert healthy[0] == 2 and min(h for h in healthy if h is not None) == 1
    assert cluster.status_rows()["sim"][1] == "1/2"


def test_worker_node_killed_with_on_node_loss_wait_training_pauses_until_a_replacement_joins(cluster, tmp_path):
    """After the test above (sim-b is dead): a replacement restores the pool, the job runs with
    `on_node_loss: wait`, one of its nodes is killed, and training pauses until another node joins the pool."""
    import time

    cluster.join("sim-c")
    assert cluster.status_rows()["sim"][1] == "2/2"

    job = {
        **SPEC["job"],
        "name": "mn-node-wait",
        "stop": {"training_iteration": 6},
        "fault_tolerance": {"on_node_loss": "wait", "wait_timeout_s": 240},
    }
    path = tmp_path / "node-wait.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "job": job}))
    client = tmp_path / "laptop"
    env = {"RAY_AUTH_TOKEN": cluster.token}
    run_id = ok(run_rlo(client, "submit", path, "--address", cluster.dashboard, "--token", cluster.token)).stdout
    run_id = run_id.splitlines()[0].strip()
    metrics = Path("/tmp/rlo-runs") / run_id / "metrics.jsonl"
    wait_for_iterations(metrics, 2)
    cluster.kill("sim-c")

    # The job says it waits (a notice in its log), and no iteration is reported while it does.
    deadline = time.monotonic() + 180
    while "waiting up to 240s for a replacement node" not in (
        logs := run_rlo(client, "logs", run_id, env_extra=env).stdout
    ):
        assert time.monotonic() < deadline, "the job never said it waits for a replacement:\n" + logs[-3000:]
        time.sleep(1)
    reported_before_join = len(metrics.read_text().splitlines())
    joined_at = time.time()
    cluster.join("sim-d")

    res = run_rlo(client, "attach", run_id, "--token", cluster.token, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["training_iteration"] for r in records] == list(range(1, 7))
    waited = [r for r in records if r.get("rlo/replacement_wait_s")]
    # One iteration carries the wait; it and every later one were reported only after the replacement joined,
    # and from then on both env runners were healthy again (one of them on the new node).
    assert len(waited) == 1, [r.get("rlo/replacement_wait_s") for r in records]
    i = records.index(waited[0])
    assert i + 1 > reported_before_join and i >= 1
    assert all(r["timestamp"] >= joined_at for r in records[i:]), (joined_at, [r.get("timestamp") for r in records])
    assert all(r.get("fault_tolerance/num_healthy_workers") == 2 for r in records[i + 1 :])
    logs = ok(run_rlo(client, "logs", run_id, env_extra=env)).stdout
    assert "all 2 env runners back after" in logs

    # The lost env runner was restarted on the replacement: the newest `sim` node (sim-d, joined for this run
    # only) hosts one of the run's env runners, per Ray's state API.
    sim_nodes = [
        n
        for n in cluster.get("/api/v0/nodes?detail=true&limit=100")
        if n["state"] == "ALIVE" and pool_resource("sim") in n["resources_total"]
    ]
    newest = max(sim_nodes, key=lambda n: n["start_time_ms"])["node_id"]
    actors = cluster.get("/api/v0/actors?detail=true&limit=1000")
    assert any(a["class_name"] == "SingleAgentEnvRunner" and a["node_id"] == newest for a in actors)
