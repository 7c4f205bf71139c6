"""Azure ML's reinforcement-learning names (`azureml.contrib.train.rl`, `azureml.core`; the preview Azure retired),
for code written for them: change the import lines, keep the rest.

    # from azureml.core import Workspace, Experiment, Run
    # from azureml.core.compute import AmlCompute, ComputeTarget
    # from azureml.contrib.train.rl import ReinforcementLearningEstimator, Ray, WorkerConfiguration
    from orchestrator.compat.azureml import (Workspace, Experiment, Run, AmlCompute, ComputeTarget,
                                             ReinforcementLearningEstimator, Ray, WorkerConfiguration)

    ws = Workspace.from_config()                       # accepted; means nothing here (one notice)
    head = ComputeTarget.create(ws, "head-gpu", AmlCompute.provisioning_configuration(vm_size="STANDARD_NC6"))
    workers = WorkerConfiguration(compute_target=worker_target, node_count=4, use_gpu=False)
    estimator = ReinforcementLearningEstimator(source_directory="files", entry_script="pong_rllib.py",
                                               script_params={...}, compute_target=head, use_gpu=True,
                                               rl_framework=Ray(), worker_configuration=workers,
                                               max_run_duration_seconds=3600)
    run = Experiment(ws, "rllib-pong").submit(estimator)   # a job on the embedded local Ray (or `address=`)
    run.wait_for_completion(show_output=True)
    run.get_metrics()                                  # what the entry script logged with Run.get_context().log

    # in the entry script (and its callbacks):
    Run.get_context().log("episode_reward_mean", value)

A compute target is a VM size from the catalog (orchestrator/catalog.py) or `local` (this machine). The estimator
is our Estimator (orchestrator.estimator) with the spec these arguments describe: the head's VM size, a worker pool
of `node_count` nodes, the entry script with `script_params`, `pip_packages`, `max_run_duration_seconds`; the
planner does the seed's num_workers arithmetic (STANDARD_NC6 + 4 x STANDARD_D2_V2 -> 13 env runners) and refuses
what the cluster cannot run (a GPU learner without a GPU). Arguments about Azure itself (the workspace, virtual
networks, `shm_size`, `cluster_coordination_timeout_seconds`, Docker settings) are accepted with one notice each.
An entry script's `ray.rllib.train.create_parser` and old `tune.run` have drop-ins in `rllib_legacy`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .. import catalog, events
from ..errors import JobFailed, UserError, did_you_mean, shorten
from ..estimator import Estimator
from ..spec import ClusterSpec, HeadConfiguration, JobSpec, Spec
from ..spec import WorkerConfiguration as WorkerPool

# The metrics an entry script logs (`Run.get_context().log`), one JSON line each in the run's folder; the same line
# goes to the job's log with this prefix, for a run whose folder is on another machine (a remote cluster).
METRICS_FILE = "azureml_metrics.jsonl"
LOG_PREFIX = "[azureml:log] "

_noticed: set[str] = set()


def _note(message: str) -> None:
    # The shape the CLI gives its notices (`[rlo] note: ...` on stderr); each one once per process.
    if message not in _noticed:
        _noticed.add(message)
        print(f"[rlo] note: {message}", file=sys.stderr, flush=True)


class ComputeTargetException(UserError):
    """Azure ML's error for a compute target that does not exist or cannot be made."""


class ActivityFailedException(JobFailed):
    """Azure ML's error of `wait_for_completion` for a run that failed."""


# --- workspace and compute ----------------------------------------------------------------------------------


class Workspace:
    """Azure's workspace: accepted and meaningless here (runs are kept in the registry under RLO_HOME). It keeps
    the compute targets made with `ComputeTarget.create` in this process, so `name in ws.compute_targets` works."""

    def __init__(
        self,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        _note("Workspace ignored: runs are kept in rl-orchestrator's registry (RLO_HOME), `rlo list` lists them")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.name = workspace_name or "local"
        self.location = kwargs.get("location")
        self.compute_targets: dict[str, ComputeTarget] = {}

    @classmethod
    def from_config(cls, path: str | None = None, auth: Any = None, _logger: Any = None, _file_name: str | None = None):
        return cls()

    @classmethod
    def get(
        cls,
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        **kwargs: Any,
    ):
        return cls(subscription_id, resource_group, name)

    def __repr__(self) -> str:
        return f"Workspace.create(name='{self.name}')"


def _vm_size(size: Any, what: str) -> str:
    """A catalog VM size (any case, as Azure writes them: Standard_D2_v2) or `local`; UserError otherwise."""
    if isinstance(size, str) and catalog.lookup(size):
        return size
    hint = did_you_mean(str(size).upper(), [n.upper() for n in catalog.names() if not n.startswith("ml.")])
    azure = ", ".join(t.name for t in catalog.CATALOG.values() if t.cloud == "azure")
    raise ComputeTargetException(
        f"unknown VM size `{shorten(size)}` ({what})" + (f"; {hint}" if hint else ""),
        fix=f"use a VM size of the catalog ({azure}) or `local` (this machine)",
    )


def _catalog_entry(vm_size: str) -> catalog.InstanceType:
    """The catalog's entry of a compute target's VM size (checked when the target or its configuration was made)."""
    t = catalog.lookup(vm_size)
    assert t is not None, f"VM size `{vm_size}` of a compute target is a catalog name (_vm_size checked it)"
    return t


class _Status:
    def __init__(self, target: ComputeTarget) -> None:
        self.target = target
        self.provisioning_state = "Succeeded"
        self.vm_size = target.vm_size

    def serialize(self) -> dict:
        t = _catalog_entry(self.target.vm_size)
        return {
            "vmSize": self.target.vm_size,
            "provisioningState": self.provisioning_state,
            "scaleSettings": {"minNodeCount": self.target.min_nodes, "maxNodeCount": self.target.max_nodes},
            "vCPUs": t.vcpus,
            "gpus": t.gpus,
        }


class AmlComputeProvisioningConfiguration:
    def __init__(self, vm_size: str, min_nodes: int = 0, max_nodes: int | None = None) -> None:
        self.vm_size = vm_size
        self.min_nodes = min_nodes
        self.max_nodes = max_nodes


# provisioning_configuration's arguments about Azure's own infrastructure: accepted, one notice.
_AZURE_INFRA = (
    "vm_priority",
    "idle_seconds_before_scaledown",
    "admin_username",
    "admin_user_password",
    "admin_user_ssh_key",
    "vnet_resourcegroup_name",
    "vnet_name",
    "subnet_name",
    "tags",
    "description",
    "remote_login_port_public_access",
    "identity_type",
    "identity_id",
    "location",
    "enable_node_public_ip",
)


class ComputeTarget:
    """A compute target: a VM size of the catalog or `local`. `ComputeTarget(ws, name)` finds one made with
    `ComputeTarget.create` (or a name that is itself a VM size or `local`)."""

    def __init__(self, workspace: Workspace | None = None, name: str | None = None) -> None:
        known = workspace.compute_targets.get(name) if workspace is not None and name else None
        if known is not None:
            self.__dict__.update(known.__dict__)
            return
        if name and catalog.lookup(name):
            self._set(name, name, 0, None)
            return
        raise ComputeTargetException(
            f"compute target `{name}` not found",
            fix="make it with ComputeTarget.create(ws, name, AmlCompute.provisioning_configuration(vm_size=...)), "
            "or give a VM size of the catalog (STANDARD_D2_V2) or `local`",
        )

    def _set(self, name: str, vm_size: str, min_nodes: int, max_nodes: int | None) -> None:
        self.name, self.vm_size, self.min_nodes, self.max_nodes = name, vm_size, min_nodes, max_nodes
        self.provisioning_state = "Succeeded"

    @classmethod
    def _of(cls, name: str, vm_size: str, min_nodes: int = 0, max_nodes: int | None = None) -> ComputeTarget:
        target = cls.__new__(cls)
        target._set(name, vm_size, min_nodes, max_nodes)
        return target

    @staticmethod
    def create(workspace: Workspace, name: str, provisioning_configuration) -> ComputeTarget:
        """A named compute target of the configuration's VM size (nothing is provisioned: the nodes are the
        cluster's, the embedded local Ray or one brought up with `rlo cluster`)."""
        cfg = provisioning_configuration
        target = AmlCompute._of(name, cfg.vm_size, cfg.min_nodes, cfg.max_nodes)
        if workspace is not None:
            workspace.compute_targets[name] = target
        return target

    def wait_for_completion(
        self,
        show_output: bool = False,
        min_node_count: int | None = None,
        timeout_in_minutes: int = 20,
        is_delete_operation: bool = False,
    ) -> None:
        if show_output:
            t = _catalog_entry(self.vm_size)
            print(
                f"compute target `{self.name}`: {self.vm_size} ({t.vcpus} vCPUs, {t.gpus} GPUs per node); the nodes "
                "are the cluster's (`rlo plan` shows how the job uses them)"
            )

    def get_status(self) -> _Status:
        return _Status(self)

    def delete(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vm_size={self.vm_size!r})"


class AmlCompute(ComputeTarget):
    @staticmethod
    def provisioning_configuration(
        vm_size: str = "", min_nodes: int = 0, max_nodes: int | None = None, **kwargs: Any
    ) -> AmlComputeProvisioningConfiguration:
        unknown = [k for k in kwargs if k not in _AZURE_INFRA]
        if unknown:
            raise TypeError(f"provisioning_configuration() got an unexpected keyword argument '{unknown[0]}'")
        if kwargs:
            _note(
                f"AmlCompute.provisioning_configuration({', '.join(sorted(kwargs))}) ignored: Azure's network, "
                "access and priority settings mean nothing here (`rlo cluster` opens Ray's ports itself)"
            )
        return AmlComputeProvisioningConfiguration(
            _vm_size(vm_size, "AmlCompute.provisioning_configuration"), min_nodes, max_nodes
        )

    @staticmethod
    def supported_vmsizes(workspace: Workspace | None = None, location: str | None = None) -> list[dict]:
        return [
            {"name": t.name, "vCPUs": t.vcpus, "gpus": t.gpus, "memoryGB": t.memory_gib}
            for t in catalog.CATALOG.values()
            if t.cloud == "azure"
        ]


def _target(value: Any, what: str) -> ComputeTarget:
    """A compute target given as an object (anything with a `vm_size`) or a name (a VM size, or `local`)."""
    if value is None:
        return ComputeTarget._of("local", "local")
    if isinstance(value, str):
        return ComputeTarget._of(value, _vm_size(value, what))
    size = getattr(value, "vm_size", None)
    if size is None:
        raise ComputeTargetException(
            f"{what}: {shorten(repr(value))} has no VM size",
            fix="give a compute target made with ComputeTarget.create(...), a VM size (STANDARD_D2_V2) or `local`",
        )
    return ComputeTarget._of(
        getattr(value, "name", size),
        _vm_size(size, what),
        getattr(value, "min_nodes", 0),
        getattr(value, "max_nodes", None),
    )


# --- the estimator ------------------------------------------------------------------------------------------


class Ray:
    """The RL framework marker (`rl_framework=Ray()`): the job runs the cluster's Ray (2.x) and its RLlib."""

    def __init__(self, version: str | None = None, framework_arguments: list | None = None) -> None:
        if version is not None:
            _note(f"Ray(version={version!r}) ignored: the job runs the cluster's Ray and RLlib's new API stack")
        self.version = version
        self.framework_arguments = framework_arguments or []

    def __repr__(self) -> str:
        return "Ray()"


class WorkerConfiguration:
    """The Ray worker nodes: `node_count` nodes of `compute_target`'s VM size (a worker pool of the spec)."""

    def __init__(
        self,
        node_count: int = 1,
        compute_target: Any = None,
        environment: Any = None,
        shm_size: Any = None,
        use_gpu: bool = False,
        conda_packages: list | None = None,
        pip_packages: list | None = None,
        pip_requirements_file: str | None = None,
        conda_dependencies_file: str | None = None,
    ) -> None:
        self.node_count = node_count
        self.target = _target(compute_target, "WorkerConfiguration(compute_target=...)")
        self.compute_target = compute_target
        self.environment = environment
        self.shm_size = shm_size
        self.use_gpu = use_gpu
        self.conda_packages = conda_packages
        self.pip_packages = list(pip_packages or [])
        self.pip_requirements_file = pip_requirements_file
        self.conda_dependencies_file = conda_dependencies_file


def _pip(packages: list[str], requirements: str | None, base: Path) -> list[str]:
    """The job's pip packages. The seeds pin `ray[rllib]==0.8.3`: the job runs the cluster's Ray, so a Ray pin is
    dropped (with a notice) instead of installing a Ray that cannot join the cluster."""
    lines = list(packages)
    if requirements:
        path = Path(requirements) if Path(requirements).is_absolute() else base / requirements
        if not path.is_file():
            raise UserError(
                f"pip_requirements_file `{requirements}` does not exist (looked for {path})",
                fix="give a path relative to source_directory, or an absolute path",
            )
        lines += [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    out = []
    for p in dict.fromkeys(lines):
        if re.match(r"^ray(\[[^\]]*\])?\s*([=<>!~].*)?$", p.strip(), re.IGNORECASE):
            _note(f"pip package `{p}` dropped: the job runs the cluster's Ray and RLlib (the new API stack)")
            continue
        out.append(p)
    return out


def _refuse_conda(what: str, value: Any) -> None:
    if value:
        raise UserError(
            f"{what} cannot carry over: jobs here install pip packages only",
            fix="give the packages as pip_packages=[...]",
        )


class ReinforcementLearningEstimator(Estimator):
    """Azure ML's RL estimator: our Estimator (plan/fit/deploy) with the spec its arguments describe."""

    def __init__(
        self,
        source_directory: str,
        *,
        environment: Any = None,
        entry_script: str | None = None,
        script_params: dict | None = None,
        compute_target: Any = None,
        use_gpu: bool | None = None,
        pip_packages: list | None = None,
        conda_packages: list | None = None,
        environment_variables: dict | None = None,
        rl_framework: Any = None,
        cluster_coordination_timeout_seconds: int | None = None,
        max_run_duration_seconds: int | None = None,
        worker_configuration: WorkerConfiguration | None = None,
        conda_dependencies_file: str | None = None,
        pip_requirements_file: str | None = None,
        shm_size: Any = None,
        inputs: list | None = None,
        address: str | None = None,
        token: str | None = None,
    ) -> None:
        if rl_framework is not None and not isinstance(rl_framework, Ray):
            raise UserError(
                f"rl_framework={shorten(repr(rl_framework))}: Ray is the only RL framework (as on Azure)",
                fix="rl_framework=Ray()",
            )
        if not entry_script:
            raise UserError("ReinforcementLearningEstimator needs an `entry_script`", fix="entry_script='train.py'")
        source = Path(source_directory).expanduser().resolve()
        script = source / entry_script
        if not script.is_file():
            raise UserError(
                f"entry_script `{entry_script}` is not in source_directory `{source_directory}` (looked for {script})",
                fix="give the script's path relative to source_directory",
            )
        _refuse_conda("conda_packages", conda_packages)
        _refuse_conda("conda_dependencies_file", conda_dependencies_file)
        if inputs:
            raise UserError(
                "inputs (Azure datasets) cannot carry over",
                fix="put the files in source_directory, or have the entry script read them from their storage",
            )
        for name, value, why in (
            (
                "cluster_coordination_timeout_seconds",
                cluster_coordination_timeout_seconds,
                "worker nodes join the cluster on their own (`rlo cluster join`), before the job is submitted",
            ),
            ("shm_size", shm_size, "Ray's object store uses the node's shared memory as it is"),
            ("environment", environment, "the job runs in the cluster's Python; give extra packages as pip_packages"),
        ):
            if value is not None:
                _note(f"ReinforcementLearningEstimator({name}=...) ignored: {why}")
        self.worker_configuration = worker_configuration
        self.compute_target = compute_target
        self.head_target = _target(compute_target, "ReinforcementLearningEstimator(compute_target=...)")
        pip = list(pip_packages or [])
        workers: list[WorkerPool] = []
        if worker_configuration is not None:
            wc = worker_configuration
            pip += wc.pip_packages
            _refuse_conda("WorkerConfiguration(conda_packages=...)", wc.conda_packages)
            if wc.shm_size is not None or wc.environment is not None:
                _note("WorkerConfiguration(shm_size/environment=...) ignored: the nodes run the cluster's Python")
            if wc.use_gpu:
                _note("WorkerConfiguration(use_gpu=True) ignored: env runners do not use GPUs (only learners learn)")
            if wc.target.max_nodes is not None and wc.node_count > wc.target.max_nodes:
                raise UserError(
                    f"WorkerConfiguration(node_count={wc.node_count}) is more than compute target `{wc.target.name}` "
                    f"allows (max_nodes={wc.target.max_nodes})",
                    fix=f"node_count={wc.target.max_nodes} or less, or raise the target's max_nodes",
                )
            if wc.target.vm_size.lower() == catalog.LOCAL:
                _note(
                    f"WorkerConfiguration on `local` ignored: this machine is the head already; its node_count "
                    f"({wc.node_count}) adds no nodes"
                )
            else:
                pool = re.sub(r"[^a-z0-9-]+", "-", wc.target.name.lower()).strip("-")[:40] or "workers"
                workers.append(WorkerPool(name=pool, instance_type=wc.target.vm_size, node_count=wc.node_count))
        job = JobSpec(
            entry_script=str(script),
            source_dir=str(source),
            script_args={str(k): v for k, v in (script_params or {}).items()},
            pip=_pip(pip, pip_requirements_file, source),
            use_gpu=bool(use_gpu),
            max_run_duration_seconds=max_run_duration_seconds,
            env_vars={str(k): str(v) for k, v in (environment_variables or {}).items()},
        )
        cluster = ClusterSpec(
            name="azureml", head=HeadConfiguration(instance_type=self.head_target.vm_size), workers=workers
        )
        super().__init__(spec=Spec(cluster=cluster, job=job), address=address, token=token)


# --- experiments and runs ------------------------------------------------------------------------------------


class Experiment:
    """A named group of runs: `submit(estimator)` starts one (the job's name is the experiment's)."""

    def __init__(self, workspace: Workspace | None = None, name: str = "default", **kwargs: Any) -> None:
        self.workspace = workspace
        self.name = name

    def submit(self, config: Estimator, tags: dict | None = None, **kwargs: Any) -> Run:
        if not isinstance(config, Estimator):
            raise UserError(
                f"Experiment.submit({shorten(repr(config))}): submit a ReinforcementLearningEstimator",
                fix="Experiment(ws, name).submit(ReinforcementLearningEstimator(...))",
            )
        if tags:
            _note("Experiment.submit(tags=...) ignored: the run's id and spec identify it (`rlo show RUN`)")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-.")[:60] or None
        config.spec.job.name = name if name and name[0].isalnum() else None
        return Run(config.fit(wait=False), experiment=self)

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r})"


# Our run statuses -> Azure ML's.
_STATUS = {
    "SUBMITTING": "Queued",
    "PENDING": "Starting",
    "RUNNING": "Running",
    "SUCCEEDED": "Completed",
    "FAILED": "Failed",
    "SUBMIT_FAILED": "Failed",
    "STOPPED": "Canceled",
}


class Run:
    """Azure ML's run, both sides: what `Experiment.submit` returns (a handle on our run: status, wait, metrics;
    everything else of orchestrator.run.Run too, e.g. `deploy()`), and `Run.get_context()` in an entry script, whose
    `log(name, value)` adds to a metric series of the run. Outside a job, `get_context()` is an offline run that
    logs locally (it prints, and keeps the values in memory), as Azure's offline run did."""

    def __init__(self, rlo_run=None, *, experiment: Experiment | None = None, _context: dict | None = None) -> None:
        self._rlo = rlo_run
        self.experiment = experiment
        self._context = _context  # job side: {"id", "run_dir"}; offline: {"id", "offline": True}
        self._offline_metrics: list[dict] = []

    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False, **kwargs: Any) -> Run:
        run_id = os.environ.get("RLO_RUN_ID")
        if run_id:
            return cls(_context={"id": run_id, "run_dir": os.environ.get("RLO_RUN_DIR")})
        if not allow_offline:
            raise UserError(
                "Run.get_context(allow_offline=False) outside a job",
                fix="submit the script with Experiment(...).submit(...), or allow_offline=True",
            )
        return _offline_run()

    @property
    def id(self) -> str:
        if self._rlo is not None:
            return self._rlo.id
        assert self._context is not None, "a Run has an rl-orchestrator run or a job-side/offline context"
        return self._context["id"]

    @property
    def rlo_run(self):
        """The run of rl-orchestrator behind this handle (orchestrator.run.Run)."""
        return self._rlo

    def __getattr__(self, name: str):
        rlo = self.__dict__.get("_rlo")
        if rlo is None:
            raise AttributeError(name)
        return getattr(rlo, name)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, status={self.get_status()!r})"

    # --- logging (entry-script side) ---

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        self._record({"name": str(name), "value": value, "step": step})

    def log_list(self, name: str, value: list, description: str = "") -> None:
        for v in value:
            self._record({"name": str(name), "value": v, "step": None})

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._record({"name": str(name), "value": dict(kwargs), "step": None})

    def _record(self, entry: dict) -> None:
        entry = events._clean({**entry, "timestamp": time.time()})
        ctx = self._context or {}
        if ctx.get("offline"):
            print(f"Attempted to log scalar metric {entry['name']}:\n{entry['value']}")
            self._offline_metrics.append(entry)
            return
        run_dir = ctx.get("run_dir") if self._rlo is None else self._rlo.run_dir
        line = json.dumps(entry, separators=(",", ":"))
        if run_dir:
            path = Path(run_dir) / METRICS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:  # one short line per call: appends from several processes stay whole
                f.write(line + "\n")
        print(LOG_PREFIX + line, flush=True)

    # --- status, waiting and metrics (submitting side) ---

    def get_status(self) -> str:
        if self._rlo is None:
            return "Running"
        return _STATUS.get(self._rlo.status(), "Failed")

    def get_details(self) -> dict:
        if self._rlo is None:
            return {"runId": self.id, "status": self.get_status()}
        rec = self._rlo.refresh()
        return {
            "runId": rec.id,
            "status": _STATUS.get(rec.status, "Failed"),
            "target": self._rlo.record.spec.get("cluster", {}).get("head", {}).get("instance_type"),
            "startTimeUtc": rec.started_at,
            "endTimeUtc": rec.ended_at,
            "error": rec.message if rec.status != "SUCCEEDED" else None,
            "properties": {"rlo_run_dir": rec.run_dir},
        }

    def wait_for_completion(
        self, show_output: bool = False, wait_post_processing: bool = False, raise_on_error: bool = True
    ) -> dict:
        """Wait until the job ends; `show_output`: stream its log and progress meanwhile. A run that did not
        complete raises ActivityFailedException (`raise_on_error`)."""
        if self._rlo is None:
            raise UserError(
                "wait_for_completion() is for a submitted run, not Run.get_context()",
                fix="call it on what Experiment(...).submit(...) returned",
            )
        if show_output:
            self._rlo.attach()
        else:
            self._rlo.wait()
        details = self.get_details()
        if raise_on_error and details["status"] != "Completed":
            raise ActivityFailedException(
                f"run {self.id} ended {details['status']}: {details.get('error') or '-'} "
                f"(`rlo logs {self.id}` shows its log)"
            )
        return details

    def cancel(self) -> None:
        self._rlo.stop()

    def get_metrics(
        self, name: str | None = None, recursive: bool = False, run_type: Any = None, populate: bool = False
    ) -> dict[str, Any]:
        """What the entry script logged: {name: value}, or {name: [values...]} for a name logged more than once
        (Azure's shape)."""
        series: dict[str, list] = {}
        for e in self._entries():
            if name is None or e.get("name") == name:
                series.setdefault(e["name"], []).append(e.get("value"))
        return {k: v[0] if len(v) == 1 else v for k, v in series.items()}

    def _entries(self) -> list[dict]:
        if self._context and self._context.get("offline"):
            return list(self._offline_metrics)
        run_dir = Path(self._rlo.run_dir) if self._rlo is not None and self._rlo.run_dir else None
        if run_dir is None and self._context and self._context.get("run_dir"):
            run_dir = Path(self._context["run_dir"])
        path = run_dir / METRICS_FILE if run_dir else None
        if path is not None and path.is_file():
            return _parse_lines(path.read_text().splitlines(), prefix="")
        if self._rlo is None or not self._rlo.refresh().job_id:
            return []
        return _parse_lines(self._rlo.logs().splitlines(), prefix=LOG_PREFIX)


def _parse_lines(lines: list[str], prefix: str) -> list[dict]:
    out = []
    for line in lines:
        i = line.find(prefix) if prefix else 0
        if i < 0:
            continue
        try:
            entry = json.loads(line[i + len(prefix) :])
        except ValueError:
            continue  # a line being written, or another line with the prefix
        if isinstance(entry, dict) and "name" in entry:
            out.append(entry)
    return out


_OFFLINE: list[Run] = []


def _offline_run() -> Run:
    # One offline run per process, as Azure's: every get_context() outside a job logs to the same one.
    if not _OFFLINE:
        _OFFLINE.append(Run(_context={"id": f"OfflineRun_{uuid.uuid4()}", "offline": True}))
    return _OFFLINE[0]


class RunDetails:
    """Azure's notebook widget (`azureml.widgets.RunDetails(run).show()`): here one status line and the metrics
    logged so far (`run.wait_for_completion(show_output=True)` follows the run live)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def show(self) -> None:
        metrics = self.run.get_metrics()
        shown = ", ".join(f"{k}={v[-1] if isinstance(v, list) else v}" for k, v in metrics.items())
        print(f"run {self.run.id}: {self.run.get_status()}" + (f"; {shown}" if shown else ""))


__all__ = [
    "ActivityFailedException",
    "AmlCompute",
    "ComputeTarget",
    "ComputeTargetException",
    "Experiment",
    "Ray",
    "ReinforcementLearningEstimator",
    "Run",
    "RunDetails",
    "WorkerConfiguration",
    "Workspace",
]
