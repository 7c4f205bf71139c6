"""The resource planner: vCPU arithmetic and placement. Pure Python, no Ray import.

The rule is the seeds' (Azure ML's Pong example): every vCPU of the cluster runs an env runner, except the
ones reserved for the head role (the driver and the learner). A STANDARD_NC6 head (6 vCPUs, 1 GPU) and four
STANDARD_D2_V2 workers (2 vCPUs each) give 6 + 4 x 2 - 1 = 13 env runners, and the learner on the GPU.

The planner also refuses what can never run, before anything is submitted: plain Tune would leave such a
trial PENDING forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .contract import PlanNumbers
from .errors import PlanError
from .spec import ClusterSpec, JobSpec, Spec


@dataclass(frozen=True)
class PoolPlan:
    name: str
    instance_type: str | None
    node_count: int
    vcpus_per_node: int
    gpus_per_node: int
    memory_gib: float | None

    @property
    def vcpus(self) -> int:
        return self.node_count * self.vcpus_per_node

    @property
    def gpus(self) -> int:
        return self.node_count * self.gpus_per_node


@dataclass(frozen=True)
class JobSummary:
    """What `rlo plan` says of the job beside the arithmetic: what runs, where, and when it stops."""

    cluster: str
    what: str
    where: str
    stop: tuple[tuple[str, float], ...]
    max_run_duration_seconds: int | None
    notices: tuple[str, ...]  # about the stop criteria (a legacy metric name, mapped)

    @classmethod
    def of(cls, spec: Spec) -> JobSummary:
        job = spec.job
        stop, notices = job.normalized_stop()
        return cls(
            cluster=spec.cluster.name,
            what=f"{job.algorithm} on {job.env}" if job.entry_script is None else f"entry script {job.entry_script}",
            where=spec.cluster.address or "the embedded local Ray on 127.0.0.1 (started on submit)",
            stop=tuple(stop.items()),
            max_run_duration_seconds=job.max_run_duration_seconds,
            notices=tuple(notices),
        )


@dataclass(frozen=True)
class Plan:
    head: PoolPlan
    pools: tuple[PoolPlan, ...]
    reserved_cpus: int
    num_env_runners: int
    num_envs_per_env_runner: int
    num_learners: int
    num_gpus_per_learner: float
    extra_cpus: int
    env_runners_per_pool: dict[str, int]
    arithmetic: tuple[str, ...]
    notices: tuple[str, ...] = field(default=())
    # A sweep: how many trials in all, and how many run at once (each with the numbers above).
    num_trials: int = 1
    concurrent_trials: int = 1
    job: JobSummary | None = None  # set by plan_spec: explain() then says all that `rlo plan` says

    @property
    def total_vcpus(self) -> int:
        return self.head.vcpus + sum(p.vcpus for p in self.pools)

    @property
    def total_gpus(self) -> int:
        return self.head.gpus + sum(p.gpus for p in self.pools)

    @property
    def learner_gpus(self) -> float:
        return self.num_gpus_per_learner * max(1, self.num_learners)

    @property
    def trial_cpus(self) -> int:
        """CPUs one training trial asks Ray for: the driver/learner, the env runners, any extra actors."""
        return 1 + self.num_env_runners + self.extra_cpus

    @property
    def trial_gpus(self) -> float:
        return self.learner_gpus

    @property
    def numbers(self) -> PlanNumbers:
        """What the job trains with (inside a job the contract passes the same: `JobContext.numbers`)."""
        return PlanNumbers.of(self)

    def as_env(self) -> dict[str, str]:
        """The numbers the entry-script contract passes to the job (see orchestrator.contract)."""
        return {
            "RLO_NUM_ENV_RUNNERS": str(self.num_env_runners),
            "RLO_NUM_ENVS_PER_ENV_RUNNER": str(self.num_envs_per_env_runner),
            "RLO_NUM_LEARNERS": str(self.num_learners),
            "RLO_NUM_GPUS": f"{self.learner_gpus:g}",
            "RLO_NUM_GPUS_PER_LEARNER": f"{self.num_gpus_per_learner:g}",
            "RLO_CONCURRENT_TRIALS": str(self.concurrent_trials),
        }

    def to_dict(self) -> dict:
        return {
            "pools": [
                {
                    "name": p.name,
                    "instance_type": p.instance_type,
                    "node_count": p.node_count,
                    "vcpus_per_node": p.vcpus_per_node,
                    "gpus_per_node": p.gpus_per_node,
                    "memory_gib": p.memory_gib,
                }
                for p in (self.head, *self.pools)
            ],
            "total_vcpus": self.total_vcpus,
            "total_gpus": self.total_gpus,
            "reserved_cpus": self.reserved_cpus,
            "num_env_runners": self.num_env_runners,
            "num_envs_per_env_runner": self.num_envs_per_env_runner,
            "num_learners": self.num_learners,
            "num_gpus_per_learner": self.num_gpus_per_learner,
            "trial_cpus": self.trial_cpus,
            "trial_gpus": self.trial_gpus,
            "num_trials": self.num_trials,
            "concurrent_trials": self.concurrent_trials,
            "env_runners_per_pool": dict(self.env_runners_per_pool),
            "arithmetic": list(self.arithmetic),
            "notices": list(self.notices),
        }

    def explain(self, source: str | None = None) -> str:
        """The plan as `rlo plan` prints it (`source`: the spec file's name, for the first line)."""
        lines = []
        if self.job is not None:
            of = f" for `{source}`" if source else ""
            lines += [f"Plan{of}: cluster `{self.job.cluster}`, job: {self.job.what}", ""]
        lines += self._table()
        if self.num_trials > 1:
            lines.append(
                f"\nRay resources per trial: {self.trial_cpus} CPUs, {self.trial_gpus:g} GPUs; "
                f"{self.num_trials} trials, up to {self.concurrent_trials} at once"
            )
        else:
            lines.append(f"\nRay resources for the training trial: {self.trial_cpus} CPUs, {self.trial_gpus:g} GPUs")
        if self.job is not None:
            lines.append(f"where: {self.job.where}")
            if self.job.stop:
                lines.append("stop when: " + " or ".join(f"{k} >= {v:g}" for k, v in self.job.stop))
            if self.job.max_run_duration_seconds:
                lines.append(
                    f"the whole job is bounded to {self.job.max_run_duration_seconds} s (max_run_duration_seconds)"
                )
        for n in (*self.notices, *(self.job.notices if self.job else ())):
            lines.append(f"note: {n}")
        return "\n".join(lines)

    def _table(self) -> list[str]:
        rows: list[tuple[object, ...]] = [
            ("pool", "instance type", "nodes", "vCPUs/node", "GPUs/node", "vCPUs", "GPUs")
        ]
        for p in (self.head, *self.pools):
            rows.append(
                (p.name, p.instance_type or "-", p.node_count, p.vcpus_per_node, p.gpus_per_node, p.vcpus, p.gpus)
            )
        nodes = self.head.node_count + sum(p.node_count for p in self.pools)
        rows.append(("total", "", nodes, "", "", self.total_vcpus, self.total_gpus))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        lines = []
        for i, r in enumerate(rows):
            cells = [
                str(c).ljust(w) if j < 2 else str(c).rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=False))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
            if i == 0 or i == len(rows) - 2:
                lines.append("  " + "  ".join("-" * w for w in widths))
        lines.append("")
        lines += self.arithmetic
        return lines


def _pool(name: str, node) -> PoolPlan:
    return PoolPlan(
        name=name,
        instance_type=node.instance_type,
        node_count=getattr(node, "node_count", 1),
        vcpus_per_node=node.resolved_vcpus,
        gpus_per_node=node.resolved_gpus,
        memory_gib=node.resolved_memory_gib,
    )


def plan_env_runners(cluster: ClusterSpec, job: JobSpec | None = None) -> Plan:
    """Work out env runners, learners and GPUs for `job` on `cluster`, with the arithmetic spelled out.

    Raises PlanError for a combination that can never run."""
    job = job or JobSpec(algorithm="PPO", env="CartPole-v1")
    head = _pool("head", cluster.head)
    pools = tuple(_pool(w.name, w) for w in cluster.workers)
    reserved = cluster.head.reserved_cpus
    if reserved > head.vcpus:
        raise PlanError(
            f"the head reserves {reserved} CPUs for its role but has only {head.vcpus} vCPUs",
            fix=f"set `cluster.head.reserved_cpus` to at most {head.vcpus}, or pick a bigger head",
        )

    total = head.vcpus + sum(p.vcpus for p in pools)
    available = total - reserved
    terms = [f"{head.vcpus} (head)"] + [
        f"{p.node_count} x {p.vcpus_per_node} ({p.name})" if p.node_count > 1 else f"{p.vcpus_per_node} ({p.name})"
        for p in pools
    ]
    arithmetic = [
        f"env runners: {' + '.join(terms)} - {reserved} reserved for the head role (driver + learner) "
        f"= {available} vCPUs for env runners, 1 CPU each"
    ]
    notices: list[str] = []

    # Learner placement.
    use_gpu = job.use_gpu
    if use_gpu is True and head.gpus == 0:
        raise PlanError(
            "the job asks for a GPU learner (`job.use_gpu: true`) but the head has no GPU"
            + (f" (`{head.instance_type}` has none)" if head.instance_type else ""),
            fix="pick a GPU head (e.g. `instance_type: STANDARD_NC6`), set `gpus:` on the head, or `use_gpu: auto`",
        )
    learner_on_gpu = head.gpus > 0 and use_gpu is not False
    if learner_on_gpu and head.gpus > 1:
        num_learners, gpus_per_learner = head.gpus, 1.0
        arithmetic.append(
            f"learners: {head.gpus} remote learners, one per head GPU (data-parallel); the driver coordinates"
        )
    elif learner_on_gpu:
        num_learners, gpus_per_learner = 0, 1.0
        arithmetic.append("learner: on the head's GPU, in the driver process (num_learners=0, 1 GPU)")
    else:
        num_learners, gpus_per_learner = 0, 0.0
        why = "use_gpu: false" if head.gpus and use_gpu is False else "the head has no GPU"
        arithmetic.append(f"learner: on the head's CPU, in the driver process ({why})")
    worker_gpus = sum(p.gpus for p in pools)
    if worker_gpus:
        notices.append(f"worker pools have {worker_gpus} GPUs; env runners do not use them (only learners learn)")

    # Extra actors some algorithms start (IMPALA/APPO aggregation actors).
    aggregators = int(job.hyperparameters.get("num_aggregator_actors_per_learner", 0) or 0)
    extra = aggregators * max(1, num_learners)
    if extra:
        available -= extra
        arithmetic.append(f"aggregator actors: {extra} x 1 CPU, taken from the env-runner budget")

    # Env runners: the computed number, or the user's override (checked).
    if job.num_env_runners == "auto":
        num_runners = max(0, available)
        if available <= 0:
            arithmetic.append("no vCPU left for remote env runners: sampling runs in the driver (num_env_runners=0)")
    else:
        num_runners = job.num_env_runners
        if num_runners > max(0, available):
            raise PlanError(
                f"the job asks for {num_runners} env runners but the cluster has {max(0, available)} vCPUs for them "
                f"({arithmetic[0].split(': ', 1)[1].split(', 1 CPU')[0]})",
                fix=f"set `job.num_env_runners` to at most {max(0, available)} (or `auto`), or add worker nodes",
            )
        arithmetic.append(f"env runners: {num_runners} as the job asks (`num_env_runners`), of {available} possible")
    if available < 0:
        raise PlanError(
            f"the cluster has {total} vCPUs but the head role and extra actors need {reserved + extra}",
            fix="add worker nodes or lower `num_aggregator_actors_per_learner`",
        )

    # Spread: worker pools first (they exist to simulate), then the head's spare vCPUs.
    spread = _spread(num_runners, pools)
    if pools:
        arithmetic.append("spread: " + ", ".join(f"{n} {k}" for k, n in spread.items()) + " env runners")
    if job.num_envs_per_env_runner > 1:
        arithmetic.append(
            f"envs: {max(1, num_runners)} runner(s) x {job.num_envs_per_env_runner} vectorized envs "
            f"= {max(1, num_runners) * job.num_envs_per_env_runner} envs stepped per sample"
        )

    plan = Plan(
        head=head,
        pools=pools,
        reserved_cpus=reserved,
        num_env_runners=num_runners,
        num_envs_per_env_runner=job.num_envs_per_env_runner,
        num_learners=num_learners,
        num_gpus_per_learner=gpus_per_learner,
        extra_cpus=extra,
        env_runners_per_pool=spread,
        arithmetic=tuple(arithmetic),
        notices=tuple(notices),
    )
    return plan


def _spread(num_runners: int, pools: tuple[PoolPlan, ...]) -> dict[str, int]:
    spread: dict[str, int] = {}
    left = num_runners
    for p in pools:
        take = min(left, p.vcpus)
        spread[p.name] = take
        left -= take
    spread["head"] = left
    return spread


def plan_spec(spec: Spec) -> Plan:
    plan = plan_env_runners(spec.cluster, spec.job)
    if spec.sweep is not None:
        plan = plan_sweep(plan, spec.sweep, spec.job)
    return replace(plan, job=JobSummary.of(spec))


def plan_sweep(plan: Plan, sweep, job: JobSpec) -> Plan:
    """How many of a sweep's trials run at once: trials x (driver/learner + env runners + extra actors) must fit
    the vCPUs, and trials x learner GPUs the GPUs. With `num_env_runners: auto` the sweep favours trials running
    side by side (each trial's driver samples too), then gives each trial the vCPUs left over as env runners."""
    n = sweep.trial_count()
    cap = sweep.max_concurrent_trials
    vcpus, gpus = plan.total_vcpus, plan.total_gpus
    base = 1 + plan.extra_cpus  # the trial's driver/learner and extra actors
    what = f"1 driver/learner{f' + {plan.extra_cpus} extra actors' if plan.extra_cpus else ''}"
    lines = [f"sweep: {n} trial(s) ({_trial_count_words(sweep)})"]
    gpu_cap = None
    if plan.learner_gpus > 0:
        gpu_cap = int(gpus // plan.learner_gpus)
        lines.append(f"sweep: {gpus} GPU(s) // {plan.learner_gpus:g} per trial's learner = {gpu_cap} trial(s) at once")
    if job.num_env_runners == "auto":
        cpu_cap = vcpus // base
        want = n if cap == "auto" else min(n, cap)
        concurrent = min(want, cpu_cap, gpu_cap if gpu_cap is not None else want)
        if cap != "auto" and concurrent < min(n, cap):
            limit = "GPUs" if gpu_cap is not None and gpu_cap < cpu_cap else "vCPUs"
            raise PlanError(
                f"the sweep asks for {cap} trials at once, but the cluster's {limit} fit {concurrent} "
                f"({vcpus} vCPUs, {gpus} GPUs; each trial needs {base} vCPU(s) for {what}"
                + (f" and {plan.learner_gpus:g} GPU(s)" if plan.learner_gpus else "")
                + ")",
                fix=f"set `sweep.max_concurrent_trials` to at most {concurrent} (or `auto`), or add nodes",
            )
        runners = vcpus // max(1, concurrent) - base
        lines.append(
            f"sweep: {vcpus} vCPUs, {concurrent} trial(s) at once: each gets {what} + {runners} env runner(s) "
            f"= {base + runners} vCPUs" + (" (it samples in its driver)" if runners == 0 else "")
        )
    else:
        runners = job.num_env_runners
        per = base + runners
        cpu_cap = vcpus // per
        concurrent = min(n, cpu_cap, gpu_cap if gpu_cap is not None else n, n if cap == "auto" else cap)
        lines.append(
            f"sweep: {vcpus} vCPUs // ({what} + {runners} env runners = {per}) = {cpu_cap} trial(s) fit; "
            f"{concurrent} at a time"
        )
    if concurrent < 1:
        raise PlanError(
            f"not one trial of the sweep fits the cluster ({vcpus} vCPUs, {gpus} GPUs)",
            fix="lower `job.num_env_runners` (or `auto`), or add nodes",
        )
    if n > concurrent:
        lines.append(f"sweep: {n} trials in {-(-n // concurrent)} wave(s) of up to {concurrent}")
    spread = _spread(runners * concurrent, plan.pools)
    return replace(
        plan,
        num_env_runners=runners,
        env_runners_per_pool=spread,
        arithmetic=plan.arithmetic + tuple(lines),
        num_trials=n,
        concurrent_trials=concurrent,
    )


def _trial_count_words(sweep) -> str:
    grid = [
        f"{len(next(iter(d.values())))} {path.split('.', 1)[1]}"
        for path, d in sweep.parameters.items()
        if "grid" in d or (sweep.search == "grid" and "choice" in d)
    ]
    parts = grid + ([f"{sweep.num_samples} sample(s)"] if sweep.num_samples > 1 or not grid else [])
    return " x ".join(parts)


def check_fits(plan: Plan, *, cpus: float, gpus: float, where: str) -> None:
    """Refuse a plan whose training trial cannot be placed on a Ray cluster with these resources."""
    need_cpu, need_gpu = plan.trial_cpus, plan.trial_gpus
    if need_cpu <= cpus and need_gpu <= gpus:
        return
    parts = []
    if need_cpu > cpus:
        parts.append(
            f"{need_cpu} CPUs (1 driver/learner + {plan.num_env_runners} env runners"
            + (f" + {plan.extra_cpus} extra actors" if plan.extra_cpus else "")
            + ")"
        )
    if need_gpu > gpus:
        parts.append(f"{need_gpu:g} GPU(s) for the learner")
    raise PlanError(
        f"the job needs {' and '.join(parts)}, but {where} has {cpus:g} CPUs and {gpus:g} GPUs; "
        "Ray would leave it pending forever",
        fix="describe this machine in the spec (e.g. `head: {instance_type: local}` with no worker pools), lower "
        "`job.num_env_runners`, or submit to a cluster that has the resources (`--address`)",
    )
