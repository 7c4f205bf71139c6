"""Which Ray node is which pool: the resources every node of a spec's cluster is started with.

One convention, used everywhere a node is brought up (``rlo cluster start-head`` / ``join``, the KubeRay and
Azure ML renderings) and everywhere work is placed (the job's RLlib config):

- every node carries ``rlo_pool_<pool>`` (its pool, as a resource equal to its vCPUs) so Ray's own state says
  which pool a node belongs to; the head's pool is called ``head``;
- the head also carries ``rlo_head: 1``; the driver and the learner(s) ask for a sliver of it, so they can
  only run on the head (on its GPU when it has one);
- a node carries ``rlo_env_runner_slots: n`` where n is the number of env runners the plan puts on that node
  (worker pools first, then the head's spare vCPUs); every env runner asks for one slot, so env runners land
  only where, and as many as, the plan says.

Pure Python, no Ray import: the planner and renderers use it without an engine.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from .planner import Plan, PoolPlan

HEAD_POOL = "head"
HEAD_RESOURCE = "rlo_head"
ENV_RUNNER_SLOT = "rlo_env_runner_slots"
# What the driver / learner asks of HEAD_RESOURCE: a sliver, so several can share one head (sweeps).
HEAD_SLIVER = 0.001


def pool_resource(pool: str) -> str:
    """The custom resource naming a pool's nodes: ``rlo_pool_worker_cpu`` for pool ``worker-cpu``."""
    return "rlo_pool_" + re.sub(r"[^A-Za-z0-9_]", "_", pool)


@dataclass(frozen=True)
class NodeParams:
    """How one node of a pool is started: its CPUs, GPUs, memory and custom resources."""

    pool: str
    role: str  # "head" | "worker"
    num_cpus: int
    num_gpus: int
    memory_bytes: int | None
    resources: dict[str, float] = field(default_factory=dict)

    def ray_start_flags(self) -> list[str]:
        """Flags for ``ray start`` (the address / --head flags are the caller's)."""
        flags = [f"--num-cpus={self.num_cpus}", f"--num-gpus={self.num_gpus}"]
        if self.memory_bytes:
            flags.append(f"--memory={self.memory_bytes}")
        flags.append("--resources=" + json.dumps(self.resources, sort_keys=True))
        return flags

    def ray_start_params(self) -> dict[str, str]:
        """The same as KubeRay's ``rayStartParams`` (string values, keys without dashes)."""
        params = {"num-cpus": str(self.num_cpus), "num-gpus": str(self.num_gpus)}
        if self.memory_bytes:
            params["memory"] = str(self.memory_bytes)
        params["resources"] = "'" + json.dumps(self.resources, sort_keys=True) + "'"
        return params


def _pool_plan(plan: Plan, pool: str) -> PoolPlan:
    if pool == HEAD_POOL:
        return plan.head
    for p in plan.pools:
        if p.name == pool:
            return p
    from .errors import PlanError, did_you_mean

    names = [HEAD_POOL] + [p.name for p in plan.pools]
    hint = did_you_mean(pool, names)
    raise PlanError(
        f"the cluster has no pool `{pool}`" + (f"; {hint}" if hint else ""),
        fix="pools in this spec: " + ", ".join(f"`{n}`" for n in names),
    )


def env_runner_slots(plan: Plan, pool: str) -> int:
    """Env-runner slots on ONE node of `pool`: the plan's share for the pool, divided over its nodes (rounded up,
    so identical replicas, as KubeRay worker groups are, can hold the plan)."""
    p = _pool_plan(plan, pool)
    total = plan.env_runners_per_pool.get(pool, 0)
    return math.ceil(total / max(1, p.node_count)) if total else 0


def node_params(plan: Plan, pool: str) -> NodeParams:
    """The resources a node of `pool` (``head`` or a worker pool's name) is started with."""
    p = _pool_plan(plan, pool)
    resources: dict[str, float] = {pool_resource(pool): float(p.vcpus_per_node)}
    if pool == HEAD_POOL:
        resources[HEAD_RESOURCE] = 1.0
    slots = env_runner_slots(plan, pool)
    if slots:
        resources[ENV_RUNNER_SLOT] = float(slots)
    memory = int(p.memory_gib * 1024**3) if p.memory_gib else None
    return NodeParams(
        pool=pool,
        role="head" if pool == HEAD_POOL else "worker",
        num_cpus=p.vcpus_per_node,
        num_gpus=p.gpus_per_node,
        memory_bytes=memory,
        resources=resources,
    )


def job_custom_resources() -> dict[str, dict[str, float]]:
    """What the job's processes ask for, so they run where the plan says (keys are RLlib config arguments)."""
    return {
        "custom_resources_for_main_process": {HEAD_RESOURCE: HEAD_SLIVER},
        "custom_resources_per_learner": {HEAD_RESOURCE: HEAD_SLIVER},
        "custom_resources_per_env_runner": {ENV_RUNNER_SLOT: 1.0},
    }
