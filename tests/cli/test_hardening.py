"""Hostile and careless input to the real `rlo` command: the registry (ids, damaged or misplaced files), env
modules that fail on import, bad addresses, outputs that cannot be written, closed pipes, unbounded requests,
and runs left half-submitted. Each is one clear message, exit code 2 (or a clean 0 for a closed pipe), no
traceback, and nothing submitted or stuck. No Ray is started here (see test_submission_atomic.py for that)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import support
from support import RLO, ROOT, assert_user_error, run_rlo

from orchestrator.registry import Registry

CARTPOLE = ROOT / "cluster_configs" / "local-cartpole.yaml"


def rlo(*args, home: Path, env: dict | None = None, cwd=ROOT, **kw):
    return run_rlo(*args, home=home, env=env, cwd=cwd, drop_env=["RLO_REGISTRY"], timeout=120, **kw)


def assert_no_ray_started(home: Path):
    assert not (home / "local-ray" / "state.json").exists()


def add_run(home: Path, run_id: str, status: str = "SUCCEEDED", **fields) -> None:
    support.add_run(run_id, registry_path=home / "registry.db", status=status, **fields)


# --- run ids -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command,bad",
    [("status", b) for b in ("", " ", "%", "_", "%579b", "rlo-a%", "rlo_a")]
    + [("stop", ""), ("stop", "%"), ("logs", "_"), ("metrics", "%579b")],
)
def test_run_ids_are_never_patterns(home, bad, command):
    """`rlo stop ""` used to stop the only run, and `%`/`_` matched as SQL wildcards."""
    add_run(home, "rlo-abc-20261201-000000-579b", status="RUNNING", job_id="rlo-abc-20261201-000000-579b")
    res = rlo(command, bad, home=home)
    assert_user_error(res, "empty" if not bad.strip() else f"no run `{bad}`")
    assert Registry(home / "registry.db").get("rlo-abc-20261201-000000-579b").status == "RUNNING"


def test_a_literal_prefix_still_picks_a_run(home):
    add_run(home, "rlo-abc-1")
    add_run(home, "rlo-abd-2")
    res = rlo("status", "rlo-abc", home=home)
    assert res.returncode == 0 and res.stdout.startswith("rlo-abc-1: SUCCEEDED"), res.stderr
    assert_user_error(rlo("status", "rlo-ab", home=home), "matches 2 runs", "give more of the run id")


# --- the registry file -------------------------------------------------------------------------------------------


def test_garbage_registry_names_the_file_and_the_fix(home):
    home.mkdir(parents=True)
    (home / "registry.db").write_bytes(b"this is not a database\n" * 100)
    for args in (["list"], ["status", "x"], ["submit", CARTPOLE]):
        res = rlo(*args, home=home)
        assert_user_error(res, str(home / "registry.db"), "damaged or not a registry", "mv ")
    assert_no_ray_started(home)


def test_truncated_registry(home):
    for i in range(300):
        add_run(home, f"rlo-run-{i:04d}", message="x" * 500)
    db = home / "registry.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    res = rlo("list", "--limit", "1000", home=home)
    assert_user_error(res, str(db), "damaged")


def test_another_programs_sqlite_file_is_not_taken_over(home):
    home.mkdir(parents=True)
    with sqlite3.connect(home / "registry.db") as c:
        c.execute("CREATE TABLE photos (id INTEGER)")
    assert_user_error(rlo("list", home=home), "not a registry of rl-orchestrator")
    with sqlite3.connect(home / "registry.db") as c:  # untouched
        assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["photos"]


def test_one_bad_json_row_does_not_hide_the_others(home):
    add_run(home, "rlo-good-1", final_metrics={"training_iteration": 3})
    add_run(home, "rlo-bad-2")
    with sqlite3.connect(home / "registry.db") as c:
        c.execute("UPDATE runs SET spec_json='{not json', final_metrics_json='[1,' WHERE id='rlo-bad-2'")
    res = rlo("list", home=home)
    assert res.returncode == 0, res.stderr
    assert "rlo-good-1" in res.stdout and "rlo-bad-2" in res.stdout
    res = rlo("status", "rlo-bad-2", home=home)
    assert res.returncode == 0, res.stderr
    assert "registry row damaged: unreadable spec_json, final_metrics_json" in res.stdout


def test_rlo_home_that_is_a_file(tmp_path):
    f = tmp_path / "home"
    f.write_text("I am a file")
    res = rlo("list", home=f)
    assert_user_error(res, f"{f} is a file, not a folder", "RLO_HOME")
    res = rlo("submit", CARTPOLE, home=f)
    assert_user_error(res, f"{f} is a file, not a folder")


def test_registry_path_that_is_a_folder(tmp_path, home):
    folder = tmp_path / "regdir"
    folder.mkdir()
    res = rlo("list", home=home, env={"RLO_REGISTRY": str(folder)})
    assert_user_error(res, f"{folder} is a folder, not a database file", "RLO_REGISTRY")


@contextlib.contextmanager
def read_only_folder(base: Path):
    """A folder whose files cannot be written, even by root (a read-only tmpfs); for non-root, permissions."""
    folder = base / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        yield folder, lambda: (folder.chmod(0o555), [p.chmod(0o444) for p in folder.iterdir()])
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here to make a read-only registry for root")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_read_only_registry_reads_but_refuses_to_submit(tmp_path):
    with read_only_folder(tmp_path) as (home, make_read_only):
        add_run(home, "rlo-kept-1")
        make_read_only()
        res = rlo("list", home=home)
        assert res.returncode == 0 and "rlo-kept-1" in res.stdout, res.stderr
        res = rlo("submit", CARTPOLE, home=home)
        assert_user_error(res, "read-only", str(home / "registry.db"), "RLO_REGISTRY")
        assert_no_ray_started(home)


# --- user code, addresses -----------------------------------------------------------------------------------------


def _env_spec(tmp_path: Path, module: str, source: str) -> Path:
    (tmp_path / f"{module}.py").write_text(source)
    spec = tmp_path / f"{module}.yaml"
    spec.write_text(f"job:\n  algorithm: PPO\n  env: {module}:Env\n  source_dir: .\n")
    return spec


@pytest.mark.parametrize(
    "module,source,needles",
    [
        ("env_syntax", "import gymnasium\ndef broken(:\n    pass\n", ["has a syntax error", "env_syntax.py, line 2"]),
        (
            "env_raises",
            "import os\nraise RuntimeError('no license server')\n",
            ["raised RuntimeError: no license server", "env_raises.py, line 2"],
        ),
        ("env_missing_dep", "import not_a_package_xyz\n", ["cannot import the env module", "not_a_package_xyz"]),
    ],
)
@pytest.mark.parametrize("command", [["plan", "--check"], ["submit"]])
def test_env_module_that_fails_on_import(tmp_path, home, module, source, needles, command):
    spec = _env_spec(tmp_path, module, source)
    res = rlo(*command, spec, home=home)
    assert_user_error(res, f"`{module}`", *needles)
    assert "Plan for" not in res.stdout  # the error comes before any plan is printed
    assert_no_ray_started(home)
    assert not (home / "runs").exists()


def test_plain_plan_runs_no_user_code(tmp_path, home):
    marker = tmp_path / "imported"
    spec = _env_spec(tmp_path, "env_marks", f"open({str(marker)!r}, 'w').write('x')\nclass Env: pass\n")
    assert rlo("plan", spec, home=home).returncode == 0
    assert not marker.exists()
    rlo("plan", "--check", spec, home=home)
    assert marker.exists()  # --check imports it, as its --help says
    assert "import-time code runs" in rlo("plan", "--help", home=home).stdout


@pytest.mark.parametrize("address", ["not a url", "http://", "ftp://host:8265", "http://a b:8265", "host:99999"])
def test_bad_address_is_refused_before_anything(home, address):
    res = rlo("submit", CARTPOLE, "--address", address, home=home)
    assert_user_error(res, repr(address), "http://10.0.0.4:8265")
    assert_no_ray_started(home)
    assert not (home / "registry.db").exists() or not Registry(home / "registry.db").list()


# --- outputs -----------------------------------------------------------------------------------------------------


def test_render_into_a_file_or_an_unwritable_place(tmp_path, home):
    existing = tmp_path / "taken.yaml"
    existing.write_text("keep me")
    for target in ("kuberay",):
        assert_user_error(rlo("render", target, CARTPOLE, "-o", existing, home=home), "is a file; it takes a folder")
        assert existing.read_text() == "keep me"
        assert_user_error(rlo("render", target, CARTPOLE, "-o", "/proc/rlo-x", home=home), "cannot make the folder")
    sched = ROOT / "cluster_configs" / "local-autoscale-schedule.yaml"
    assert_user_error(rlo("render", "raycronjob", sched, "-o", existing, home=home), "is a file")
    assert_user_error(rlo("render", "raycronjob", sched, "-o", "/proc/rlo-x", home=home), "/proc/rlo-x")


def test_plot_and_reports_into_bad_places_fail_before_the_work(tmp_path, home):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"training_iteration": 1, "time_total_s": 1.0}) + "\n")
    add_run(home, "rlo-plotme-1", run_dir=str(run_dir))
    assert_user_error(rlo("plot", "rlo-plotme-1", "-o", "/proc/curves.png", home=home), "`-o /proc/curves.png`")
    assert_user_error(rlo("plot", "rlo-plotme-1", "-o", tmp_path, home=home), "is a folder; it takes a file")
    res = rlo("plot", "rlo-plotme-1", "-o", tmp_path / "ok.png", home=home)
    assert res.returncode == 0 and (tmp_path / "ok.png").stat().st_size > 1000, res.stderr
    assert_user_error(rlo("load-profile", "--out", tmp_path, home=home), "is a folder")
    t0 = time.monotonic()
    res = rlo("evaluate", "--baselines-only", "--episodes", "200", "--json", "/proc/eval.json", home=home)
    assert_user_error(res, "`--json /proc/eval.json`")
    assert time.monotonic() - t0 < 30  # refused up front, not after evaluating 200 episodes


def test_load_profile_days_are_bounded(tmp_path, home):
    t0 = time.monotonic()
    assert_user_error(rlo("load-profile", "--days", "100000", "--out", tmp_path / "x.png", home=home), "1 to 366")
    assert time.monotonic() - t0 < 30
    assert_user_error(rlo("load-profile", "--days", "0", home=home), "--days 0")


# --- closed pipes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["plan", CARTPOLE], ["list", "--limit", "5000"], ["--help"]])
def test_a_closed_pipe_is_a_normal_end(home, args):
    for i in range(400):
        add_run(home, f"rlo-pipe-{i:04d}", message="m" * 100)  # `rlo list` prints well past a pipe's buffer
    proc = subprocess.Popen(
        [*RLO, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=dict(os.environ, RLO_HOME=str(home)),
    )
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


# --- runs left SUBMITTING ---------------------------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_row_left_submitting_is_reconciled_by_every_command(home):
    """SIGINT between the registry row and the Job API call used to leave SUBMITTING forever: stop, logs and
    metrics failed with "Job None does not exist", resume said "stop it first", which failed."""
    rid = "rlo-stuck-20261201-000000-0001"
    add_run(home, rid, status="SUBMITTING", extra={"submitter": {"pid": _dead_pid(), "host": os.uname().nodename}})
    res = rlo("status", rid, home=home)
    assert res.returncode == 0, res.stderr
    assert f"{rid}: SUBMIT_FAILED" in res.stdout and "ended before the engine had the job" in res.stdout
    assert_user_error(rlo("logs", rid, home=home), "never reached the engine", "rlo submit")
    res = rlo("stop", rid, home=home)
    assert res.returncode == 0 and "had already ended: SUBMIT_FAILED" in res.stdout, res.stderr
    res = rlo("metrics", rid, "--json", home=home)
    assert res.returncode == 0 and json.loads(res.stdout) == [], res.stderr
    res = rlo("attach", rid, home=home)
    assert res.returncode == 1 and f"run {rid} SUBMIT_FAILED" in res.stdout, res.stderr
    assert_user_error(rlo("resume", rid, home=home), "never started", "submit its spec again")
    assert_no_ray_started(home)


@pytest.mark.parametrize("command", ["list", "attach", "logs", "resume"])
def test_any_command_reconciles_first(home, command):
    rid = "rlo-stuck-20261201-000000-0002"
    add_run(home, rid, status="SUBMITTING", extra={"submitter": {"pid": _dead_pid(), "host": os.uname().nodename}})
    res = rlo(command, *([] if command == "list" else [rid]), home=home)
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert "Job None" not in res.stderr + res.stdout
    assert Registry(home / "registry.db").get(rid).status == "SUBMIT_FAILED"


def test_a_submission_in_progress_is_left_alone(home):
    rid = "rlo-busy-20261201-000000-0003"
    add_run(home, rid, status="SUBMITTING", extra={"submitter": {"pid": os.getpid(), "host": os.uname().nodename}})
    res = rlo("status", rid, home=home)
    assert res.returncode == 0 and f"{rid}: SUBMITTING" in res.stdout, res.stderr


def test_submit_name_that_is_a_path_is_refused(home):
    res = rlo("submit", CARTPOLE, "--name", "../../x", home=home)
    assert_user_error(res, "`--name`", "../../x", "letters, digits")
    assert_no_ray_started(home)
    assert not (home / "runs").exists()


def test_every_swept_value_is_type_checked(tmp_path, home):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        "job:\n  algorithm: PPO\n  env: CartPole-v1\nsweep:\n  parameters:\n"
        "    hyperparameters.lr: {choice: [0.001, fast]}\n"
    )
    for command in (["plan", "--check"], ["submit"]):
        res = rlo(*command, spec, home=home)
        assert_user_error(res, "sweep.parameters.hyperparameters.lr", '`"fast"`')
    assert_no_ray_started(home)
