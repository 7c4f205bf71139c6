"""The run registry: schema version, records, prefixes, checkpoints, concurrency."""

import sqlite3
import threading
import time

import pytest

from orchestrator.errors import RunNotFound
from orchestrator.records import RunRecord
from orchestrator.registry import Registry
from orchestrator.registry_schema import SCHEMA_VERSION


def rec(run_id, created=None, **kw):
    now = created or time.time()
    return RunRecord(
        id=run_id,
        name=run_id,
        created_at=now,
        updated_at=now,
        backend="ray-local",
        status="PENDING",
        spec={"job": {"algorithm": "PPO"}},
        **kw,
    )


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "sub" / "registry.db")


def test_schema_is_versioned(reg):
    assert reg.schema_version == SCHEMA_VERSION
    Registry(reg.path)  # reopening migrates nothing and loses nothing
    assert reg.schema_version == SCHEMA_VERSION


def test_create_get_update(reg):
    reg.create(rec("rlo-a-1", plan={"num_env_runners": 13}))
    reg.update("rlo-a-1", status="SUCCEEDED", final_metrics={"training_iteration": 7}, stop_reason="met")
    r = reg.get("rlo-a-1")
    assert (r.status, r.final_metrics, r.plan, r.stop_reason) == (
        "SUCCEEDED",
        {"training_iteration": 7},
        {"num_env_runners": 13},
        "met",
    )
    assert r.terminal and r.updated_at >= r.created_at


def test_list_newest_first(reg):
    for i in range(3):
        reg.create(rec(f"rlo-x-{i}", created=1000 + i))
    assert [r.id for r in reg.list()] == ["rlo-x-2", "rlo-x-1", "rlo-x-0"]
    assert [r.id for r in reg.list(limit=1)] == ["rlo-x-2"]


def test_unique_prefix_and_ambiguous_prefix(reg):
    reg.create(rec("rlo-cart-1"))
    reg.create(rec("rlo-cart-2"))
    reg.create(rec("rlo-pong-1"))
    assert reg.get("rlo-pong").id == "rlo-pong-1"
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        reg.get("rlo-cart")


def test_unknown_run_suggests(reg):
    reg.create(rec("rlo-cartpole-ppo-1"))
    with pytest.raises(RunNotFound) as e:
        reg.get("rlo-cartpole-ppo-2")
    assert e.value.fix == "did you mean `rlo-cartpole-ppo-1`?"


def test_update_unknown_field_or_run(reg):
    reg.create(rec("r1"))
    with pytest.raises(TypeError):
        reg.update("r1", nonsense=1)
    with pytest.raises(RunNotFound):
        reg.update("r2", status="FAILED")


def test_checkpoints_recorded_once_in_order(reg):
    reg.create(rec("r1"))
    assert reg.add_checkpoint("r1", "/c/2", 10)
    assert reg.add_checkpoint("r1", "/c/1", 5, {"m": 1})
    assert not reg.add_checkpoint("r1", "/c/1", 5)
    assert [(c.path, c.iteration) for c in reg.checkpoints("r1")] == [("/c/1", 5), ("/c/2", 10)]


def test_concurrent_writers(reg):
    reg.create(rec("r1"))
    errors = []

    def writer(k):
        try:
            for i in range(20):
                reg.add_checkpoint("r1", f"/c/{k}/{i}", i)
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(reg.checkpoints("r1")) == 80


def test_reads_rows_with_columns_it_does_not_know(reg):
    reg.create(rec("r1"))
    with sqlite3.connect(reg.path) as c:  # a newer version added a column
        c.execute("ALTER TABLE runs ADD COLUMN future TEXT")
    assert reg.get("r1").id == "r1"
