"""MLflow tracking (`tracking: {mlflow: ...}`) against a real MLflow tracking server started here on 127.0.0.1
(SQLite backend, artifacts in a temporary folder): a tiny real training run and a tiny sweep through
`rlo submit --wait`, read back with MlflowClient; an unreachable server refused before anything is submitted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from support import assert_nothing_submitted, assert_user_error

from orchestrator import tracking
from orchestrator.errors import SpecError
from orchestrator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120  # the server's first start migrates its SQLite database (tens of seconds on 2 cores)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free port of 127.0.0.1; its URL. Stopped (its whole process group) at the end."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = (folder / "server.log").open("w")
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
        *("--artifacts-destination", str(folder / "artifacts")),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow server exited with {proc.returncode}:\n{(folder / 'server.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not ready in {READY_TIMEOUT_S} s:\n{(folder / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)  # polling interval of the readiness check
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker: the group this fixture started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _client(url):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url)


JOB = {
    "algorithm": "PPO",
    "env": "CartPole-v1",
    "hyperparameters": {"train_batch_size_per_learner": 500, "minibatch_size": 250, "num_epochs": 1},
    "checkpoint": {"frequency": 0, "at_end": True},
    "max_run_duration_seconds": 600,
}


def _write_spec(tmp_path: Path, name: str, tracking_uri: str, experiment: str, **extra) -> Path:
    job = {**JOB, "name": name, **extra.pop("job", {})}
    data = {
        "cluster": {"head": {"instance_type": "local"}},
        "job": job,
        "tracking": {"mlflow": {"tracking_uri": tracking_uri, "experiment": experiment}},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run, by its path."""
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, f.path) if f.is_dir else {f.path}
    return out


@pytest.mark.ray
def test_a_run_logs_its_spec_metrics_and_checkpoint(mlflow_server, rlo, tmp_path):
    spec = _write_spec(
        tmp_path,
        "tracked",
        mlflow_server,
        "rlo-test-single",
        job={"stop": {"training_iteration": 2}, "env_vars": {"MY_SECRET": "s3cr3t-value"}},
    )
    res = rlo("submit", spec, "--wait", check_exit=0)
    run_id = res.stdout.splitlines()[0].strip()

    status = json.loads(rlo("status", run_id, "--json", check_exit=0).stdout)
    ml = status["tracking"]["mlflow"]
    assert ml["url"] == f"{mlflow_server}/#/experiments/{ml['experiment_id']}/runs/{ml['run_id']}"
    assert f"mlflow    run {ml['run_id']}: {ml['url']}" in rlo("status", run_id, check_exit=0).stdout

    client = _client(mlflow_server)
    run = client.get_run(ml["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == run_id
    assert client.get_experiment(run.info.experiment_id).name == "rlo-test-single"
    # The resolved spec (defaults included) and the plan, flattened.
    params = run.data.params
    assert params["job.env"] == "CartPole-v1" and params["job.algorithm"] == "PPO"
    assert params["job.hyperparameters.train_batch_size_per_learner"] == "500"
    assert params["job.stop.training_iteration"] == "2.0"
    assert params["job.checkpoint.keep"] == "3"  # a default the spec did not write
    assert params["tracking.mlflow.tracking_uri"] == mlflow_server
    assert params["plan.num_env_runners"].isdigit() and params["rlo.run_id"] == run_id
    assert not any("s3cr3t" in v or "MY_SECRET" in k for k, v in params.items())  # env vars may hold credentials
    # Every iteration's metrics, under metrics.jsonl's names.
    records = [json.loads(line) for line in (Path(status["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["training_iteration"] for r in records] == [1, 2]
    history = client.get_metric_history(ml["run_id"], "training_iteration")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 2.0)]
    steps = client.get_metric_history(ml["run_id"], "num_env_steps_sampled_lifetime")
    assert [m.value for m in sorted(steps, key=lambda m: m.step)] == [
        r["num_env_steps_sampled_lifetime"] for r in records
    ]
    names = set(run.data.metrics)
    assert {"env_runners/episode_return_mean", "learners/default_policy/total_loss"} <= names
    # The checkpoint, the plot and the summary as artifacts.
    files = _artifacts(client, ml["run_id"])
    assert {"summary.json", "metrics.jsonl", "spec.yaml", "plots/returns.png"} <= files
    assert any(f.startswith("checkpoint/") and f.endswith("rllib_checkpoint.json") for f in files), files
    summary = json.loads(Path(client.download_artifacts(ml["run_id"], "summary.json", str(tmp_path))).read_text())
    assert summary["status"] == "succeeded" and summary["tracking"]["mlflow"]["run_id"] == ml["run_id"]
    assert run.data.tags["rlo.status"] == "succeeded"


@pytest.mark.ray
def test_a_sweep_logs_each_trial_as_a_nested_run(mlflow_server, rlo, tmp_path):
    sweep = {"parameters": {"hyperparameters.lr": {"grid": [1.0e-4, 1.0e-3]}}, "max_concurrent_trials": 1}
    spec = _write_spec(
        tmp_path, "tracked-sweep", mlflow_server, "rlo-test-sweep", job={"stop": {"training_iteration": 1}}, sweep=sweep
    )
    run_id = rlo("submit", spec, "--wait", check_exit=0).stdout.splitlines()[0].strip()
    ml = json.loads(rlo("status", run_id, "--json", check_exit=0).stdout)["tracking"]["mlflow"]

    client = _client(mlflow_server)
    parent = client.get_run(ml["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["sweep.parameters.hyperparameters.lr.grid"]
    children = client.search_runs([ml["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{ml['run_id']}'")
    assert len(children) == 2  # one nested run per trial
    assert sorted(float(c.data.params["job.hyperparameters.lr"]) for c in children) == [1e-4, 1e-3]
    trial_ids = {c.data.tags["rlo.trial_id"] for c in children}
    sw = json.loads(Path(client.download_artifacts(ml["run_id"], "summary.json", str(tmp_path))).read_text())["sweep"]
    assert trial_ids == {t["trial_id"] for t in sw["trials"]}
    for c in children:
        assert c.info.status == "FINISHED" and c.data.params["job.env"] == "CartPole-v1"
        assert [m.step for m in client.get_metric_history(c.info.run_id, "training_iteration")] == [1]
        assert any(f.startswith("checkpoint/") for f in _artifacts(client, c.info.run_id))
    best = next(c.info.run_id for c in children if c.data.tags["rlo.trial_id"] == sw["best_trial"])
    assert parent.data.tags["rlo.best_trial_run_id"] == best
    assert "plots/returns.png" in _artifacts(client, ml["run_id"])


def _cli(home: Path, *args):
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=dict(os.environ, RLO_HOME=str(home)),
    )


def test_an_unreachable_tracking_server_is_refused_before_submission(tmp_path):
    home = tmp_path / "home"
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    spec = _write_spec(tmp_path, "untracked", uri, "nowhere", job={"stop": {"training_iteration": 1}})
    for argv in (("submit", spec, "--wait"), ("plan", spec, "--check")):
        res = _cli(home, *argv)
        assert_user_error(
            res,
            f"the MLflow tracking server {uri}",
            "`tracking.mlflow.tracking_uri`",
            "cannot be reached",
            "Connection refused",
            "fix: start it (e.g. `mlflow server",
        )
    assert_nothing_submitted(home)


def test_a_deleted_experiment_is_refused_before_submission(mlflow_server, tmp_path):
    client = _client(mlflow_server)
    client.delete_experiment(client.create_experiment("rlo-test-deleted"))
    spec = _write_spec(tmp_path, "deleted", mlflow_server, "rlo-test-deleted")
    assert_user_error(_cli(tmp_path / "home", "plan", spec, "--check"), "was deleted", "mlflow experiments restore")


@pytest.mark.parametrize(
    "uri,words",
    [
        ("mlruns", ["relative path", "absolute path"]),
        ("htp://127.0.0.1:5000", ["unknown scheme `htp:`", "did you mean `http`?"]),
    ],
)
def test_tracking_uris_the_job_cannot_use_are_spec_errors(uri, words):
    with pytest.raises(SpecError) as e:
        parse_spec({"job": JOB, "tracking": {"mlflow": {"tracking_uri": uri}}})
    assert "tracking.mlflow.tracking_uri" in str(e.value) and all(w in str(e.value) for w in words)
    with pytest.raises(SpecError, match="unknown key `experimnt`"):
        parse_spec({"job": JOB, "tracking": {"mlflow": {"tracking_uri": "http://h:5000", "experimnt": "x"}}})


def test_params_and_metric_names_within_mlflow_limits_are_accepted_by_the_server(mlflow_server):
    from mlflow.entities import Metric, Param

    params = tracking.flatten_params({"job": {"a:b@c": "x" * 10_000, "list": [1, 2], "none": None, "env_vars": {}}})
    assert len(params["job.a_b_c"]) <= tracking.MAX_PARAM_VALUE and params["job.list"] == "[1, 2]"
    assert "job.none" not in params
    metrics = tracking.metric_values({"timestamp": 1.0, "a//b/": 2, "ok": True, "x#y": float("nan"), "z(1)": 3.5})
    assert metrics == {"a/b": 2.0, "z_1_": 3.5}
    client = _client(mlflow_server)
    exp = client.create_experiment("rlo-test-limits")
    run_id = client.create_run(exp).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    assert client.get_run(run_id).data.params == params


def test_a_tracking_failure_mid_job_turns_tracking_off_with_one_notice(mlflow_server, tmp_path, capsys):
    from callbacks.mlflow_tracking import MLflowCallback

    cb = MLflowCallback(
        tracking_uri=mlflow_server,
        experiment="rlo-test-failure",
        job_run_id="no-such-run",
        state_path=tmp_path / "mlflow.json",
        params={},
    )
    cb.setup()
    assert not cb.off
    trial = "trial-1"  # Tune's Trial is only a key here
    cb._trial_runs[trial] = "0123456789abcdef0123456789abcdef"  # the server does not know this run
    for it in (1, 2):
        cb.log_trial_result(it, trial, {"training_iteration": it, "time_total_s": 1.0})  # never raises
    notices = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[rlo:notice]")]
    assert cb.off and len(notices) == 1 and "MLflow tracking stopped (logging metrics" in notices[0]
    assert "training goes on" in notices[0]
