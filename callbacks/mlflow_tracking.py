"""MLflow tracking inside the job (a spec's `tracking: {mlflow: ...}`; the submitting side is orchestrator.tracking).

- `JobTracking` (the driver): the job's MLflow run, made before Tune starts (found again on `rlo resume`), with
  the resolved spec and the plan as params; at the end the checkpoint, the learning-curve plot, the summary (final
  and evaluation metrics) and metrics.jsonl as artifacts, and the run's status.
- `MLflowCallback`: Ray Tune's own `MLflowLoggerCallback` (the experiment, one MLflow run per trial, their end
  status), logging what this project logs: each iteration's metrics under metrics.jsonl's names, in one batch;
  a sweep's trials as nested runs (MLflow's `mlflow.parentRunId` tag) under the job's run, each with the spec as
  that trial ran it. A single job's one trial logs into the job's run.

Tracking never stops training: the first call that fails (the server went away) prints one notice and turns
tracking off for the rest of the job; the run folder has everything.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from ray.air.integrations.mlflow import MLflowLoggerCallback

from callbacks.metrics import compact_result
from orchestrator import events, tracking
from orchestrator.errors import shorten
from orchestrator.metrics import read_records
from orchestrator.plots import Series, render
from orchestrator.sweep import trial_values

STATE_FILE = "mlflow.json"  # in the run's folder: the job's MLflow run and each trial's (for `rlo resume`)
PARENT_TAG = "mlflow.parentRunId"  # what makes a run nested in MLflow's UI and API


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def _params(values: dict[str, str]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in values.items()]


def _tags(values: dict[str, str]):
    from mlflow.entities import RunTag

    return [RunTag(k, str(v)) for k, v in values.items()]


def _notice_off(what: str, e: Exception) -> None:
    events.emit(
        "notice",
        {
            "message": f"MLflow tracking stopped ({what}: {tracking._reason(e)}); training goes on, the run's "
            "folder has its metrics and checkpoints"
        },
    )


class MLflowCallback(MLflowLoggerCallback):
    """Ray Tune's MLflow logger with this project's names: see the module's docstring."""

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment: str,
        job_run_id: str,
        state_path: str | Path,
        params: dict[str, str],
        swept: dict[str, tuple[str, ...]] | None = None,
        reward_scale: float = 1.0,
        tags: dict[str, str] | None = None,
    ) -> None:
        super().__init__(tracking_uri=tracking_uri, experiment_name=experiment, tags=dict(tags or {}))
        self.job_run_id = job_run_id
        self.state_path = Path(state_path)
        self.params = params
        self.swept = swept  # a sweep: its parameters (`hyperparameters.lr`) -> where each lives in a trial's config
        self.reward_scale = reward_scale
        self.off = False

    def _guard(self, what: str, fn, *args, **kwargs):
        if self.off:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MlflowException, a connection error: tracking is not worth the training
            self.off = True
            _notice_off(what, e)
            return None

    def setup(self, *args, **kwargs):
        self._trial_runs = {}
        self._guard("setting up", super().setup, *args, **kwargs)

    def log_trial_start(self, trial):
        if trial not in self._trial_runs:  # PBT restarts trials: each keeps its run
            self._guard("starting the trial's run", self._start_trial, trial)

    def _start_trial(self, trial) -> None:
        state = _read_state(self.state_path)
        trials = state.setdefault("trials", {})
        run_id = trials.get(trial.trial_id)
        if run_id is None and self.swept is None:
            run_id = self.job_run_id
        elif run_id is None:
            assert self.swept is not None  # the branch above takes the runs of a job that is not a sweep
            assert self.tags is not None, "__init__ gives Ray's callback a dict of tags"
            tags = {**self.tags, PARENT_TAG: self.job_run_id, "rlo.trial_id": trial.trial_id}
            run = self.mlflow_util.start_run(run_name=str(trial), tags=tags)
            run_id = run.info.run_id
            values = trial_values(trial.config, self.swept)
            params = {**self.params, **tracking.flatten_params(values, "job."), "rlo.trial_id": trial.trial_id}
            self.mlflow_util._get_client().log_batch(run_id, params=_params(params))
        trials[trial.trial_id] = run_id
        _write_state(self.state_path, state)
        self._trial_runs[trial] = run_id

    def log_trial_result(self, iteration, trial, result):
        run_id = self._trial_runs.get(trial)
        if run_id is None:
            return
        self._guard("logging metrics", self._log_metrics, run_id, result)

    def _log_metrics(self, run_id: str, result: dict) -> None:
        from mlflow.entities import Metric

        record = compact_result(result, self.reward_scale)
        step = int(record.get("training_iteration") or 0)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in tracking.metric_values(record).items()]
        self.mlflow_util._get_client().log_batch(run_id, metrics=metrics)

    def log_trial_end(self, trial, failed: bool = False):
        run_id = self._trial_runs.get(trial)
        if run_id is not None and run_id != self.job_run_id:  # the job's own run ends with the job
            status = "FAILED" if failed else "FINISHED"
            self._guard("ending the trial's run", self.mlflow_util.end_run, status=status, run_id=run_id)


class JobTracking:
    """The job's MLflow run (the driver's side): see the module's docstring."""

    def __init__(self, cfg: dict, ctx, experiment_id: str, run_id: str, params: dict[str, str]) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.params = params
        self.off = False
        self.ended = False

    @classmethod
    def start(cls, spec: dict, ctx, numbers) -> JobTracking | None:
        """Make (or find again, on `rlo resume`) the job's run; None when the spec does not track or the server
        cannot be used now (one notice: the job trains untracked)."""
        cfg = tracking.settings_of(spec)
        if cfg is None:
            return None
        for k, v in tracking.JOB_CLIENT_ENV.items():
            os.environ.setdefault(k, v)
        plan = {
            k: getattr(numbers, k)
            for k in ("num_env_runners", "num_envs_per_env_runner", "num_learners", "num_gpus_per_learner")
            if getattr(numbers, k, None) is not None
        }
        params = {**tracking.flatten_params(spec), **tracking.flatten_params(plan, "plan."), "rlo.run_id": ctx.run_id}
        try:
            return cls._start(cfg, ctx, params)
        except Exception as e:
            _notice_off(f"the server {cfg['tracking_uri']}", e)
            return None

    @classmethod
    def _start(cls, cfg: dict, ctx, params: dict[str, str]) -> JobTracking:
        from ray.air._internal.mlflow import _MLflowLoggerUtil

        state_path = Path(ctx.run_dir) / STATE_FILE
        state = _read_state(state_path)
        util = _MLflowLoggerUtil()
        try:
            util.setup_mlflow(tracking_uri=cfg["tracking_uri"], experiment_name=cfg["experiment"])
        except Exception:  # another job made the same experiment between its lookup and its creation
            util.setup_mlflow(tracking_uri=cfg["tracking_uri"], experiment_name=cfg["experiment"])
        client = util._get_client()
        run_id = state.get("run_id")
        if run_id:  # `rlo resume`: the same run goes on
            client.update_run(run_id, status="RUNNING")
        else:
            job = ctx.spec.get("job") or {}
            tags = {"rlo.run_id": ctx.run_id, "rlo.algorithm": job.get("algorithm"), "rlo.env": job.get("env")}
            run = client.create_run(util.experiment_id, run_name=ctx.run_id, tags={k: str(v) for k, v in tags.items()})
            run_id = run.info.run_id
            client.log_batch(run_id, params=_params(params))
            state = {"experiment_id": util.experiment_id, "run_id": run_id, "trials": {}}
            _write_state(state_path, state)
        tracker = cls(cfg, ctx, state.get("experiment_id") or util.experiment_id, run_id, params)
        where = tracker.info["mlflow"]["url"] or cfg["tracking_uri"]
        events.emit("notice", {"message": f"MLflow run {run_id} in experiment `{cfg['experiment']}`: {where}"})
        return tracker

    @property
    def info(self) -> dict:
        """What the run's record keeps (`rlo status RUN`)."""
        uri = self.cfg["tracking_uri"]
        return {
            "mlflow": {
                "tracking_uri": uri,
                "experiment": self.cfg["experiment"],
                "experiment_id": self.experiment_id,
                "run_id": self.run_id,
                "url": tracking.run_url(uri, self.experiment_id, self.run_id),
            }
        }

    def callback(self, *, swept: dict[str, tuple[str, ...]] | None, reward_scale: float) -> MLflowCallback:
        return MLflowCallback(
            tracking_uri=self.cfg["tracking_uri"],
            experiment=self.cfg["experiment"],
            job_run_id=self.run_id,
            state_path=Path(self.ctx.run_dir) / STATE_FILE,
            params=self.params,
            swept=swept,
            reward_scale=reward_scale,
            tags={"rlo.run_id": self.ctx.run_id},
        )

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.cfg["tracking_uri"])

    def finish(self, summary: dict, stop: dict[str, float]) -> None:
        """At the end: checkpoint(s), plot, summary and metrics as artifacts; the run's status and outcome."""
        if self.off or self.ended:
            return
        self.ended = True
        try:
            self._finish(summary, stop)
        except Exception as e:
            _notice_off("logging the artifacts", e)

    def _finish(self, summary: dict, stop: dict[str, float]) -> None:
        client = self._client()
        run_dir = Path(self.ctx.run_dir)
        sw = summary.get("sweep")
        if sw is None:
            if summary.get("final_checkpoint") and Path(summary["final_checkpoint"]).is_dir():
                client.log_artifacts(self.run_id, summary["final_checkpoint"], artifact_path="checkpoint")
        else:  # each trial's checkpoint in the trial's run; the job's run names the best one
            trial_runs = _read_state(run_dir / STATE_FILE).get("trials") or {}
            for t in sw["trials"]:
                run_id = trial_runs.get(t["trial_id"])
                if run_id and t.get("checkpoint") and Path(t["checkpoint"]).is_dir():
                    client.log_artifacts(run_id, t["checkpoint"], artifact_path="checkpoint")
            if sw.get("best_trial") in trial_runs:
                client.set_tag(self.run_id, "rlo.best_trial_run_id", trial_runs[sw["best_trial"]])
        for name in ("summary.json", "metrics.jsonl", "spec.yaml", "plan.json"):
            if (run_dir / name).is_file():
                client.log_artifact(self.run_id, str(run_dir / name))
        for p in sorted(run_dir.glob("evaluation*.json")):
            client.log_artifact(self.run_id, str(p), artifact_path="evaluation")
        with tempfile.TemporaryDirectory(prefix="rlo-mlflow-") as tmp:
            plot = _plot(run_dir / "metrics.jsonl", Path(tmp) / "returns.png", stop, sw, self.ctx.run_id)
            if plot is not None:
                client.log_artifact(self.run_id, str(plot), artifact_path="plots")
        outcome = {"rlo.status": summary.get("status"), "rlo.stop_reason": summary.get("stop_reason")}
        client.log_batch(self.run_id, tags=_tags({k: v for k, v in outcome.items() if v}))
        client.set_terminated(self.run_id, status="FINISHED" if summary.get("status") == "succeeded" else "FAILED")

    def fail(self, error: BaseException) -> None:
        """The job ended with an error before its summary: the run says FAILED (and why)."""
        if self.off or self.ended:
            return
        self.ended = True
        try:
            client = self._client()
            why = (str(error).splitlines() or [type(error).__name__])[0]
            client.set_tag(self.run_id, "rlo.error", shorten(why, 4000))
            client.set_terminated(self.run_id, status="FAILED")
        except Exception as e:
            _notice_off("ending the run", e)


def _plot(metrics_path: Path, out: Path, stop: dict[str, float], sw: dict | None, run_id: str) -> Path | None:
    """The learning curves (one per trial of a sweep), as `rlo plot` draws them."""

    if not metrics_path.is_file():
        return None
    records = read_records(metrics_path)
    if not records:
        return None
    if sw is None:
        return render([Series(label=run_id, records=records, stop=stop)], out, title=run_id)
    by_trial: dict[str, list[dict]] = {}
    for rec in records:
        by_trial.setdefault(rec.get("trial_id", "?"), []).append(rec)
    series = [Series(label=t, records=recs, stop=stop) for t, recs in by_trial.items()]
    return render(series, out, title=f"sweep {run_id}: {len(series)} trials")
