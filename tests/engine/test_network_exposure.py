"""The embedded Ray's network exposure (issue 11): every socket it listens on is on loopback, except those in
`local_ray.NON_LOOPBACK_PORTS_DOCUMENTED`; nothing answers from another address of this machine; and its services
refuse requests without the token (so a documented exception, or another local user, gets nothing from them).

A job runs on the embedded Ray meanwhile (its driver, an actor and a task), so workers' gRPC ports are listed too."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

import grpc
import psutil
import pytest
from support import wait_for

from orchestrator.local_ray import NON_LOOPBACK_PORTS_DOCUMENTED, LocalRay, LocalRayManager

pytestmark = pytest.mark.ray

ACTOR = "ExposureProbe"
READY = "RLO-EXPOSURE-READY"
JOB = f"""
import threading
import ray

ray.init()


@ray.remote
class {ACTOR}:
    def ping(self):
        return "pong"


@ray.remote
def task():
    return 1


actor = {ACTOR}.remote()
assert ray.get([actor.ping.remote(), task.remote()]) == ["pong", 1]
print("{READY}", flush=True)
threading.Event().wait()  # until the test stops the job
"""


@dataclass(frozen=True)
class Listener:
    ip: str
    port: int
    process: str
    pid: int

    def __str__(self) -> str:
        return f"{self.process} (pid {self.pid}) on {self.ip}:{self.port}"


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped  # an IPv6 socket bound to ::ffff:127.0.0.1 takes loopback IPv4 only
    return addr.is_loopback


def ray_processes(local: LocalRay) -> list[psutil.Process]:
    """`ray start --block` (a session leader), every descendant, and anything else left in its session."""
    root = psutil.Process(local.pid)
    procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    for p in psutil.process_iter():
        with contextlib.suppress(OSError):
            if p.pid not in procs and os.getsid(p.pid) == local.pid:
                procs[p.pid] = p
    return list(procs.values())


def _process_name(p: psutil.Process) -> str:
    """Ray's own name for the process (`raylet`, `ray::DashboardAgent`); for a Python one, its script or module."""
    name = p.name()
    if not name.startswith("python"):
        return name
    args = p.cmdline()[1:]
    if "-m" in args[:-1]:
        return args[args.index("-m") + 1]
    return next((os.path.basename(a)[:-3] for a in args if a.endswith(".py")), name)


def listeners(local: LocalRay) -> list[Listener]:
    out = []
    for p in ray_processes(local):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            name = _process_name(p)
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.append(Listener(c.laddr.ip, c.laddr.port, name, p.pid))
    return out


def other_addresses() -> list[str]:
    """This machine's own non-loopback IPv4 addresses: where another machine would reach it."""
    return sorted(
        {
            a.address
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback
        }
    )


@pytest.fixture(scope="module")
def embedded(rlo_home, tmp_path_factory):
    """The embedded Ray, with a job holding a driver, an actor and a task worker on it."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    local = LocalRayManager().ensure(quiet=True)
    script = tmp_path_factory.mktemp("exposure") / "job.py"
    script.write_text(JOB)
    client = JobSubmissionClient(local.dashboard_url, headers=local.headers())
    job_id = client.submit_job(entrypoint=f"{sys.executable} {script}")
    try:

        def ready():
            status = client.get_job_status(job_id)
            assert not status.is_terminal(), f"the probe job ended {status}:\n{client.get_job_logs(job_id)[-3000:]}"
            return READY in client.get_job_logs(job_id)

        wait_for(ready, 180, "the probe job's actor and task")
        yield local
    finally:
        client.stop_job(job_id)
        wait_for(lambda: client.get_job_status(job_id) in (JobStatus.STOPPED, JobStatus.FAILED), 60, "the job to stop")


def test_every_listening_socket_is_on_loopback_or_documented(embedded):
    found = listeners(embedded)
    by_port = {s.port: s for s in found}
    # The listing sees what Ray opens: the ports it was started with, and the workers' gRPC ports.
    flags = ("port", "node-manager-port", "object-manager-port", "dashboard-agent-grpc-port", "metrics-export-port")
    for flag in flags:
        assert embedded.ports[flag] in by_port, f"nothing listens on the --{flag} port; listed:\n" + "\n".join(
            map(str, found)
        )
    workers = {s.process for s in found if s.process.startswith("ray::")}
    assert {f"ray::{ACTOR}", "ray::JobSupervisor"} <= workers, workers

    exposed = [s for s in found if not _is_loopback(s.ip) and s.process not in NON_LOOPBACK_PORTS_DOCUMENTED]
    assert not exposed, "the embedded Ray listens beyond loopback (and these are not documented):\n" + "\n".join(
        map(str, exposed)
    )


def test_nothing_answers_on_the_machines_other_addresses(embedded):
    addresses = other_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    found = listeners(embedded)
    metrics = embedded.ports["metrics-export-port"]
    assert metrics in {s.port for s in found}
    # On loopback the metrics export port is up (so the refusals below are not because it is down) ...
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as r:
        assert r.status == 200 and b"ray_" in r.read()
    # ... and from the machine's other addresses it, and every other port of the embedded Ray, is refused.
    answered = []
    for ip in addresses:
        for s in found:
            if s.process in NON_LOOPBACK_PORTS_DOCUMENTED:
                continue
            with socket.socket() as sock:
                sock.settimeout(5)
                if sock.connect_ex((ip, s.port)) == 0:
                    answered.append(f"{s} answered on {ip}:{s.port}")
    assert not answered, "\n".join(answered)


def _grpc_code(stub_method, request, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    try:
        stub_method(request, metadata=metadata, timeout=20)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _http_code(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_ray_services_refuse_requests_without_the_token(embedded):
    from ray.core.generated import (
        core_worker_pb2,
        core_worker_pb2_grpc,
        gcs_service_pb2,
        gcs_service_pb2_grpc,
        node_manager_pb2,
        node_manager_pb2_grpc,
        reporter_pb2,
        reporter_pb2_grpc,
    )

    ports, token = embedded.ports, embedded.token
    actor_port = next(s.port for s in listeners(embedded) if s.process == f"ray::{ACTOR}")

    channels: list[grpc.Channel] = []

    def channel(port):
        channels.append(grpc.insecure_channel(f"127.0.0.1:{port}"))
        return channels[-1]

    grpc_probes = {
        "gcs_server": (
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel(ports["port"])).GetAllNodeInfo,
            gcs_service_pb2.GetAllNodeInfoRequest(),
        ),
        "raylet": (
            node_manager_pb2_grpc.NodeManagerServiceStub(channel(ports["node-manager-port"])).GetNodeStats,
            node_manager_pb2.GetNodeStatsRequest(),
        ),
        "ray::DashboardAgent": (
            reporter_pb2_grpc.LogServiceStub(channel(ports["dashboard-agent-grpc-port"])).ListLogs,
            reporter_pb2.ListLogsRequest(glob_filter="*"),
        ),
        f"ray::{ACTOR}": (
            core_worker_pb2_grpc.CoreWorkerServiceStub(channel(actor_port)).GetCoreWorkerStats,
            core_worker_pb2.GetCoreWorkerStatsRequest(),
        ),
    }
    http_probes = {
        "dashboard": f"{embedded.dashboard_url}/api/jobs/",
        "ray::RuntimeEnvAgent": f"http://127.0.0.1:{ports['runtime-env-agent-port']}/get_or_create_runtime_env",
    }
    # A listener documented as off loopback must be one whose refusal is proven here.
    assert set(NON_LOOPBACK_PORTS_DOCUMENTED) <= set(grpc_probes) | set(http_probes), NON_LOOPBACK_PORTS_DOCUMENTED

    try:
        for name, (method, request) in grpc_probes.items():
            assert _grpc_code(method, request, None) == grpc.StatusCode.UNAUTHENTICATED, name
            assert _grpc_code(method, request, "not-the-token") == grpc.StatusCode.UNAUTHENTICATED, name
            # With the token the same call gets past authentication (the probe reaches a live service).
            assert _grpc_code(method, request, token) != grpc.StatusCode.UNAUTHENTICATED, name
    finally:  # open gRPC channels at interpreter exit can crash it
        for c in channels:
            c.close()
    for name, url in http_probes.items():
        assert _http_code(url, None) == 401, name
        assert _http_code(url, "not-the-token") in (401, 403), name
    assert _http_code(http_probes["dashboard"], token) == 200
