"""Amazon SageMaker RL's names, for code written for `sagemaker.rl` and `sagemaker_rl.ray_launcher`: change the
import lines, keep the rest.

    # from sagemaker.rl import RLEstimator, RLToolkit, RLFramework
    from orchestrator.compat.sagemaker import RLEstimator, RLToolkit, RLFramework

    estimator = RLEstimator(entry_point="train-ppo.py", source_dir="src", toolkit=RLToolkit.RAY,
                            toolkit_version="1.6.0", framework=RLFramework.PYTORCH, role="SageMakerRole",
                            instance_type="local", instance_count=1,
                            hyperparameters={"rl.training.stop.training_iteration": 2},
                            metric_definitions=[{"Name": "episode_reward_mean",
                                                 "Regex": "episode_reward_mean: ([-+]?[0-9.]+)"}])
    estimator.fit()                         # the entry script as a job on the embedded local Ray (or `address=`)
    estimator.model_data                    # the model folder (or model.tar.gz under a local `output_path`)
    estimator.training_job_analytics.dataframe()     # the metric_definitions' series (Run.analytics)
    predictor = estimator.deploy(initial_instance_count=1, instance_type="ml.m4.xlarge")
    predictor.predict(observation)
    RLEstimator.attach(estimator.latest_training_job.name)

    # in the entry script: from sagemaker_rl.ray_launcher import SageMakerRayLauncher
    from orchestrator.compat.sagemaker import SageMakerRayLauncher

`instance_type="local"` is SageMaker's local mode: the embedded local Ray on this machine. An `ml.*` type comes from
the catalog (orchestrator/catalog.py) and, with `instance_count`, makes the cluster the planner sizes (one head,
`instance_count - 1` workers of the same type). Arguments about AWS (role, image_uri, sagemaker_session, subnets,
...) mean nothing here: each is accepted with one one-line notice. Coach and TensorFlow/MXNet cannot carry over
(SageMaker's images stopped at Ray 1.6; RLlib here runs torch): they are a UserError naming the replacement.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, TypeVar

from .. import algorithms, catalog, events, metrics
from ..contract import job_context
from ..errors import JobFailed, SpecError, UserError, did_you_mean, run_main
from ..estimator import Estimator
from ..registry import Registry
from ..run import attach as attach_run
from ..serving import deploy as serve_deploy
from ..settings import settings
from ..spec import CheckpointConfig, ClusterSpec, HeadConfiguration, JobSpec, Spec, WorkerConfiguration, problems_from
from ..submit import submit
from ..training import translate_hyperparameters

__all__ = [
    "RLEstimator",
    "RLFramework",
    "RLToolkit",
    "SageMakerRayLauncher",
    "TrainingJobAnalytics",
    "default_metric_definitions",
]


class RLToolkit(enum.Enum):
    COACH = "coach"
    RAY = "ray"


class RLFramework(enum.Enum):
    TENSORFLOW = "tensorflow"
    MXNET = "mxnet"
    PYTORCH = "pytorch"


_FLOAT = r"[-+]?[0-9]*[.]?[0-9]+(?:[eE][-+]?[0-9]+)?"


def default_metric_definitions(toolkit: RLToolkit = RLToolkit.RAY) -> list[dict[str, str]]:
    """What SageMaker's RLEstimator watches for Ray when given no `metric_definitions`; the launcher prints these
    lines (Ray 1.x's `pretty_print` names) after every iteration, so the same regexes find them here."""
    return [
        {"Name": "episode_reward_mean", "Regex": f"episode_reward_mean: ({_FLOAT})"},
        {"Name": "episode_reward_max", "Regex": f"episode_reward_max: ({_FLOAT})"},
    ]


# Arguments of SageMaker's RLEstimator / EstimatorBase / Framework that describe AWS resources, containers or
# services: accepted (so that the user's call runs unchanged) with one notice each, saying why nothing is done.
_NOT_HERE = {
    "role": "no IAM role is needed: jobs run on this machine's embedded Ray or the cluster at `address`",
    "image_uri": "jobs run in this Python environment, not in a container image (pip packages: `environment` "
    "cannot add them; install them, or use a spec's `job.pip`)",
    "sagemaker_session": "there is no SageMaker session: runs are kept in the local registry (`rlo list`)",
    "volume_size": "the job writes to the run's folder on the head node",
    "volume_kms_key": "no AWS KMS here",
    "output_kms_key": "no AWS KMS here",
    "subnets": "no VPC here: the cluster's network is Ray's",
    "security_group_ids": "no VPC here: the cluster's network is Ray's",
    "tags": "runs carry no AWS tags (the run id and `base_job_name` name them)",
    "use_spot_instances": "no spot capacity here: the cluster is what the instance type describes",
    "max_wait": "no spot capacity here (`max_run` bounds the job)",
    "checkpoint_s3_uri": "checkpoints stay in the run's folder (`rlo status RUN` lists them)",
    "checkpoint_local_path": "checkpoints stay in the run's folder (`rlo status RUN` lists them)",
    "rules": "SageMaker Debugger does not exist here",
    "debugger_hook_config": "SageMaker Debugger does not exist here",
    "tensorboard_output_config": "TensorBoard files are written under the run's output folder",
    "profiler_config": "SageMaker's profiler does not exist here",
    "disable_profiler": "SageMaker's profiler does not exist here",
    "enable_sagemaker_metrics": "metric_definitions are read from the log by `Run.analytics()`",
    "enable_network_isolation": "no container network isolation here",
    "encrypt_inter_container_traffic": "no containers here: Ray's own traffic settings apply",
    "input_mode": "there are no input channels (ship data with `source_dir`)",
    "keep_alive_period_in_seconds": "no warm pools: the embedded Ray stays up until `rlo down`",
    "container_log_level": "the job's log is Ray's (`rlo logs RUN`)",
    "code_location": "the code ships with the job through Ray, not S3",
    "model_uri": "no model channel: restore inside the entry script from a checkpoint folder",
    "model_channel_name": "no model channel: restore inside the entry script from a checkpoint folder",
    "git_config": "give a local `source_dir` (a clone)",
    "dependencies": "ship dependencies inside `source_dir`",
    "max_retry_attempts": "a job is one attempt; `rlo resume RUN` continues a built-in algorithm's run",
    "instance_groups": "give one `instance_type` and `instance_count` (or a spec with worker pools)",
    "training_repository_access_mode": "no container registry here",
    "training_repository_credentials_provider_arn": "no container registry here",
    "enable_infra_check": "no SageMaker infrastructure checks here",
    "container_entry_point": "the job runs the entry_point script itself",
    "container_arguments": "give the script's arguments as `hyperparameters`",
    "disable_output_compression": "the model is a folder (and a model.tar.gz under a local `output_path`)",
    "enable_remote_debug": "no remote debugging here",
    "enable_session_tag_chaining": "no AWS sessions here",
    "training_plan": "no SageMaker training plans here",
    "py_version": "the job runs this Python",
    "framework_version": "RLlib here runs torch (the installed version)",
}

_LOCAL_TYPES = ("local", "local_gpu")


def _note(message: str) -> None:
    # The shape the CLI gives its notices (`[rlo] note: ...` on stderr), one line each.
    print(f"[rlo] note: {message}", file=sys.stderr, flush=True)


_E = TypeVar("_E", bound=enum.Enum)


def _enum_value(value: Any, kind: type[_E], what: str) -> _E | None:
    if value is None or isinstance(value, kind):
        return value
    for member in kind:
        if str(value).lower() in (member.value, member.name.lower()):
            return member
    raise UserError(
        f"`{what}={value!r}` is not one of {', '.join(f'{kind.__name__}.{m.name}' for m in kind)}",
        fix=f"use `{what}={kind.__name__}.{'RAY' if kind is RLToolkit else 'PYTORCH'}`",
    )


def _check_toolkit(toolkit: RLToolkit | None, framework: RLFramework | None) -> None:
    if toolkit is RLToolkit.COACH:
        raise UserError(
            "RLToolkit.COACH (Intel's Coach) cannot run here: Coach is no longer developed, and rl-orchestrator runs "
            "Ray RLlib only",
            fix="use `toolkit=RLToolkit.RAY` with an entry script that subclasses `SageMakerRayLauncher` (or "
            "trains with RLlib); Coach presets map to RLlib's PPO, DQN, APPO/IMPALA or SAC",
        )
    if framework in (RLFramework.TENSORFLOW, RLFramework.MXNET):
        raise UserError(
            f"RLFramework.{framework.name}: RLlib's new API stack here runs PyTorch only",
            fix="use `framework=RLFramework.PYTORCH` (the config's `framework`/`use_pytorch` keys are then ignored)",
        )


def _cluster(instance_type: str | None, instance_count: int | None, address: str | None):

    count = 1 if instance_count is None else instance_count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"`instance_count={instance_count!r}` is not a number of instances", fix="give 1 or more")
    kind = (instance_type or "local").strip()
    if kind.lower() in _LOCAL_TYPES:
        if count > 1:
            _note(f"instance_count={count} with local mode: the job runs on this machine's embedded Ray, once")
        if kind.lower() == "local_gpu":
            _note("instance_type `local_gpu`: local mode runs on this machine; its learner uses a GPU when Ray has one")
        return ClusterSpec(address=address)
    if catalog.lookup(kind) is None:
        known = [n for n in catalog.names() if n.startswith("ml.")]
        hint = did_you_mean(kind, catalog.names())
        raise UserError(
            f"unknown instance type `{kind}`" + (f"; {hint}" if hint else ""),
            fix=f"use `local` (this machine) or one of the catalog's: {', '.join(known)} (orchestrator/catalog.py)",
        )
    workers = [WorkerConfiguration(name="algo", instance_type=kind, node_count=count - 1)] if count > 1 else []
    return ClusterSpec(
        name=f"sagemaker-{kind}", head=HeadConfiguration(instance_type=kind), workers=workers, address=address
    )


class _TrainingJob:
    """`estimator.latest_training_job`: the run, with the few names SageMaker's `_TrainingJob` has."""

    _STATUS = {"SUCCEEDED": "Completed", "FAILED": "Failed", "STOPPED": "Stopped", "SUBMIT_FAILED": "Failed"}

    def __init__(self, estimator: RLEstimator, run) -> None:
        self._estimator = estimator
        self.run = run

    @property
    def name(self) -> str:
        return self.run.id

    @property
    def job_name(self) -> str:
        return self.run.id

    def wait(self, logs: Any = "All") -> None:
        self._estimator._wait(self.run, logs)

    def stop(self) -> None:
        self.run.stop()

    def describe(self) -> dict:
        rec = self.run.refresh()
        return {
            "TrainingJobName": rec.id,
            "TrainingJobStatus": self._STATUS.get(rec.status, "InProgress"),
            "FailureReason": rec.message if rec.status in ("FAILED", "SUBMIT_FAILED") else None,
            "HyperParameters": dict((rec.spec.get("job") or {}).get("script_args") or {}),
            "ModelArtifacts": {"S3ModelArtifacts": self._estimator.model_data},
            "CreationTime": rec.created_at,
            "TrainingEndTime": rec.ended_at,
            "FinalMetricDataList": [
                {"MetricName": k, "Value": v}
                for k, v in (rec.final_metrics or {}).items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            ],
        }


class RLEstimator(Estimator):
    """SageMaker's `sagemaker.rl.RLEstimator`, on our Estimator: `fit()` submits the entry script as a job."""

    def __init__(
        self,
        entry_point: str,
        toolkit: RLToolkit | str | None = None,
        toolkit_version: str | None = None,
        framework: RLFramework | str | None = None,
        source_dir: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        image_uri: str | None = None,
        metric_definitions: list[dict[str, str]] | None = None,
        *,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        output_path: str | None = None,
        base_job_name: str | None = None,
        max_run: int | None = None,
        environment: dict[str, str] | None = None,
        address: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> None:
        from pydantic import ValidationError

        self.toolkit = _enum_value(toolkit, RLToolkit, "toolkit")
        self.framework = _enum_value(framework, RLFramework, "framework")
        _check_toolkit(self.toolkit, self.framework)
        unknown = sorted(set(kwargs) - set(_NOT_HERE))
        if unknown:
            hint = did_you_mean(unknown[0], [*_NOT_HERE, "role", "instance_type", "instance_count", "output_path"])
            raise TypeError(
                f"RLEstimator() got unexpected keyword argument(s) {', '.join(unknown)}"
                + (f" ({hint})" if hint else "")
            )
        given = {"role": role, "image_uri": image_uri, **kwargs}
        for name, value in given.items():
            if value is not None and value is not False:
                _note(f"RLEstimator `{name}` ignored: {_NOT_HERE[name]}")
        if toolkit_version is not None:
            import ray

            if not str(toolkit_version).startswith(ray.__version__.split(".")[0] + "."):
                _note(
                    f"toolkit_version `{toolkit_version}`: this runs Ray {ray.__version__} (RLlib's new API stack); "
                    "legacy config keys are mapped with a notice each"
                )
        self.toolkit_version = toolkit_version
        self.entry_point: str | None = entry_point  # None: attached to a run that recorded none
        self.source_dir = source_dir
        self.role = role
        self.image_uri = image_uri
        self.instance_type = instance_type or "local"
        self.instance_count = instance_count if instance_count is not None else 1
        self.output_path = output_path
        self.base_job_name = base_job_name
        self._hyperparameters = dict(hyperparameters or {})
        self.metric_definitions = list(metric_definitions or default_metric_definitions(RLToolkit.RAY))
        _check_metric_definitions(self.metric_definitions)

        # SageMaker: "If source_dir is specified, then entry_point must point to a file located at the root of
        # source_dir"; without it, entry_point is a path of its own.
        source = Path(source_dir).expanduser().resolve() if source_dir else None
        script = Path(entry_point).expanduser()
        if source is not None and not script.is_absolute():
            script = source / script
        script = script.resolve()
        if not script.is_file():
            raise UserError(
                f"entry_point `{entry_point}` does not exist (looked for {script})",
                fix="give the script's path" + (" relative to source_dir" if source else " (absolute or relative)"),
            )
        try:
            job = JobSpec(
                name=base_job_name,
                entry_script=str(script),
                source_dir=str(source) if source else None,
                script_args=self._hyperparameters,
                max_run_duration_seconds=max_run,
                env_vars=dict(environment or {}),
            )
        except ValidationError as e:  # the spec's own checks, named by the argument that fed them
            where = {"name": "base_job_name", "max_run_duration_seconds": "max_run", "env_vars": "environment"}
            problems = [(where.get(p.split(".")[0], p), what, fix) for p, what, fix in problems_from(e, JobSpec)]
            raise SpecError("RLEstimator(...)", problems) from None
        spec = Spec(cluster=_cluster(self.instance_type, self.instance_count, address), job=job)
        super().__init__(spec=spec, address=address, token=token)

    # --- SageMaker's estimator API ----------------------------------------------------------------------------

    def hyperparameters(self) -> dict[str, Any]:
        return dict(self._hyperparameters)

    def set_hyperparameters(self, **kwargs: Any) -> None:
        self._hyperparameters.update(kwargs)
        self.spec.job.script_args = dict(self._hyperparameters)

    # SageMaker's own signatures (what a ported notebook calls), not our Estimator's: deliberately different.
    def fit(  # type: ignore[override]
        self,
        inputs: Any = None,
        wait: bool = True,
        logs: Any = "All",
        job_name: str | None = None,
        experiment_config: Any = None,
    ):
        """Submit the entry script (SageMaker's `fit`). With `wait`, follow the job (its log when `logs`) and raise
        JobFailed when it does not succeed, as SageMaker does. Returns the Run (SageMaker returns nothing)."""

        if inputs is not None:
            _note("fit `inputs` ignored: there are no S3 input channels here (ship data with `source_dir`)")
        if experiment_config is not None:
            _note("fit `experiment_config` ignored: SageMaker Experiments do not exist here (`rlo list` lists runs)")
        spec = self.spec
        if job_name is not None:
            spec = spec.model_copy(deep=True)
            spec.job.name = job_name
        notices: list[str] = []
        run = submit(
            spec,
            address=self.address,
            token=self.token,
            command=f"RLEstimator.fit() from {os.getcwd()}",
            notices_out=notices,
        )
        for n in notices:
            _note(n)
        registry = Registry(settings().registry_path)
        rec = registry.get(run.id)
        registry.update(run.id, extra={**rec.extra, **self._record_extra()})
        run._record = registry.get(run.id)  # so that the run's own updates keep these fields
        self.latest_run = run
        if wait:
            self._wait(run, logs)
        return run

    def _record_extra(self) -> dict:
        return {
            "metric_definitions": self.metric_definitions,
            "sagemaker": {
                "entry_point": self.entry_point,
                "source_dir": self.source_dir,
                "toolkit": self.toolkit.value if self.toolkit else None,
                "toolkit_version": self.toolkit_version,
                "framework": self.framework.value if self.framework else None,
                "instance_type": self.instance_type,
                "instance_count": self.instance_count,
                "output_path": self.output_path,
                "base_job_name": self.base_job_name,
                "hyperparameters": self._hyperparameters,
            },
        }

    def _wait(self, run, logs: Any) -> None:
        quiet = logs in (False, None, "None")
        status = run.wait() if quiet else run.attach()
        if status != "SUCCEEDED":
            raise JobFailed(f"training job {run.id} ended {status}: {_failure(run)}")
        self._package_model(run)

    def _local_output(self) -> Path | None:
        if not self.output_path:
            return None
        if self.output_path.startswith("file://"):
            return Path(self.output_path.removeprefix("file://")).expanduser()
        if "://" in self.output_path:
            return None
        return Path(self.output_path).expanduser()

    def _package_model(self, run) -> None:
        """SageMaker's layout under a local `output_path`: OUTPUT/JOB/output/model.tar.gz of the model folder."""
        out = self._local_output()
        if out is None:
            if self.output_path:
                _note(f"output_path `{self.output_path}` is not a local folder: the model stays in {run.run_dir}/model")
            return
        model = Path(run.run_dir) / "model" if run.run_dir else None
        if model is None or not model.is_dir():
            return
        target = out / run.id / "output" / "model.tar.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target, "w:gz") as tar:
            for item in sorted(model.iterdir()):
                tar.add(item, arcname=item.name)

    @property
    def latest_training_job(self) -> _TrainingJob | None:
        return _TrainingJob(self, self.latest_run) if self.latest_run is not None else None

    @property
    def _current_job_name(self) -> str | None:
        return self.latest_run.id if self.latest_run is not None else None

    @property
    def model_data(self) -> str | None:
        """Where the trained model is: model.tar.gz under a local `output_path`, else the run's model folder."""
        run = self.latest_run
        if run is None or not run.run_dir:
            return None
        out = self._local_output()
        if out is not None and (out / run.id / "output" / "model.tar.gz").exists():
            return str(out / run.id / "output" / "model.tar.gz")
        return str(Path(run.run_dir) / "model")

    @property
    def training_job_analytics(self) -> TrainingJobAnalytics:
        if self.latest_run is None:
            raise UserError("this estimator has not trained anything yet", fix="call fit() first")
        return TrainingJobAnalytics(self.latest_run.id)

    def deploy(  # type: ignore[override]  # SageMaker's signature
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        serializer: Any = None,
        deserializer: Any = None,
        accelerator_type: str | None = None,
        endpoint_name: str | None = None,
        wait: bool = True,
        **kwargs: Any,
    ):
        """Serve the trained policy (Run.deploy on the embedded Ray's Serve); returns a Predictor whose
        `predict(data)` takes one observation or a batch and returns the action(s). rlo's own serving options
        (`port`, `host`, `api_key_file`, ...) may be given too."""
        for name, value in (
            ("instance_type", instance_type),
            ("serializer", serializer),
            ("deserializer", deserializer),
            ("accelerator_type", accelerator_type),
        ):
            if value is not None:
                _note(f"deploy `{name}` ignored: the endpoint is served by this machine's Ray Serve (JSON in and out)")
        import inspect

        ours = set(inspect.signature(serve_deploy).parameters) - {"run", "checkpoint"}
        options: dict[str, Any] = {k: v for k, v in kwargs.items() if k in ours}  # rlo's own (host, port, ...)
        for name in sorted(set(kwargs) - ours):
            _note(f"deploy `{name}` ignored: it has no meaning for a local Ray Serve endpoint")
        if initial_instance_count is not None:
            options["replicas"] = initial_instance_count
        if endpoint_name is not None:
            options["name"] = endpoint_name
        return super().deploy("latest", **options)

    @classmethod
    def attach(  # type: ignore[override]  # SageMaker's signature (a classmethod returning an RLEstimator)
        cls,
        training_job_name: str,
        sagemaker_session: Any = None,
        model_channel_name: str = "model",
        token: str | None = None,
    ) -> RLEstimator:
        """An estimator bound to an existing run (SageMaker's `RLEstimator.attach`); a run still going is
        followed (its log printed) until it ends, as SageMaker does."""

        if sagemaker_session is not None:
            _note(f"RLEstimator.attach `sagemaker_session` ignored: {_NOT_HERE['sagemaker_session']}")
        run = attach_run(training_job_name, token=token)
        est = cls.__new__(cls)
        Estimator.__init__(
            est,
            spec=_spec_of(run),
            address=run.record.address if run.record.backend != "ray-local" else None,
            token=token,
        )
        info = run.record.extra.get("sagemaker") or {}
        est.toolkit = _enum_value(info.get("toolkit"), RLToolkit, "toolkit")
        est.framework = _enum_value(info.get("framework"), RLFramework, "framework")
        est.toolkit_version = info.get("toolkit_version")
        est.entry_point = info.get("entry_point") or (run.record.spec.get("job") or {}).get("entry_script")
        est.source_dir = info.get("source_dir")
        est.role = est.image_uri = None
        est.instance_type = info.get("instance_type", "local")
        est.instance_count = info.get("instance_count", 1)
        est.output_path = info.get("output_path")
        est.base_job_name = info.get("base_job_name")
        est._hyperparameters = dict((run.record.spec.get("job") or {}).get("script_args") or {})
        est.metric_definitions = run.record.extra.get("metric_definitions") or default_metric_definitions()
        est.latest_run = run
        if not run.done:
            est._wait(run, "All")
        return est


def _failure(run) -> str:
    """Why a job failed, in one message: the entry script's own `rlo: error: ...` (and its fix) when it printed
    one, else the first line of what the engine said."""
    try:
        lines = run.logs().splitlines()
    except Exception:  # a run that never reached the engine: its record says why
        lines = []
    for i, line in enumerate(lines):
        if line.startswith("rlo: error: "):
            fix = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("fix:") else ""
            return line.removeprefix("rlo: error: ") + (f"\n  {fix}" if fix else "")
    message = run.refresh().message or "no reason recorded"
    return message.splitlines()[0]


def _spec_of(run):

    spec = Spec.model_validate(run.record.spec)
    spec._base_dir = Path(run.record.extra.get("base_dir") or Path.cwd())
    return spec


def _check_metric_definitions(defs: list) -> None:
    for i, d in enumerate(defs):
        if not isinstance(d, dict) or not isinstance(d.get("Name"), str) or not isinstance(d.get("Regex"), str):
            raise UserError(
                f"metric_definitions[{i}] is not a {{'Name': ..., 'Regex': ...}} mapping (got {d!r})",
                fix="give e.g. {'Name': 'episode_reward_mean', 'Regex': 'episode_reward_mean: ([-+]?[0-9.]+)'}",
            )
        try:
            re.compile(d["Regex"])
        except re.error as e:
            raise UserError(
                f"metric_definitions[{i}] (`{d['Name']}`): the Regex does not compile: {e}",
                fix="fix the regular expression (Python's `re` syntax; one capture group)",
            ) from None


class TrainingJobAnalytics:
    """SageMaker's `sagemaker.analytics.TrainingJobAnalytics(training_job_name, metric_names).dataframe()`."""

    def __init__(
        self,
        training_job_name: str,
        metric_names: list[str] | None = None,
        sagemaker_session: Any = None,
        **kwargs: Any,
    ) -> None:

        self.name = training_job_name
        self._metric_names = list(metric_names) if metric_names else None
        self._run = attach_run(training_job_name)

    def dataframe(self, force_refresh: bool = False):
        return self._run.analytics(metric_names=self._metric_names)


# --- the launcher (job side) ------------------------------------------------------------------------------------

# Keys of Tune's old experiment dict (`run_experiments`) besides env/run/stop/config, and what becomes of them.
_EXPERIMENT_KEYS_IGNORED = {
    "local_dir": "results go to the run's output folder",
    "storage_path": "results go to the run's output folder",
    "resources_per_trial": "the trial's resources come from the plan",
    "max_failures": "a job is one attempt",
    "restore": "restore inside the script (`Algorithm.from_checkpoint`), or resume a built-in job (`rlo resume`)",
    "num_samples": "a launcher trains one trial; sweeps are a spec's `sweep:`",
    "trial_name_creator": "the run id names the trial",
    "upload_dir": "results stay in the run's folder",
    "verbose": "the job log shows one line per iteration",
}


def _autotype(value: Any) -> Any:
    # As SageMaker's ConfigurationList: a hyperparameter given as text becomes a number when it reads as one.
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def apply_hyperparameters(config: dict, hyperparameters: dict[str, Any]) -> dict:
    """Merge SageMaker's `rl.*` hyperparameters into the experiment dict: `rl.training.config.lr: 1e-4` sets
    config["training"]["config"]["lr"] (missing levels are made), `rl.training.stop.training_iteration: 2` a stop
    criterion. Other keys are the script's own and left alone."""
    for name, value in hyperparameters.items():
        if not name.startswith("rl."):
            continue
        *path, key = name.removeprefix("rl.").split(".")
        if any(p.startswith("__") for p in (*path, key)):
            raise UserError(f"hyperparameter `{name}` names an unsafe attribute", fix="remove it")
        node = config
        for part in path:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(
                    f"hyperparameter `{name}`: `{part}` in the experiment config is not a mapping",
                    fix="name a key inside a mapping, e.g. `rl.training.config.lr`",
                )
            node = child
        node[key] = _autotype(value)
    return config


class SageMakerRayLauncher:
    """`sagemaker_rl.ray_launcher.SageMakerRayLauncher`: subclass it, fill in `register_env_creator()` and
    `get_experiment_config()`, call `MyLauncher().train_main()`.

    `self.num_cpus` is the CPUs the plan gives the job (one per env runner, plus one for the driver/learner, so the
    examples' `num_workers: self.num_cpus - 1` is the plan's env runners), `self.num_gpus` its learner GPUs.
    The experiment's `config` is RLlib's old-stack dict: legacy keys are mapped to the new API stack
    (`training.translate_hyperparameters`, one notice each), the resource keys (`num_workers`, `num_gpus`) come
    from the plan. It trains under Tune with the run's callbacks (metrics.jsonl, progress), checkpoints in the
    run's folder and the registry, and the model (final checkpoint and params.json) saved to SM_MODEL_DIR."""

    def __init__(self) -> None:

        self.ctx = job_context()
        self.num_cpus = int(self.ctx.num_env_runners) + 1
        self.num_gpus = int(self.ctx.num_gpus) if float(self.ctx.num_gpus).is_integer() else self.ctx.num_gpus
        self.host_name = os.environ.get("SM_CURRENT_HOST", "algo-1")
        self.hosts_info = [self.host_name]
        self.is_master_node = True
        self.hyperparameters = json.loads(os.environ.get("SM_HPS") or "{}")

    def register_env_creator(self) -> None:
        raise NotImplementedError("Subclasses should implement this to call ray.tune.registry.register_env")

    def get_experiment_config(self) -> dict:
        raise NotImplementedError("Subclasses must define the experiment config to pass to ray.tune.run_experiments")

    def customize_experiment_config(self, config: dict) -> dict:
        """Applies the estimator's `rl.*` hyperparameters (SM_HPS) to the experiment dict."""
        return apply_hyperparameters(config, self.hyperparameters)

    def ray_init_config(self) -> dict:
        return {}

    # --- the training path ------------------------------------------------------------------------------------

    def build(self, experiment: dict):
        """The AlgorithmConfig, stop criteria, checkpoint settings and notices of the experiment."""
        return build_experiment(experiment, self.ctx)

    def launch(self) -> dict:
        import ray

        self.register_env_creator()
        for d in (self.ctx.run_dir, self.ctx.model_dir, self.ctx.output_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not ray.is_initialized():
            ray.init(log_to_driver=True, **self.ray_init_config())
        experiment = self.customize_experiment_config(self.get_experiment_config())
        return run_experiment(experiment, self.ctx)

    @classmethod
    def train_main(cls) -> None:

        def main() -> int:
            summary = cls().launch()
            return 0 if summary["status"] == "succeeded" else 1

        sys.exit(run_main(main))


def _algorithm_class(run: Any):
    """RLlib's name and Algorithm class for the experiment's `run` (any online algorithm of the new API stack);
    the spec's own check (algorithms.resolve_algorithm) names the replacement of an algorithm RLlib dropped."""
    from ray.tune.registry import get_trainable_cls

    name, what, fix = algorithms.resolve_algorithm(str(run))
    if name is None:
        assert fix is not None, "resolve_algorithm gives a fix for every name it does not resolve"
        raise UserError(f"the experiment's `run: {run}`: {what}", fix=fix.replace("algorithm:", "run:"))
    online = algorithms.online_algorithms()
    if name not in online:
        raise UserError(
            f"the experiment's `run: {name}` is one of RLlib's offline algorithms (it learns from "
            "recorded data, not from env runners)",
            fix=f"use an online one: {', '.join(online)}",
        )
    return name, get_trainable_cls(name)


def _known_to_training(run: str, config_cls: type) -> None:
    """`training.translate_hyperparameters` checks names against the algorithm's config class: make sure its
    table has this one (it lists every online algorithm once it is read from RLlib)."""

    if run not in algorithms.ALGORITHM_CONFIGS and isinstance(algorithms.ALGORITHM_CONFIGS, dict):
        algorithms.ALGORITHM_CONFIGS[run] = (config_cls.__module__, config_cls.__name__)


def build_experiment(experiment: dict, ctx) -> dict:
    """Tune's old experiment dict `{"training": {"env", "run", "stop", "config"}}` -> what `run_experiment`
    trains: the new-API-stack AlgorithmConfig with the plan's numbers, stop criteria with current metric names,
    the checkpoint settings. Raises UserError for what cannot be mapped."""
    from callbacks import health_check_class

    if not isinstance(experiment, dict) or not isinstance(experiment.get("training"), dict):
        raise UserError(
            "get_experiment_config() must return {'training': {'env': ..., 'run': ..., 'stop': ..., 'config': ...}}",
            fix="return one experiment under the key `training`, as SageMaker's launcher expects",
        )
    exp = dict(experiment["training"])
    notices: list[str] = []
    config = dict(exp.pop("config", None) or {})
    env = exp.pop("env", None) or config.pop("env", None)
    config.pop("env", None)
    if env is None:
        raise UserError("the experiment has no `env`", fix="set `training.env` to the name given to register_env")
    if not isinstance(env, str):
        raise UserError(
            f"the experiment's `env` must be a registered name or a Gymnasium id (got {env!r})",
            fix="register the env in register_env_creator() and give its name",
        )
    run, algo_cls = _algorithm_class(exp.pop("run", None) or "")
    stop_given = dict(exp.pop("stop", None) or {})
    checkpoint = CheckpointConfig(
        frequency=int(exp.pop("checkpoint_freq", 0) or 0),
        at_end=bool(exp.pop("checkpoint_at_end", True)),
        keep=exp.pop("keep_checkpoints_num", 3),
    )
    for key in list(exp):
        if key in _EXPERIMENT_KEYS_IGNORED:
            notices.append(f"experiment key `{key}` ignored: {_EXPERIMENT_KEYS_IGNORED[key]}")
            exp.pop(key)
    if exp:
        raise UserError(
            f"unknown experiment key(s): {', '.join(f'`{k}`' for k in exp)}",
            fix="an experiment has env, run, stop, config, checkpoint_freq, checkpoint_at_end and keep_checkpoints_num",
        )
    stop: dict[str, float] = {}
    for key, value in stop_given.items():
        try:
            name, notice = metrics.normalize(key)
        except KeyError as e:
            raise UserError(f"stop criterion on unknown metric `{key}`", fix=e.args[0]) from None
        if notice:
            notices.append(notice)
        stop[name] = float(value)
    env_config = dict(config.pop("env_config", None) or {})
    for key, why in (
        ("multiagent", "multi-agent experiments are not supported by the launcher here"),
        ("callbacks", "old-stack callback classes do not run on the new API stack"),
    ):
        if key in config:
            raise UserError(
                f"the experiment's config key `{key}`: {why}",
                fix="remove it (write an RLlib `RLlibCallback` and a spec, or train in your own script)",
            )

    default = algo_cls.get_default_config()
    _known_to_training(run, type(default))
    translated = translate_hyperparameters(run, config)
    notices += translated.notices
    hp = translated.settings
    env_config.update(translated.atari)
    model_config = hp.pop("model_config", None)

    built = (
        default.api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(env, env_config=env_config, clip_rewards=hp.pop("clip_rewards", None))
        .env_runners(num_env_runners=ctx.num_env_runners, num_envs_per_env_runner=ctx.num_envs_per_env_runner)
        .learners(num_learners=ctx.num_learners, num_gpus_per_learner=ctx.num_gpus_per_learner)
    )
    # As training.build_config: an env runner that dies is restarted after 2 s, training goes on meanwhile.
    built.fault_tolerance(
        restart_failed_env_runners=True, max_num_env_runner_restarts=1000, delay_between_env_runner_restarts_s=2.0
    )
    built.callbacks(health_check_class("continue", 600))
    if model_config:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        built.rl_module(model_config=DefaultModelConfig(**model_config))
    built.update_from_dict(hp)
    return {
        "config": built,
        "algorithm": run,
        "env": env,
        "env_config": env_config,
        "stop": stop,
        "checkpoint": checkpoint,
        "notices": notices,
        "experiment": experiment,
    }


def run_experiment(experiment: dict, ctx) -> dict:
    """Train the launcher's experiment under Tune through the job path of built-in jobs (jobside): the run's
    callbacks, checkpoints and summary; then save the model to SM_MODEL_DIR. Returns the summary."""
    from types import SimpleNamespace

    from ..jobside import finish_training

    built = build_experiment(experiment, ctx)
    for n in built["notices"]:
        events.emit("notice", {"message": n})
    job_spec = (ctx.spec or {}).get("job") or {}
    limit = job_spec.get("max_run_duration_seconds")
    deadline = (ctx.started_at or time.time()) + limit if limit else None
    job = SimpleNamespace(
        algorithm=built["algorithm"], env=built["env"], env_config=built["env_config"], checkpoint=built["checkpoint"]
    )
    results = _tuner(built, deadline, ctx).fit()
    summary = finish_training(results, job, ctx, built["stop"], deadline, 1.0, None)
    save_model(summary, experiment, ctx.model_dir)
    return summary


def _tuner(built: dict, deadline: float | None, ctx):
    """As jobside's Tuner for a built-in job (one trial, its stop criteria, checkpoints and MetricsLogger), plus
    the legacy result lines."""
    from ray import tune

    from callbacks import MetricsLogger

    from .sagemaker_job import LegacyResultLines

    cp = built["checkpoint"]
    return tune.Tuner(
        built["config"].algo_class,
        param_space=built["config"],
        tune_config=tune.TuneConfig(time_budget_s=max(1.0, deadline - time.time()) if deadline else None),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(ctx.output_dir),
            stop=built["stop"] or None,
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=cp.frequency, checkpoint_at_end=cp.at_end, num_to_keep=cp.keep
            ),
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[MetricsLogger(ctx.run_dir), LegacyResultLines()],
            verbose=1,
        ),
    )


def save_model(summary: dict, experiment: dict, model_dir: Path) -> None:
    """What SageMaker's launcher leaves in SM_MODEL_DIR: the last checkpoint and the experiment's params.json."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    final = summary.get("final_checkpoint")
    if final and Path(final).is_dir():
        shutil.copytree(final, model_dir / "checkpoint", dirs_exist_ok=True)
    (model_dir / "params.json").write_text(json.dumps(experiment, indent=2, default=str))
