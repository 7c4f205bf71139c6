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

Pure Python, no Ray import and no plan: the job side reads these names too. What each node of a plan is
started with is `orchestrator.nodes`.
"""

from __future__ import annotations

import re

HEAD_POOL = "head"
HEAD_RESOURCE = "rlo_head"
ENV_RUNNER_SLOT = "rlo_env_runner_slots"
# What the driver / learner asks of HEAD_RESOURCE: a sliver, so several can share one head (sweeps).
HEAD_SLIVER = 0.001


def pool_resource(pool: str) -> str:
    """The custom resource naming a pool's nodes: ``rlo_pool_worker_cpu`` for pool ``worker-cpu``."""
    return "rlo_pool_" + re.sub(r"[^A-Za-z0-9_]", "_", pool)


def job_custom_resources() -> dict[str, dict[str, float]]:
    """What the job's processes ask for, so they run where the plan says (keys are RLlib config arguments)."""
    return {
        "custom_resources_for_main_process": {HEAD_RESOURCE: HEAD_SLIVER},
        "custom_resources_per_learner": {HEAD_RESOURCE: HEAD_SLIVER},
        "custom_resources_per_env_runner": {ENV_RUNNER_SLOT: 1.0},
    }
