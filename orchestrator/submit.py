"""Submission: check everything that can be checked, then hand the job to Ray's Job API and record it.

Order matters: the spec, the plan, the env, the hyperparameters and the cluster's resources are all checked
before the registry row exists and before anything reaches the engine, so a bad input leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .backends import EMBEDDED, RayJobsBackend
from .contract import contract_env
from .errors import RloError, UserError
from .planner import Plan, check_fits, plan_spec
from .registry import Registry, RunRecord
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
    if job.entry_script is not None:
        script = spec.resolved_entry_script()
        if not script.is_file():
            raise UserError(
                f"entry script `{job.entry_script}` does not exist (looked for {script})",
                fix="give a path relative to the spec file, or an absolute path",
            )
        return notices
    from .training import translate_hyperparameters, validate_env

    source = _source_dir(spec)
    validate_env(job.env, source)
    _, hp_notices = translate_hyperparameters(job.algorithm, job.hyperparameters)
    if spec.sweep is not None:  # swept hyperparameters must be ones the algorithm has
        swept = {p.split(".", 1)[1]: next(iter(d.values()))[0] for p, d in spec.sweep.parameters.items()
                 if p.startswith("hyperparameters.")}
        try:
            translate_hyperparameters(job.algorithm, swept)
        except UserError as e:
            raise UserError(f"in `sweep.parameters`: {e.message}", fix=e.fix) from None
    return notices + hp_notices


def _source_dir(spec: Spec) -> Path | None:
    if spec.job.source_dir:
        p = Path(spec.job.source_dir).expanduser()
        p = p if p.is_absolute() else (spec.base_dir / p).resolve()
        if not p.is_dir():
            raise UserError(f"`job.source_dir` {p} is not a folder", fix="give a folder relative to the spec file")
        return p
    script = spec.resolved_entry_script()
    return script.parent if script else None


def _entrypoint(spec: Spec) -> str:
    job = spec.job
    if job.entry_script is None:
        return "python -u -m entry_scripts.train"
    script = spec.resolved_entry_script()
    source = _source_dir(spec)
    rel = script.relative_to(source) if source and script.is_relative_to(source) else script
    args = job.script_args
    if isinstance(args, dict):
        argv = []
        for k, v in args.items():
            flag = k if k.startswith("-") else f"--{k}"
            argv += [flag] if v is True else [] if v is False else [flag, v if isinstance(v, str) else json.dumps(v)]
    else:
        argv = list(args)
    return " ".join(["python", "-u", shlex.quote(str(rel)), *map(shlex.quote, map(str, argv))])


# Never shipped with a job's folder: virtualenvs, VCS data, caches, and the tool's own state (registry, Ray's
# auth token and logs) when the folder happens to contain RLO_HOME.
WORKING_DIR_EXCLUDES = (".git", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", "node_modules")


def _excludes(source: Path, keep: Path | None = None) -> list[str]:
    """gitignore-style patterns (relative to `source`) Ray leaves out of the uploaded working dir."""
    return list(WORKING_DIR_EXCLUDES) + [
        "/" + p.relative_to(source.resolve()).as_posix() for p in tool_state_in(source, keep)
    ]


def tool_state_in(source: Path, keep: Path | None = None) -> list[Path]:
    """The tool's own state inside `source` (when a job's folder holds RLO_HOME), except what holds `keep`."""
    from .settings import settings

    source = source.resolve()
    keep = keep.resolve() if keep else None
    return [
        p
        for p in settings().state_paths()
        if p.is_relative_to(source) and p != source and not (keep and keep.is_relative_to(p))
    ]


def _runtime_env(spec: Spec, env_vars: dict[str, str], backend: RayJobsBackend) -> dict:
    runtime_env: dict = {"env_vars": env_vars}
    source = _source_dir(spec)
    if source is not None:
        runtime_env["working_dir"] = str(source)
        runtime_env["excludes"] = _excludes(source, spec.resolved_entry_script())
    if spec.job.pip:
        runtime_env["pip"] = list(spec.job.pip)
    if backend.name != EMBEDDED:
        # The project's own packages travel with the job to a cluster that may not have them.
        import callbacks
        import entry_scripts
        import orchestrator

        runtime_env["py_modules"] = [str(Path(m.__file__).parent) for m in (orchestrator, callbacks, entry_scripts)]
    return runtime_env


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
    plan: Plan = plan_spec(spec)
    notices = spec.job.normalized_stop()[1] + validate_job(spec)
    address = address or spec.cluster.address
    if address:
        backend = RayJobsBackend.remote(address, token)
        cpus, gpus = backend.resources()
        check_fits(plan, cpus=cpus, gpus=gpus, where=backend.describe())
    else:
        # The embedded Ray gets this machine's CPUs: check before starting anything.
        check_fits(plan, cpus=os.cpu_count() or 1, gpus=0, where="the embedded local Ray (this machine)")
        backend = RayJobsBackend.embedded(quiet=quiet)

    run_id = new_run_id(spec)
    now = time.time()
    if backend.name == EMBEDDED:
        run_dir = cfg.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        # The resolved spec and the exact command: any run can be repeated from its folder.
        (run_dir / "spec.yaml").write_text(spec.to_yaml())
        (run_dir / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2))
        (run_dir / "command.txt").write_text((command or shlex.join(sys.argv)) + "\n")
        job_run_dir = str(run_dir)
    else:
        job_run_dir = f"{REMOTE_RUNS_DIR}/{run_id}"
    spec_json = json.dumps(spec.to_dict())
    env_vars = {**spec.job.env_vars, **contract_env(run_id, job_run_dir, plan.as_env(), spec_json, now)}
    entrypoint = _entrypoint(spec)

    registry = Registry(cfg.registry_path)
    record = RunRecord(
        id=run_id,
        name=spec.job.name or run_id,
        created_at=now,
        updated_at=now,
        backend=backend.name,
        status="SUBMITTING",
        spec=spec.to_dict(),
        address=backend.address,
        plan=plan.to_dict(),
        command=command or shlex.join(sys.argv),
        run_dir=job_run_dir,
        extra={"entrypoint": entrypoint, "notices": notices, "base_dir": str(spec.base_dir)},
    )
    registry.create(record)
    try:
        job_id = backend.submit(
            job_id=run_id,
            entrypoint=entrypoint,
            runtime_env=_runtime_env(spec, env_vars, backend),
            metadata={"rlo_run_id": run_id, "rlo_name": record.name},
        )
    except (RloError, Exception) as e:
        registry.update(run_id, status="SUBMIT_FAILED", message=str(e).splitlines()[0], ended_at=time.time())
        raise
    registry.update(run_id, status="PENDING", job_id=job_id)
    registry.add_attempt(run_id, 1, job_id, when=now)
    if notices_out is not None:
        notices_out.extend(notices)
    return Run(registry.get(run_id), registry, backend, token)
