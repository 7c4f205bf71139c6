"""What many tests share: the project's folders, the real `rlo` command in a subprocess, the checks on its
result, waiting for a state (not a fixed sleep), and a run row made without a job (for commands that read
the registry and a run folder only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CONFIGS = ROOT / "cluster_configs"
RLO = [sys.executable, "-m", "orchestrator.cli"]

T = TypeVar("T")


def run_rlo(
    *args: Any,
    home: Path | str | None = None,
    cwd: Path | str = ROOT,
    env: Mapping[str, str] | None = None,
    drop_env: Iterable[str] = (),
    timeout: float = 600,
    **run_kwargs: Any,
) -> subprocess.CompletedProcess:
    """`rlo ARGS...` as a user runs it: this environment, with RLO_HOME=`home` when given, `env` on top and the
    variables named in `drop_env` removed (e.g. a Ray token the test must not inherit). `run_kwargs` go to
    subprocess.run (e.g. `input=`)."""
    e = dict(os.environ)
    for name in drop_env:
        e.pop(name, None)
    if home is not None:
        e["RLO_HOME"] = str(home)
    e.update(env or {})
    return subprocess.run(
        [*RLO, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=e, **run_kwargs
    )


def ok(res: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    """`res` exited with `code`; else the assertion shows the ends of its output."""
    assert res.returncode == code, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def assert_user_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    """A user error as the tool promises it: exit 2, one message on stderr naming each of `needles`, no
    traceback and no internal error."""
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr + res.stdout and "internal error" not in res.stderr, res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def assert_nothing_submitted(home: Path) -> None:
    """No run row was recorded and no embedded Ray was started in `home`."""
    assert not (home / "registry.db").exists() or "rlo-" not in (home / "registry.db").read_bytes().decode("latin1")
    assert not (home / "local-ray" / "state.json").exists()


def wait_for(cond: Callable[[], T], timeout: float = 240.0, what: str = "condition", every: float = 0.5) -> T:
    """Poll `cond` until it returns something true, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def add_run(
    run_id: str,
    *,
    registry_path: Path | None = None,
    status: str = "SUCCEEDED",
    spec: dict | None = None,
    records: list[dict] | None = None,
    partial_line: str = "",
    **fields: Any,
) -> Path | None:
    """A run row in the registry (default: the one RLO_HOME points at) as a job would leave it, without a job.
    With `records`, its run folder holds them as metrics.jsonl (plus `partial_line`, a line still being written);
    returns that folder."""
    from orchestrator.records import RunRecord
    from orchestrator.registry import Registry
    from orchestrator.settings import settings

    run_dir = None
    if records is not None:
        run_dir = settings().runs_dir / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + partial_line)
        fields.setdefault("run_dir", str(run_dir))
    now = time.time()
    Registry(registry_path or settings().registry_path).create(
        RunRecord(
            id=run_id,
            name=run_id,
            created_at=now,
            updated_at=now,
            backend="ray-local",
            status=status,
            spec=spec if spec is not None else {"job": {"algorithm": "PPO", "env": "CartPole-v1"}},
            **fields,
        )
    )
    return run_dir
