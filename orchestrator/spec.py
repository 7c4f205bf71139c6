"""The spec a user writes: a cluster (head + worker pools) and a job. Pydantic v2, strict, YAML in and out.

spec = load_spec("cluster_configs/local-cartpole.yaml")   # SpecError names file, field, fix
spec.to_yaml()                                             # round trip
"""

from __future__ import annotations

import codecs
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import catalog, metrics
from .algorithms import resolve_algorithm
from .cron import check_cron, check_fires, check_timezone
from .envs import env_config_problems
from .errors import SpecError, did_you_mean, shorten

ALGORITHMS = ("PPO", "IMPALA", "APPO")


class Model(BaseModel):
    """Base of every spec model: unknown keys are errors, values are checked on assignment too."""

    # NaN and infinity are never a meaningful size, count, bound or stop value.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        # Before pydantic copies it: a structure with shared parts (YAML aliases, or the same list put in many
        # places from Python) can expand to billions of values, and deep nesting overflows the stack.
        problem = _size_problem(data)
        if problem:
            raise _invalid(*problem)
        return data


# --- small types ------------------------------------------------------------------------------------------

# Upper bounds on sizes: generous (no machine or cluster comes near them) but finite, so that a typo such as
# 10^30 nodes is refused here, with the bound, instead of overflowing the planner or building huge manifests.
MAX_VCPUS = 4096  # per node
MAX_GPUS = 64  # per node
MAX_MEMORY_GIB = 65536  # per node: 64 TiB
MAX_NODES = 10_000  # per pool, and in the whole cluster
MAX_POOLS = 100
MAX_ENV_RUNNERS = 100_000
MAX_ENVS_PER_ENV_RUNNER = 100_000
MAX_DURATION_S = 366 * 24 * 3600  # a year
MAX_ITERATIONS = 100_000_000
MAX_TRIALS = 100_000
MAX_SEED = 2**32 - 1  # NumPy's seed range (RLlib seeds NumPy with it)


def _invalid(what: str, fix: str | None = None) -> PydanticCustomError:
    """A validation error that carries its fix (read back by `problems_from`)."""
    return PydanticCustomError("rlo_invalid", "{what}", {"what": what, "fix": fix})


def _is_bool(value: Any) -> bool:
    # numpy's bool (`numpy.bool_`, named `bool` since NumPy 2) is not a subclass of bool
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def _whole_number(value: Any) -> Any:
    """Counts are whole numbers: pydantic's lax mode would read `true` as 1 and `2.0` as 2 (and `2.5` fails
    with a message about fractions)."""
    if _is_bool(value):
        raise _invalid(f"must be a whole number, not `{str(value).lower()}`", "write a number such as `2`")
    if isinstance(value, float):
        example = f"`{int(value)}`, not `{value}`" if value.is_integer() else "such as `2`"
        raise _invalid(f"must be a whole number (got `{value}`)", f"write a whole number {example}")
    return value


def _number(value: Any) -> Any:
    if _is_bool(value):
        raise _invalid(f"must be a number, not `{str(value).lower()}`", "write a number such as `1.5`")
    return value


_WHOLE = BeforeValidator(_whole_number)
Int = Annotated[int, _WHOLE]
Float = Annotated[float, BeforeValidator(_number)]

_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*([KMGT]i?B?|)\s*$", re.IGNORECASE)
_UNIT_GIB = {"": 1, "k": 2**-20, "m": 2**-10, "g": 1, "t": 2**10}


def _parse_memory(value: Any) -> float:
    """'16GB', '7GiB', '512MB', or a number of GiB -> GiB (float). Decimal and binary units are both read as
    binary: machine catalogs mix them and the difference does not matter for placement."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size such as `16GB` or a number of GiB")
    if isinstance(value, int | float):
        gib = float(value)
    else:
        m = _MEM.match(str(value))
        if not m:
            raise ValueError(f"`{value}` is not a memory size; write e.g. `16GB`, `512MB` or a number of GiB")
        gib = float(m.group(1)) * _UNIT_GIB[m.group(2)[:1].lower()]
    if not math.isfinite(gib) or gib <= 0:
        raise ValueError("memory must be a positive, finite size")
    if gib > MAX_MEMORY_GIB:
        raise _invalid(
            f"memory of {gib:g} GiB is more than any machine has",
            f"give the memory of one node, e.g. `56GB` (the limit, a generous one, is {MAX_MEMORY_GIB} GiB = 64 TiB)",
        )
    return gib


Memory = Annotated[
    float,
    BeforeValidator(_parse_memory),
    PlainSerializer(lambda v: f"{v:g}GB", return_type=str),
    Field(json_schema_extra={"type": "string", "examples": ["16GB", "512MB"]}),
]


def _check_instance_type(name: str | None) -> str | None:
    if name is None or catalog.lookup(name):
        return name
    hint = did_you_mean(name, catalog.names())
    raise ValueError(
        f"unknown instance type `{name}`"
        + (f"; {hint}" if hint else "")
        + " (or give `vcpus`/`gpus` explicitly and drop `instance_type`)"
    )


# --- the cluster ------------------------------------------------------------------------------------------


class _Node(Model):
    instance_type: str | None = Field(
        default=None, description="A catalog name (STANDARD_NC6, ml.c5.xlarge, ...) or `local` for this machine."
    )
    vcpus: Annotated[int | None, _WHOLE] = Field(
        default=None, ge=1, le=MAX_VCPUS, description="vCPUs per node; overrides the catalog."
    )
    gpus: Annotated[int | None, _WHOLE] = Field(
        default=None, ge=0, le=MAX_GPUS, description="GPUs per node; overrides the catalog."
    )
    memory: Memory | None = Field(default=None, description="Memory per node, e.g. `56GB`; overrides the catalog.")

    _check_type = field_validator("instance_type")(classmethod(lambda cls, v: _check_instance_type(v)))

    @model_validator(mode="after")
    def _needs_size(self):
        if self.instance_type is None and self.vcpus is None:
            raise ValueError("give either `instance_type` (from the catalog) or `vcpus`")
        return self

    def _catalog_entry(self) -> catalog.InstanceType:
        """The catalog's entry for `instance_type`, which the validators made a known name whenever it is needed."""
        assert self.instance_type is not None, "a node without `vcpus` has an `instance_type` (validated)"
        entry = catalog.lookup(self.instance_type)
        assert entry is not None, "`instance_type` is a catalog name (validated)"
        return entry

    @property
    def resolved_vcpus(self) -> int:
        return self.vcpus if self.vcpus is not None else self._catalog_entry().vcpus

    @property
    def resolved_gpus(self) -> int:
        if self.gpus is not None:
            return self.gpus
        return self._catalog_entry().gpus if self.instance_type else 0

    @property
    def resolved_memory_gib(self) -> float | None:
        if self.memory is not None:
            return self.memory
        return self._catalog_entry().memory_gib if self.instance_type else None


class HeadConfiguration(_Node):
    """The head node: runs the Ray head, the driver and the learner (on its GPU when it has one)."""

    reserved_cpus: Int = Field(
        default=1,
        ge=0,
        le=MAX_VCPUS,
        description="CPUs kept for the head role (driver, learner) and not given to env runners.",
    )


class WorkerConfiguration(_Node):
    """A pool of identical worker nodes that run simulations (env runners)."""

    name: str = Field(default="workers", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    node_count: Int = Field(default=1, ge=1, le=MAX_NODES, description="Number of nodes in the pool.")


class ClusterSpec(Model):
    """Where a job runs: a head node and zero or more worker pools.

    `address` picks an existing Ray cluster (`http://HOST:8265`); without it the tool starts (or reuses) its
    embedded local Ray on 127.0.0.1."""

    name: str = "local"
    head: HeadConfiguration = Field(default_factory=lambda: HeadConfiguration(instance_type="local"))
    workers: list[WorkerConfiguration] = Field(default_factory=list, max_length=MAX_POOLS)
    address: str | None = None

    @model_validator(mode="after")
    def _unique_pools(self):
        names = [w.name for w in self.workers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"worker pool names must be unique; repeated: {', '.join(sorted(dup))}")
        nodes = sum(w.node_count for w in self.workers)
        if nodes > MAX_NODES:
            raise _invalid(
                f"the worker pools have {nodes:,} nodes in all",
                f"use at most {MAX_NODES:,} nodes in all (a generous bound: larger is surely a typo)",
            )
        return self


# --- the job ----------------------------------------------------------------------------------------------


class CheckpointConfig(Model):
    frequency: Int = Field(
        default=10, ge=0, le=MAX_ITERATIONS, description="Checkpoint every N iterations (0: only at the end)."
    )
    at_end: bool = True
    keep: Annotated[int | None, _WHOLE] = Field(
        default=3, ge=1, le=MAX_ITERATIONS, description="How many checkpoints to keep (None: all)."
    )


class FaultToleranceConfig(Model):
    """What the job does when env runners are lost with a worker node (an env runner that dies alone is always
    restarted, after 2 s)."""

    on_node_loss: Literal["continue", "wait"] = Field(
        default="continue",
        description="`continue`: train on with the env runners left; `wait`: pause after the iteration until all "
        "env runners are back (a replacement node joined the pool), then go on.",
    )
    wait_timeout_s: Int = Field(
        default=600,
        ge=1,
        le=MAX_DURATION_S,
        description="With `wait`: fail the job (resumable) when no replacement came in this time.",
    )


def _normalize_algorithm(v: Any) -> Any:
    # The names are RLlib's registry's (read without importing RLlib); a dropped one (A2C...) names its successor.
    # Whether it learns online is checked with RLlib at submission (`algorithms.config_class`).
    if isinstance(v, str):
        name, what, fix = resolve_algorithm(v)
        if name is None:
            assert what is not None, "resolve_algorithm says what is wrong with every name it does not resolve"
            raise _invalid(what, fix)
        return name
    return v


class JobSpec(Model):
    """What to run: a built-in algorithm on an env, or an entry script of the user's."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$", max_length=60)
    algorithm: Annotated[str, BeforeValidator(_normalize_algorithm)] | None = Field(
        default=None, description="An online algorithm of RLlib's new API stack: PPO, APPO, IMPALA, DQN, SAC, ..."
    )
    entry_script: str | None = Field(default=None, description="Path to the user's script (relative to the spec file).")
    script_args: dict[str, Any] | list[str] = Field(
        default_factory=dict, description="Arguments for the entry script, as `--key value` or a list."
    )
    source_dir: str | None = Field(default=None, description="Folder shipped with the script (default: its folder).")
    env: str | None = Field(default=None, description="Gymnasium id (CartPole-v1, ALE/Pong-v5) or `pkg.module:Class`.")
    env_config: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="RLlib AlgorithmConfig keys (lr, train_batch_size_per_learner, ...)."
    )
    stop: dict[str, Float] = Field(default_factory=dict, description="Stop when any criterion is reached.")
    max_run_duration_seconds: Annotated[int | None, _WHOLE] = Field(
        default=None, ge=1, le=MAX_DURATION_S, description="Hard bound on the whole job."
    )
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    fault_tolerance: FaultToleranceConfig = Field(default_factory=FaultToleranceConfig)
    num_env_runners: Annotated[int | Literal["auto"], _WHOLE] = Field(
        default="auto", description="`auto`: computed by the planner."
    )
    num_envs_per_env_runner: Int = Field(default=1, ge=1, le=MAX_ENVS_PER_ENV_RUNNER)
    use_gpu: bool | Literal["auto"] = Field(
        default="auto", description="Learner on GPU; `auto`: when the head has one."
    )
    seed: Annotated[int | None, _WHOLE] = Field(default=None, ge=0, le=MAX_SEED)
    pip: list[str] = Field(default_factory=list, description="Extra pip packages for the job's runtime env.")
    env_vars: dict[str, str] = Field(default_factory=dict, description="Environment variables for the job.")

    @field_validator("num_env_runners")
    @classmethod
    def _non_negative(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError("must be `auto` or a number >= 0")
        if isinstance(v, int) and v > MAX_ENV_RUNNERS:
            raise _invalid(
                f"{v:,} env runners is more than any cluster runs",
                f"use `auto` or at most {MAX_ENV_RUNNERS:,} (a generous bound: larger is surely a typo)",
            )
        return v

    @field_validator("env_config")
    @classmethod
    def _known_env_settings(cls, v: dict[str, Any], info) -> dict[str, Any]:
        # Only for envs whose settings are known (ours, Atari, Gymnasium's own); runs no user code.
        env = info.data.get("env")
        if v and env:
            problems = env_config_problems(env, v)
            if problems:
                raise _invalid(
                    "; ".join(f"`{shorten(k)}`: {what}" for k, what, _ in problems),
                    "; ".join(dict.fromkeys(fix for _, _, fix in problems if fix)) or None,
                )
        return v

    @field_validator("stop")
    @classmethod
    def _known_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            try:
                metrics.normalize(key)
            except KeyError as e:
                raise ValueError(f"stop criterion on unknown metric `{key}`; {e.args[0]}") from None
        return v

    @field_validator("env_vars")
    @classmethod
    def _not_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in v if k.startswith("RLO_") or k.startswith("SM_"))
        if reserved:
            raise ValueError(f"{', '.join(reserved)}: RLO_*/SM_* variables are set by the tool (the job contract)")
        return v

    @field_validator("env")
    @classmethod
    def _env_form(cls, v: str | None) -> str | None:
        if v is not None and ":" in v and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", v):
            raise ValueError(f"`{v}` is neither a Gymnasium id nor an import path of the form `package.module:Class`")
        return v

    @model_validator(mode="after")
    def _what_to_run(self):
        if self.algorithm is None and self.entry_script is None:
            raise ValueError("give `algorithm` (PPO, IMPALA, APPO) with an `env`, or an `entry_script`")
        if self.algorithm is not None and self.entry_script is None and self.env is None:
            raise ValueError("a built-in algorithm needs an `env` (e.g. CartPole-v1)")
        return self

    def normalized_stop(self) -> tuple[dict[str, float], list[str]]:
        """Stop criteria with current RLlib metric names, and the notices for legacy names."""
        out, notices = {}, []
        for key, value in self.stop.items():
            name, notice = metrics.normalize(key)
            out[name] = value
            if notice:
                notices.append(notice)
        return out, notices


# --- sweeps ------------------------------------------------------------------------------------------------

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")


class SchedulerSpec(Model):
    """Tune's trial scheduler: `asha` stops poor trials early, `pbt` copies good trials and perturbs them."""

    type: Literal["asha", "pbt", "fifo"] = "asha"
    time_attr: str = Field(default="training_iteration", description="What `grace_period`/`max_t`/intervals count.")
    grace_period: Int = Field(
        default=1, ge=1, le=MAX_ITERATIONS, description="ASHA: iterations every trial runs before it can be stopped."
    )
    reduction_factor: Float = Field(
        default=3, gt=1, le=1000, description="ASHA: keep 1/reduction_factor of trials at each rung."
    )
    max_t: Int = Field(default=100, ge=1, le=MAX_ITERATIONS, description="ASHA: the most iterations a trial runs.")
    perturbation_interval: Int = Field(
        default=4, ge=1, le=MAX_ITERATIONS, description="PBT: iterations between exploit/explore steps."
    )
    quantile_fraction: Float = Field(default=0.25, gt=0, le=0.5, description="PBT: the top/bottom fraction of trials.")

    @field_validator("time_attr")
    @classmethod
    def _known(cls, v: str) -> str:
        try:
            return metrics.normalize(v)[0]
        except KeyError as e:
            raise ValueError(f"unknown metric `{v}`; {e.args[0]}") from None


class SweepSpec(Model):
    """A hyperparameter sweep over the job: Tune samples `parameters` (`hyperparameters.X` or `env_config.X`)."""

    parameters: dict[str, dict[str, list[Any]]] = Field(
        description="`hyperparameters.lr: {loguniform: [1e-5, 1e-3]}`; kinds: " + ", ".join(DISTRIBUTIONS)
    )
    num_samples: Int = Field(
        default=1, ge=1, le=MAX_TRIALS, description="Samples of the space (each grid point is run this many times)."
    )
    search: Literal["random", "grid"] = Field(
        default="random", description="random (and grid over `grid:` values): Tune's basic variant generator."
    )
    scheduler: SchedulerSpec | None = None
    metric: str = Field(
        default="env_runners/episode_return_mean", description="What `mode` optimizes (the best trial)."
    )
    mode: Literal["max", "min"] = "max"
    max_concurrent_trials: Annotated[int | Literal["auto"], _WHOLE] = Field(
        default="auto", description="Trials at once; `auto`: as many as the cluster plan fits (see `rlo plan`)."
    )

    @field_validator("parameters")
    @classmethod
    def _space(cls, v: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list[Any]]]:
        if not v:
            raise ValueError(
                "the search space is empty: give at least one parameter, e.g. "
                "`hyperparameters.lr: {loguniform: [1.0e-5, 1.0e-3]}`"
            )
        for path, dist in v.items():
            where = f"parameter `{path}`"
            if not re.match(r"^(hyperparameters|env_config)\.[A-Za-z_][\w.]*$", path):
                raise ValueError(f"{where}: give `hyperparameters.NAME` or `env_config.NAME`")
            if len(dist) != 1:
                raise ValueError(f"{where}: give exactly one distribution of {', '.join(DISTRIBUTIONS)}")
            kind, values = next(iter(dist.items()))
            if kind not in DISTRIBUTIONS:
                hint = did_you_mean(kind, DISTRIBUTIONS)
                raise ValueError(
                    f"{where}: unknown distribution `{kind}`"
                    + (f"; {hint}" if hint else "")
                    + f" (one of {', '.join(DISTRIBUTIONS)})"
                )
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: `{kind}` needs a non-empty list of values")
            if any(isinstance(x, float) and math.isnan(x) for x in values):
                raise _invalid(f"{where}: NaN is not a value to try", "give numbers (or text, true/false) only")
            if kind in ("uniform", "loguniform", "randint"):
                if len(values) != 2 or not all(isinstance(x, int | float) and not _is_bool(x) for x in values):
                    raise ValueError(f"{where}: `{kind}` takes [low, high], two numbers")
                if not all(math.isfinite(x) for x in values):
                    raise _invalid(
                        f"{where}: `{kind}` needs finite bounds, got [{values[0]}, {values[1]}]",
                        f"give two finite numbers, e.g. `{kind}: [1.0e-5, 1.0e-3]`",
                    )
                lo, hi = values
                if lo >= hi:
                    raise ValueError(f"{where}: `{kind}` needs low < high, got [{lo}, {hi}]")
                if kind == "loguniform" and lo <= 0:
                    raise ValueError(f"{where}: `loguniform` needs low > 0, got {lo}")
                if kind == "randint" and not all(isinstance(x, int) for x in values):
                    raise ValueError(f"{where}: `randint` takes integers [low, high) , got {values}")
        return v

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        try:
            metrics.normalize(v)
        except KeyError as e:
            raise ValueError(f"the sweep's metric `{v}` is not reported by RLlib; {e.args[0]}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.max_concurrent_trials != "auto" and not 1 <= self.max_concurrent_trials <= MAX_TRIALS:
            raise ValueError(f"`max_concurrent_trials` must be `auto` or a number from 1 to {MAX_TRIALS:,}")
        if self.trial_count() > MAX_TRIALS:
            raise _invalid(
                f"the sweep runs {self.trial_count():,} trials (grid points x num_samples)",
                f"sweep over at most {MAX_TRIALS:,} trials: fewer grid values or a smaller `num_samples`",
            )
        kinds = {next(iter(d)) for d in self.parameters.values()}
        if self.search == "grid" and kinds - {"grid", "choice"}:
            raise ValueError(
                "`search: grid` takes only `grid:`/`choice:` values; use `search: random` to sample "
                "uniform/loguniform/randint parameters"
            )
        if self.scheduler and self.scheduler.type == "pbt" and not kinds - {"grid"}:
            raise ValueError(
                "PBT perturbs parameters while trials run: give at least one choice/uniform/"
                "loguniform/randint parameter (grid values are not perturbed)"
            )
        return self

    def trial_count(self) -> int:
        """How many trials the sweep runs: every grid point, `num_samples` times."""
        grid = 1
        for d in self.parameters.values():
            if "grid" in d:
                grid *= len(d["grid"])
        if self.search == "grid":
            for d in self.parameters.values():
                if "choice" in d:
                    grid *= len(d["choice"])
        return grid * self.num_samples


class ScheduleSpec(Model):
    """Run the job again and again (`rlo schedule add`, `rlo scheduler`): a cron expression in a time zone, what
    to do when the previous run is still going, and which missed firings to run after downtime."""

    cron: str = Field(
        description="5 fields (minute hour day-of-month month day-of-week), e.g. `0 2 * * *`; or @daily, @hourly..."
    )
    timezone: str = Field(default="UTC", description="IANA time zone the cron is read in, e.g. Europe/Berlin.")
    name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=50,
        description="The schedule's name (default: the job's name).",
    )
    overlap: Literal["skip", "queue", "cancel_previous"] = Field(
        default="skip",
        description="When the previous run is still going: skip this firing, queue it (at most one waits), or "
        "stop the previous run and start this one.",
    )
    catch_up: Literal["none", "latest", "all"] = Field(
        default="latest",
        description="Firings missed while no scheduler ran: none, the latest one, or all (up to max_catch_up).",
    )
    max_catch_up: Int = Field(
        default=10, ge=1, le=1000, description="With catch_up: all, run at most this many missed firings."
    )
    seed: Literal["spec", "from_firing"] = Field(
        default="spec",
        description="`from_firing`: each firing sets job.seed to its fire time (Unix seconds), so every run sees "
        "fresh but reproducible env randomness (e.g. new load profiles every night).",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return check_timezone(v)

    @model_validator(mode="after")
    def _fires(self):
        check_fires(self.cron, self.timezone)
        return self


# --- tracking ----------------------------------------------------------------------------------------------

# URI schemes MLflow's client knows without a plugin, or with the plugins of the managed services (Azure ML's
# `azureml-mlflow`, SageMaker's `sagemaker-mlflow` for `arn:aws:sagemaker:...` tracking servers).
MLFLOW_SCHEMES = (
    *("http", "https", "file", "databricks", "databricks-uc", "sqlite", "postgresql", "mysql", "mssql"),
    *("azureml", "arn"),
)


class MLflowTracking(Model):
    """Log the job to MLflow: the resolved spec as params, every iteration's metrics, the checkpoint, plots and
    summary as artifacts; a sweep's trials as nested runs under the job's run."""

    tracking_uri: str = Field(
        min_length=1,
        max_length=2000,
        description="The tracking server (`http://HOST:5000`), `databricks`, `azureml://...`, or an absolute path "
        "(`file:///data/mlruns`); the job must reach it (checked before submission).",
    )
    experiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="The MLflow experiment (made if missing); default: the job's name, else rl-orchestrator.",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        v = v.strip()
        scheme = v.split(":", 1)[0].split("+", 1)[0].lower() if re.match(r"^[A-Za-z][\w+.-]*:", v) else ""
        if v.lower() in ("databricks", "databricks-uc"):  # MLflow's names for the workspace of the local profile
            return v
        if not scheme:
            if not os.path.isabs(os.path.expanduser(v)):
                raise _invalid(
                    f"`{shorten(v)}` is a relative path: the job runs in another folder (or on another machine)",
                    "give a tracking server's URL (`http://HOST:5000`) or an absolute path (`file:///data/mlruns`)",
                )
        elif scheme not in MLFLOW_SCHEMES:
            hint = did_you_mean(scheme, MLFLOW_SCHEMES)
            raise _invalid(
                f"`{shorten(v)}` is not an MLflow tracking URI (unknown scheme `{scheme}:`)"
                + (f"; {hint}" if hint else ""),
                "give `http://HOST:PORT` of a tracking server, `databricks`, `azureml://...` or an absolute path",
            )
        return v


class TrackingSpec(Model):
    """Experiment tracking beside the registry and the run folder (which stay the source of truth)."""

    mlflow: MLflowTracking | None = None


class Spec(Model):
    """A whole spec file: `cluster:` and `job:` (and `schedule:` to re-run the job on a cron schedule)."""

    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    job: JobSpec
    schedule: ScheduleSpec | None = Field(
        default=None, description="Re-run the job on a cron schedule (`rlo schedule`)."
    )
    sweep: SweepSpec | None = Field(default=None, description="Run the job as a hyperparameter sweep (Tune).")
    tracking: TrackingSpec | None = Field(
        default=None, description="Log the job to MLflow (`tracking: {mlflow: ...}`)."
    )

    # Where the spec came from; relative paths in the job resolve against its folder. Not part of the YAML.
    _base_dir: Path | None = None

    @model_validator(mode="after")
    def _swept_env_settings(self):
        # `sweep.parameters: env_config.X` must be a setting the job's env knows (for envs whose settings are
        # known), and every `choice`/`grid` value must be one the env accepts.
        if self.sweep is None or not self.job.env:
            return self

        found = []
        for path, dist in self.sweep.parameters.items():
            if not path.startswith("env_config."):
                continue
            name = path.split(".", 1)[1]
            kind, values = next(iter(dist.items()))
            tried = values if kind in ("choice", "grid") else values[:1]
            for value in tried:
                problems = env_config_problems(
                    self.job.env, {**self.job.env_config, name: value}, keys_only=kind not in ("choice", "grid")
                )
                mine = [(what, fix) for key, what, fix in problems if key == name]
                if mine:
                    found.append((f"sweep.parameters.{path}", *mine[0]))
                    break
        if found:
            raise _invalid(
                "; ".join(f"`{shorten(where, 80)}`: {what}" for where, what, _ in found),
                "; ".join(dict.fromkeys(fix for _, _, fix in found if fix)) or None,
            )
        return self

    @model_validator(mode="after")
    def _sweep_needs_an_algorithm(self):
        if self.sweep is not None and self.job.algorithm is None:
            raise ValueError(
                "a `sweep:` runs a built-in algorithm (`job.algorithm` + `job.env`) under Tune; an entry script "
                "runs its own training, so sweep inside the script or give `job.algorithm`"
            )
        return self

    @property
    def base_dir(self) -> Path:
        return self._base_dir or Path.cwd()

    def resolved_entry_script(self) -> Path | None:
        if self.job.entry_script is None:
            return None
        p = Path(os.path.expanduser(self.job.entry_script))
        # Absolute and normalized, but links not followed: a symlinked script ships from (or is refused in) the
        # folder where the user's link lives, never from its target's folder.
        return Path(os.path.abspath(p if p.is_absolute() else self.base_dir / p))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# --- loading ------------------------------------------------------------------------------------------------


MAX_SPEC_BYTES = 1_000_000
# How many values (mapping entries, list items, scalars) a spec may hold once YAML aliases are expanded, and how
# deep it may nest: a real spec has a few hundred values, nested less than 10 deep.
MAX_VALUES = 100_000
MAX_DEPTH = 50


def _size_problem(data: Any) -> tuple[str, str] | None:
    """(what, fix) when `data` holds more than MAX_VALUES values or nests deeper than MAX_DEPTH. Stops counting
    at the limit, so a structure that expands to billions costs no more than MAX_VALUES steps."""
    count, stack = 0, [(data, 0)]
    while stack:
        obj, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return (
                f"the spec holds more than {MAX_VALUES:,} values (counting repeated parts as often as they "
                "are repeated)",
                "a spec describes a job: keep data in files shipped with the job (`job.source_dir`)",
            )
        if isinstance(obj, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return (f"the spec nests deeper than {MAX_DEPTH} levels", "flatten the nested values")
            items = obj.values() if isinstance(obj, dict) else obj
            stack.extend((v, depth + 1) for v in items)
        elif isinstance(obj, BaseModel):
            stack.extend((v, depth + 1) for v in obj.__dict__.values())
    return None


def _fields_of(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at `loc` (to suggest "did you mean")."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = _model_in(ann)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found:
            return found
    return None


def problems_from(exc: ValidationError, model: type[BaseModel]) -> list[tuple[str, str, str | None]]:
    """Turn Pydantic's errors into (field path, what is wrong, fix) for SpecError."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        kind = err["type"]
        fix = None
        if kind == "extra_forbidden":
            key = str(loc[-1])
            valid = _fields_of(model, loc[:-1])
            hint = did_you_mean(key, valid)
            what = f"unknown key `{key}`"
            fix = hint or (f"valid keys here: {', '.join(valid)}" if valid else "remove it")
        elif kind == "missing":
            what = "required but missing"
            fix = f"add `{loc[-1]}:`"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            given = err.get("input")
            # Our own messages name the value already; a value given at length is cut.
            quiet = kind == "rlo_invalid" or isinstance(given, dict | list | BaseModel) or given is None
            shown = "" if quiet or f"`{given}`" in msg else f" (got `{shorten(given)}`)"
            what = msg + shown
            ctx = err.get("ctx") or {}
            if kind in ("greater_than_equal", "greater_than"):
                bound = ctx.get("ge", ctx.get("gt"))
                fix = f"use a value {'>=' if kind.endswith('equal') else '>'} {bound}"
            elif kind in ("less_than_equal", "less_than"):
                bound = ctx.get("le", ctx.get("lt"))
                assert bound is not None, "pydantic's less_than(_equal) errors carry their bound"
                fix = f"use a value {'<=' if kind.endswith('equal') else '<'} {bound:,}" + (
                    " (a generous bound: a larger value is surely a typo)" if bound >= 1000 else ""
                )
            elif kind == "finite_number":
                fix = "give a finite number (not NaN or infinity)"
            elif kind == "rlo_invalid":
                fix = ctx.get("fix")
        out.append((path, what, fix))
    return out


def parse_spec(data: Any, source: str = "<spec>", base_dir: Path | None = None) -> Spec:
    if not isinstance(data, dict):
        raise SpecError(source, [("", "the top level must be a mapping with `cluster:` and `job:`", None)])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, problems_from(e, Spec)) from None
    spec._base_dir = base_dir
    return spec


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: PyYAML follows YAML 1.1, where `1e-5` (no dot) is a string,
    so `lr: 1e-5` would reach RLlib as text. Dates (`2026-01-01`) stay text: no field of a spec is a date, and a
    datetime would reach an env's config or a script's arguments as an object they cannot read. Everything else
    is as `yaml.safe_load`; `_node_problems` then refuses what a spec cannot mean (see there)."""


_SpecLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_CORE = "tag:yaml.org,2002:"
# The values a spec is made of: text, numbers, true/false, null, lists and mappings (and `<<` merge keys).
# Everything else PyYAML's safe loader knows (!!binary, !!set, !!omap, !!pairs, !!timestamp) is refused.
_PLAIN_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _node_problems(root: yaml.Node, loader: yaml.SafeLoader) -> list[tuple[str, str, str | None]]:
    """What the composed YAML holds that a spec cannot mean, before any Python object is built:

    - a key given twice in one mapping (YAML forbids it; PyYAML keeps the last one silently);
    - a tag other than the plain ones (binary blobs, sets, ordered maps, dates...);
    - more than MAX_VALUES values once aliases (`*name`) are expanded ("billion laughs": a few lines that
      expand to billions of values), an alias inside its own anchor, nesting deeper than MAX_DEPTH.

    Aliases share their node, so each node is looked at once and its expanded size remembered: linear in the
    file's size whatever the expansion."""
    problems: list[tuple[str, str, str | None]] = []
    sizes: dict[int, int] = {}
    active: set[int] = set()
    aliased = False
    plain = "give plain text, numbers, true/false, lists and mappings"

    class TooBig(Exception):
        pass

    def line(node: yaml.Node) -> int:
        return node.start_mark.line + 1

    def walk(node: yaml.Node, path: str, depth: int) -> int:
        nonlocal aliased
        if id(node) in sizes:
            aliased = True
            return sizes[id(node)]
        if id(node) in active:
            problems.append((path, f"line {line(node)}: an alias refers to the value that contains it", plain))
            return 1
        if depth > MAX_DEPTH:
            problems.append((path, f"line {line(node)}: nested deeper than {MAX_DEPTH} levels", "flatten it"))
            raise TooBig
        if node.tag not in _PLAIN_TAGS:
            tag = _short_tag(node.tag)
            problems.append((path, f"line {line(node)}: a `{shorten(tag)}` value is not allowed in a spec", plain))
        size = 1
        active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _CORE + "merge":  # `<<: *defaults`: the entries of another mapping
                    size += walk(value_node, path, depth + 1)
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    problems.append((path, f"line {line(key_node)}: a key must be plain text", "write the key as text"))
                    continue
                try:
                    key = loader.construct_object(key_node)
                    hash(key)
                except Exception:  # an odd key: the constructor reports it later
                    key = (key_node.tag, key_node.value)
                where = f"{path}.{key_node.value}" if path else str(key_node.value)
                if key in seen:
                    problems.append(
                        (
                            shorten(where, 200),
                            f"duplicate key `{shorten(key_node.value)}` (lines {seen[key]} and {line(key_node)}): "
                            "YAML would keep only the last one",
                            "keep one of them",
                        )
                    )
                else:
                    seen[key] = line(key_node)
                size += walk(value_node, where, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                size += walk(item, f"{path}[{i}]", depth + 1)
        active.discard(id(node))
        sizes[id(node)] = size
        if size > MAX_VALUES:
            problems.append(
                (
                    path,
                    f"line {line(node)}: this value expands to more than {MAX_VALUES:,} values"
                    + (" (YAML aliases `*name` repeat what an anchor `&name` holds)" if aliased else ""),
                    "a spec describes a job: write values out, keep data in files shipped with the job",
                )
            )
            raise TooBig
        return size

    try:
        walk(root, "", 0)
    except TooBig:
        pass
    return problems


def _read_text(p: Path) -> str:
    """The spec file's text: at most MAX_SPEC_BYTES, UTF-8 (a UTF-8 byte order mark is fine)."""
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
            size = max(len(raw), os.fstat(f.fileno()).st_size)
    except OSError as e:
        what = f"cannot read the file: {e.strerror or e}"
        raise SpecError(str(p), [("", what, "check the file's permissions")]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            str(p),
            [
                (
                    "",
                    f"the file is {size:,} bytes; a spec may be at most {MAX_SPEC_BYTES:,} bytes (1 MB)",
                    "a spec describes a job: keep data in files shipped with the job (`job.source_dir`)",
                )
            ],
        )
    utf8 = "save it as UTF-8 (in an editor: save with encoding UTF-8; or `iconv -t UTF-8`)"
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if raw.startswith(bom):
            what = f"the file is {name} text (it starts with a {name} byte order mark); a spec must be UTF-8"
            raise SpecError(str(p), [("", what, utf8)])
    try:
        return raw.decode("utf-8-sig")  # strict; "-sig" drops the byte order mark some Windows editors write
    except UnicodeDecodeError as e:
        if b"\0" in raw[:8192]:
            what = "the file is binary, not text"
            fix = "give a YAML spec (e.g. a copy of one in cluster_configs/)"
        else:
            line = raw.count(b"\n", 0, e.start) + 1
            column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            what = (
                f"the file is not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}, column {column} is not "
                "valid UTF-8 (it looks like Latin-1 or another legacy encoding)"
            )
            fix = utf8
        raise SpecError(str(p), [("", what, fix)]) from None


def load_spec(path: str | os.PathLike) -> Spec:
    """Read a YAML spec. Any problem is a SpecError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(p), [("", "no such file", "check the path (specs live in cluster_configs/)")])
    loader = _SpecLoader(_read_text(p))
    try:
        node = loader.get_single_node()
        problems = _node_problems(node, loader) if node is not None else []
        if problems:
            raise SpecError(str(p), problems)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        ctx, ctx_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if ctx and ctx_mark:
            problem += f" ({ctx} that starts at line {ctx_mark.line + 1}, column {ctx_mark.column + 1})"
        raise SpecError(f"{p}{':' + where if where else ''}", [("", f"not valid YAML: {problem}", None)]) from None
    except RecursionError:  # PyYAML composes recursively: thousands of `[` or `{` in a row
        raise SpecError(
            str(p), [("", f"not valid YAML for a spec: nested deeper than {MAX_DEPTH} levels", "flatten it")]
        ) from None
    finally:
        loader.dispose()
    return parse_spec(data, str(p), p.resolve().parent)
