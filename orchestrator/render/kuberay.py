"""KubeRay manifests for a spec: a RayCluster (a long-lived cluster to `rlo submit --address` to) and a RayJob
(a cluster made for one job, removed when it ends).

What a spec becomes:
- the head group: the head's CPUs, memory and GPUs as the pod's requests = limits (`nvidia.com/gpu` when the
  head has GPUs, with the usual GPU-node toleration), and `rayStartParams` from `placement.node_params`, so
  the node carries the same pool / head / env-runner-slot resources as a `rlo cluster start-head` node;
- one worker group per pool, `replicas = minReplicas = maxReplicas = node_count` (the plan is for that many
  nodes; the spec has no autoscaling range, so none is rendered), `rayStartParams` from placement;
- token authentication through the CRD's own `authOptions: {mode: token}` (KubeRay >= 1.5.1 creates a Secret
  with a random token and sets RAY_AUTH_MODE / RAY_AUTH_TOKEN on every Ray container, the submitter's too);
  `auth_secret=` names an existing Secret (key `auth_token`) instead;
- the job: the RayJob's entrypoint is what `rlo submit` runs (`python -u -m entry_scripts.train` for a
  built-in algorithm), and the spec travels inline, in `runtimeEnvYAML`'s env_vars, as the entry-script
  contract's variables (RLO_SPEC_JSON and the plan's numbers). A user's entry script or `source_dir` that is
  not part of the image travels as a ConfigMap mounted on every Ray pod at /opt/rlo/job (on PYTHONPATH, so
  env runners import the user's env module too);
- the images are the ones `docker/` builds (`rl-orchestrator-head:<version>` with CUDA, `-worker:` CPU only).

Pure functions returning plain dicts; `write_yaml` writes them. Checked against KubeRay's CRD schemas in
tests/api/test_render.py.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .. import package
from ..contract import contract_env
from ..errors import UserError
from ..nodes import NodeParams, node_params
from ..package import entry_in
from ..placement import HEAD_POOL
from ..planner import Plan, plan_spec
from ..spec import Spec
from ..submission import Submission, new_run_id
from . import project_version, ray_version, resolve_images

API_VERSION = "ray.io/v1"
# Where a job's files (user script, source_dir) are mounted in every Ray pod.
JOB_FILES_DIR = "/opt/rlo/job"
# Where the job's run folder goes on the head (the same place `rlo submit --address` uses).
RUNS_DIR = "/tmp/rlo-runs"
# ConfigMaps hold at most 1 MiB; leave room for keys and metadata.
MAX_CONFIGMAP_BYTES = 900 * 1024
# Time a RayJob may spend bringing its cluster up, on top of the job's own bound, before activeDeadlineSeconds.
DEFAULT_STARTUP_ALLOWANCE_S = 900
DEFAULT_TTL_AFTER_FINISHED_S = 600
# = jobside.HARD_KILL_GRACE_S (not imported: jobside imports Ray; a test keeps them equal).
JOB_GRACE_S = 120
GPU_RESOURCE = "nvidia.com/gpu"
LABEL_PREFIX = "rl-orchestrator.io/"

_PACKAGE_SCRIPTS = Path(__file__).resolve().parents[2] / "entry_scripts"


def k8s_name(text: str, max_len: int = 40) -> str:
    """A DNS-1123 label from `text` (lower case, dashes), at most `max_len` characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:max_len].rstrip("-")
    return name or "rlo"


def quantity_memory(num_bytes: int) -> str:
    """Bytes as a Kubernetes quantity: `56Gi`, `7680Mi`, or plain bytes."""
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if num_bytes % size == 0:
            return f"{num_bytes // size}{unit}"
    return str(num_bytes)


def _resources(params: NodeParams) -> dict[str, dict[str, str]]:
    # requests == limits: the Ray node is told exactly what the pod gets (KubeRay's advice).
    amounts = {"cpu": str(params.num_cpus)}
    if params.memory_bytes:
        amounts["memory"] = quantity_memory(params.memory_bytes)
    if params.num_gpus:
        amounts[GPU_RESOURCE] = str(params.num_gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def object_labels(spec: Spec, **extra: str) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "rl-orchestrator",
        "app.kubernetes.io/version": project_version(),
        LABEL_PREFIX + "cluster": k8s_name(spec.cluster.name, 63),
    }
    labels.update({LABEL_PREFIX + k: v for k, v in extra.items()})
    return labels


def _pod_template(
    spec: Spec, params: NodeParams, image: str, *, files_configmap: str | None, files: list[dict] | None
) -> dict:
    container: dict[str, Any] = {
        "name": "ray-head" if params.role == "head" else "ray-worker",
        "image": image,
        "resources": _resources(params),
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if params.role == "head":
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ]
    # Ray's object store lives in /dev/shm; the container default (64 MB) is far too small.
    volumes: list[dict] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    if files_configmap:
        container["volumeMounts"].append({"name": "job-files", "mountPath": JOB_FILES_DIR, "readOnly": True})
        source: dict[str, Any] = {"name": files_configmap}
        if files:
            source["items"] = files
        volumes.append({"name": "job-files", "configMap": source})
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if params.num_gpus:
        # GPU node pools are usually tainted so that only GPU work lands there (AKS, GKE, EKS).
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": object_labels(spec, pool=params.pool)}, "spec": pod_spec}


def raycluster_spec(
    spec: Spec,
    *,
    plan: Plan | None = None,
    image: str | None = None,
    head_image: str | None = None,
    worker_image: str | None = None,
    auth: bool = True,
    auth_secret: str | None = None,
    files_configmap: str | None = None,
    files: list[dict] | None = None,
) -> dict:
    """The `.spec` of a RayCluster (also the RayJob's `rayClusterSpec`)."""
    plan = plan or plan_spec(spec)
    head_img, worker_img = resolve_images(image, head_image, worker_image)
    head = node_params(plan, HEAD_POOL)
    head_params = {**head.ray_start_params(), "dashboard-host": "0.0.0.0"}
    out: dict[str, Any] = {
        "rayVersion": ray_version(),
        "headGroupSpec": {
            "rayStartParams": head_params,
            "template": _pod_template(spec, head, head_img, files_configmap=files_configmap, files=files),
        },
    }
    if auth or auth_secret:
        out["authOptions"] = {"mode": "token", **({"secretName": auth_secret} if auth_secret else {})}
    groups = []
    for pool in plan.pools:
        params = node_params(plan, pool.name)
        groups.append(
            {
                "groupName": pool.name,
                "replicas": pool.node_count,
                "minReplicas": pool.node_count,
                "maxReplicas": pool.node_count,
                "rayStartParams": params.ray_start_params(),
                "template": _pod_template(spec, params, worker_img, files_configmap=files_configmap, files=files),
            }
        )
    if groups:
        out["workerGroupSpecs"] = groups
    return out


def raycluster_manifest(spec: Spec, *, name: str | None = None, namespace: str | None = None, **kwargs) -> dict:
    """A RayCluster for the spec's cluster: submit jobs to it with `rlo submit --address` (port-forward the
    head service's 8265). Keyword arguments as `raycluster_spec`."""
    metadata: dict[str, Any] = {"name": k8s_name(name or spec.cluster.name), "labels": object_labels(spec)}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": metadata,
        "spec": raycluster_spec(spec, **kwargs),
    }


# --- the job -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFiles:
    """Files of the user's that must travel with the job (entry script, source_dir), as a ConfigMap."""

    data: dict[str, str] = field(default_factory=dict)  # ConfigMap key -> text
    binary: dict[str, str] = field(default_factory=dict)  # ConfigMap key -> base64
    items: list[dict] = field(default_factory=list)  # key -> path under JOB_FILES_DIR

    def configmap(self, name: str, spec: Spec, namespace: str | None = None) -> dict:
        metadata: dict[str, Any] = {"name": name, "labels": object_labels(spec)}
        if namespace:
            metadata["namespace"] = namespace
        cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
        if self.data:
            cm["data"] = self.data
        if self.binary:
            cm["binaryData"] = self.binary
        return cm


def _packaged_module(spec: Spec) -> str | None:
    """`entry_scripts.x` when the entry script is one of this project's (installed in the images)."""
    script = spec.resolved_entry_script()
    if script is not None and script.parent.resolve() == _PACKAGE_SCRIPTS and not spec.job.source_dir:
        return f"entry_scripts.{script.stem}"
    return None


def job_files(submission: Submission) -> JobFiles | None:
    """The user's files the job needs in the cluster, or None when the images already hold everything."""
    if _packaged_module(submission.spec):
        return None
    # The same files `rlo submit` ships as Ray's working_dir (escaping links and oversized folders refused).
    pkg = submission.package
    if pkg is None:
        return None
    import base64

    files = JobFiles()
    total = 0
    for i, shipped in enumerate(pkg.files):
        total += shipped.size
        if total > MAX_CONFIGMAP_BYTES:
            raise UserError(
                f"the job's files in {pkg.root} are over {MAX_CONFIGMAP_BYTES // 1024} KiB, too much for a ConfigMap",
                fix="bake them into the image (FROM rl-orchestrator-head/worker, COPY them, install them) and point "
                "`job.entry_script` at a script of the image, or keep only code in `job.source_dir`",
            )
        raw = shipped.path.read_bytes()
        key = f"f{i:03d}-" + re.sub(r"[^-._a-zA-Z0-9]", "_", PurePosixPath(shipped.rel).name)
        try:
            files.data[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            files.binary[key] = base64.b64encode(raw).decode("ascii")
        files.items.append({"key": key, "path": shipped.rel})
    return files


def entrypoint(submission: Submission) -> str:
    """The command the RayJob runs on the head: the same job as `rlo submit`, from the image or the job files."""
    spec, local = submission.spec, submission.entrypoint
    script = spec.resolved_entry_script()
    if script is None:  # no entry script
        return local
    source = package.source_dir(spec)
    rel = entry_in(script, source) or script
    prefix = f"python -u {shlex.quote(str(rel))}"
    args = local[len(prefix) :]
    module = _packaged_module(spec)
    if module:
        return f"python -u -m {module}{args}"
    if rel.is_absolute():
        raise UserError(
            f"entry script {script} is outside `job.source_dir` ({source}), so it would not travel with the job",
            fix="put the script inside `job.source_dir`, or drop `source_dir` (the script's folder is shipped)",
        )
    return f"cd {JOB_FILES_DIR} && python -u {shlex.quote(rel.as_posix())}{args}"


def job_env(spec: Spec, run_id: str, plan: Plan, *, with_files: bool) -> dict[str, str]:
    """The job's environment: the spec's env_vars and the entry-script contract (the spec travels here)."""
    env = contract_env(run_id, f"{RUNS_DIR}/{run_id}", plan.as_env(), json.dumps(spec.to_dict()), 0.0)
    # The job's clock starts when it starts in the cluster, not when it was rendered.
    env.pop("RLO_JOB_STARTED_AT")
    env = {**spec.job.env_vars, **env}
    if with_files:
        env["PYTHONPATH"] = JOB_FILES_DIR
    return env


def rayjob_spec(
    submission: Submission,
    *,
    run_id: str | None = None,
    cluster_selector: dict[str, str] | None = None,
    files_configmap: str | None = None,
    ttl_seconds_after_finished: int = DEFAULT_TTL_AFTER_FINISHED_S,
    startup_allowance_s: int = DEFAULT_STARTUP_ALLOWANCE_S,
    image: str | None = None,
    head_image: str | None = None,
    worker_image: str | None = None,
    auth: bool = True,
    auth_secret: str | None = None,
) -> dict:
    """The `.spec` of a RayJob that runs the spec's job (public and stable: RayCronJob embeds it).

    `cluster_selector` runs the job on an existing RayCluster (e.g. `{"ray.io/cluster": "NAME"}`) instead of
    one made for it. A job whose files travel as a ConfigMap (see `job_files`) needs `files_configmap`, the
    ConfigMap's name; `render_kuberay` makes both."""
    spec, plan = submission.spec, submission.plan
    run_id = run_id or new_run_id(spec)
    files = job_files(submission)
    if files is not None and files_configmap is None:
        raise UserError(
            "this job's entry script / source_dir is not in the image, so it travels as a ConfigMap",
            fix="pass `files_configmap=NAME` and apply `job_files(submission).configmap(NAME, spec)` too "
            "(`rlo render kuberay` writes both)",
        )
    if files is not None and cluster_selector:
        raise UserError(
            "a job with its own files cannot run on an existing RayCluster: they are mounted when pods start",
            fix="render the cluster with the job (no cluster selector), or bake the files into the image",
        )
    runtime_env: dict[str, Any] = {"env_vars": job_env(spec, run_id, plan, with_files=files is not None)}
    if spec.job.pip:
        runtime_env["pip"] = list(spec.job.pip)
    out: dict[str, Any] = {
        "entrypoint": entrypoint(submission),
        # The Ray job's submission id is the run id, as with `rlo submit` (the contract's RLO_RUN_ID).
        "jobId": run_id,
        "runtimeEnvYAML": yaml.safe_dump(runtime_env, sort_keys=True, width=1 << 20),
        "submissionMode": "K8sJobMode",
    }
    if spec.job.max_run_duration_seconds:
        # The job stops itself at max_run_duration_seconds (+ grace to checkpoint); this is the hard bound,
        # counted by KubeRay from the RayJob's creation, so it includes bringing the cluster up.
        out["activeDeadlineSeconds"] = spec.job.max_run_duration_seconds + JOB_GRACE_S + startup_allowance_s
    if cluster_selector:
        out["clusterSelector"] = dict(cluster_selector)
    else:
        out["shutdownAfterJobFinishes"] = True
        out["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
        out["rayClusterSpec"] = raycluster_spec(
            spec,
            plan=plan,
            image=image,
            head_image=head_image,
            worker_image=worker_image,
            auth=auth,
            auth_secret=auth_secret,
            files_configmap=files_configmap,
            files=files.items if files else None,
        )
    return out


def rayjob_manifest(
    submission: Submission,
    *,
    name: str | None = None,
    namespace: str | None = None,
    run_id: str | None = None,
    **kwargs,
) -> dict:
    """A RayJob: a cluster made for the job, the job, and the cluster's removal when it ends. Keyword arguments
    as `rayjob_spec`."""
    spec = submission.spec
    run_id = run_id or new_run_id(spec)
    # KubeRay names the job's cluster and submitter after the RayJob: keep it short.
    default = f"{k8s_name(spec.job.name or spec.job.algorithm or 'job', 30)}-{secrets.token_hex(2)}"
    metadata: dict[str, Any] = {
        "name": k8s_name(name or default, 47),
        "labels": object_labels(spec, **{"run-id": run_id}),
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": metadata,
        "spec": rayjob_spec(submission, run_id=run_id, **kwargs),
    }


@dataclass
class KubeRayRendering:
    """What `rlo render kuberay` writes: file name -> the documents in it."""

    run_id: str
    files: dict[str, list[dict]]


def render_kuberay(
    submission: Submission,
    *,
    namespace: str | None = None,
    image: str | None = None,
    head_image: str | None = None,
    worker_image: str | None = None,
    auth_secret: str | None = None,
    run_id: str | None = None,
) -> KubeRayRendering:
    """raycluster.yaml (the cluster alone) and rayjob.yaml (the job with its own cluster, and its files)."""
    spec = submission.spec
    run_id = run_id or new_run_id(spec)
    images = {"image": image, "head_image": head_image, "worker_image": worker_image, "auth_secret": auth_secret}
    files = job_files(submission)
    job_docs: list[dict] = []
    cm_name = None
    if files is not None:
        cm_name = k8s_name(f"{spec.job.name or 'job'}-files-{run_id[-4:]}", 63)
        job_docs.append(files.configmap(cm_name, spec, namespace))
    job_docs.append(rayjob_manifest(submission, namespace=namespace, run_id=run_id, files_configmap=cm_name, **images))
    cluster = raycluster_manifest(spec, namespace=namespace, plan=submission.plan, **images)
    return KubeRayRendering(run_id=run_id, files={"raycluster.yaml": [cluster], "rayjob.yaml": job_docs})


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    # Multi-line strings (runtimeEnvYAML, job files) as literal blocks: readable, and the same string back.
    style = "|" if "\n" in value and all(c == "\n" or c >= " " for c in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(documents: list[dict]) -> str:
    return "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=120) for d in documents)


def write_yaml(documents: list[dict], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(to_yaml(documents))
    return p
