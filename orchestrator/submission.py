"""A spec made ready to submit: planned, and everything checked that can be checked without the engine.

`prepare(spec) -> Submission` is the one path from a spec to what a backend receives; `rlo submit`, `rlo resume`,
the scheduler's preflight, `rlo plan --check` and every renderer (KubeRay, Azure ML) take its result, so the job's
folder is walked once and a bad input is refused the same way wherever it is used.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import package, tracking
from .backends import RayJobsBackend
from .envs import validate_env
from .errors import UserError
from .package import Package
from .planner import Plan, check_fits, plan_spec
from .spec import Spec
from .training import translate_hyperparameters


def new_run_id(spec: Spec) -> str:
    name = spec.job.name or (spec.job.algorithm or Path(spec.job.entry_script or "job").stem).lower()
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")[:30] or "job"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"rlo-{name}-{stamp}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Submission:
    """A spec made ready to submit (`prepare`): the plan, what ships, the command, what the user should know."""

    spec: Spec
    plan: Plan
    notices: tuple[str, ...]  # what the user should know (legacy names mapped, settings ignored, ...)
    entrypoint: str  # the job's command on the head
    package: Package | None  # the job's folder as it ships (None: a built-in algorithm without `source_dir`)

    def runtime_env(self, env_vars: dict[str, str], *, ship_project: bool) -> dict:
        """Ray's runtime_env for this job (see `package.runtime_env`)."""
        return package.runtime_env(self.spec, self.package, env_vars, ship_project=ship_project)


def prepare(spec: Spec, *, reach_services: bool = True) -> Submission:
    """Plan `spec` and check it: stop criteria, the job's files, env, hyperparameters, tracking server. Raises
    UserError/PlanError on bad input. `reach_services=False` (a rendered job runs elsewhere, on Kubernetes or
    Azure): the tracking server is not contacted from here, since reaching it from this machine proves nothing."""
    plan = plan_spec(spec)
    stop_notices = spec.job.normalized_stop()[1]
    script = spec.resolved_entry_script()
    if script is not None and not script.is_file():
        raise UserError(
            f"entry script `{spec.job.entry_script}` does not exist (looked for {script})",
            fix="give a path relative to the spec file, or an absolute path",
        )
    # What the job ships, checked before anything is recorded or packed (escaping links, an oversized folder).
    pkg = package.job_package(spec)
    notices = stop_notices + _check_job(spec, reach_services=reach_services)
    return Submission(spec, plan, tuple(notices), package.entrypoint(spec), pkg)


def _check_job(spec: Spec, *, reach_services: bool) -> list[str]:
    """Checks that need the job's libraries (env registry, RLlib's config) but not a cluster. Returns notices."""
    job = spec.job
    notices: list[str] = []
    # A tracking server the job cannot reach is found now, not after the job trained untracked.
    if reach_services:
        notices += tracking.check(spec, remote=spec.cluster.address is not None)
    if job.entry_script is not None:
        return notices

    algorithm, env = job.algorithm, job.env
    assert algorithm and env, "a job without an entry script names both (JobSpec's own check)"
    validate_env(env, package.source_dir(spec))
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
