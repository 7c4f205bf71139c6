"""Azure ML entities for a spec, built with the `azure-ai-ml` SDK (v2) and dumped to YAML by the SDK itself.

What Azure ML can express, and the choice made here:
- An Azure ML command job runs on ONE compute target, every node the same VM size. The SDK's `RayDistribution`
  (experimental) starts a Ray cluster across the nodes of that one job, so it can only build homogeneous
  clusters: a GPU on every node, or none on the head. The seeds' layout (a GPU head that learns, CPU pools
  that simulate; Azure's retired `ReinforcementLearningEstimator` had `worker_configuration` for it) is not
  expressible as one command job.
- The closest honest thing: one `AmlCompute` per pool (the head's with its GPU VM size, `max_instances: 1`;
  one per worker pool, `max_instances: node_count`) and ONE pipeline job whose steps run side by side, one
  step per pool on that pool's compute. Each step runs `python -m orchestrator.render.azureml_node` (in the
  images from `docker/`): the head step starts the Ray head with the pool's placement resources, publishes
  its address and a fresh auth token in a rendezvous folder on the workspace's default datastore (an output
  mounted read-write by every step), waits for every node, runs the job (the same entrypoint as `rlo
  submit`), and writes `done`; the worker steps (one process per node) wait for the address, `ray start
  --address` with their pool's resources, and leave when `done` appears. Token auth stays on
  (RAY_AUTH_MODE=token); the token never appears in the job definition.
- Requirements this cannot check offline: the computes must reach each other (the workspace's managed
  network, or the same VNet: `vnet`/`subnet`), and the images must be in a registry the workspace can pull.
  Steps are not deterministic and the pipeline forces a rerun, so Azure ML never reuses a previous run's step.

`build_azureml(spec, ...)` returns the SDK entities; `write_azureml` dumps each with the entity's own
`dump()`; tests re-load them with `load_compute` / `load_job`. `submit_azureml` creates them in a workspace
when credentials and the workspace's coordinates exist, and says exactly what is missing when they do not.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contract import contract_env
from ..errors import UserError, did_you_mean
from ..package import Package
from ..placement import HEAD_POOL
from ..planner import Plan
from ..spec import Spec
from ..submission import Submission, new_run_id
from . import resolve_images

if TYPE_CHECKING:
    from azure.ai.ml.entities._builders import BaseNode  # what PipelineJob's `jobs` holds (not exported publicly)

# Seconds a step may take to get its node and start, on top of the job's own bound (AML's limits.timeout).
STARTUP_ALLOWANCE_S = 1800
JOB_GRACE_S = 120  # = jobside.HARD_KILL_GRACE_S
DEFAULT_TIMEOUT_S = 7 * 24 * 3600
RAY_PORT = 6379
# Environment variables / flags for the workspace's coordinates.
WORKSPACE_VARS = {
    "subscription": ("AZURE_SUBSCRIPTION_ID", "--subscription"),
    "resource_group": ("AZURE_RESOURCE_GROUP", "--resource-group"),
    "workspace": ("AZUREML_WORKSPACE_NAME", "--workspace"),
}


def azure_vm_size(instance_type: str | None) -> str | None:
    """`STANDARD_NC6` -> `Standard_NC6`, `STANDARD_NC4AS_T4_V3` -> `Standard_NC4as_T4_v3`; None if not Azure."""
    if not instance_type or not instance_type.upper().startswith("STANDARD_"):
        return None
    parts = instance_type.split("_")[1:]
    out = []
    for part in parts:
        if re.fullmatch(r"[Vv]\d+", part):
            out.append(part.lower())
        else:  # family letters, the vCPU count, then lower-case feature letters (as, s, ds ...)
            m = re.fullmatch(r"([A-Za-z]+)(\d+)([A-Za-z]*)", part)
            out.append(f"{m.group(1).upper()}{m.group(2)}{m.group(3).lower()}" if m else part.upper())
    return "Standard_" + "_".join(out)


def compute_name(cluster: str, pool: str, taken: set[str]) -> str:
    """An AmlCompute name (letters, digits, dashes; starts with a letter; at most 16 characters), unique."""
    keep = max(3, 16 - len(pool) - 1)
    base = re.sub(r"[^a-z0-9-]+", "-", f"{cluster[:keep]}-{pool}".lower()).strip("-")
    base = re.sub(r"-{2,}", "-", base)
    base = ("c" + base if not base[:1].isalpha() else base)[:16].rstrip("-")
    name, i = base, 2
    while name in taken:
        name = f"{base[: 16 - len(str(i)) - 1]}-{i}"
        i += 1
    taken.add(name)
    return name


def _step_name(pool: str) -> str:
    return "head" if pool == HEAD_POOL else "pool_" + re.sub(r"[^a-z0-9_]", "_", pool.lower())


@dataclass
class AzureMLRendering:
    """The SDK entities for a spec: computes by pool, and the pipeline job."""

    run_id: str
    computes: dict[str, Any]  # pool -> AmlCompute
    job: Any  # PipelineJob
    notes: list[str] = field(default_factory=list)
    package: Package | None = None  # the job's files, copied by `stage_code` into the steps' code snapshot


def _sizes(spec: Spec, plan: Plan, vm_sizes: dict[str, str] | None) -> dict[str, str]:
    vm_sizes = dict(vm_sizes or {})
    nodes = {HEAD_POOL: spec.cluster.head, **{w.name: w for w in spec.cluster.workers}}
    unknown = sorted(set(vm_sizes) - set(nodes))
    if unknown:
        hint = did_you_mean(unknown[0], nodes)
        raise UserError(
            f"--vm-size names pool `{unknown[0]}`, which the spec does not have" + (f"; {hint}" if hint else ""),
            fix="pools in this spec: " + ", ".join(nodes),
        )
    out = {}
    for pool, node in nodes.items():
        size = vm_sizes.get(pool) or azure_vm_size(node.instance_type)
        if size is None:
            where = "cluster.head" if pool == HEAD_POOL else f"cluster.workers[{pool}]"
            raise UserError(
                f"pool `{pool}` has no Azure VM size (`{where}.instance_type` is `{node.instance_type or 'not set'}`)",
                fix=f"use an Azure instance type there (e.g. STANDARD_D2_V2) or pass `--vm-size {pool}=SIZE`",
            )
        out[pool] = size
    return out


def _quiet_sdk() -> None:
    # The SDK logs "Class ...: This is an experimental class" for its own schemas on every load/dump.
    import logging

    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)


def build_azureml(
    submission: Submission,
    *,
    run_id: str | None = None,
    image: str | None = None,
    head_image: str | None = None,
    worker_image: str | None = None,
    vm_sizes: dict[str, str] | None = None,
    vnet: str | None = None,
    subnet: str | None = None,
    datastore: str = "workspaceblobstore",
    experiment: str = "rl-orchestrator",
) -> AzureMLRendering:
    """AmlCompute per pool + a pipeline job with one step per pool (see the module doc for why)."""
    _quiet_sdk()
    from azure.ai.ml import Output, PyTorchDistribution, command
    from azure.ai.ml.entities import AmlCompute, Environment, NetworkSettings, PipelineJob

    spec, plan = submission.spec, submission.plan
    run_id = run_id or new_run_id(spec)
    sizes = _sizes(spec, plan, vm_sizes)
    head_img, worker_img = resolve_images(image, head_image, worker_image)
    network = NetworkSettings(vnet_name=vnet, subnet=subnet) if (vnet or subnet) else None

    taken: set[str] = set()
    pools = [(HEAD_POOL, plan.head), *((p.name, p) for p in plan.pools)]
    computes = {}
    for pool, p in pools:
        computes[pool] = AmlCompute(
            name=compute_name(spec.cluster.name, pool, taken),
            size=sizes[pool],
            min_instances=0,
            max_instances=p.node_count,
            idle_time_before_scale_down=600,
            tier="dedicated",
            network_settings=network,
            description=f"rl-orchestrator {spec.cluster.name}: pool {pool} ({p.vcpus_per_node} vCPUs, "
            f"{p.gpus_per_node} GPUs per node)",
            tags={"rl-orchestrator": "1", "pool": pool},
        )

    # The job's files: a user's entry script / source_dir travels as the steps' code snapshot. The SDK would
    # upload the folder as it is (following every link, honouring only a root .amlignore/.gitignore), so the
    # snapshot is a copy of exactly what `rlo submit` ships (`package.job_package`), made by `stage_code`.
    pkg = submission.package
    source = pkg.root if pkg is not None else None
    entry = submission.entrypoint
    env = contract_env(run_id, "/placeholder", plan.as_env(), json.dumps(spec.to_dict()), 0.0)
    for k in ("RLO_RUN_DIR", "RLO_MODEL_DIR", "RLO_OUTPUT_DIR", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"):
        env.pop(k, None)  # set by the launcher from the head step's output folder
    env.pop("RLO_JOB_STARTED_AT")  # the job's clock starts when it starts
    env = {**spec.job.env_vars, **env}
    if spec.job.pip:
        env["RLO_PIP"] = " ".join(spec.job.pip)

    timeout = (
        spec.job.max_run_duration_seconds + JOB_GRACE_S + STARTUP_ALLOWANCE_S
        if spec.job.max_run_duration_seconds
        else DEFAULT_TIMEOUT_S
    )
    rendezvous = f"azureml://datastores/{datastore}/paths/rl-orchestrator/{run_id}/rendezvous/"
    steps: dict[str, BaseNode] = {}
    for pool, p in pools:
        is_head = pool == HEAD_POOL
        outputs = {"rendezvous": Output(type="uri_folder", mode="rw_mount", path=rendezvous)}
        cmd = f"python -m orchestrator.render.azureml_node --pool {pool} --rendezvous ${{{{outputs.rendezvous}}}}"
        if is_head:
            outputs["run"] = Output(type="uri_folder", mode="rw_mount")
            cmd += " --run-dir ${{outputs.run}} -- " + entry
        step = command(
            command=cmd,
            code=str(source) if source is not None else None,
            environment=Environment(image=head_img if is_head else worker_img),
            environment_variables=env,
            compute=computes[pool].name,
            instance_count=p.node_count,
            # One launcher per node (no torch.distributed is used): the worker pools' nodes each join Ray.
            distribution=None if is_head else PyTorchDistribution(process_count_per_instance=1),
            outputs=outputs,
            shm_size="8g",
            is_deterministic=False,
            display_name=f"{pool} ({p.node_count} x {sizes[pool]})",
        )
        step.set_limits(timeout=timeout)
        steps[_step_name(pool)] = step
    job = PipelineJob(
        jobs=steps,
        display_name=spec.job.name or run_id,
        experiment_name=experiment,
        description=f"rl-orchestrator run {run_id}: Ray head on {sizes[HEAD_POOL]}, "
        + (", ".join(f"{p.node_count} x {sizes[n]} ({n})" for n, p in pools[1:]) or "no worker pools"),
        tags={"rl-orchestrator": "1", "rlo_run_id": run_id},
    )
    settings = job.settings
    assert settings is not None, "the SDK's getter makes the settings on first use (it is typed Optional)"
    settings.force_rerun = True
    settings.continue_on_step_failure = False
    notes = [
        "the computes must reach each other: use the workspace's managed network or give --vnet/--subnet",
        f"the images ({head_img}, {worker_img}) must be pullable by the workspace (push them to its ACR)",
    ]
    return AzureMLRendering(run_id=run_id, computes=computes, job=job, notes=notes, package=pkg)


def stage_code(rendering: AzureMLRendering, folder: str | Path) -> Path | None:
    """Copy the job's files (exactly the package's list; links become the files they point to, all inside the
    job's folder) into `folder` and point every step's code snapshot there. None when the job has no files."""
    import shutil

    pkg = rendering.package
    if pkg is None:
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for f in pkg.files:
        dest = folder / f.rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.path, dest)
    for step in rendering.job.jobs.values():
        step.code = str(folder)
    return folder


def write_azureml(rendering: AzureMLRendering, out_dir: str | Path) -> list[Path]:
    """Dump every entity with the SDK's own `dump()`: compute-<pool>.yml, then job.yml."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    code = out / "code"
    if rendering.package is not None:
        if code.exists():
            if not (out / "job.yml").is_file():  # not ours: a folder of the user's that happens to be there
                raise UserError(
                    f"{code} already exists and is not a previous rendering's code snapshot",
                    fix="render into another folder (-o DIR), or remove it",
                )
            import shutil

            shutil.rmtree(code)  # a previous rendering's snapshot: replaced, never merged
        staged = stage_code(rendering, code)
        assert staged is not None, "stage_code copies a rendering that has a package"
        written.append(staged)
    for pool, compute in rendering.computes.items():
        p = out / f"compute-{pool}.yml"
        p.unlink(missing_ok=True)  # dump() refuses to overwrite
        compute.dump(p)
        written.append(p)
    p = out / "job.yml"
    p.unlink(missing_ok=True)
    rendering.job.dump(p)
    written.append(p)
    return written


# --- submission ------------------------------------------------------------------------------------------------


def workspace_coordinates(
    subscription: str | None = None, resource_group: str | None = None, workspace: str | None = None
) -> dict[str, str]:
    """The workspace's subscription / resource group / name from flags, else environment variables. A
    UserError names every one that is missing and how to give it."""
    given = {"subscription": subscription, "resource_group": resource_group, "workspace": workspace}
    out, missing = {}, []
    for key, (var, flag) in WORKSPACE_VARS.items():
        value = given[key] or os.environ.get(var)
        if value:
            out[key] = value
        else:
            missing.append(f"{flag} (or {var})")
    if missing:
        raise UserError(
            "submitting to Azure ML needs the workspace: missing " + ", ".join(missing),
            fix="pass the flags or set the variables (`az ml workspace list -o table` shows your workspaces); "
            "nothing was submitted",
        )
    return out


def azure_credential(timeout_s: float = 30.0):
    """DefaultAzureCredential, checked by asking for a token now (fails in about a second without credentials,
    instead of at the first API call)."""
    import concurrent.futures

    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    fix = (
        "log in with `az login` (Azure CLI), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
        "for a service principal, or run where a managed identity is assigned; nothing was submitted"
    )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(credential.get_token, "https://management.azure.com/.default").result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise UserError(f"no Azure credential answered within {timeout_s:.0f} s", fix=fix) from None
    except ClientAuthenticationError as e:
        tried = [ln.strip().split(":")[0] for ln in str(e).splitlines() if "Credential:" in ln]
        raise UserError(
            "no Azure credentials found" + (f" (tried {', '.join(tried)})" if tried else ""), fix=fix
        ) from None
    finally:
        pool.shutdown(wait=False)
    return credential


@dataclass(frozen=True)
class AzureMLJob:
    """A job submitted to Azure ML (`submit_azureml`). It is not in the local run registry: follow it in the studio
    or with `az ml job stream -n NAME`."""

    run_id: str  # the job contract's RLO_RUN_ID
    name: str  # Azure ML's job name
    studio_url: str  # "" when the workspace gave none


def submit_azureml(
    submission: Submission,
    *,
    subscription: str | None = None,
    resource_group: str | None = None,
    workspace: str | None = None,
    **render_kwargs,
) -> AzureMLJob:
    """Render, check the workspace and credentials, then create the computes and submit the pipeline job.

    Everything that can fail without Azure is checked first, then the credentials: without them nothing is
    created. Returns the job's names and studio URL. Azure ML runs are not in the local run registry (follow
    them with `az ml job show` / the studio)."""
    rendering = build_azureml(submission, **render_kwargs)
    coords = workspace_coordinates(subscription, resource_group, workspace)
    credential = azure_credential()
    import tempfile

    from azure.ai.ml import MLClient

    client = MLClient(credential, coords["subscription"], coords["resource_group"], coords["workspace"])
    for compute in rendering.computes.values():
        client.compute.begin_create_or_update(compute).result()
    with tempfile.TemporaryDirectory(prefix="rlo-aml-code-") as tmp:
        # The SDK uploads the code snapshot during create_or_update: exactly the job's files, then gone.
        stage_code(rendering, Path(tmp) / (rendering.package.root.name if rendering.package else "code"))
        job = client.jobs.create_or_update(rendering.job, experiment_name=rendering.job.experiment_name)
    return AzureMLJob(run_id=rendering.run_id, name=job.name, studio_url=getattr(job, "studio_url", "") or "")
