"""A spec's cluster on the user's own machines: `rlo cluster start-head SPEC`, `join ADDRESS --pool NAME`,
`status`, `stop`.

Each command runs `ray start` with the resources `placement.node_params` gives the node's pool (so Ray's own state
says which pool a node is, env runners land only on the plan's env-runner slots, the learner on the head), with
Ray 2.60's token authentication on. The head publishes the spec in Ray's GCS key-value store, so a joining node
needs only the address, the pool's name and the token.

Each node runs as `ray start --block` in a session of its own, recorded under `$RLO_HOME/cluster/NAME/`; `rlo
cluster stop` stops exactly the nodes this RLO_HOME started (several may run on one machine, as in the tests).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import EngineError, UserError
from .local_ray import LocalRayManager, free_port, http_ok, log_tail, pid_alive, ray_executable
from .nodes import node_params
from .placement import HEAD_POOL, pool_resource
from .planner import Plan, plan_spec
from .polling import poll
from .settings import settings
from .spec import Spec, load_spec, parse_spec

KV_NAMESPACE = b"rlo"
KV_SPEC_KEY = b"spec"
START_TIMEOUT_S = 90


@dataclass
class NodeState:
    name: str
    role: str  # head | worker
    pool: str
    pid: int
    gcs_address: str
    node_ip: str
    token_path: str
    log_path: str
    started_at: float
    dashboard_url: str | None = None
    spec_path: str | None = None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {Path(self.token_path).read_text().strip()}"}


def _nodes_dir() -> Path:
    return settings().home / "cluster"


def local_nodes() -> list[NodeState]:
    """Nodes this RLO_HOME started on this machine (alive or not)."""
    out = []
    for p in sorted(_nodes_dir().glob("*/state.json")):
        try:
            out.append(NodeState(**json.loads(p.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return out


def _token_file(node_dir: Path, token_file: str | None) -> Path:
    if token_file:
        p = Path(token_file).expanduser()
        if not p.is_file() or not p.read_text().strip():
            raise UserError(f"token file {p} does not exist or is empty", fix="give the file `start-head` printed")
        return p.resolve()
    p = node_dir / "auth_token"
    if not p.exists():
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return p


def _token_from_env(node_dir: Path, token_file: str | None) -> Path:
    """The token a joining node presents: the file given, else RAY_AUTH_TOKEN copied into a private file."""
    if token_file:
        return _token_file(node_dir, token_file)
    tok = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not tok and os.environ.get("RAY_AUTH_TOKEN_PATH"):
        tok = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    if not tok:
        raise UserError(
            "no token to join the cluster with",
            fix="pass `--token-file FILE` (the file `rlo cluster start-head` printed, copied to this machine) or set "
            "RAY_AUTH_TOKEN",
        )
    p = node_dir / "auth_token"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(tok)
    return p


def _node_dir(name: str) -> Path:
    d = _nodes_dir() / name
    for n in local_nodes():
        if n.name == name and n.alive():
            raise UserError(
                f"a node named `{name}` started from this RLO_HOME is already running (pid {n.pid})",
                fix=f"stop it first (`rlo cluster stop {name}`) or give another `--name`",
            )
    d.mkdir(parents=True, exist_ok=True)
    return d


# The ports a node listens on, fixed so that a firewall between the cluster's machines can name them (learned from
# tests/engine/test_cluster_network.py, which watches which connections cross between hosts during a job): the GCS (head
# only, `--port`), each node's raylet (node manager and object manager) and its workers' range take connections
# from the other nodes; the dashboard (head only) from whoever submits. The rest serve the node itself or the
# head's dashboard. Each is Ray's own default where Ray has a fixed one.
NODE_PORTS = {
    "node-manager-port": 6380,
    "object-manager-port": 6381,
    "dashboard-agent-grpc-port": 6382,
    "runtime-env-agent-port": 6383,
    "metrics-export-port": 6384,
    "dashboard-agent-listen-port": 52365,  # Ray's default
}
RAY_CLIENT_PORT = 10001  # Ray's default (the head's Ray Client server)
# The head's own ports besides NODE_PORTS: `--port` and `--dashboard-port` (their defaults), the Ray Client server,
# and the Prometheus endpoints of Ray's autoscaler monitor and dashboard (Ray's fixed defaults, which Ray binds on
# every interface in a cluster; like each node's metrics-export-port they answer without the token).
HEAD_PORTS = {
    "port": 6379,
    "dashboard-port": 8265,
    "ray-client-server-port": RAY_CLIENT_PORT,
    "autoscaler-metrics": 44217,  # ray.autoscaler._private.constants.AUTOSCALER_METRIC_PORT
    "dashboard-metrics": 44227,  # ray.dashboard.consts.DASHBOARD_METRIC_PORT
}
WORKER_PORTS = (10002, 19999)  # Ray's default range: workers and actors (env runners), reached from other nodes
# Ports other nodes connect to (besides the head's GCS port): what must be open between the cluster's machines.
PEER_PORTS = ("node-manager-port", "object-manager-port")


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ports(node_ip: str, notices: list[str], *, client: bool = False) -> list[str]:
    """`ray start` flags for NODE_PORTS: the fixed ports, unless another node already runs on this machine (several
    nodes on one machine, as in the tests): then free ones, all of them, with a notice. All or none, because a
    starting node binds its raylet's ports at once but its agents' ports up to a minute later: a port that looks
    free may be the other node's, still to be bound."""
    wanted = dict(NODE_PORTS, **({"ray-client-server-port": RAY_CLIENT_PORT} if client else {}))
    taken = [f"{p} ({flag})" for flag, p in wanted.items() if not (_port_free("", p) and _port_free(node_ip, p))]
    if taken:
        notices.append(
            f"port {', '.join(taken)} is taken on this machine (another Ray node?); this node takes free ports, not "
            f"the fixed ones ({', '.join(map(str, wanted.values()))}) a firewall between machines would name"
        )
        wanted = {flag: free_port() for flag in wanted}
    lo, hi = WORKER_PORTS
    flags = [f"--{flag}={port}" for flag, port in wanted.items()]
    return [*flags, f"--min-worker-port={lo}", f"--max-worker-port={hi}"]


def _env(token_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
        RAY_USAGE_STATS_ENABLED="0",
        # Ray's raylet gives its dashboard agent 15 s to start and then crashes the node (a loaded machine: seen
        # joining while other jobs ran); a node that starts slowly should still start.
        RAY_agent_register_timeout_ms=os.environ.get("RAY_agent_register_timeout_ms", "60000"),
        # Job drivers run with the head's `python`: the one that has this project installed.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_ADDRESS", None)
    if _QUIETED:
        env.pop("RAY_BACKEND_LOG_LEVEL", None)
    return env


def _spawn(cmd: list[str], env: dict, node_dir: Path) -> tuple[subprocess.Popen, Path]:
    log_path = node_dir / "ray.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=str(node_dir),
        )
    return proc, log_path


# Ray's raylet gives its agents 15 s (fixed in Ray 2.60) to report their ports, then aborts the node; on a loaded
# machine the dashboard agent's imports alone can take longer (seen here with other jobs running), and a second
# try, with the imports in the page cache, starts. That failure, and only that one, is retried.
START_ATTEMPTS = 3
_SLOW_START = "timed out during startup"


def _start(cmd: list[str], env: dict, node_dir: Path, ready, what: str, notices: list[str]) -> subprocess.Popen:
    for attempt in range(1, START_ATTEMPTS + 1):
        proc, log_path = _spawn(cmd, env, node_dir)
        offset = log_path.stat().st_size if log_path.exists() else 0
        try:
            _wait(proc, log_path, ready, what)
            return proc
        except EngineError:
            with open(log_path, "rb") as fh:
                fh.seek(offset)
                slow = _SLOW_START in fh.read().decode(errors="replace")
            if not slow or proc.poll() is None or attempt == START_ATTEMPTS:
                raise
            notices.append(f"{what} was too slow to start (Ray's agents took over 15 s); attempt {attempt + 1}")
    raise AssertionError("unreachable")


def _wait(proc: subprocess.Popen, log_path: Path, ready, what: str) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise EngineError(
                f"{what} exited while starting (code {proc.returncode}); last lines of {log_path}:\n"
                + log_tail(log_path)
            )
        return ready()

    if poll(up, bool, START_TIMEOUT_S, 0.5):
        return
    LocalRayManager._stop_pid(proc.pid)
    raise EngineError(
        f"{what} did not come up within {START_TIMEOUT_S} s; last lines of {log_path}:\n" + log_tail(log_path)
    )


_QUIETED = False  # whether _gcs set RAY_BACKEND_LOG_LEVEL for this process (not for the nodes it starts)


def _gcs(address: str, token_path: Path):
    # Ray's C++ client logs each failed try as a warning on stderr; the error it raises says the same, once.
    global _QUIETED
    if "RAY_BACKEND_LOG_LEVEL" not in os.environ:
        os.environ["RAY_BACKEND_LOG_LEVEL"] = "error"
        _QUIETED = True
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # Ray's _raylet.pyi lists few of its names

    return GcsClient(address=address)


def start_head(
    spec_path: str,
    *,
    node_ip: str = "127.0.0.1",
    port: int = 6379,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int = 8265,
    token_file: str | None = None,
    name: str = "head",
    notices: list[str] | None = None,
) -> tuple[NodeState, Plan]:
    """Start the spec's head node (its pool's resources, token auth on); publish the spec for joining nodes.
    `notices` gets what the user should know (a port that had to move)."""
    notices = [] if notices is None else notices
    spec = load_spec(spec_path)
    plan = plan_spec(spec)
    params = node_params(plan, HEAD_POOL)
    node_dir = _node_dir(name)
    token = _token_file(node_dir, token_file)
    cmd = [
        ray_executable(),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={node_ip}",
        f"--port={port}",
        "--include-dashboard=true",
        f"--dashboard-host={dashboard_host}",
        f"--dashboard-port={dashboard_port}",
        *_ports(node_ip, notices, client=True),
        *params.ray_start_flags(),
        f"--temp-dir=/tmp/rlo-{name}-{secrets.token_hex(3)}",
        "--disable-usage-stats",
    ]
    log_path = node_dir / "ray.log"
    shown_host = "127.0.0.1" if dashboard_host in ("0.0.0.0", "::") else dashboard_host
    dashboard_url = f"http://{shown_host}:{dashboard_port}"
    state = NodeState(
        name=name,
        role="head",
        pool=HEAD_POOL,
        pid=0,
        gcs_address=f"{node_ip}:{port}",
        node_ip=node_ip,
        token_path=str(token),
        log_path=str(log_path),
        started_at=time.time(),
        dashboard_url=dashboard_url,
        spec_path=str(Path(spec_path).resolve()),
    )
    ready = lambda: http_ok(dashboard_url + "/api/jobs/", state.headers())  # noqa: E731
    state.pid = _start(cmd, _env(token), node_dir, ready, "the Ray head", notices).pid
    (node_dir / "state.json").write_text(json.dumps(asdict(state), indent=2))
    spec_json = json.dumps(spec.to_dict()).encode()
    _gcs(state.gcs_address, token).internal_kv_put(KV_SPEC_KEY, spec_json, True, KV_NAMESPACE)
    return state, plan


REACH_TIMEOUT_S = 10


def _check_reachable(address: str) -> None:
    """A TCP connection to the head's GCS, before Ray's client tries for 40 s and says only "timed out"."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"`{address}` is not HOST:PORT", fix="give the head's GCS address, e.g. `10.0.0.4:6379`")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as e:
        why = "nothing answered" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise UserError(
            f"cannot reach the head's GCS at {address} from this machine ({why} within {REACH_TIMEOUT_S} s)",
            fix=f"check the address (`rlo cluster start-head` printed the `rlo cluster join HOST:PORT` to use) and "
            f"that TCP port {port} on the head is open to this machine (README: Your own cluster, ports)",
        ) from None


def published_spec(address: str, token_path: Path) -> Spec:
    _check_reachable(address)
    try:
        raw = _gcs(address, token_path).internal_kv_get(KV_SPEC_KEY, KV_NAMESPACE)
    except Exception as e:  # wrong token; the head went away meanwhile
        if "InvalidAuthToken" in str(e) or "Unauthenticated" in str(e):
            raise UserError(
                f"the head at {address} refused this machine's token ({token_path}): it is not the cluster's token",
                fix="copy the token file `rlo cluster start-head` wrote on the head (RLO_HOME/cluster/head/auth_token) "
                "to this machine and pass `--token-file FILE`",
            ) from None
        raise EngineError(f"cannot read the cluster's spec from the head at {address}: {e}") from None
    if not raw:
        raise UserError(
            f"the Ray cluster at {address} was not started by `rlo cluster start-head` (it publishes no spec)",
            fix="pass the spec with `--spec SPEC`",
        )
    return parse_spec(json.loads(raw), source=f"the spec published by {address}")


def join(
    address: str,
    pool: str,
    *,
    token_file: str | None = None,
    spec_path: str | None = None,
    node_ip: str = "127.0.0.1",
    name: str | None = None,
    notices: list[str] | None = None,
) -> tuple[NodeState, Plan]:
    """Start a node of `pool` and join it to the cluster at `address` (the head's GCS address HOST:PORT)."""
    notices = [] if notices is None else notices
    if "://" in address:
        raise UserError(f"`{address}` is a URL; join takes the head's GCS address", fix="e.g. `10.0.0.4:6379`")
    name = name or f"{pool}-{secrets.token_hex(2)}"
    node_dir = _node_dir(name)
    token = _token_from_env(node_dir, token_file)
    spec = load_spec(spec_path) if spec_path else published_spec(address, token)
    if pool == HEAD_POOL:
        raise UserError(
            "`head` is the head's pool; a joining node belongs to a worker pool",
            fix="give `--pool` one of " + ", ".join(f"`{w.name}`" for w in spec.cluster.workers),
        )
    plan = plan_spec(spec)
    params = node_params(plan, pool)  # PlanError (exit 2) for a pool the spec does not have
    tag = secrets.token_hex(3)
    node_name = f"rlo-{name}-{tag}"
    cmd = [
        ray_executable(),
        "start",
        f"--address={address}",
        "--block",
        f"--node-ip-address={node_ip}",
        *_ports(node_ip, notices),
        *params.ray_start_flags(),
        # A temp dir of its own (Ray allows one per node): nodes sharing a machine must not share the runtime-env
        # folders, or one node's agent deletes a job's working dir from under another node's processes.
        f"--temp-dir=/tmp/rlo-{name}-{tag}",
        # A name of its own, to tell when this very node has registered (counting the pool's nodes cannot: a
        # node that just died may leave the count while this one joins it).
        f"--node-name={node_name}",
        "--disable-usage-stats",
    ]
    log_path = node_dir / "ray.log"
    state = NodeState(
        name=name,
        role="worker",
        pool=pool,
        pid=0,
        gcs_address=address,
        node_ip=node_ip,
        token_path=str(token),
        log_path=str(log_path),
        started_at=time.time(),
        spec_path=spec_path,
    )
    ready = lambda: _node_registered(address, token, node_name)  # noqa: E731
    state.pid = _start(cmd, _env(token), node_dir, ready, f"the `{pool}` node", notices).pid
    (node_dir / "state.json").write_text(json.dumps(asdict(state), indent=2))
    return state, plan


def _alive_nodes(address: str, token: Path) -> list[dict]:
    from ray.core.generated import gcs_pb2

    infos = _gcs(address, token).get_all_node_info()
    out = []
    for info in infos.values():
        # protobuf makes gcs_pb2's message classes at import time; Ray ships no stub that declares them
        if info.state != gcs_pb2.GcsNodeInfo.GcsNodeState.ALIVE:  # type: ignore[attr-defined]
            continue
        out.append(
            {
                "node_id": info.node_id.hex(),
                "ip": info.node_manager_address,
                "node_name": info.node_name,
                "resources_total": dict(info.resources_total),
            }
        )
    return out


def _node_registered(address: str, token: Path, node_name: str) -> bool:
    try:
        return any(n.get("node_name") == node_name for n in _alive_nodes(address, token))
    except Exception:  # the head not answering yet: not registered yet
        return False


def pool_of(resources: dict) -> str | None:
    """The pool a node belongs to, from its resources (`rlo_pool_<pool>`); None for a node rlo did not start."""
    for k in resources:
        if k.startswith("rlo_pool_"):
            return k[len("rlo_pool_") :]
    return None


def status_rows(nodes: list[dict], spec: Spec | None) -> list[tuple]:
    """Per pool: nodes up / nodes in the spec, CPUs, GPUs, env-runner slots; then nodes of no pool."""
    pools = [(HEAD_POOL, 1)] + ([(w.name, w.node_count) for w in spec.cluster.workers] if spec else [])
    rows = [("pool", "nodes", "CPUs", "GPUs", "env-runner slots", "")]
    seen: set[int] = set()
    names = {pool_resource(p): p for p, _ in pools}
    for n in nodes:
        p = next((names[k] for k in n["resources_total"] if k in names), None) or pool_of(n["resources_total"])
        n["pool"] = p
        if p and not any(p == q for q, _ in pools):
            pools.append((p, 0))
    for pool, want in pools:
        mine = [n for n in nodes if n.get("pool") == pool]
        seen.update(id(n) for n in mine)
        res = [n["resources_total"] for n in mine]
        cpus = sum(r.get("CPU", 0) for r in res)
        gpus = sum(r.get("GPU", 0) for r in res)
        slots = sum(r.get("rlo_env_runner_slots", 0) for r in res)
        count = f"{len(mine)}/{want}" if spec else str(len(mine))
        note = (
            ""
            if not spec or len(mine) == want
            else ("missing " if len(mine) < want else "extra ") + str(abs(want - len(mine)))
        )
        rows.append((pool, count, f"{cpus:g}", f"{gpus:g}", f"{slots:g}", note))
    other = [n for n in nodes if id(n) not in seen]
    if other:
        rows.append(
            (
                "(no pool)",
                str(len(other)),
                f"{sum(n['resources_total'].get('CPU', 0) for n in other):g}",
                f"{sum(n['resources_total'].get('GPU', 0) for n in other):g}",
                "0",
                "not started by rlo",
            )
        )
    return rows


def stop(name: str | None = None) -> list[str]:
    """Stop the nodes this RLO_HOME started (all, or the one named): workers first, then the head."""
    nodes = [n for n in local_nodes() if name is None or n.name == name]
    if name is not None and not nodes:
        known = ", ".join(f"`{n.name}`" for n in local_nodes()) or "none"
        raise UserError(f"no node named `{name}` was started from this RLO_HOME", fix=f"nodes here: {known}")
    stopped = []
    for n in sorted(nodes, key=lambda n: n.role == "head"):
        if n.alive():
            LocalRayManager._stop_pid(n.pid)
            stopped.append(n.name)
        (_nodes_dir() / n.name / "state.json").unlink(missing_ok=True)
    return stopped
