"""The spec a user writes: a cluster (head + worker pools) and a job. Pydantic v2, strict, YAML in and out.

spec = load_spec("cluster_configs/local-cartpole.yaml")   # SpecError names file, field, fix
spec.to_yaml()                                             # round trip
"""

from __future__ import annotations

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

from . import catalog, metrics
from .errors import SpecError, did_you_mean

ALGORITHMS = ("PPO", "IMPALA", "APPO")


class Model(BaseModel):
    """Base of every spec model: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


# --- small types ------------------------------------------------------------------------------------------

_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|)\s*$", re.IGNORECASE)
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
    if gib <= 0:
        raise ValueError("memory must be positive")
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
        None, description="A catalog name (STANDARD_NC6, ml.c5.xlarge, ...) or `local` for this machine."
    )
    vcpus: int | None = Field(None, ge=1, description="vCPUs per node; overrides the catalog.")
    gpus: int | None = Field(None, ge=0, description="GPUs per node; overrides the catalog.")
    memory: Memory | None = Field(None, description="Memory per node, e.g. `56GB`; overrides the catalog.")

    _check_type = field_validator("instance_type")(classmethod(lambda cls, v: _check_instance_type(v)))

    @model_validator(mode="after")
    def _needs_size(self):
        if self.instance_type is None and self.vcpus is None:
            raise ValueError("give either `instance_type` (from the catalog) or `vcpus`")
        return self

    @property
    def resolved_vcpus(self) -> int:
        return self.vcpus if self.vcpus is not None else catalog.lookup(self.instance_type).vcpus

    @property
    def resolved_gpus(self) -> int:
        if self.gpus is not None:
            return self.gpus
        return catalog.lookup(self.instance_type).gpus if self.instance_type else 0

    @property
    def resolved_memory_gib(self) -> float | None:
        if self.memory is not None:
            return self.memory
        return catalog.lookup(self.instance_type).memory_gib if self.instance_type else None


class HeadConfiguration(_Node):
    """The head node: runs the Ray head, the driver and the learner (on its GPU when it has one)."""

    reserved_cpus: int = Field(
        1, ge=0, description="CPUs kept for the head role (driver, learner) and not given to env runners."
    )


class WorkerConfiguration(_Node):
    """A pool of identical worker nodes that run simulations (env runners)."""

    name: str = Field("workers", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    node_count: int = Field(1, ge=1, description="Number of nodes in the pool.")


class ClusterSpec(Model):
    """Where a job runs: a head node and zero or more worker pools.

    `address` picks an existing Ray cluster (`http://HOST:8265`); without it the tool starts (or reuses) its
    embedded local Ray on 127.0.0.1."""

    name: str = "local"
    head: HeadConfiguration = Field(default_factory=lambda: HeadConfiguration(instance_type="local"))
    workers: list[WorkerConfiguration] = Field(default_factory=list)
    address: str | None = None

    @model_validator(mode="after")
    def _unique_pools(self):
        names = [w.name for w in self.workers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"worker pool names must be unique; repeated: {', '.join(sorted(dup))}")
        return self


# --- the job ----------------------------------------------------------------------------------------------


class CheckpointConfig(Model):
    frequency: int = Field(10, ge=0, description="Checkpoint every N iterations (0: only at the end).")
    at_end: bool = True
    keep: int | None = Field(3, ge=1, description="How many checkpoints to keep (None: all).")


class FaultToleranceConfig(Model):
    """What the job does when env runners are lost with a worker node (an env runner that dies alone is always
    restarted, after 2 s)."""

    on_node_loss: Literal["continue", "wait"] = Field(
        "continue",
        description="`continue`: train on with the env runners left; `wait`: pause after the iteration until all "
        "env runners are back (a replacement node joined the pool), then go on.",
    )
    wait_timeout_s: int = Field(
        600, ge=1, description="With `wait`: fail the job (resumable) when no replacement came in this time."
    )


def _normalize_algorithm(v: Any) -> Any:
    if isinstance(v, str):
        for a in ALGORITHMS:
            if v.upper() == a:
                return a
        hint = did_you_mean(v.upper(), ALGORITHMS)
        raise ValueError(
            f"unknown algorithm `{v}`" + (f"; {hint}" if hint else "") + f" (supported: {', '.join(ALGORITHMS)})"
        )
    return v


class JobSpec(Model):
    """What to run: a built-in algorithm on an env, or an entry script of the user's."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$", max_length=60)
    algorithm: Annotated[Literal["PPO", "IMPALA", "APPO"], BeforeValidator(_normalize_algorithm)] | None = None
    entry_script: str | None = Field(None, description="Path to the user's script (relative to the spec file).")
    script_args: dict[str, Any] | list[str] = Field(
        default_factory=dict, description="Arguments for the entry script, as `--key value` or a list."
    )
    source_dir: str | None = Field(None, description="Folder shipped with the script (default: its folder).")
    env: str | None = Field(None, description="Gymnasium id (CartPole-v1, ALE/Pong-v5) or `pkg.module:Class`.")
    env_config: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="RLlib AlgorithmConfig keys (lr, train_batch_size_per_learner, ...)."
    )
    stop: dict[str, float] = Field(default_factory=dict, description="Stop when any criterion is reached.")
    max_run_duration_seconds: int | None = Field(None, ge=1, description="Hard bound on the whole job.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    fault_tolerance: FaultToleranceConfig = Field(default_factory=FaultToleranceConfig)
    num_env_runners: int | Literal["auto"] = Field("auto", description="`auto`: computed by the planner.")
    num_envs_per_env_runner: int = Field(1, ge=1)
    use_gpu: bool | Literal["auto"] = Field("auto", description="Learner on GPU; `auto`: when the head has one.")
    seed: int | None = None
    pip: list[str] = Field(default_factory=list, description="Extra pip packages for the job's runtime env.")
    env_vars: dict[str, str] = Field(default_factory=dict, description="Environment variables for the job.")

    @field_validator("num_env_runners")
    @classmethod
    def _non_negative(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError("must be `auto` or a number >= 0")
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
    time_attr: str = Field("training_iteration", description="What `grace_period`/`max_t`/intervals count.")
    grace_period: int = Field(1, ge=1, description="ASHA: iterations every trial runs before it can be stopped.")
    reduction_factor: float = Field(3, gt=1, description="ASHA: keep 1/reduction_factor of trials at each rung.")
    max_t: int = Field(100, ge=1, description="ASHA: the most iterations a trial runs.")
    perturbation_interval: int = Field(4, ge=1, description="PBT: iterations between exploit/explore steps.")
    quantile_fraction: float = Field(0.25, gt=0, le=0.5, description="PBT: the top/bottom fraction of trials.")

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
    num_samples: int = Field(1, ge=1, description="Samples of the space (each grid point is run this many times).")
    search: Literal["random", "grid"] = Field(
        "random", description="random (and grid over `grid:` values): Tune's basic variant generator."
    )
    scheduler: SchedulerSpec | None = None
    metric: str = Field("env_runners/episode_return_mean", description="What `mode` optimizes (the best trial).")
    mode: Literal["max", "min"] = "max"
    max_concurrent_trials: int | Literal["auto"] = Field(
        "auto", description="Trials at once; `auto`: as many as the cluster plan fits (see `rlo plan`)."
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
            if kind in ("uniform", "loguniform", "randint"):
                if len(values) != 2 or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
                    raise ValueError(f"{where}: `{kind}` takes [low, high], two numbers")
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
        if self.max_concurrent_trials != "auto" and self.max_concurrent_trials < 1:
            raise ValueError("`max_concurrent_trials` must be `auto` or >= 1")
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
    timezone: str = Field("UTC", description="IANA time zone the cron is read in, e.g. Europe/Berlin.")
    name: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=50,
        description="The schedule's name (default: the job's name).",
    )
    overlap: Literal["skip", "queue", "cancel_previous"] = Field(
        "skip",
        description="When the previous run is still going: skip this firing, queue it (at most one waits), or "
        "stop the previous run and start this one.",
    )
    catch_up: Literal["none", "latest", "all"] = Field(
        "latest",
        description="Firings missed while no scheduler ran: none, the latest one, or all (up to max_catch_up).",
    )
    max_catch_up: int = Field(
        10, ge=1, le=1000, description="With catch_up: all, run at most this many missed firings."
    )
    seed: Literal["spec", "from_firing"] = Field(
        "spec",
        description="`from_firing`: each firing sets job.seed to its fire time (Unix seconds), so every run sees "
        "fresh but reproducible env randomness (e.g. new load profiles every night).",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from .schedule import check_cron

        return check_cron(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        from .schedule import check_timezone

        return check_timezone(v)

    @model_validator(mode="after")
    def _fires(self):
        from .schedule import check_fires

        check_fires(self.cron, self.timezone)
        return self


class Spec(Model):
    """A whole spec file: `cluster:` and `job:` (and `schedule:` to re-run the job on a cron schedule)."""

    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    job: JobSpec
    schedule: ScheduleSpec | None = Field(None, description="Re-run the job on a cron schedule (`rlo schedule`).")
    sweep: SweepSpec | None = Field(None, description="Run the job as a hyperparameter sweep (Tune).")

    # Where the spec came from; relative paths in the job resolve against its folder. Not part of the YAML.
    _base_dir: Path | None = None

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
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# --- loading ------------------------------------------------------------------------------------------------


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
            shown = (
                "" if isinstance(given, dict | list) or given is None or f"`{given}`" in msg else f" (got `{given}`)"
            )
            what = msg + shown
            if kind in ("greater_than_equal", "greater_than"):
                bound = err["ctx"].get("ge", err["ctx"].get("gt"))
                fix = f"use a value {'>=' if kind.endswith('equal') else '>'} {bound}"
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
    so `lr: 1e-5` would reach RLlib as text. Everything else is as `yaml.safe_load`."""


_SpecLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_spec(path: str | os.PathLike) -> Spec:
    """Read a YAML spec. Any problem is a SpecError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(p), [("", "no such file", "check the path (specs live in cluster_configs/)")])
    try:
        data = yaml.load(p.read_text(), Loader=_SpecLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        ctx, ctx_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if ctx and ctx_mark:
            problem += f" ({ctx} that starts at line {ctx_mark.line + 1}, column {ctx_mark.column + 1})"
        raise SpecError(f"{p}{':' + where if where else ''}", [("", f"not valid YAML: {problem}", None)]) from None
    return parse_spec(data, str(p), p.resolve().parent)
