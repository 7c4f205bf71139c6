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
"""

from __future__ import annotations

import os
from pathlib import Path

from .planner import Plan, plan_spec
from .run import Run
from .run import attach as _attach
from .spec import ClusterSpec, JobSpec, Spec, load_spec


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

    def fit(self, wait: bool = True, logs: bool = True) -> Run:
        """Submit the job. With wait=True, stay attached (printing the log when `logs`) until it ends."""
        from .submit import submit

        run = submit(self.spec, address=self.address, token=self.token, command=f"Estimator.fit() from {os.getcwd()}")
        self.latest_run = run
        if wait:
            if logs:
                run.attach()
            else:
                run.wait()
        return run

    @staticmethod
    def attach(run_id: str, token: str | None = None) -> Run:
        return _attach(run_id, token=token)
