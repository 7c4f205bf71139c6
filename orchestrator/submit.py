"""Submission: check everything that can be checked, then hand the job to Ray's Job API and record it.

Order matters: the spec, the plan, the env, the hyperparameters and the cluster's resources are all checked
before the registry row exists and before anything reaches the engine, so a bad input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import package, tracking
from .backends import EMBEDDED, RayJobsBackend
from .errors import RloError, UserError
from .interrupts import deferred_interrupt, shielded
from .planner import Plan, check_fits, plan_spec
from .records import RunRecord
from .registry import Registry
from .run import Run
from .settings import settings
from .spec import Spec

# Where a remote cluster's job writes its run folder (on the head), when the spec does not say.
REMOTE_RUNS_DIR = "/tmp/rlo-runs"


def new_run_id(spec: Spec) -> str:
    name = spec.job.name or (spec.job.algorithm or Path(spec.job.entry_script or "job").stem).lower()
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")[:30] or "job"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"rlo-{name}-{stamp}-{secrets.token_hex(2)}"


def validate_job(spec: Spec) -> list[str]:
    """Checks that need the job's libraries (env registry, RLlib's config) but not a cluster. Returns notices."""
    job = spec.job
    notices: list[str] = []
    script = spec.resolved_entry_script()
    if script is not None:
        if not script.is_file():
            raise UserError(
                f"entry script `{job.entry_script}` does not exist (looked for {script})",
                fix="give a path relative to the spec file, or an absolute path",
            )
    # What the job ships, checked before anything is recorded or packed (escaping links, an oversized folder).
    package.job_package(spec)
    # A tracking server the job cannot reach is found now, not after the job trained untracked.
    notices += tracking.check(spec, remote=spec.cluster.address is not None)
    if job.entry_script is not None:
        return notices
    from .envs import validate_env
    from .training import translate_hyperparameters

    algorithm, env = job.algorithm, job.env
    assert algorithm and env, "a job without an entry script names both (JobSpec's own check)"
    source = package.source_dir(spec)
    validate_env(env, source)
    hp_notices = translate_hyperparameters(algorithm, job.hyperparameters).notices
    if spec.sweep is not None:  # swept hyperparameters must be ones the algorithm has
        # Every value a trial can get (each grid/choice value, both bounds of a range) has the right name and type.
        for path, dist in spec.sweep.parameters.items():
            if not path.startswith("hyperparameters."):
                continue
            for value in next(iter(dist.values())):
                try:
                    translate_hyperparameters(algorithm, {path.split(".", 1)[1]: value})
                except UserError as e:
                    raise UserError(f"in `sweep.parameters.{path}`: {e.message}", fix=e.fix) from None
    return notices + hp_notices


def _roll_back(
    registry: Registry, backend: RayJobsBackend, run_id: str, run_dir: Path | None, e: BaseException
) -> None:
    """Undo a submission that failed or was cancelled: no run folder is left, the row (if made) says why, and a
    job that reached the engine anyway is stopped."""
    interrupted = isinstance(e, KeyboardInterrupt)
    why = "cancelled with Ctrl-C during submission" if interrupted else (str(e).splitlines() or [type(e).__name__])[0]
    with shielded():
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(RloError):
            registry.update(run_id, status="SUBMIT_FAILED", message=why, ended_at=time.time(), run_dir=None)
        if interrupted:  # the engine may have the job already (the interrupt came while it answered)
            with contextlib.suppress(Exception):
                if backend.job_exists(run_id, timeout_s=5):
                    backend.stop(run_id)
                    registry.update(run_id, message=why + "; the job had reached the engine and was stopped")


@dataclass(frozen=True)
class Submission:
    """A spec made ready to submit: everything checked that can be checked without the engine (`prepare`)."""

    spec: Spec
    plan: Plan
    notices: tuple[str, ...]  # what the user should know (legacy names mapped, settings ignored, ...)
    entrypoint: str  # the job's command on the head


def prepare(spec: Spec) -> Submission:
    """Plan `spec` and check it: stop criteria, the job's files, env, hyperparameters, tracking server. What
    `submit` and the scheduler's preflight share; raises UserError/PlanError on bad input."""
    plan = plan_spec(spec)
    notices = spec.job.normalized_stop()[1] + validate_job(spec)
    return Submission(spec, plan, tuple(notices), package.entrypoint(spec))


def check_cluster(plan: Plan, address: str | None, token: str | None = None) -> RayJobsBackend | None:
    """The plan fits where it goes: a remote cluster is asked for its resources (its backend is returned); the
    embedded Ray gets this machine's CPUs (None: nothing is started)."""
    if address:
        backend = RayJobsBackend.remote(address, token)
        cpus, gpus = backend.resources()
        check_fits(plan, cpus=cpus, gpus=gpus, where=backend.describe())
        return backend
    check_fits(plan, cpus=os.cpu_count() or 1, gpus=0, where="the embedded local Ray (this machine)")
    return None


def submit(
    spec: Spec,
    *,
    address: str | None = None,
    token: str | None = None,
    command: str | None = None,
    quiet: bool = False,
    notices_out=None,
) -> Run:
    """Plan, check and submit `spec`; returns a Run at once (the job runs on without the caller)."""
    cfg = settings()
    # The registry first: one that cannot be written is found before anything starts.
    registry = Registry(cfg.registry_path)
    registry.check_writable()
    prepared = prepare(spec)
    plan, notices = prepared.plan, list(prepared.notices)
    # The embedded Ray starts only once the plan is known to fit this machine.
    backend = check_cluster(plan, address or spec.cluster.address, token) or RayJobsBackend.embedded(quiet=quiet)

    run_id = new_run_id(spec)
    now = time.time()
    run_dir = cfg.runs_dir / run_id if backend.name == EMBEDDED else None
    job_run_dir = str(run_dir) if run_dir else f"{REMOTE_RUNS_DIR}/{run_id}"
    spec_dict = spec.to_dict()  # the resolved spec: the registry row's, and the job's (RLO_SPEC_JSON)
    env_vars = package.job_env_vars(spec, run_id, job_run_dir, plan.as_env(), now, spec_json=json.dumps(spec_dict))
    entrypoint = prepared.entrypoint
    runtime_env = package.runtime_env(spec, env_vars, ship_project=backend.name != EMBEDDED)
    record = RunRecord(
        id=run_id,
        name=spec.job.name or run_id,
        created_at=now,
        updated_at=now,
        backend=backend.name,
        status="SUBMITTING",
        spec=spec_dict,
        address=backend.address,
        plan=plan.to_dict(),
        command=command or shlex.join(sys.argv),
        run_dir=job_run_dir,
        extra={
            "entrypoint": entrypoint,
            "notices": notices,
            "base_dir": str(spec.base_dir),
            # Who is submitting: a row left SUBMITTING by a process that is gone is reconciled (Run.refresh).
            "submitter": {"pid": os.getpid(), "host": socket.gethostname()},
        },
    )
    # From the registry row to the engine's answer, the submission is one step: a first Ctrl-C waits for it to
    # finish, a second one (or SIGTERM) rolls it back. Either way no row is left that the engine never heard of.
    with deferred_interrupt(
        f"\n[rlo] finishing the submission of {run_id} (Ctrl-C again to cancel it instead)"
    ) as interrupted:
        made_dir = None
        try:
            if run_dir is not None:
                run_dir.mkdir(parents=True, exist_ok=False)  # a new run's own folder: only it is removed on failure
                made_dir = run_dir
                # The resolved spec and the exact command: any run can be repeated from its folder.
                (run_dir / "spec.yaml").write_text(spec.to_yaml())
                (run_dir / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2))
                (run_dir / "command.txt").write_text((command or shlex.join(sys.argv)) + "\n")
            registry.create(record)
            job_id = backend.submit(
                job_id=run_id,
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                metadata={"rlo_run_id": run_id, "rlo_name": record.name},
            )
            registry.update(run_id, status="PENDING", job_id=job_id)
            registry.add_attempt(run_id, 1, job_id, when=now)
        except BaseException as e:
            _roll_back(registry, backend, run_id, made_dir, e)
            raise
    if interrupted():
        print(
            f"[rlo] the submission had begun, so it was finished: run {run_id} is on the engine; "
            f"`rlo stop {run_id}` stops it",
            file=sys.stderr,
        )
        print(run_id)
        raise KeyboardInterrupt
    if notices_out is not None:
        notices_out.extend(notices)
    return Run(registry.get(run_id), registry, backend, token)
