"""What each node of a plan is started with: its CPUs, GPUs, memory and the custom resources of the placement
convention (`orchestrator.placement`). Used wherever a node is brought up: `rlo cluster start-head` / `join`, the
KubeRay and Azure ML renderings. Pure Python, no Ray import."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from .errors import PlanError, did_you_mean
from .placement import ENV_RUNNER_SLOT, HEAD_POOL, HEAD_RESOURCE, pool_resource
from .planner import Plan, PoolPlan


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
