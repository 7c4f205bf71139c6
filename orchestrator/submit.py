"""Submission: check everything that can be checked, then hand the job to Ray's Job API and record it.

Order matters: the spec, the plan, the env, the hyperparameters and the cluster's resources are all checked
before the registry row exists and before anything reaches the engine, so a bad input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path

from . import package
from .backends import EMBEDDED, RayJobsBackend
from .errors import RloError
from .interrupts import deferred_interrupt, shielded
from .records import RunRecord
from .registry import Registry
from .run import Run
from .settings import settings
from .spec import Spec
from .submission import check_cluster, new_run_id, prepare

# Where a remote cluster's job writes its run folder (on the head), when the spec does not say.
REMOTE_RUNS_DIR = "/tmp/rlo-runs"


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
    runtime_env = prepared.runtime_env(env_vars, ship_project=backend.name != EMBEDDED)
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
