"""A cluster across real addresses: the head, two worker pools and a submitting machine each on a network host of
its own (a Linux network namespace with its own address, tests/netns.py), joined with `rlo cluster` as a user does
on separate machines, with the token crossing the network. Then the network fails: a worker host's link is cut,
and traffic between the head and a worker host is dropped for longer than Ray's health checks wait.

What these tests learned, and the README's "Your own cluster" section says: the connections that cross between
machines during a job go to the head's GCS port and dashboard, to every node's raylet (node manager and object
manager ports) and to its workers' port range (`cluster.NODE_PORTS`, `cluster.WORKER_PORTS`); a node that is
silent for longer than Ray's health checks allow is marked dead by the GCS, and when it is heard again its raylet
is told so and exits: it never comes back by itself; a replacement must join."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import netns
import pytest
import yaml
from support import ok, wait_for

from orchestrator.cluster import HEAD_PORTS, NODE_PORTS, PEER_PORTS, WORKER_PORTS

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.netns]

_why_not = netns.available()
if _why_not and os.environ.get("RLO_REQUIRE_NETNS") == "1":  # CI: a tier that cannot run is a failure, not a skip
    raise RuntimeError(f"the network-host tests cannot run here: {_why_not}")
if _why_not:
    pytest.skip(f"network hosts cannot be made here: {_why_not}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data"
RUNS = Path("/tmp/rlo-runs")  # the job's folder on the head (this machine's filesystem)
GCS_PORT, DASHBOARD_PORT = 6379, 8265

JOB = {
    "algorithm": "PPO",
    "env": "corridor_env:Corridor",
    "env_config": {"length": 4},
    "source_dir": str(DATA / "user_job"),
    "hyperparameters": {"train_batch_size_per_learner": 400, "minibatch_size": 200, "num_epochs": 2},
    "checkpoint": {"frequency": 1, "at_end": True, "keep": 3},
    "max_run_duration_seconds": 420,
}
SPEC = {
    "cluster": {
        "name": "net",
        "head": {"vcpus": 1},
        "workers": [{"name": "a", "vcpus": 1, "node_count": 1}, {"name": "b", "vcpus": 1, "node_count": 1}],
    },
    "job": {**JOB, "name": "net-corridor", "stop": {"training_iteration": 3}},
}


class Cluster:
    """The hosts, each with an RLO_HOME of its own (the machines share nothing but the network)."""

    def __init__(self, net: netns.Network, root: Path) -> None:
        self.net, self.root = net, root
        self.spec_path = root / "net.yaml"
        self.spec_path.write_text(yaml.safe_dump(SPEC))
        self.token_file = root / "head" / "cluster" / "head" / "auth_token"

    @property
    def head(self) -> netns.Host:
        return self.net["head"]

    @property
    def dashboard(self) -> str:
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def rlo(self, host: str, *args, env_extra: dict | None = None, timeout: float = 600):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RLO_HOME=str(self.root / host), **(env_extra or {}))
        return self.net[host].run([sys.executable, "-m", "orchestrator.cli", *map(str, args)], env=env, cwd=ROOT,
                                  timeout=timeout)  # fmt: skip

    def join(self, host: str, pool: str, token_file: Path | None = None):
        h = self.net[host]
        args = ["cluster", "join", f"{self.head.ip}:{GCS_PORT}", "--pool", pool, "--node-ip-address", h.ip]
        return self.rlo(host, *args, "--token-file", token_file or self.token_file, "--name", host)

    def state(self, path: str, host: str = "client") -> list[dict]:
        """Ray's state API on the head's dashboard, asked from `host` across the network with the token."""
        code = (
            "import json,sys,urllib.request\n"
            f"r=urllib.request.Request({self.dashboard + path!r},headers={{'Authorization':'Bearer {self.token}'}})\n"
            "print(urllib.request.urlopen(r,timeout=30).read().decode())"
        )
        res = self.net[host].run([sys.executable, "-c", code], timeout=60)
        assert res.returncode == 0, res.stderr[-2000:]
        return json.loads(res.stdout)["data"]["result"]["result"]

    def nodes(self) -> dict[str, dict]:
        """node IP -> the newest node record Ray has for that address."""
        out: dict[str, dict] = {}
        for n in sorted(self.state("/api/v0/nodes?detail=true&limit=100"), key=lambda n: n["start_time_ms"]):
            out[n["node_ip"]] = n
        return out

    def submit(self, job: dict, *, wait: bool) -> tuple[str, object]:
        path = self.root / f"{job['name']}.yaml"
        path.write_text(yaml.safe_dump({**SPEC, "job": job}))
        res = self.rlo("client", "submit", path, "--address", self.dashboard, "--token", self.token,
                       *(["--wait"] if wait else []))  # fmt: skip
        assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res.stdout.splitlines()[0].strip(), res

    def attach(self, run_id: str):
        return self.rlo("client", "attach", run_id, "--token", self.token, timeout=600)


def records(run_id: str) -> list[dict]:
    path = RUNS / run_id / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def checkpoints_whole(run_id: str) -> list[Path]:
    """Every checkpoint the run kept is a whole RLlib checkpoint: its metadata, the algorithm's state (it unpickles)
    and the learner group's state."""
    import pickle

    found = sorted((RUNS / run_id).rglob("checkpoint_0*"))
    for c in found:
        meta = json.loads((c / "rllib_checkpoint.json").read_text())
        assert meta["checkpoint_version"] and meta["state_file"] == "algorithm_state", (c, meta)
        with open(c / "algorithm_state.pkl", "rb") as fh:
            assert isinstance(pickle.load(fh), dict), c
        assert (c / "class_and_ctor_args.pkl").exists() and (c / "learner_group").is_dir(), sorted(os.listdir(c))
    return found


class Connections:
    """Which TCP connections cross between hosts while it runs: (from host, to host, to port, listening process),
    sampled from `ss` on every host (a connection is told from its listening end by the ports the peer listens on)."""

    def __init__(self, cluster: Cluster, hosts: list[str]) -> None:
        self.cluster, self.hosts = cluster, hosts
        self.seen: set[tuple[str, str, int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        by_ip = {self.cluster.net[h].ip: h for h in self.hosts}
        while not self._stop.is_set():
            listening = {h: {p: proc for _, p, proc in self.cluster.net[h].listening()} for h in self.hosts}
            for h in self.hosts:
                out = self.cluster.net[h].run(["ss", "-Htn", "state", "established"]).stdout
                for line in out.splitlines():
                    parts = line.split()
                    peer_ip, _, peer_port = parts[3].rpartition(":")
                    peer = by_ip.get(peer_ip.strip("[]").removeprefix("::ffff:"))
                    if peer and peer != h and int(peer_port) in listening[peer]:
                        proc = re.search(r'"([^"]+)"', listening[peer][int(peer_port)])
                        self.seen.add((h, peer, int(peer_port), proc.group(1) if proc else "?"))
            self._stop.wait(0.3)

    def __enter__(self) -> Connections:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("net")
    with netns.Network(["head", "a", "b", "client", "b2", "a2"]) as net:
        c = Cluster(net, root)
        try:
            res = ok(c.rlo("head", "cluster", "start-head", c.spec_path, "--node-ip-address", c.head.ip,
                           "--dashboard-host", c.head.ip))  # fmt: skip
            assert f"rlo cluster join {c.head.ip}:{GCS_PORT} --pool a" in res.stdout
            assert "is taken on this machine" not in res.stderr  # a host of its own: every fixed port was free
            ok(c.join("a", "a"))
            ok(c.join("b", "b"))
            yield c
        finally:
            for host in net.hosts:
                c.rlo(host, "cluster", "stop", timeout=180)
        # Network.__exit__ kills whatever is left in each namespace and removes them all.


def test_status_from_another_host_shows_each_pool_against_the_spec(cluster):
    res = ok(cluster.rlo("client", "cluster", "status", "--address", cluster.dashboard, "--token", cluster.token,
                         "--spec", cluster.spec_path))  # fmt: skip
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[2:] if line.strip()}
    assert rows["head"][1] == "1/1" and rows["a"][1] == "1/1" and rows["b"][1] == "1/1", res.stdout
    nodes = cluster.nodes()
    assert {cluster.net[h].ip for h in ("head", "a", "b")} <= set(nodes), nodes.keys()


def test_a_job_from_a_fourth_host_runs_env_runners_on_the_pools_and_the_learner_on_the_head(cluster):
    with Connections(cluster, ["head", "a", "b", "client"]) as conns:
        run_id, res = cluster.submit({**SPEC["job"]}, wait=True)
    assert f"run {run_id} SUCCEEDED" in res.stdout + res.stderr

    ip_of = {h: cluster.net[h].ip for h in ("head", "a", "b")}
    node_ip = {n["node_id"]: n["node_ip"] for n in cluster.state("/api/v0/nodes?detail=true&limit=100")}
    actors = cluster.state("/api/v0/actors?detail=true&limit=1000")
    runners = sorted(node_ip[a["node_id"]] for a in actors if a["class_name"] == "SingleAgentEnvRunner")
    learners = {node_ip[a["node_id"]] for a in actors if a["class_name"] == "PPO"}
    assert runners == sorted([ip_of["a"], ip_of["b"]]), runners  # one on each pool's host
    assert learners == {ip_of["head"]}  # the trial (driver + learner) on the head's host

    # What crossed between the machines: the README's list of ports to open, and nothing else.
    allowed_on_node = {NODE_PORTS[p] for p in PEER_PORTS}
    lo, hi = WORKER_PORTS
    crossing = sorted(conns.seen)
    assert ("client", "head", DASHBOARD_PORT, "python") in {c[:3] + (c[3],) for c in crossing} or any(
        c[:3] == ("client", "head", DASHBOARD_PORT) for c in crossing
    ), crossing
    for src, dst, port, proc in crossing:
        if dst == "head" and port in (GCS_PORT, DASHBOARD_PORT):
            continue
        assert port in allowed_on_node or lo <= port <= hi, (src, dst, port, proc, crossing)
        assert src != "client", (src, dst, port, proc)  # a submitting machine needs the dashboard only
    kinds = {("gcs" if p == GCS_PORT else "raylet" if p in allowed_on_node else "worker") for _, d, p, _ in crossing
             if d != "client" and p != DASHBOARD_PORT}  # fmt: skip
    assert kinds == {"gcs", "raylet", "worker"}, crossing  # each kind was in use, so each must be open


def test_each_node_listens_on_its_fixed_ports_and_the_dashboard_on_the_address_it_was_given(cluster):
    """Ray 2.60 binds its servers on loopback only when the node's IP is loopback, and otherwise on every
    interface: there is no flag to narrow them to one non-loopback address. What the cluster mode does control:
    every port another machine can reach is one of the documented fixed ones (or the workers' range), and the
    dashboard binds exactly `--dashboard-host`."""
    lo, hi = WORKER_PORTS
    client = cluster.net["client"]
    for name in ("head", "a", "b"):
        host = cluster.net[name]
        found = host.listening()
        assert set(NODE_PORTS.values()) <= {p for _, p, _ in found}, (name, found)
        documented = set(NODE_PORTS.values()) | (set(HEAD_PORTS.values()) if name == "head" else set())
        undocumented = []
        for addr, port, proc in found:
            assert addr in (host.ip, "127.0.0.1", "0.0.0.0", "*", "::ffff:127.0.0.1", f"::ffff:{host.ip}"), (
                name, addr, port, proc)  # fmt: skip
            if addr.endswith("127.0.0.1") or port in documented or lo <= port <= hi:
                continue
            if cluster.net.reachable(client, host, port):  # it answers another machine: it must be documented
                undocumented.append((addr, port, proc))
        assert not undocumented, (name, undocumented, found)
        dash = [(a, p) for a, p, _ in found if p == DASHBOARD_PORT]
        assert dash == ([(host.ip, DASHBOARD_PORT)] if name == "head" else []), dash
    # The embedded default binds to loopback: tests/engine/test_network_exposure.py reads its sockets the same way.


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["no token", "wrong token"])
def test_a_join_without_the_right_token_is_refused_across_the_network(cluster, token):
    host = "a2"
    if token is None:
        res = cluster.rlo(
            host,
            "cluster",
            "join",
            f"{cluster.head.ip}:{GCS_PORT}",
            "--pool",
            "a",
            "--node-ip-address",
            cluster.net[host].ip,
            env_extra={"HOME": str(cluster.root / host)},
        )
        # fmt: skip
        assert res.returncode == 2 and "no token to join the cluster with" in res.stderr, res.stderr[-2000:]
    else:
        bad = cluster.root / "wrong.token"
        bad.write_text(token)
        res = cluster.join(host, "a", token_file=bad)
        assert res.returncode == 2, res.stderr[-2000:]
        assert "refused this machine's token" in res.stderr and "--token-file" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    # Nothing joined: the head still knows only its three nodes.
    assert cluster.net[host].ip not in cluster.nodes()


def test_a_join_to_where_no_head_listens_is_a_clear_error(cluster):
    res = cluster.rlo("a2", "cluster", "join", f"{cluster.head.ip}:6390", "--pool", "a", "--token-file",
                      cluster.token_file, "--node-ip-address", cluster.net["a2"].ip)  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"cannot reach the head's GCS at {cluster.head.ip}:6390 from this machine" in res.stderr
    assert "TCP port 6390 on the head is open" in res.stderr and "Traceback" not in res.stderr
    assert "W " not in res.stderr.split("rlo: error:")[0]  # none of Ray's C++ warnings before the message


@pytest.mark.parametrize(
    "token,words",
    [(None, "no authentication token was sent"), ("0" * 64, "the authentication token is wrong")],
    ids=["no token", "wrong token"],
)
def test_a_submission_without_the_right_token_is_refused_across_the_network(cluster, token, words):
    args = ["submit", cluster.spec_path, "--address", cluster.dashboard, *(["--token", token] if token else [])]
    res = cluster.rlo("client", *args, env_extra={"HOME": str(cluster.root / "client-home")})
    assert res.returncode == 2 and words in res.stderr and "--token" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_a_cut_host_the_job_waits_and_a_replacement_host_brings_the_env_runners_back(cluster):
    job = {**SPEC["job"], "name": "net-cut", "stop": {"training_iteration": 6},
           "fault_tolerance": {"on_node_loss": "wait", "wait_timeout_s": 300}}  # fmt: skip
    run_id, _ = cluster.submit(job, wait=False)
    wait_for(lambda: len(records(run_id)) >= 2, 300, "2 iterations")
    cut_at = time.time()
    cluster.net.cut(cluster.net["b"])  # its cable pulled: the host's processes live on, unheard

    env = {"RAY_AUTH_TOKEN": cluster.token}

    def says_it_waits() -> bool:
        logs = cluster.rlo("client", "logs", run_id, env_extra=env).stdout
        return "waiting up to 300s for a replacement node" in logs

    wait_for(says_it_waits, 240, "the job to say it waits for a replacement")
    waited_after = len(records(run_id))
    joined_at = time.time()
    ok(cluster.join("b2", "b"))  # a replacement host joins pool b

    res = cluster.attach(run_id)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    recs = records(run_id)
    assert [r["training_iteration"] for r in recs] == list(range(1, 7))
    waited = [r for r in recs if r.get("rlo/replacement_wait_s")]
    assert len(waited) == 1 and recs.index(waited[0]) + 1 > waited_after - 1
    i = recs.index(waited[0])
    assert all(r["timestamp"] >= joined_at for r in recs[i:])
    assert all(r.get("fault_tolerance/num_healthy_workers") == 2 for r in recs[i + 1 :])
    # The lost env runner came back on the replacement host; the cut host is dead to Ray.
    nodes = cluster.nodes()
    assert nodes[cluster.net["b"].ip]["state"] == "DEAD" and nodes[cluster.net["b2"].ip]["state"] == "ALIVE"
    node_ip = {n["node_id"]: n["node_ip"] for n in cluster.state("/api/v0/nodes?detail=true&limit=100")}
    # (b2 joined for this run only, so an env runner there was this run's; the job has ended, so it is DEAD now.)
    actors = cluster.state("/api/v0/actors?detail=true&limit=1000")
    runner_ips = {node_ip[a["node_id"]] for a in actors if a["class_name"] == "SingleAgentEnvRunner"}
    assert cluster.net["b2"].ip in runner_ips, runner_ips
    assert checkpoints_whole(run_id)
    print(f"cut at {cut_at:.0f}; waiting said after {joined_at - cut_at:.0f} s")


def test_a_partition_longer_than_the_health_checks_nothing_is_lost(cluster):
    """Traffic between the head and pool a's host is dropped (silently: no resets) until Ray marks the node dead,
    and some more; then it flows again. Ray: the GCS marks the silent node DEAD once its health checks time out;
    when the node is heard again, its raylet learns it was declared dead and exits, so the node never returns by
    itself. The job (on_node_loss: continue) goes on with the env runner it has left; its iterations and
    checkpoints are whole; a replacement joins the pool afterwards."""
    a = cluster.net["a"]
    job = {**SPEC["job"], "name": "net-partition", "stop": {"training_iteration": 8}}
    run_id, _ = cluster.submit(job, wait=False)
    wait_for(lambda: len(records(run_id)) >= 2, 300, "2 iterations")
    cut = time.monotonic()
    cluster.net.partition(cluster.head, a)
    try:
        wait_for(lambda: cluster.nodes()[a.ip]["state"] == "DEAD", 240, "Ray to mark the silent node dead")
        declared_dead_after = time.monotonic() - cut
        # The partition holds on while the job trains on without the node.
        wait_for(lambda: len(records(run_id)) >= 4, 300, "iterations after the loss")
    finally:
        cluster.net.heal(cluster.head, a)
    print(f"Ray marked the partitioned node dead after {declared_dead_after:.0f} s")

    res = cluster.attach(run_id)
    recs = records(run_id)
    iters = [r["training_iteration"] for r in recs]
    assert iters == list(range(1, len(iters) + 1)), iters  # whole: no iteration lost or repeated
    assert checkpoints_whole(run_id)
    print(f"after the partition the job {'went on' if res.returncode == 0 else 'failed, and is resumed'}")
    if res.returncode != 0:  # the job failed: resume continues it from its last checkpoint
        ok(cluster.rlo("client", "resume", run_id, "--wait", "--token", cluster.token))
        iters = [r["training_iteration"] for r in records(run_id)]
    assert iters[-1] == 8 and iters == list(range(1, 9)), iters
    healthy = [r.get("fault_tolerance/num_healthy_workers") for r in recs]
    assert healthy[0] == 2 and min(h for h in healthy if h is not None) == 1, healthy

    # After healing, the node stays dead (its raylet exits when it hears it was declared dead)...
    raylet_port = NODE_PORTS["node-manager-port"]
    wait_for(lambda: raylet_port not in {p for _, p, _ in a.listening()}, 120, "the dead node's raylet to exit")
    assert cluster.nodes()[a.ip]["state"] == "DEAD"
    # ...and a replacement joins pool a.
    ok(cluster.join("a2", "a"))
    rows = ok(cluster.rlo("client", "cluster", "status", "--address", cluster.dashboard, "--token", cluster.token,
                          "--spec", cluster.spec_path)).stdout  # fmt: skip
    assert re.search(r"^a\s+1/1", rows, re.M), rows
