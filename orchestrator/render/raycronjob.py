"""A spec's `schedule:` as a KubeRay RayCronJob: KubeRay creates a RayJob (a cluster made for the job, removed
when it ends) at every fire time. The job template is exactly `render.kuberay.rayjob_spec`'s RayJob spec.

What the CRD (ray.io/v1 RayCronJob, `tests/data/kuberay-crds/`) can and cannot say, and what we do about it:
- `schedule`: the cron expression as written (KubeRay parses it with robfig/cron's standard parser: 5 fields
  and the @daily-style shortcuts, the same language `rlo schedule` accepts).
- `timeZone`: always set to the schedule's time zone (without it KubeRay would use its operator's local zone).
- overlap: the CRD has no concurrency policy; KubeRay creates a new RayJob at every fire time even while the
  previous one runs. `skip`, `queue` and `cancel_previous` cannot be enforced there: rendered as an annotation,
  with a notice. `job.max_run_duration_seconds` (the RayJob's activeDeadlineSeconds) bounds each run.
- catch-up: after downtime KubeRay fires once (the first missed time after its last schedule time), which is
  our `latest` in effect; `none` and `all` get a notice.
- `seed: from_firing`: a RayCronJob's template is the same for every firing, so the spec is rendered without a
  seed (every run draws fresh random seeds; not reproducible from the fire time), with a notice.
- the template has no `jobId` (KubeRay gives each RayJob its own), and every firing's runs carry the run id
  `rlo-<schedule>-cron` in the job contract (the RayJob's name, `<schedule>-xxxxx`, tells firings apart).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..submission import Submission
from .kuberay import API_VERSION, LABEL_PREFIX, job_files, k8s_name, object_labels, rayjob_spec

# KubeRay names each RayJob `<RayCronJob name>-<5 random chars>`, and the RayJob's name must stay short enough
# for the cluster and submitter objects named after it (render.kuberay keeps RayJob names <= 47).
MAX_NAME = 41

_OVERLAP_NOTE = (
    "KubeRay's RayCronJob has no concurrency policy: it starts a new RayJob at every fire time, even while the "
    "previous one runs, so `overlap: {overlap}` is not enforced on Kubernetes (it is with `rlo scheduler`)"
)


@dataclass
class RayCronJobRendering:
    """The documents (a ConfigMap with the job's files when it has some, then the RayCronJob) and notices."""

    documents: list[dict]
    notices: list[str] = field(default_factory=list)

    @property
    def raycronjob(self) -> dict:
        return self.documents[-1]


def render_raycronjob(
    submission: Submission,
    *,
    name: str | None = None,
    namespace: str | None = None,
    suspend: bool = False,
    **rayjob_options: Any,
) -> RayCronJobRendering:
    """A RayCronJob (and its job files' ConfigMap) for a spec with a `schedule:` section. `rayjob_options` go to
    `render.kuberay.rayjob_spec` (image, head_image, worker_image, auth_secret, ...)."""
    spec = submission.spec
    sched = spec.schedule
    if sched is None:
        raise UserError(
            "the spec has no `schedule:` section, so there is nothing to render as a RayCronJob",
            fix='add `schedule: {cron: "0 2 * * *", timezone: UTC}` to the spec (`rlo render kuberay` renders '
            "a one-off RayJob)",
        )
    if rayjob_options.get("cluster_selector"):
        raise UserError(
            "a RayCronJob renders a cluster made for each firing; it does not run on an existing RayCluster",
            fix="drop the cluster selector (or schedule with `rlo scheduler` against that cluster's address)",
        )
    base = sched.name or spec.job.name or spec.job.algorithm or "job"
    cron_name = k8s_name(name or base, MAX_NAME)
    notices: list[str] = []
    notices.append(_OVERLAP_NOTE.format(overlap=sched.overlap))
    if sched.catch_up != "latest":
        notices.append(
            f"after downtime KubeRay fires one missed time (like `catch_up: latest`); `catch_up: {sched.catch_up}` "
            "is not available there"
        )
    # The job alone travels (RLO_SPEC_JSON): the schedule is KubeRay's business.
    job_spec = spec.model_copy(update={"schedule": None})
    if sched.seed == "from_firing":
        job_spec = job_spec.model_copy(update={"job": spec.job.model_copy(update={"seed": None})})
        notices.append(
            "`seed: from_firing` cannot vary per firing in a RayCronJob (one template for all firings): rendered "
            "without a seed, so every run draws fresh random seeds"
        )

    # The same plan, files and command: neither the schedule nor the seed changes them.
    job = dataclasses.replace(submission, spec=job_spec)
    files = job_files(job)
    documents: list[dict] = []
    cm_name = None
    if files is not None:
        cm_name = k8s_name(f"{cron_name}-files", 63)
        documents.append(files.configmap(cm_name, job_spec, namespace))
    template = rayjob_spec(job, run_id=f"rlo-{cron_name}-cron", files_configmap=cm_name, **rayjob_options)
    template.pop("jobId", None)  # one submission id per RayJob, made by KubeRay

    metadata: dict[str, Any] = {
        "name": cron_name,
        "labels": object_labels(job_spec, schedule=cron_name),
        "annotations": {
            LABEL_PREFIX + "overlap": sched.overlap,
            LABEL_PREFIX + "catch-up": sched.catch_up,
            LABEL_PREFIX + "seed": sched.seed,
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    documents.append(
        {
            "apiVersion": API_VERSION,
            "kind": "RayCronJob",
            "metadata": metadata,
            "spec": {
                "schedule": sched.cron,
                "timeZone": sched.timezone,
                "suspend": suspend,
                "jobTemplate": template,
            },
        }
    )
    return RayCronJobRendering(documents, notices)
