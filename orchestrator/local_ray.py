"""The embedded default engine: a Ray head on 127.0.0.1 that the tool starts by itself, reuses across commands,
and shuts down with `rlo down`.

It is started as ``ray start --head --block`` in a session of its own, so jobs outlive the command that
submitted them, and so `rlo down` stops exactly the processes this tool started (that process group), never
another Ray on the machine.

Token authentication (on by default for local clusters since Ray 2.59) is kept on: the tool generates a token
for its own Ray (``RLO_HOME/local-ray/auth_token``, mode 600), starts the head with ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN_PATH`` pointing at it (so the job drivers and workers the head spawns inherit both), and sends it
as a bearer token on every Job API call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

from .errors import EngineError
from .polling import poll
from .settings import Settings, settings

HOST = "127.0.0.1"
START_TIMEOUT_S = 90

# What keeps the embedded Ray off the network. Ray 2.60 binds each of its servers on loopback only when the node's IP
# *is* loopback (Ray's `is_localhost(node_ip)`): GCS, raylet (node and object manager), every worker's gRPC port,
# the dashboard agent (gRPC, HTTP, metrics export), the runtime env agent, the Ray Client server, the dashboard's and
# the autoscaler's metrics ports; otherwise it binds them on all interfaces. But `ray start` and `ray.init` turn a
# loopback address into the machine's routable IP (`services.resolve_ip_for_localhost`) unless Ray "clusters" are
# off in that process: this switch (meant for macOS and Windows, where off is the default) keeps the node's IP, and
# so every bind, at 127.0.0.1 on Linux too. A single-machine Ray loses nothing by it: no other node is meant to join
# (the multi-node mode, orchestrator/cluster.py, does not set it: there Ray binds every interface of the node's
# machine, having no option for one non-loopback address; README, "Ports to open between the machines").
_CLUSTERS_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_ENV = {_CLUSTERS_VAR: "0"}

# The embedded Ray's listening sockets that are not on loopback, by listening process name, each with why it cannot
# be bound there and what protects it. Empty: with LOOPBACK_ENV every socket Ray 2.60 opens is on 127.0.0.1
# (tests/engine/test_network_exposure.py lists them all and fails on any non-loopback one not named here).
NON_LOOPBACK_PORTS_DOCUMENTED: dict[str, str] = {}


@contextlib.contextmanager
def loopback_driver():
    """Around `ray.init(address=<the embedded Ray's GCS>)` in a process that did not inherit LOOPBACK_ENV.

    Otherwise Ray would dial the GCS at the machine's routable IP, where nothing of the embedded Ray listens. Ray reads
    the switch when first imported, so its module constant is set too; both are restored after."""
    from ray._private import ray_constants

    saved_env, saved_const = os.environ.get(_CLUSTERS_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(LOOPBACK_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_env is None:
            os.environ.pop(_CLUSTERS_VAR, None)
        else:
            os.environ[_CLUSTERS_VAR] = saved_env


@dataclass
class LocalRay:
    pid: int
    dashboard_url: str
    gcs_address: str
    temp_dir: str
    token_path: str
    num_cpus: int
    num_gpus: int
    started_at: float
    log_path: str
    # The ports it was started with, by `ray start` flag (without the `--`).
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return Path(self.token_path).read_text().strip()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def alive(self) -> bool:
        if not pid_alive(self.pid):
            return False
        return http_ok(self.dashboard_url + "/api/version", self.headers())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by us) counts as dead.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def http_ok(url: str, headers: dict[str, str], timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def free_port() -> int:
    # Free on all interfaces (so on loopback too): the same helper picks the multi-node mode's ports, bound on the
    # node's address.
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def ray_executable() -> str:
    # The `ray` beside this interpreter: the head must run from the environment that has the project
    # installed, because job drivers run with the head's `python`.
    exe = Path(sys.executable).parent / "ray"
    if not exe.exists():
        raise EngineError(f"cannot find the `ray` command beside {sys.executable}; is ray[default] installed?")
    return str(exe)


class LocalRayManager:
    def __init__(self, cfg: Settings | None = None) -> None:
        self.cfg = cfg or settings()
        self.dir = self.cfg.local_ray_dir
        self.state_path = self.dir / "state.json"

    def _lock(self) -> FileLock:
        """Held while the embedded Ray is started or stopped (by any process of this RLO_HOME); blocks."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dir / "lock")

    def current(self) -> LocalRay | None:
        """The embedded Ray if it is up (state recorded and answering), else None."""
        try:
            state = LocalRay(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return state if state.alive() else None

    def ensure(self, num_cpus: int | None = None, quiet: bool = False) -> LocalRay:
        """Reuse the embedded Ray, or start it."""
        with self._lock():
            running = self.current()
            if running:
                return running
            self._cleanup_stale()
            return self._start(num_cpus or os.cpu_count() or 1, quiet)

    def _token_path(self) -> Path:
        path = self.dir / "auth_token"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path

    def _start(self, num_cpus: int, quiet: bool) -> LocalRay:
        token_path = self._token_path()
        # Unix socket paths are limited to ~107 bytes, so the temp dir must be short; one per RLO_HOME.
        tag = hashlib.sha1(str(self.cfg.home).encode()).hexdigest()[:8]
        temp_dir = f"/tmp/rlo-{tag}"
        # Every fixed default port gets a free one instead, so this Ray can run beside another Ray.
        ports = {
            flag: free_port()
            for flag in (
                "port",  # GCS
                "dashboard-port",
                "ray-client-server-port",
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "metrics-export-port",
                "runtime-env-agent-port",
                "node-manager-port",
                "object-manager-port",
            )
        }
        gcs_port, dash_port = ports["port"], ports["dashboard-port"]
        log_path = self.dir / "ray-head.log"
        cmd = [
            ray_executable(),
            "start",
            "--head",
            "--block",
            f"--node-ip-address={HOST}",
            "--include-dashboard=true",
            f"--dashboard-host={HOST}",
            *(f"--{flag}={port}" for flag, port in ports.items()),
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ]
        env = dict(os.environ)
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token_path),
            RAY_USAGE_STATS_ENABLED="0",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            **LOOPBACK_ENV,
        )
        env.pop("RAY_AUTH_TOKEN", None)  # the file is the one source of truth
        env.pop("RAY_ADDRESS", None)
        if not quiet:
            print(f"[rlo] starting the embedded Ray on {HOST} ({num_cpus} CPUs) ...", file=sys.stderr, flush=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                cwd=str(self.dir),
            )
        state = LocalRay(
            pid=proc.pid,
            dashboard_url=f"http://{HOST}:{dash_port}",
            gcs_address=f"{HOST}:{gcs_port}",
            temp_dir=temp_dir,
            token_path=str(token_path),
            num_cpus=num_cpus,
            num_gpus=0,
            started_at=time.time(),
            log_path=str(log_path),
            ports=ports,
        )
        jobs_url = state.dashboard_url + "/api/jobs/"

        def up() -> bool:
            if proc.poll() is not None:
                raise EngineError(
                    f"the embedded Ray exited while starting (code {proc.returncode}); last lines of {log_path}:\n"
                    + log_tail(log_path)
                )
            # The Job API answering (not just the dashboard) is what submission needs.
            return http_ok(jobs_url, state.headers())

        if poll(up, bool, START_TIMEOUT_S, 0.5):
            self.state_path.write_text(json.dumps(asdict(state), indent=2))
            return state
        self._stop_pid(proc.pid)
        raise EngineError(
            f"the embedded Ray did not answer on {state.dashboard_url} within {START_TIMEOUT_S}s; last lines of "
            f"{log_path}:\n{log_tail(log_path)}"
        )

    def _cleanup_stale(self) -> None:
        try:
            stale = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return
        if pid_alive(stale.get("pid", -1)):
            self._stop_pid(stale["pid"])
        self.state_path.unlink(missing_ok=True)

    def down(self) -> bool:
        """Stop the embedded Ray (and every job on it). Returns False when it was not running."""
        with self._lock():
            try:
                state = json.loads(self.state_path.read_text())
            except (OSError, ValueError):
                return False
            was_up = pid_alive(state["pid"])
            if was_up:
                self._stop_pid(state["pid"])
            self.state_path.unlink(missing_ok=True)
            return was_up

    @staticmethod
    def _stop_pid(pid: int, grace_s: float = 30) -> None:
        # `ray start --block` stops the processes it started when it gets SIGTERM; the process group catches
        # anything left (it was started in a session of its own, so the group holds only our processes).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        poll(lambda: pid_alive(pid), lambda alive: not alive, grace_s, 0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def log_tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
