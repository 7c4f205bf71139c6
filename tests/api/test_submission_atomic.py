"""A submission is one step from the user's side, on a real Ray: Ctrl-C while the Job API call is in flight
finishes it (once) or rolls it back (twice); a submission the engine refuses leaves no run folder and a row that
says why; a row left SUBMITTING whose job did reach the engine is adopted.

The Job API call is held in flight by a forwarding proxy in front of the real embedded Ray's dashboard (the
test's own link between client and engine, nothing of Ray is replaced), so the interrupt lands exactly there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.local_ray import LocalRayManager
from orchestrator.records import RunRecord
from orchestrator.registry import Registry

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]


class HoldingProxy:
    """TCP forwarder to the dashboard that holds every `POST /api/jobs/` until released (or drops it)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.held = threading.Event()
        self.release = threading.Event()
        self.drop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)

        def back():
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()

        threading.Thread(target=back, daemon=True).start()
        try:
            while data := client.recv(65536):
                if data.startswith(b"POST /api/jobs/"):
                    self.held.set()
                    while not (self.release.wait(0.1) or self.drop.is_set()):
                        pass
                    if self.drop.is_set():
                        return
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()

    def close(self) -> None:
        self._stop = True
        self.release.set()
        self.sock.close()


@pytest.fixture
def local_ray(rlo_home):
    return LocalRayManager().ensure(quiet=True)


@pytest.fixture
def proxy(local_ray):
    host, port = local_ray.dashboard_url.removeprefix("http://").split(":")
    p = HoldingProxy((host, int(port)))
    yield p
    p.close()


@pytest.fixture
def hello_spec(tmp_path):
    (tmp_path / "hello.py").write_text("print('hello from the job')\n")
    spec = tmp_path / "hello.yaml"
    spec.write_text("job:\n  name: atomic\n  entry_script: hello.py\n")
    return spec


def start_submit(spec: Path, proxy: HoldingProxy, local_ray, rlo_home) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "submit",
            str(spec),
            "--address",
            f"http://127.0.0.1:{proxy.port}",
            "--token",
            local_ray.token,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RLO_HOME=str(rlo_home)),
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    proc.reader = reader
    assert proxy.held.wait(120), "the submission never reached the Job API call"
    return proc, err


def finish(proc: subprocess.Popen) -> str:
    out = proc.stdout.read()
    proc.wait(timeout=60)
    proc.reader.join(timeout=10)
    return out


def wait_for(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def only_run(rlo_home) -> RunRecord:
    runs = [r for r in Registry(rlo_home / "registry.db").list() if r.name == "atomic"]
    assert len(runs) == 1, runs
    return runs[0]


def job_exists(local_ray, job_id: str) -> bool:
    from orchestrator.backends import RayJobsBackend

    return RayJobsBackend("ray-local", local_ray.dashboard_url, local_ray.headers()).job_exists(job_id)


def forget(rlo_home, run_id: str) -> None:
    with Registry(rlo_home / "registry.db").db.transaction() as c:
        c.execute("DELETE FROM runs WHERE id=?", (run_id,))


def test_one_ctrl_c_finishes_the_submission(proxy, local_ray, rlo_home, hello_spec):
    proc, err = start_submit(hello_spec, proxy, local_ray, rlo_home)
    assert only_run(rlo_home).status == "SUBMITTING"  # the row exists, the engine has not answered
    proc.send_signal(signal.SIGINT)
    assert wait_for(lambda: any("finishing the submission" in line for line in err)), err
    proxy.release.set()
    out = finish(proc)
    assert proc.returncode == 130
    rec = only_run(rlo_home)
    try:
        assert rec.id in out and rec.status == "PENDING" and rec.job_id == rec.id
        assert any("it was finished" in line for line in err), err
        assert job_exists(local_ray, rec.id)
    finally:
        forget(rlo_home, rec.id)


def test_two_ctrl_c_roll_the_submission_back(proxy, local_ray, rlo_home, hello_spec):
    proc, err = start_submit(hello_spec, proxy, local_ray, rlo_home)
    rid = only_run(rlo_home).id
    proc.send_signal(signal.SIGINT)
    assert wait_for(lambda: any("finishing the submission" in line for line in err)), err
    proc.send_signal(signal.SIGINT)
    finish(proc)
    proxy.drop.set()  # the request in flight never reaches the engine
    assert proc.returncode == 130
    rec = only_run(rlo_home)
    try:
        assert rec.status == "SUBMIT_FAILED" and "cancelled with Ctrl-C" in (rec.message or "")
        assert not job_exists(local_ray, rid)
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "logs", rid],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, RLO_HOME=str(rlo_home)),
            timeout=60,
        )
        assert res.returncode == 2 and "never reached the engine" in res.stderr, res.stderr
    finally:
        forget(rlo_home, rid)


def test_a_refused_submission_leaves_no_run_folder(local_ray, rlo_home, hello_spec, monkeypatch):
    """The engine refuses (the submission id is taken): the row says why, the run folder is gone."""
    import orchestrator.submit as submit_mod
    from orchestrator.spec import load_spec

    taken = f"rlo-taken-{time.time_ns()}"
    from ray.job_submission import JobSubmissionClient

    JobSubmissionClient(local_ray.dashboard_url, headers=local_ray.headers()).submit_job(
        entrypoint="echo first", submission_id=taken
    )
    monkeypatch.setattr(submit_mod, "new_run_id", lambda spec: taken)
    with pytest.raises(Exception, match="already"):
        submit_mod.submit(load_spec(hello_spec), quiet=True)
    rec = Registry(rlo_home / "registry.db").get(taken)
    try:
        assert rec.status == "SUBMIT_FAILED" and "already" in rec.message
        assert not (rlo_home / "runs" / taken).exists()
    finally:
        forget(rlo_home, taken)


def test_a_submitting_row_whose_job_reached_the_engine_is_adopted(local_ray, rlo_home):
    from ray.job_submission import JobSubmissionClient

    rid = f"rlo-adopt-{time.time_ns()}"
    JobSubmissionClient(local_ray.dashboard_url, headers=local_ray.headers()).submit_job(
        entrypoint="echo adopted", submission_id=rid
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    registry = Registry(rlo_home / "registry.db")
    registry.create(
        RunRecord(
            id=rid,
            name="adopt",
            created_at=now,
            updated_at=now,
            backend="ray-local",
            status="SUBMITTING",
            spec={},
            extra={"submitter": {"pid": dead.pid, "host": socket.gethostname()}},
        )
    )
    try:
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "attach", rid],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, RLO_HOME=str(rlo_home)),
            timeout=120,
        )
        assert res.returncode == 0 and "adopted" in res.stdout, res.stdout + res.stderr
        rec = registry.get(rid)
        assert rec.status == "SUCCEEDED" and rec.job_id == rid and len(registry.attempts(rid)) == 1
    finally:
        forget(rlo_home, rid)
