"""The algorithms a spec can name: RLlib's own registry, the ones RLlib dropped, and their config classes.

Pure lookups; RLlib is imported only when a question needs it (it takes seconds)."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path

from .errors import UserError, did_you_mean

# --- algorithms ----------------------------------------------------------------------------------------------
# Specs take every online algorithm of RLlib's new API stack. The names are RLlib's own registry
# (`ray.rllib.algorithms.registry.ALGORITHMS`); which of them learn online is asked of RLlib itself (see
# `online_algorithms`), so an algorithm RLlib adds is taken without a change here.

# Algorithms RLlib dropped (the old API stack, removed by Ray 2.10-2.40) -> what to use instead, and why.
DROPPED_ALGORITHMS = {
    "A2C": ("PPO", "synchronous actor-critic; PPO is its successor"),
    "A3C": ("APPO", "asynchronous actor-critic; APPO (or IMPALA) samples asynchronously"),
    "PG": ("PPO", "vanilla policy gradient"),
    "DDPG": ("SAC", "continuous actions, off-policy"),
    "TD3": ("SAC", "continuous actions, off-policy (SAC has twin Q-networks too)"),
    "APEX": ("DQN", "distributed DQN; DQN with more env runners (`job.num_env_runners`)"),
    "APEX_DQN": ("DQN", "distributed DQN; DQN with more env runners (`job.num_env_runners`)"),
    "APEX_DDPG": ("SAC", "distributed DDPG"),
    "R2D2": ("PPO", "recurrent DQN; PPO with `model: {use_lstm: true}` (or DQN without recurrence)"),
    "SIMPLEQ": ("DQN", "DQN without its extensions"),
    "ES": ("PPO", "evolution strategies: RLlib has no gradient-free algorithm now"),
    "ARS": ("PPO", "augmented random search: RLlib has no gradient-free algorithm now"),
    "DDPPO": ("PPO", "decentralized PPO; PPO with several learners (a head with several GPUs)"),
    "MADDPG": ("PPO", "multi-agent DDPG; PPO in RLlib's multi-agent setup"),
    "QMIX": ("PPO", "multi-agent value factorization; PPO in RLlib's multi-agent setup"),
    "MAML": ("PPO", "meta-learning"),
    "MBMPO": ("PPO", "model-based meta-learning"),
    "DREAMER": ("DreamerV3", "the world-model algorithm's current version"),
    "SLATEQ": ("DQN", "recommender slates"),
    "ALPHAZERO": ("PPO", "self-play tree search"),
    "ALPHASTAR": ("PPO", "league self-play"),
    "LEELACHESSZERO": ("PPO", "self-play tree search"),
    "BANDITLINUCB": ("PPO", "contextual bandits"),
    "BANDITLINTS": ("PPO", "contextual bandits"),
    "CRR": ("CQL", "offline RL (not run by rl-orchestrator's specs)"),
    "DT": ("CQL", "offline RL (not run by rl-orchestrator's specs)"),
}


@functools.cache
def registered_algorithms() -> tuple[str, ...]:
    """The algorithm names RLlib registers, read from its registry module's source: importing RLlib takes
    seconds, and a spec is validated (names only) without it. Falls back to importing the registry."""
    import ast
    import importlib.util

    try:
        ray_spec = importlib.util.find_spec("ray")
        locations = ray_spec.submodule_search_locations if ray_spec is not None else None
        if locations is not None:
            path = Path(next(iter(locations))) / "rllib" / "algorithms" / "registry.py"
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ALGORITHMS" for t in node.targets):
                    if not isinstance(node.value, ast.Dict):
                        break
                    names = tuple(
                        k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)
                    )
                    if names:
                        return names
    except (AttributeError, OSError, StopIteration, SyntaxError, TypeError):
        pass
    from ray.rllib.algorithms.registry import ALGORITHMS

    return tuple(ALGORITHMS)


@functools.cache
def online_algorithms() -> tuple[str, ...]:
    """The registered algorithms that learn online (from env runners' samples), asked of RLlib: its config says
    `is_online`, and its training step does not read recorded data (CQL's config is SAC's, `is_online` included,
    but it trains on `offline_data`). Imports RLlib."""
    from ray.rllib.algorithms.registry import ALGORITHMS

    out = []
    for name in registered_algorithms():
        algo_class, config = ALGORITHMS[name]()
        if config.is_online and "offline_data" not in inspect.getsource(algo_class.training_step):
            out.append(name)
    return tuple(out)


def resolve_algorithm(name: str) -> tuple[str | None, str | None, str | None]:
    """(RLlib's spelling of `name`, None, None), or (None, what is wrong, fix) for a name RLlib dropped or never
    had. Case does not matter (`ppo`, `DREAMERV3`). Reads names only: no RLlib import."""
    known = registered_algorithms()
    for a in known:
        if name.upper() == a.upper():
            return a, None, None
    key = name.upper().replace("-", "_")
    if key in DROPPED_ALGORITHMS:
        instead, what = DROPPED_ALGORITHMS[key]
        return (
            None,
            f"RLlib no longer has the algorithm `{name}` ({what}); it was removed with RLlib's old API stack",
            f"use `algorithm: {instead}`",
        )
    hint = did_you_mean(name.upper(), [a.upper() for a in known])
    if hint:
        hint = did_you_mean(name, known) or hint
    return (
        None,
        f"unknown algorithm `{name}`" + (f"; {hint}" if hint else ""),
        f"use one of RLlib's: {', '.join(known)}",
    )


def _checked_algorithm(algorithm: str) -> str:
    """RLlib's name of an algorithm a spec can train; UserError for a dropped, unknown or offline one."""
    name, what, fix = resolve_algorithm(algorithm)
    if name is None:
        assert what is not None, "resolve_algorithm says what is wrong with every name it does not resolve"
        raise UserError(what, fix=fix)
    if name not in online_algorithms():
        raise UserError(
            f"`{name}` is one of RLlib's offline algorithms: it learns from recorded data, not from env runners",
            fix=f"use an online one: {', '.join(online_algorithms())}",
        )
    return name


class _AlgorithmConfigs(Mapping):
    """`ALGORITHM_CONFIGS[name]` -> (module, AlgorithmConfig class name) for every online algorithm, read from
    RLlib's registry on first use (importing RLlib)."""

    @functools.cached_property
    def _table(self) -> dict[str, tuple[str, str]]:
        from ray.rllib.algorithms.registry import ALGORITHMS

        classes = {name: type(ALGORITHMS[name]()[1]) for name in online_algorithms()}
        return {name: (cls.__module__, cls.__name__) for name, cls in classes.items()}

    def __getitem__(self, name: str) -> tuple[str, str]:
        return self._table[name]

    def __iter__(self):
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


ALGORITHM_CONFIGS = _AlgorithmConfigs()


def config_class(algorithm: str):
    """RLlib's AlgorithmConfig class of `algorithm`; UserError for one RLlib dropped, an offline one or a typo."""
    module, name = ALGORITHM_CONFIGS[_checked_algorithm(algorithm)]
    return getattr(importlib.import_module(module), name)
