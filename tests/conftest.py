"""Fixtures. Tests that need Ray use the real embedded local Ray, started once per session in a private
RLO_HOME and shut down at the end (only the processes this session started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def rlo_home(tmp_path_factory):
    """A private RLO_HOME with the embedded Ray; stopped after the session."""
    home = tmp_path_factory.mktemp("rlo-home")
    old = os.environ.get("RLO_HOME")
    os.environ["RLO_HOME"] = str(home)
    from orchestrator.local_ray import LocalRayManager

    mgr = LocalRayManager()
    try:
        yield home
    finally:
        mgr.down()
        if old is None:
            os.environ.pop("RLO_HOME", None)
        else:
            os.environ["RLO_HOME"] = old


@pytest.fixture
def rlo(rlo_home):
    """Run the real `rlo` command in the session's RLO_HOME."""

    def run(*args, timeout=600, check_exit=None):
        env = dict(os.environ, RLO_HOME=str(rlo_home))
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=timeout,
            env=env,
        )
        if check_exit is not None:
            assert res.returncode == check_exit, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res

    return run


# The test process itself connects to Ray (in-process deploys, Job API clients, gRPC probes) and holds C
# extensions (Ray's core worker, gRPC, torch, ONNX Runtime) whose teardown at interpreter exit can crash after
# every test has passed and the summary is printed (seen once in CI: "Segmentation fault", exit 139, after
# "614 passed"). Results are final by then: exit with pytest's own status and skip that teardown.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _EXIT_STATUS and os.environ.get("RLO_TEST_NORMAL_EXIT") != "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
