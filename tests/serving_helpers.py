"""Helpers shared by the serving tests (test_serving.py, test_serving_hardening.py): the real `rlo` command in a
given RLO_HOME, a job spec file, plain HTTP calls, a free port."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from support import ROOT, ok, run_rlo  # noqa: F401 - ROOT and ok: the serving tests take them from here

# Below the kernel's ephemeral range (32768-60999 here; /proc/sys/net/ipv4/ip_local_port_range) and above Ray's
# worker ports (10002-19999): a port picked when a module is collected must still be free when its tests run half
# an hour later, and a port from bind(0) is one the kernel hands out again, to Ray's own servers and to every
# outgoing connection (CI saw a module's Serve port taken by the time its fixture deployed).
TEST_PORTS = range(20000, 32768)
_picked: set[int] = set()


def free_port() -> int:
    for port in random.Random().sample(TEST_PORTS, 200):
        if port in _picked:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _picked.add(port)
        return port
    raise RuntimeError(f"no free port in {TEST_PORTS} after 200 tries")


def rlo(home: Path, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_rlo(*args, home=home, timeout=timeout)


def spec_file(folder: Path, job: dict) -> Path:
    p = folder / f"{job['name']}.yaml"
    p.write_text(yaml.safe_dump({"cluster": {"head": {"instance_type": "local"}}, "job": job}))
    return p


def http(method: str, url: str, body: bytes | str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON answer). A body is sent as `Content-Type: application/json` unless `headers` say otherwise
    (urllib's own default, application/x-www-form-urlencoded, is refused by the endpoint)."""
    data = body.encode() if isinstance(body, str) else body
    headers = dict(headers or {})
    if data is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:  # Serve's proxy answers unknown routes in plain text
            return e.code, {"text": text.decode(errors="replace")}
