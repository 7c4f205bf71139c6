"""A handle on a submitted run: status, logs, attach, stop, metrics, checkpoints.

run = attach("rlo-cartpole-20261122-101500-ab12")   # like SageMaker's RLEstimator.attach
run.attach()          # stream the log and a progress line until the job ends
run.metrics()         # the per-iteration series
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

import psutil

from . import events
from .backends import EMBEDDED, RayJobsBackend
from .errors import EngineError, UserError
from .export import export_run
from .logview import LogView
from .metrics import RETURN_MEAN, read_records
from .package import job_env_vars
from .policy import CheckpointPolicy
from .polling import poll
from .progress import LiveLine, progress_line
from .records import TERMINAL, CheckpointRecord, RunRecord
from .registry import Registry
from .serving import deploy
from .settings import settings
from .spec import JobSpec, Spec
from .submission import prepare


class Run:
    def __init__(
        self, record: RunRecord, registry: Registry, backend: RayJobsBackend | None = None, token: str | None = None
    ) -> None:
        self._record = record
        self.registry = registry
        self._backend = backend
        self._token = token

    # --- identity -----------------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def record(self) -> RunRecord:
        return self._record

    @property
    def run_dir(self) -> Path | None:
        return Path(self._record.run_dir) if self._record.run_dir else None

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self._record.status!r})"

    @property
    def backend(self) -> RayJobsBackend:
        if self._backend is None:
            self._backend = RayJobsBackend.for_record(self._record.backend, self._record.address, self._token)
        return self._backend

    def _stop_criteria(self) -> dict[str, float]:
        try:
            return JobSpec.model_validate(self._record.spec.get("job", {})).normalized_stop()[0]
        except Exception:  # a record written by another version: progress without distances
            return {}

    # --- state ---------------------------------------------------------------------------------------------------

    def refresh(self) -> RunRecord:
        """Bring the registry up to date with the engine (and finalize a run that has ended)."""
        rec = self.registry.get(self.id)
        if rec.status == "SUBMITTING" and not rec.job_id:
            rec = self._reconcile_submitting(rec)
        if rec.status not in TERMINAL and rec.job_id:
            status, message = self.backend.status(rec.job_id)
            if status != rec.status:
                fields: dict[str, Any] = {"status": status}
                if status == "RUNNING" and not rec.started_at:
                    fields["started_at"] = time.time()
                if status not in TERMINAL:
                    self.registry.update(self.id, **fields)
                else:
                    self._finalize(status, message)
            rec = self.registry.get(self.id)
        self._record = rec
        return rec

    def _reconcile_submitting(self, rec: RunRecord) -> RunRecord:
        """A row left SUBMITTING: while its submitting process lives, it is a submission in progress; once that
        process is gone, the row takes what the engine says (the job id is the run id): the job if the engine
        has it, else SUBMIT_FAILED with the reason, so that nothing stays stuck."""
        if _submitter_alive(rec):
            return rec
        pid = (rec.extra.get("submitter") or {}).get("pid")
        who = f"the submitting process (pid {pid})" if pid else "the submitting process"
        why = f"interrupted: {who} ended before the engine had the job; nothing ran"
        try:
            known = self.backend.job_exists(rec.id)
        except EngineError:
            if rec.backend != "ray-local":
                raise  # a remote cluster that cannot be asked now: the row is reconciled once it answers
            known = False  # the embedded Ray is not running, so it has no job: a definite answer
            why = f"interrupted: {who} ended before the engine had the job (the embedded Ray is not running)"
        if known:  # it reached the engine: adopt it
            self.registry.update(self.id, status="PENDING", job_id=rec.id)
            if not self.registry.attempts(self.id):
                self.registry.add_attempt(self.id, 1, rec.id, when=rec.created_at)
        else:
            self.registry.update(self.id, status="SUBMIT_FAILED", message=why, ended_at=time.time())
        return self.registry.get(self.id)

    def _never_submitted(self) -> UserError:
        rec = self._record
        return UserError(
            f"run {self.id} never reached the engine ({rec.status}: {rec.message or 'no reason recorded'}), so it "
            "has no log",
            fix="submit its spec again (`rlo submit SPEC`)",
        )

    def _finalize(self, status: str, message: str | None) -> None:
        """Record the outcome from the job's own structured lines: summary, checkpoints, final metrics."""
        try:
            log = self.backend.logs(self._record.job_id) if self._record.job_id else ""
        except EngineError:
            log = ""
        parsed = events.parse_log(log)
        summary = next((p for k, p in reversed(parsed) if k == "summary"), None)
        last_metrics = next((p for k, p in reversed(parsed) if k == "metrics"), None)
        best_trial = ((summary or {}).get("sweep") or {}).get("best_trial")
        for kind, payload in parsed:
            if best_trial and payload.get("trial_id") not in (None, best_trial):
                continue  # a sweep: only the best trial's checkpoints are the run's (evaluate/deploy take them)
            if kind == "checkpoint" and payload.get("path"):
                self.registry.add_checkpoint(self.id, payload["path"], payload.get("iteration"), payload.get("metrics"))
        fields: dict[str, Any] = {"status": status, "ended_at": time.time()}
        if summary:
            if summary.get("final_checkpoint"):
                final = summary.get("final") or {}
                self.registry.add_checkpoint(self.id, summary["final_checkpoint"], final.get("training_iteration"))
            fields["final_metrics"] = summary.get("final") or last_metrics
            fields["stop_reason"] = summary.get("stop_reason")
            if summary.get("policy"):
                fields["extra"] = {**self._record.extra, "policy": summary["policy"]}
            if summary.get("tracking"):  # the MLflow run (`rlo status` shows its id and URL)
                fields["extra"] = {**fields.get("extra", self._record.extra), "tracking": summary["tracking"]}
            fields["message"] = summary.get("error") or message
        else:
            fields["final_metrics"] = last_metrics
            fields["message"] = message or _last_error(log)
        self.registry.update(self.id, **fields)
        attempts = self.registry.attempts(self.id)
        if attempts:
            self.registry.end_attempt(self.id, attempts[-1]["attempt"], status, fields.get("message"))

    def status(self) -> str:
        return self.refresh().status

    @property
    def done(self) -> bool:
        return self.refresh().status in TERMINAL

    def wait(self, timeout: float | None = None, poll_s: float = 1.0) -> str:
        """The run's status once it has ended, or after `timeout` seconds (None: no limit), whichever is first."""
        return poll(self.status, lambda status: status in TERMINAL, timeout, poll_s)

    def stop(self, wait: bool = True, timeout: float = 60) -> str:
        rec = self.refresh()
        if rec.status in TERMINAL:
            return rec.status
        if not rec.job_id:  # still SUBMITTING, by a process that is alive: the engine has nothing to stop yet
            raise UserError(
                f"run {self.id} is still being submitted; nothing has reached the engine yet",
                fix=f"wait for `rlo submit` to finish, then `rlo stop {self.id}`",
            )
        self.backend.stop(rec.job_id)
        return self.wait(timeout=timeout if wait else 0)

    # --- outputs -------------------------------------------------------------------------------------------------

    def logs(self) -> str:
        job_id = self.refresh().job_id
        if not job_id:
            raise self._never_submitted()
        return self.backend.logs(job_id)

    def follow_logs(self, out: TextIO = sys.stdout) -> str:
        """Print the log as it grows until the job ends; returns the final status."""
        return self.attach(out=out, progress=False, raw=True)

    def metrics(self) -> list[dict]:
        """The per-iteration metrics series: from the run's metrics.jsonl when this machine has the run's folder,
        otherwise from the structured lines of the job log."""
        path = self.run_dir / "metrics.jsonl" if self.run_dir else None
        if path and path.is_file():
            return read_records(path)  # a line being written is skipped
        if not self.refresh().job_id:
            return []
        return [p for k, p in events.parse_log(self.logs()) if k == "metrics"]

    def latest_metrics(self) -> dict[str, dict]:
        """The latest record of each trial so far (trial id -> record; a sweep has several), read from the run's
        metrics.jsonl when this machine has the run's folder ({} otherwise: nothing is fetched from the engine).
        What `rlo list` / `rlo status` show of a run still going."""
        path = self.run_dir / "metrics.jsonl" if self.run_dir else None
        if not path or not path.is_file():
            return {}
        return {str(rec.get("trial_id") or ""): rec for rec in read_records(path) if isinstance(rec, dict)}

    def analytics(self, metric_names: list[str] | None = None, metric_definitions: list[dict] | None = None):
        """The series SageMaker's `metric_definitions` (`[{"Name": ..., "Regex": ...}]`, kept with the run by the
        SageMaker shim's RLEstimator, or given here) find in the job's log, like SageMaker's
        `TrainingJobAnalytics(...).dataframe()`: one row per match with `timestamp` (seconds since training start:
        the `time_total_s` of the iteration reported last before the line), `metric_name` and `value` (the first
        group of the regex). A pandas DataFrame when pandas is installed, else a list of dicts."""
        import re

        defs = metric_definitions if metric_definitions is not None else self.refresh().extra.get("metric_definitions")
        wanted = [d for d in defs or [] if metric_names is None or d["Name"] in metric_names]
        patterns = [(d["Name"], re.compile(d["Regex"])) for d in wanted]
        rows, elapsed = [], 0.0
        for line in (self.logs() if patterns else "").splitlines():
            ev = events.parse_line(line)
            if ev and ev[0] == "metrics":
                elapsed = float(ev[1].get("time_total_s") or elapsed)
            for name, pattern in patterns:
                for m in pattern.finditer(line):
                    try:
                        value = float(m.group(1) if pattern.groups else m.group(0))
                    except (TypeError, ValueError):  # an optional group that matched nothing, or not a number
                        continue  # SageMaker drops what does not read as a number, too
                    rows.append({"timestamp": elapsed, "metric_name": name, "value": value})
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows, columns=["timestamp", "metric_name", "value"])

    def checkpoints(self) -> list[CheckpointRecord]:
        self.refresh()
        return self.registry.checkpoints(self.id)

    def latest_checkpoint(self) -> str | None:
        cps = self.checkpoints()
        return cps[-1].path if cps else None

    def checkpoint_path(self, which: str = "latest") -> str:
        """`latest`, `best` (highest episode return mean when it was saved) or a path of the run's."""
        cps = self.checkpoints()
        if which not in ("latest", "best"):
            if not Path(which).exists():
                raise UserError(f"checkpoint `{which}` does not exist", fix="give `latest`, `best` or a folder path")
            return which
        if not cps:
            raise UserError(
                f"run {self.id} has no checkpoint (status {self._record.status})",
                fix="wait for it to save one (`job.checkpoint.frequency`), or give a checkpoint folder",
            )
        if which == "latest":
            return cps[-1].path

        def score(c):
            v = (c.metrics or {}).get(RETURN_MEAN)
            return (v if isinstance(v, int | float) else float("-inf"), c.iteration or 0)

        return max(cps, key=score).path

    # --- resume ------------------------------------------------------------------------------------------------

    def _mark_lost(self) -> None:
        """A run the registry thinks is going but whose engine no longer knows it (Ray stopped, machine restarted)."""
        rec = self.registry.get(self.id)
        if rec.status in TERMINAL:
            return
        try:
            self.refresh()
        except EngineError as e:
            why = f"lost: {str(e).splitlines()[0]}"
            self.registry.update(self.id, status="FAILED", message=why, ended_at=time.time())
            attempts = self.registry.attempts(self.id)
            if attempts:
                self.registry.end_attempt(self.id, attempts[-1]["attempt"], "FAILED", why)

    def resume(self, quiet: bool = False) -> Run:
        """`rlo resume`: a new attempt of this run that continues its Tune experiment from the last checkpoint.

        For a run whose driver or whole Ray instance died (or that was stopped); the run keeps its id, folder and
        metrics (iterations after the checkpoint are redone, and set aside once in metrics.redone.jsonl)."""

        self._mark_lost()
        rec = self.registry.get(self.id)
        if rec.status == "SUCCEEDED":
            raise UserError(
                f"run {self.id} succeeded; there is nothing to resume", fix="submit the spec again for a new run"
            )
        if rec.status == "SUBMIT_FAILED" or not rec.job_id:
            raise UserError(
                f"run {self.id} never started ({rec.status}: {rec.message or 'no reason recorded'}); there is "
                "nothing to continue",
                fix="submit its spec again (`rlo submit SPEC`)",
            )
        if rec.status not in TERMINAL:
            raise UserError(
                f"run {self.id} is still {rec.status}",
                fix=f"attach to it (`rlo attach {self.id}`), or stop it first (`rlo stop {self.id}`)",
            )
        if not (rec.spec.get("job") or {}).get("algorithm") or (rec.spec.get("job") or {}).get("entry_script"):
            raise UserError(
                f"run {self.id} ran an entry script; only built-in algorithm jobs can be resumed",
                fix="resume inside your script from `RLO_MODEL_DIR`, or submit it again",
            )
        cps = self._checkpoints_on_disk()
        if self.run_dir and self.run_dir.exists() and not cps:
            raise UserError(
                f"run {self.id} saved no checkpoint, so it cannot continue where it stopped",
                fix="give jobs `checkpoint: {frequency: N}` to make them resumable; submit this one again",
            )
        spec = Spec.model_validate(rec.spec)
        spec._base_dir = Path(rec.extra.get("base_dir") or Path.cwd())
        if rec.backend == "ray-local":
            backend = RayJobsBackend.embedded(quiet=quiet)  # started again if it was the Ray that died
        else:
            backend = self.backend
        attempts = self.registry.attempts(self.id)
        attempt = (attempts[-1]["attempt"] if attempts else 1) + 1
        job_id = f"{self.id}-attempt{attempt}"
        now = time.time()
        # Checked again as at submission: the job's folder may have changed since (it ships again).
        prepared = prepare(spec)
        # The same environment as the first attempt's (its tracking server too), from the stored spec and plan.
        if not rec.run_dir:  # every submission records one; a row without is damaged
            raise UserError(f"run {self.id} has no run folder recorded", fix="submit its spec again")
        run_dir = rec.run_dir
        env_vars = job_env_vars(spec, self.id, run_dir, prepared.plan.as_env(), now, spec_json=json.dumps(rec.spec))
        env_vars["RLO_ATTEMPT"] = str(attempt)
        last = cps[-1] if cps else (None, None)
        backend.submit(
            job_id=job_id,
            entrypoint=prepared.entrypoint,
            runtime_env=prepared.runtime_env(env_vars, ship_project=backend.name != EMBEDDED),
            metadata={"rlo_run_id": self.id, "rlo_attempt": str(attempt)},
        )
        self.registry.add_attempt(self.id, attempt, job_id, from_checkpoint=last[0], from_iteration=last[1], when=now)
        self.registry.update(
            self.id,
            status="PENDING",
            job_id=job_id,
            ended_at=None,
            message=None,
            stop_reason=None,
            address=backend.address,
        )
        self._backend = backend
        self._record = self.registry.get(self.id)
        return self

    def _checkpoints_on_disk(self) -> list[tuple[str, int | None]]:
        """(path, iteration if registered) of the run's Tune checkpoints in its folder, oldest first."""
        if not self.run_dir or not (self.run_dir / "output" / "tune").exists():
            return []
        reg = {c.path: c.iteration for c in self.registry.checkpoints(self.id)}
        found = sorted((self.run_dir / "output" / "tune").glob("*/checkpoint_*"), key=lambda d: d.stat().st_mtime)
        return [(str(d), reg.get(str(d))) for d in found]

    def policy_info(self) -> dict:
        """The env and training-side preprocessing the run's policy was trained with."""
        rec = self.refresh()
        info = rec.extra.get("policy")
        if info:
            return info
        job = rec.spec.get("job", {})
        return {"algorithm": job.get("algorithm"), "env": job.get("env"), "env_config": job.get("env_config") or {}}

    def policy(self, checkpoint: str = "latest"):
        """The trained policy (a CheckpointPolicy) of `checkpoint`, with the run's observation preprocessing."""

        return CheckpointPolicy.load(self.checkpoint_path(checkpoint), self.policy_info().get("env_config"))

    def deploy(self, checkpoint: str = "latest", **options):
        """Serve this run's policy over HTTP (`rlo deploy`); returns a `predictor.Predictor`.

        `checkpoint`: latest, best or a path; `options`: name, host, port, api_key(_file), ... (serving.deploy)."""

        return deploy(self, checkpoint=checkpoint, **options)

    def export(self, checkpoint: str = "latest", format: str = "onnx", out: str | Path | None = None) -> Path:
        """Write this run's policy as one self-contained ONNX file (`rlo export`) that `rlo serve` and
        `orchestrator.edge.OnnxPolicy` run without Ray. `out` defaults to ./RUN.onnx; returns its path."""

        return Path(export_run(self, checkpoint=checkpoint, format=format, out=out)["path"])

    # --- attach --------------------------------------------------------------------------------------------------

    def attach(self, out: TextIO = sys.stdout, progress: bool = True, raw: bool = False) -> str:
        """Stream the job's log, with a live progress line, until the job ends. Returns the final status.

        Structured `[rlo:...]` lines are shown as the progress line, checkpoints and notes; the engine's own
        lines (Ray's log records, Tune's tables, warnings: `orchestrator.logview`) are counted, not shown.
        raw=True prints every line verbatim instead; `logs()` returns the whole log."""

        rec = self.refresh()
        stop = self._stop_criteria()
        tty = progress and hasattr(out, "isatty") and out.isatty()
        live = LiveLine(out) if tty else None  # a terminal: the progress line stays at the bottom (rich)
        state: dict = {"shown_at": None, "pending": None}
        view = LogView()
        history: deque[dict] = deque(maxlen=PROGRESS_TREND_ITERATIONS + 1)

        def show(line: str) -> None:
            ev = events.parse_line(line)
            if ev and not raw:
                kind, payload = ev
                if kind == "metrics" and progress:
                    self._record_live(kind, payload)
                    if history and (payload.get("training_iteration") or 0) <= (
                        history[-1].get("training_iteration") or 0
                    ):
                        history.clear()  # a resumed attempt redoes iterations: the trend starts again
                    history.append(payload)
                    earlier = history[0] if len(history) > 1 else None
                    text = progress_line(payload, stop, time.time() - rec.created_at, earlier)
                    if live is not None:
                        live.update(text)
                    else:
                        # Into a file or a pipe: a line per PROGRESS_EVERY_S of the job's training time.
                        t, shown = payload.get("time_total_s"), state["shown_at"]
                        if shown is None or not isinstance(t, int | float) or t - shown >= PROGRESS_EVERY_S:
                            out.write(text + "\n")
                            state["shown_at"], state["pending"] = t, None
                        else:
                            state["pending"] = text
                    out.flush()
                    return
                if kind == "checkpoint":
                    self._record_live(kind, payload)
                    line = f"[rlo] checkpoint at iteration {payload.get('iteration')}: {payload.get('path')}"
                elif kind == "notice":
                    line = f"[rlo] note: {payload.get('message')}"
                elif kind == "summary":
                    return
                elif kind == "metrics":
                    return
            elif not raw and not view.shows(line):
                return
            if state["pending"]:  # the latest iteration first, so what follows reads in order
                out.write(state["pending"] + "\n")
                state["pending"] = None
            if live is not None:
                live.print(line)
            else:
                out.write(line + "\n")
            out.flush()

        try:
            if rec.status in TERMINAL and not rec.job_id:
                pass  # never reached the engine: nothing to stream, the final line says why
            elif rec.status in TERMINAL:
                for line in self.logs().splitlines():
                    show(line)
            else:
                asyncio.run(self._stream(show))
        finally:  # also on Ctrl-C (detach): the terminal keeps the last progress line, the cursor back
            if live is not None:
                live.close()
        if state["pending"]:
            out.write(state["pending"] + "\n")  # the last iteration's line, in a file too
        final = self.wait()
        rec = self._record
        if not raw:
            for line in view.footer(self.id, failed=final != "SUCCEEDED"):
                out.write(line + "\n")
        if progress:
            out.write(
                f"[rlo] run {self.id} {final}"
                + (f": {rec.stop_reason}" if rec.stop_reason else "")
                + (f": {rec.message}" if final != "SUCCEEDED" and rec.message else "")
                + "\n"
            )
            out.flush()
        return final

    async def _stream(self, show) -> None:
        buffer = ""
        job_id = self._record.job_id
        assert job_id, "attach streams only a run that reached the engine"
        async for chunk in self.backend.tail(job_id):
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            for line in lines:
                show(line)
        if buffer:
            show(buffer)

    def _record_live(self, kind: str, payload: dict) -> None:
        if self._record.spec.get("sweep"):
            return  # a sweep's checkpoints are the best trial's, known only at its end (`_finalize`)
        if kind == "checkpoint" and payload.get("path"):
            self.registry.add_checkpoint(self.id, payload["path"], payload.get("iteration"), payload.get("metrics"))


# How long a submission may take at most (the Job API's agent wait, a working dir upload) before a row still
# SUBMITTING is reconciled even though a process of the same pid is alive (the pid may have been reused).
SUBMIT_GRACE_S = 600
# Attached to a file or a pipe (not a terminal), a progress line per this many seconds of the job's training
# time (the last iteration's always); the return mean's trend is over this many iterations.
PROGRESS_EVERY_S = 10.0
PROGRESS_TREND_ITERATIONS = 10


def _submitter_alive(rec: RunRecord) -> bool:
    sub = rec.extra.get("submitter") or {}
    pid = sub.get("pid")
    if not pid or sub.get("host") != socket.gethostname() or time.time() - rec.created_at > SUBMIT_GRACE_S:
        return False
    try:
        proc = psutil.Process(int(pid))
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= rec.created_at
    except (psutil.Error, ValueError):
        return False


def _last_error(log: str) -> str | None:
    for line in reversed(log.splitlines()):
        head = line.split(":", 1)[0]
        if line.strip() and ("Error" in head or "Exception" in head):
            return line.strip()[:500]
    return None


def attach(run_id: str, token: str | None = None) -> Run:
    """A handle on an existing run, by id (or a unique prefix of it)."""
    registry = Registry(settings().registry_path)
    return Run(registry.get(run_id), registry, token=token)


def list_runs(limit: int | None = 20) -> list[RunRecord]:
    return Registry(settings().registry_path).list(limit=limit)
