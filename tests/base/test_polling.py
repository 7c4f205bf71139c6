"""Polls and retries on tenacity (no Ray): `orchestrator.polling.poll`, and the Job API submission's wait for the
node agent of a head that just started."""

from __future__ import annotations

import time

import pytest

from orchestrator.backends import RayJobsBackend
from orchestrator.errors import EngineError
from orchestrator.polling import poll


class Counter:
    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def __call__(self):
        self.calls += 1
        return self.values[min(self.calls, len(self.values)) - 1]


def test_poll_stops_at_the_first_done_result():
    check = Counter([0, 0, 3, 4])
    assert poll(check, lambda n: n >= 3, 10.0, 0.01) == 3 and check.calls == 3


def test_poll_gives_up_after_its_timeout_with_the_last_result():
    check = Counter([False])
    t0 = time.monotonic()
    assert poll(check, bool, 0.2, 0.02) is False
    waited = time.monotonic() - t0
    assert 0.2 <= waited < 2 and check.calls >= 3


def test_poll_with_no_time_calls_once_and_errors_end_it():
    check = Counter([False, True])
    assert poll(check, bool, 0, 0.01) is False and check.calls == 1

    def broken():
        raise EngineError("it exited")

    with pytest.raises(EngineError, match="it exited"):
        poll(broken, bool, 10.0, 0.01)


def test_poll_without_a_limit_waits_until_done():
    check = Counter([None] * 5 + ["SUCCEEDED"])
    assert poll(check, lambda s: s is not None, None, 0.001) == "SUCCEEDED" and check.calls == 6


class FakeClient:
    def __init__(self, errors):
        self.errors, self.calls = list(errors), []

    def submit_job(self, **kwargs):
        self.calls.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return kwargs["submission_id"]


def backend(monkeypatch, client):
    b = RayJobsBackend("remote", "http://127.0.0.1:1", {})
    monkeypatch.setattr(b, "client", lambda: client)
    return b


def submit(b, wait_s):
    return b.submit(job_id="j1", entrypoint="python x.py", runtime_env={}, metadata={"n": 1}, agent_wait_s=wait_s)


def test_submit_waits_for_the_node_agent(monkeypatch):
    client = FakeClient([RuntimeError("No available agent to submit job, please try again later.")])
    assert submit(backend(monkeypatch, client), 30.0) == "j1"
    assert len(client.calls) == 2 and client.calls[0]["metadata"] == {"n": "1"}


def test_submit_gives_up_on_the_agent_after_its_time_and_other_errors_at_once(monkeypatch):
    client = FakeClient([RuntimeError("No available agent")] * 10)
    with pytest.raises(EngineError, match="failed: RuntimeError: No available agent"):
        submit(backend(monkeypatch, client), 0.5)
    assert len(client.calls) == 2  # the first try, then one more after 1 s (over the 0.5 s): given up
    client = FakeClient([RuntimeError("Failed to connect to the dashboard")])
    with pytest.raises(EngineError, match="cannot reach the Ray Job API at http://127.0.0.1:1"):
        submit(backend(monkeypatch, client), 30.0)
    assert len(client.calls) == 1
