"""Fixtures. Tests that need Ray use the real embedded local Ray, started once per session in a private
RLO_HOME and shut down at the end (only the processes this session started)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support import ok, run_rlo

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
        res = run_rlo(*args, home=rlo_home, timeout=timeout)
        if check_exit is not None:
            ok(res, check_exit)
        return res

    return run


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh RLO_HOME for this test (set in the environment, so `rlo` subprocesses use it too)."""
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


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
