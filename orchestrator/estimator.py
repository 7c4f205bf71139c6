"""The Python face of `rlo submit`, shaped like the managed services' estimators.

from orchestrator import Estimator, ClusterSpec, HeadConfiguration, WorkerConfiguration, JobSpec

est = Estimator(
    cluster=ClusterSpec(head=HeadConfiguration(instance_type="STANDARD_NC6"),
                        workers=[WorkerConfiguration(instance_type="STANDARD_D2_V2", node_count=4)]),
    job=JobSpec(algorithm="IMPALA", env="PongNoFrameskip-v4", stop={"episode_reward_mean": 18}),
)
print(est.plan().explain())       # rlo plan
run = est.fit(wait=False)         # rlo submit
run.attach()                      # rlo attach
Estimator.attach(run.id)          # a handle on an existing run (SageMaker's RLEstimator.attach)
predictor = est.deploy()          # rlo deploy: the policy behind HTTP; predictor.predict(obs)
est.render("kuberay")             # rlo render kuberay: RayCluster / RayJob manifests
est.fit_azureml(workspace="ws")    # rlo submit --backend azureml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from .errors import UserError
from .planner import Plan, plan_spec
from .render import prepare_render
from .render.azureml import build_azureml, submit_azureml
from .render.kuberay import render_kuberay
from .render.raycronjob import render_raycronjob
from .run import Run
from .run import attach as _attach
from .spec import ClusterSpec, JobSpec, Spec, load_spec
from .submit import submit


class Estimator:
    def __init__(
        self,
        job: JobSpec | None = None,
        cluster: ClusterSpec | None = None,
        *,
        spec: Spec | None = None,
        address: str | None = None,
        token: str | None = None,
    ) -> None:
        """`address`/`token`: a Ray cluster (default: the embedded local Ray); `fit_azureml()` goes to Azure ML."""
        if spec is None:
            if job is None:
                raise TypeError("Estimator needs a `job` (and optionally a `cluster`), or a `spec`")
            spec = Spec(cluster=cluster or ClusterSpec(), job=job)
        self.spec = spec
        self.address = address
        self.token = token
        self.latest_run: Run | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **kwargs) -> Estimator:
        return cls(spec=load_spec(Path(path)), **kwargs)

    def plan(self) -> Plan:
        return plan_spec(self.spec)

    def render(self, target: Literal["kuberay", "raycronjob", "azureml"], **options: Any):
        """`rlo render TARGET`: the job as another engine's documents, checked as `fit()` checks it. KubeRay: a
        `KubeRayRendering` (`render.kuberay.write_yaml` writes its documents); a spec with `schedule:` as a
        RayCronJob; Azure ML: an `AzureMLRendering` (`render.azureml.write_azureml`). Options as the CLI's flags."""

        submission = prepare_render(self.spec)
        if target == "kuberay":
            return render_kuberay(submission, **options)
        if target == "raycronjob":
            return render_raycronjob(submission, **options)
        if target == "azureml":
            return build_azureml(submission, **options)
        raise UserError(f"render target `{target}` is not one of kuberay, raycronjob, azureml", fix="pick one of them")

    def fit(self, wait: bool = True, logs: bool = True) -> Run:
        """Submit the job. With wait=True, stay attached (printing the log when `logs`) until it ends."""

        run = submit(self.spec, address=self.address, token=self.token, command=f"Estimator.fit() from {os.getcwd()}")
        self.latest_run = run
        if wait:
            if logs:
                run.attach()
            else:
                run.wait()
        return run

    def fit_azureml(self, **options: Any):
        """`rlo submit SPEC --backend azureml`: render, check the workspace and credentials, create the computes,
        submit the pipeline job. Options as its flags: subscription, resource_group, workspace (else the
        AZURE_SUBSCRIPTION_ID / AZURE_RESOURCE_GROUP / AZUREML_WORKSPACE_NAME variables), image, head_image,
        worker_image, vm_sizes ({pool: size}), vnet, subnet. Returns an `AzureMLJob` (its name and studio URL); Azure
        ML runs are followed in its studio, not in the local run registry."""

        if self.address:
            raise UserError(
                "this Estimator has a Ray `address`; fit_azureml() submits to an Azure ML workspace instead",
                fix="make an Estimator without `address` for Azure ML",
            )
        return submit_azureml(prepare_render(self.spec), **options)

    def deploy(self, checkpoint: str = "latest", **options):
        """Serve the policy of the run `fit()` made over HTTP (SageMaker's `estimator.deploy()`); returns a
        `Predictor` (`predictor.predict(obs)`). Options as `Run.deploy` / `rlo deploy`."""
        if self.latest_run is None:
            raise UserError(
                "this Estimator has not trained anything yet", fix="call fit() first, or Estimator.attach(RUN).deploy()"
            )
        return self.latest_run.deploy(checkpoint, **options)

    @staticmethod
    def attach(run_id: str, token: str | None = None) -> Run:
        return _attach(run_id, token=token)
