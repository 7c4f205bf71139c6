"""From a job spec to an RLlib `AlgorithmConfig` (new API stack): envs, presets, hyperparameters.

Used on both sides: the submitting side validates the env and the hyperparameters before anything is
submitted; the job's entry script builds the config. RLlib is imported lazily (it takes seconds).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import sys
import traceback
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError, did_you_mean, shorten

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
        path = Path(next(iter(ray_spec.submodule_search_locations))) / "rllib" / "algorithms" / "registry.py"
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ALGORITHMS" for t in node.targets):
                names = tuple(k.value for k in node.value.keys if isinstance(k, ast.Constant))
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

# Keys of env_config that configure our Atari preprocessing, not the ALE env itself.
ATARI_WRAPPER_KEYS = ("dim", "framestack")
# Keys of env_config that `_make_env` applies as wrappers, for any env (not passed to the env).
TRAINING_ENV_KEYS = ("reward_scale", "observation_scale")
# Keyword arguments of `gymnasium.make` itself (not passed to the env).
GYM_MAKE_KEYS = ("max_episode_steps", "disable_env_checker")
# Import paths of the auto-scaling env (its Gymnasium id is rlo/AutoScale-v0).
AUTOSCALE_CLASSES = ("orchestrator.autoscale.env:AutoScaleEnv", "orchestrator.autoscale:AutoScaleEnv")

# Legacy hyperparameters, as the seeds and the SageMaker RL / Azure ML Ray examples write them (RLlib 0.8-1.x),
# read on RLlib's new API stack. Each legacy key gets ONE notice; what cannot carry over is an error naming the
# key and its replacement. `framework: tf`/`tf2`, `use_pytorch: false`: a notice, not an error -- the new API stack
# runs torch only, and RLlib's built-in models (all a config without `model.custom_model` uses) are the same
# networks in torch; a custom TF model is refused (`model.custom_model`).

# Legacy name -> current AlgorithmConfig attribute (the same value, the same meaning).
LEGACY_HYPERPARAMETERS = {
    "sample_batch_size": "rollout_fragment_length",
    "num_sgd_iter": "num_epochs",
    "sgd_minibatch_size": "minibatch_size",
    "num_workers": "num_env_runners",
    "num_envs_per_worker": "num_envs_per_env_runner",
    "rollout_fragment_length": "rollout_fragment_length",
    "lr_schedule": "lr",  # `lr` takes the schedule [[timestep, value], ...] itself now
    "entropy_coeff_schedule": "entropy_coeff",
    "timesteps_per_iteration": "min_sample_timesteps_per_iteration",
    "min_iter_time_s": "min_time_s_per_iteration",
    "min_time_s_per_reporting": "min_time_s_per_iteration",
    "learning_starts": "num_steps_sampled_before_learning_starts",
    "evaluation_num_workers": "evaluation_num_env_runners",
    "metrics_smoothing_episodes": "metrics_num_episodes_for_smoothing",
    "lambda": "lambda_",
}
# Legacy keys that have no meaning on the new API stack (or here): dropped with a notice saying why.
DROPPED_HYPERPARAMETERS = {
    "num_data_loader_buffers": "the new API stack loads data on the learner itself",
    "num_multi_gpu_tower_stacks": "the new API stack loads data on the learner itself",
    "num_gpus": "GPUs come from the cluster plan (`job.use_gpu`, the head's GPUs)",
    "num_gpus_per_worker": "env runners do not use GPUs here (the plan gives GPUs to learners)",
    "num_cpus_for_driver": "the plan keeps the head role's CPUs (`cluster.head.reserved_cpus`)",
    "framework": "RLlib's new API stack runs torch only (the built-in models are the same networks)",
    "use_pytorch": "RLlib's new API stack runs torch only (the built-in models are the same networks)",
    "eager": "TensorFlow only; RLlib's new API stack runs torch",
    "eager_tracing": "TensorFlow only; RLlib's new API stack runs torch",
    "monitor": "no videos are recorded during training (the new API stack has no `monitor`)",
    "ignore_worker_failures": "env runners that fail are always restarted here (fault tolerance)",
    "recreate_failed_workers": "env runners that fail are always restarted here (fault tolerance)",
    "simple_optimizer": "the new API stack has one learner path",
    "synchronize_filters": "no observation filters run on env runners here",
    "collect_metrics_timeout": "env runners report their metrics every iteration",
}
# Legacy keys that cannot carry over: key -> its replacement (the error's fix).
UNMAPPABLE_HYPERPARAMETERS = {
    "horizon": "cut episodes in the env: `env_config: {max_episode_steps: N}` (a Gymnasium id) or a TimeLimit "
    "wrapper in your env",
    "soft_horizon": "episodes end when the env says so (Gymnasium's `terminated`/`truncated`); remove it",
    "no_done_at_end": "episodes end when the env says so (Gymnasium's `terminated`/`truncated`); remove it",
    "exploration_config": "DQN explores with `epsilon: [[0, 1.0], [10000, 0.05]]`; PPO, IMPALA, APPO and SAC "
    "explore through their stochastic policy (no setting)",
    "exploration_fraction": "DQN: `epsilon: [[0, 1.0], [STEPS, FINAL_EPS]]` (STEPS = the old fraction x timesteps)",
    "exploration_final_eps": "DQN: `epsilon: [[0, 1.0], [STEPS, FINAL_EPS]]`",
    "schedule_max_timesteps": "DQN: `epsilon: [[0, 1.0], [STEPS, FINAL_EPS]]`",
    "buffer_size": "`replay_buffer_config: {capacity: N}`",
    "prioritized_replay": "`replay_buffer_config: {type: PrioritizedEpisodeReplayBuffer}` (DQN's and SAC's default)",
    "prioritized_replay_alpha": "`replay_buffer_config: {type: PrioritizedEpisodeReplayBuffer, alpha: A}`",
    "prioritized_replay_beta": "`replay_buffer_config: {type: PrioritizedEpisodeReplayBuffer, beta: B}`",
    "final_prioritized_replay_beta": "`replay_buffer_config: {type: PrioritizedEpisodeReplayBuffer, beta: B}`",
    "beta_annealing_fraction": "`replay_buffer_config: {type: PrioritizedEpisodeReplayBuffer, beta: B}`",
    "prioritized_replay_eps": "`replay_buffer_config: {type: PrioritizedEpisodeReplayBuffer}`",
    "callbacks": "callbacks are code: `orchestrator.compat.rllib_legacy.tune.run(config={'callbacks': ...})` in an "
    "entry script, or an RLlibCallback subclass in an entry script of your own",
    "multiagent": "RLlib's `config.multi_agent(policies=..., policy_mapping_fn=...)` in an entry script of your own",
    "env": "give the env as `job.env` (a Gymnasium id or `package.module:Class`)",
    "env_config": "give the env's settings as `job.env_config`",
    "use_gpu_for_workers": "env runners do not use GPUs here; remove it",
    "gpu_fraction": "GPUs come from the cluster plan; remove it",
}
# Legacy keys of the old `model` dict -> their DefaultModelConfig name (a notice each).
LEGACY_MODEL_KEYS = {
    "post_fcnet_hiddens": "head_fcnet_hiddens",
    "post_fcnet_activation": "head_fcnet_activation",
}
# Old `model` keys with no meaning now (RLlib's Atari wrapper grayscales and stacks 4 frames itself).
DROPPED_MODEL_KEYS = {
    "grayscale": "RLlib's Atari preprocessing always converts to grayscale",
    "zero_mean": "RLlib's Atari preprocessing scales frames itself",
    "framestack": "RLlib's Atari preprocessing stacks frames (`env_config.framestack`, 4 by default)",
}
# Old `model` keys that cannot carry over -> their replacement.
UNMAPPABLE_MODEL_KEYS = {
    "custom_model": "a model of your own is an RLModule on the new API stack (`config.rl_module(rl_module_spec="
    "RLModuleSpec(module_class=...))` in an entry script of your own); or drop it for the default model "
    "(`fcnet_hiddens`, `conv_filters`)",
    "custom_model_config": "goes with `custom_model`: an RLModule's `model_config` in an entry script of your own",
    "custom_action_dist": "an RLModule's action distribution (`get_inference_action_dist_cls`) in an entry script "
    "of your own",
    "custom_preprocessor": "preprocess in the env (a Gymnasium ObservationWrapper) or an env-to-module connector",
    "use_attention": "`use_lstm: true` (RLlib's default models have no attention net now)",
}
# Set by the planner; a spec must not set them as hyperparameters.
PLANNED = {"num_env_runners", "num_envs_per_env_runner", "num_learners", "num_gpus_per_learner"}


# --- environments -------------------------------------------------------------------------------------------


def _ensure_registrations() -> None:
    """Import the packages that register Gymnasium ids we support (ALE, our own envs)."""
    import gymnasium as gym

    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:
        pass
    for mod in ("orchestrator.autoscale",):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


def is_import_path(env_id: str) -> bool:
    return ":" in env_id and not env_id.startswith("ale_py:")


def is_atari(env_id: str) -> bool:
    if is_import_path(env_id):
        return False
    _ensure_registrations()
    import gymnasium as gym

    try:
        spec = gym.spec(env_id.removeprefix("ale_py:"))
    except Exception:
        return False
    return "ale_py" in str(spec.entry_point)


@contextmanager
def _on_path(folder: str | Path | None):
    if folder is None:
        yield
        return
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))


def load_env_class(path: str, source_dir: str | Path | None = None):
    module, _, name = path.partition(":")
    with _on_path(source_dir):
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            if _is_old_gym(e.name):
                raise old_gym_error(f"the env module `{module}` (from `env: {path}`)", _user_line(e)) from None
            raise UserError(
                f"cannot import the env module `{module}` (from `env: {path}`): {e}",
                fix="check the module path; put the module in `job.source_dir` (shipped with the job) or install it",
            ) from None
        except SyntaxError as e:
            where = f"{e.filename}, line {e.lineno}" if e.filename else f"module `{module}`"
            raise UserError(
                f"the env module `{module}` (from `env: {path}`) has a syntax error: {e.msg} ({where})"
                + (f"\n    {e.text.strip()}" if e.text else ""),
                fix="fix that line; `python -c 'import " + module + "'` in the job's folder shows the same",
            ) from None
        except Exception as e:  # the user's import-time code raised: say where, without our traceback
            tb = traceback.extract_tb(e.__traceback__)
            user = [f for f in tb if "importlib" not in f.filename and not f.filename.startswith("<frozen")]
            at = f" ({user[-1].filename}, line {user[-1].lineno})" if user else ""
            raise UserError(
                f"importing the env module `{module}` (from `env: {path}`) raised {type(e).__name__}: {e}{at}",
                fix="the module runs this code when it is imported; fix it or move it into the env's constructor",
            ) from None
    try:
        cls = getattr(mod, name)
    except AttributeError:
        hint = did_you_mean(name, [n for n in dir(mod) if not n.startswith("_")])
        raise UserError(
            f"module `{module}` has no `{name}` (from `env: {path}`)", fix=hint or "check the class name"
        ) from None
    if is_old_gym_env(cls):
        raise old_gym_error(f"the env `{path}`", f" (a `gym.Env`, from {getattr(mod, '__file__', module)})")
    return cls


def _is_old_gym(module_name: str | None) -> bool:
    return module_name == "gym" or (module_name or "").startswith("gym.")


def _user_line(e: BaseException) -> str:
    """` (file, line N)` of the user's line that raised `e`, without the import machinery's frames."""
    tb = traceback.extract_tb(e.__traceback__)
    user = [f for f in tb if "importlib" not in f.filename and not f.filename.startswith("<frozen")]
    return f" ({user[-1].filename}, line {user[-1].lineno})" if user else ""


def is_old_gym_env(cls: Any) -> bool:
    """Is `cls` an env class of OpenAI Gym (the `gym` package, whose API RLlib dropped) rather than Gymnasium?"""
    gym = sys.modules.get("gym")
    if gym is None or not inspect.isclass(cls) or not isinstance(getattr(gym, "Env", None), type):
        return False
    import gymnasium

    return issubclass(cls, gym.Env) and not issubclass(cls, gymnasium.Env)


def old_gym_error(what: str, where: str = "") -> UserError:
    """The error for user code written for OpenAI Gym: RLlib's new API stack takes Gymnasium envs only."""
    return UserError(
        f"{what} uses `gym`{where}: RLlib's new API stack takes Gymnasium envs (`gym` is unmaintained since 2022)",
        fix="use gymnasium: replace `import gym` with `import gymnasium as gym` (then `reset()` returns "
        "`(obs, info)` and `step()` returns `(obs, reward, terminated, truncated, info)`)",
    )


def validate_env(env_id: str, source_dir: str | Path | None = None) -> str:
    """Check that an env exists before submitting. Returns its kind: 'atari', 'gym' or 'class'."""
    if is_import_path(env_id):
        load_env_class(env_id, source_dir)
        return "class"
    _ensure_registrations()
    import gymnasium as gym

    gid = env_id.removeprefix("ale_py:")
    try:
        gym.spec(gid)
    except Exception:
        hint = did_you_mean(gid, list(gym.registry.keys()))
        raise UserError(
            f"unknown env `{env_id}`: it is not a registered Gymnasium id",
            fix=(hint + " " if hint else "")
            + "use a Gymnasium id (CartPole-v1, ALE/Pong-v5, PongNoFrameskip-v4, rlo/AutoScale-v0) or an import "
            "path `package.module:Class`",
        ) from None
    return "atari" if is_atari(env_id) else "gym"


def env_config_problems(
    env_id: str, env_config: dict[str, Any], *, keys_only: bool = False
) -> list[tuple[str, str, str | None]]:
    """(key, what is wrong, fix) for each setting of `env_config` that the env cannot take, for envs whose
    settings are known: the auto-scaling env (its `AutoScaleConfig`), Atari (ALE's AtariEnv arguments and our
    preprocessing keys), and Gymnasium's own envs (their constructor's arguments). Nothing is said about an env
    of the user's (`pkg.module:Class`) or one whose constructor takes `**kwargs`: its code alone knows.

    Runs no user code: only the registrations of the packages we ship with are looked at (`rlo plan` calls this
    through the spec). `keys_only`: check the names only (a swept setting, whose values are drawn later)."""
    if not env_config:
        return []
    problems: list[tuple[str, str, str | None]] = []
    if not keys_only:
        problems += _training_key_problems(env_config)
    if "num_envs" in env_config:
        problems.append(("num_envs", "is set by RLlib", "give `job.num_envs_per_env_runner` instead"))
    autoscale = env_id in AUTOSCALE_CLASSES or (not is_import_path(env_id) and env_id == _autoscale_id())
    if autoscale:
        return problems + _autoscale_problems(env_id, env_config, keys_only)
    if is_import_path(env_id):
        return problems
    known = _gym_env_settings(env_id)
    if known is None:
        return problems
    atari = is_atari(env_id)
    if atari:
        known += list(ATARI_WRAPPER_KEYS)
        if not keys_only:
            problems += _atari_problems(env_config)
    known += list(TRAINING_ENV_KEYS) + list(GYM_MAKE_KEYS)
    what = f"the {'Atari ' if atari else ''}env `{env_id}`"
    return problems + _unknown_keys(env_config, known, what, listed=sorted(known))


def _unknown_keys(
    cfg: dict[str, Any], known: list[str], what: str, listed: list[str]
) -> list[tuple[str, str, str | None]]:
    """One problem per key of `cfg` that is not a known setting (`num_envs` is RLlib's, refused elsewhere)."""
    out = []
    for key in cfg:
        if key not in known and key != "num_envs":
            hint = did_you_mean(key, known)
            what_is_wrong = f"unknown setting of {what}" + (f"; {hint}" if hint else "")
            out.append((str(key), what_is_wrong, f"known settings: {', '.join(listed)}"))
    return out


def _autoscale_id() -> str:
    from orchestrator.autoscale import ENV_ID

    return ENV_ID


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _training_key_problems(cfg: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    out = []
    if "reward_scale" in cfg and not _finite_number(cfg["reward_scale"]):
        out.append(
            ("reward_scale", f"must be a number (got `{shorten(cfg['reward_scale'])}`)", "e.g. `reward_scale: 0.01`")
        )
    if "observation_scale" in cfg:
        v = cfg["observation_scale"]
        if not (_finite_number(v) or (isinstance(v, list) and v and all(_finite_number(x) for x in v))):
            out.append(
                (
                    "observation_scale",
                    f"must be a number or a list of numbers, one per observation element (got `{shorten(v)}`)",
                    "e.g. `observation_scale: [20.0, 1.0, ...]`",
                )
            )
    return out


def _autoscale_problems(env_id: str, cfg: dict[str, Any], keys_only: bool) -> list[tuple[str, str, str | None]]:
    import dataclasses

    from orchestrator.autoscale.config import AutoScaleConfig, AutoScaleConfigError

    fields = [f.name for f in dataclasses.fields(AutoScaleConfig)]
    known = fields + list(TRAINING_ENV_KEYS)
    out = _unknown_keys(cfg, known, f"the auto-scaling env `{env_id}`", listed=known)
    if out or keys_only:
        return out
    try:
        config = AutoScaleConfig.from_mapping({k: v for k, v in cfg.items() if k in fields})
    except AutoScaleConfigError as e:
        return [(e.field, e.message, e.fix or "see `AutoScaleConfig` in orchestrator/autoscale/config.py")]
    scale = cfg.get("observation_scale")
    if isinstance(scale, list) and len(scale) != config.observation_size:
        out.append(
            (
                "observation_scale",
                f"has {len(scale)} factors; the observation has {config.observation_size} elements "
                f"(20 + warmup_latency {config.warmup_latency} + {len(config.extra_features)} extra_features)",
                f"give {config.observation_size} factors, or one number for all",
            )
        )
    return out


def _atari_problems(cfg: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    out = []
    for key, top in (("dim", 1024), ("framestack", 64)):
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top):
            out.append((key, f"must be a whole number from 1 to {top} (got `{shorten(v)}`)", f"e.g. `{key}: 4`"))
    return out


def _gym_env_settings(env_id: str) -> list[str] | None:
    """The keyword arguments a registered Gymnasium id's env takes, or None when they are not known (not
    registered, a factory function taking `**kwargs`...)."""
    _ensure_registrations()
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    try:
        spec = gym.spec(env_id.removeprefix("ale_py:"))
        creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
        params = inspect.signature(creator).parameters.values()
    except Exception:
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]


def has_vector_entry_point(env_id: str) -> bool:
    """Whether a Gymnasium id ships its own batched VectorEnv (e.g. rlo/AutoScale-v0), which RLlib can use
    instead of stepping one env per sub-env."""
    # Atari ids have one too (ale_py's AtariVectorEnv), but with its own preprocessing: Atari trains through
    # RLlib's wrappers (the frames the policy is served with), stepped one env at a time.
    if is_import_path(env_id) or is_atari(env_id):
        return False
    _ensure_registrations()
    import gymnasium as gym

    try:
        return gym.spec(env_id).vector_entry_point is not None
    except Exception:
        return False


def _make_env(env_id: str, source_dir: str | None, env_config: dict | None = None):
    """Env creator used by RLlib's env runners (module-level, so it pickles).

    Training-side options in env_config, applied as wrappers and removed before the env sees its config:
    `reward_scale` multiplies rewards (for learning only; reported returns are unscaled),
    `observation_scale` multiplies observations element-wise (the policy is served/evaluated with the same
    factors). `num_envs` (set by RLlib in vector-entry-point mode) asks for the env's batched VectorEnv."""
    cfg = dict(env_config or {})
    reward_scale = float(cfg.pop("reward_scale", 1.0))
    obs_scale = cfg.pop("observation_scale", None)
    num_envs = cfg.pop("num_envs", None)
    env = _make_base_env(env_id, source_dir, cfg, num_envs)
    import gymnasium as gym

    vector = num_envs is not None
    if reward_scale != 1.0:
        wrapper = gym.wrappers.vector.TransformReward if vector else gym.wrappers.TransformReward
        env = wrapper(env, functools.partial(_scale, factor=reward_scale))
    if obs_scale is not None:
        import numpy as np

        factor = np.asarray(obs_scale, dtype=np.float32)
        single = env.single_observation_space if vector else env.observation_space
        space = scaled_box(single, factor)
        transform = functools.partial(_scale, factor=factor)
        if vector:
            env = gym.wrappers.vector.TransformObservation(
                env,
                transform,
                single_observation_space=space,
                observation_space=gym.vector.utils.batch_space(space, env.num_envs),
            )
        else:
            env = gym.wrappers.TransformObservation(env, transform, space)
    return env


def _scale(x, factor):
    return x * factor


def scaled_box(space, factor):
    """The Box `space` with its bounds multiplied by `factor` (a scalar or one factor per element)."""
    import gymnasium as gym
    import numpy as np

    if not isinstance(space, gym.spaces.Box) or np.shape(factor) not in ((), space.shape):
        raise UserError(
            f"`observation_scale` needs a Box observation space and one factor per element; the env has {space}",
            fix="remove `observation_scale` from env_config, or give as many factors as the observation has",
        )
    return gym.spaces.Box(space.low * factor, space.high * factor, space.shape, space.dtype)


def _make_base_env(env_id: str, source_dir: str | None, cfg: dict, num_envs: int | None):
    if is_import_path(env_id):
        return load_env_class(env_id, source_dir)(cfg)
    _ensure_registrations()
    import gymnasium as gym

    if num_envs is not None:
        return gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode="vector_entry_point", **cfg)

    if is_atari(env_id):
        from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack

        dim = int(cfg.pop("dim", 64))
        framestack = int(cfg.pop("framestack", 4))
        # Same as the classic `NoFrameskip-v4` setting: the wrapper does the frame skipping (max over 4).
        cfg.setdefault("frameskip", 1)
        cfg.setdefault("repeat_action_probability", 0.0)
        if "NoFrameskip" in env_id:
            cfg.pop("frameskip")  # fixed by the id itself
        return wrap_atari_for_new_api_stack(
            gym.make(env_id.removeprefix("ale_py:"), **cfg), dim=dim, framestack=framestack
        )
    return gym.make(env_id, **cfg)


def env_creator(env_id: str, source_dir: str | None = None):
    return functools.partial(_make_env, env_id, source_dir)


def registered_env_name(env_id: str) -> str:
    return "rlo-env:" + env_id


# --- presets and hyperparameters -----------------------------------------------------------------------------


def preset(algorithm: str, env_kind: str) -> dict[str, Any]:
    """Defaults chosen for each algorithm and kind of env; the spec's hyperparameters override them."""
    if env_kind == "atari":
        common = {
            "model_config": {
                "vf_share_layers": True,
                "conv_filters": [[16, 4, 2], [32, 4, 2], [64, 4, 2], [128, 4, 2]],
                "conv_activation": "relu",
                "head_fcnet_hiddens": [256],
            },
            "clip_rewards": True,
        }
        if algorithm == "PPO":
            return common | {
                "lr": 1.5e-4,
                "num_epochs": 10,
                "minibatch_size": 64,
                "lambda_": 0.95,
                "kl_coeff": 0.5,
                "clip_param": 0.1,
                "vf_clip_param": 10.0,
                "entropy_coeff": 0.01,
                "grad_clip": 100.0,
            }
        return common | {
            "lr": 6e-4,
            "entropy_coeff": 0.01,
            "vf_loss_coeff": 0.5,
            "grad_clip": 40.0,
            "rollout_fragment_length": 50,
            "train_batch_size_per_learner": 500,
            "min_time_s_per_iteration": 5,
        }
    if algorithm == "PPO":
        return {
            "lr": 3e-4,
            "num_epochs": 6,
            "vf_loss_coeff": 0.01,
            "minibatch_size": 512,
            "train_batch_size_per_learner": 4000,
        }
    return {"min_time_s_per_iteration": 2}


def _config_class(algorithm: str):
    """RLlib's AlgorithmConfig class of `algorithm`; UserError for one RLlib dropped, an offline one or a typo."""
    module, name = ALGORITHM_CONFIGS[_checked_algorithm(algorithm)]
    return getattr(importlib.import_module(module), name)


# Settings that take a schedule `[[timestep, value], ...]` instead of one number (RLlib's `Scheduler.validate`).
SCHEDULED_HYPERPARAMETERS = ("lr", "entropy_coeff")
# Settings whose `null` means "off" though their default is a number (IMPALA's grad_clip is 40.0).
NULLABLE_HYPERPARAMETERS = ("grad_clip",)
_DEPRECATED_VALUE = -1  # RLlib's DEPRECATED_VALUE: the default of settings kept only to warn about them


def _describe(value: Any) -> str:
    kinds = {bool: "true/false", str: "text", list: "a list", dict: "a mapping", type(None): "null"}
    return kinds.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _shown(value: Any) -> str:
    """`value` as the user wrote it in YAML/JSON (`"fast"`, `true`, `null`), cut to a sane length."""
    import json

    try:
        return shorten(json.dumps(value))
    except (TypeError, ValueError):
        return shorten(value)


def _is_schedule(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(p, list) and len(p) == 2 and all(_finite_number(x) for x in p) for p in value)
    )


def _type_problem(cfg, name: str, value: Any) -> tuple[str, str] | None:
    """(expected, fix) when `value` cannot be what RLlib's `cfg.<name>` is, judged by the type of its default:
    a number (int or float: RLlib takes either for most counts), true/false, text, a list or a mapping. A default
    of None (or a deprecated setting, or an object) says nothing, so anything goes."""
    try:
        default = getattr(cfg, name)
    except Exception:  # deprecated settings raise on access
        return None
    if default is None or (type(default) is int and default == _DEPRECATED_VALUE):
        return None
    if value is None:
        return None if name in NULLABLE_HYPERPARAMETERS else ("a value (not null)", f"give a value, or remove `{name}`")
    if isinstance(default, bool):
        return None if isinstance(value, bool) else ("true or false", f"write `{name}: true` or `{name}: false`")
    if isinstance(default, int | float):
        example = f"`{name}: {default!r}` (a number, without quotes)"
        if name in SCHEDULED_HYPERPARAMETERS and isinstance(value, list):
            if _is_schedule(value):
                return None
            schedule = f"`{name}: [[0, 1e-3], [1000000, 1e-5]]`"
            return ("a number or a schedule [[timestep, value], ...]", f"e.g. {example} or {schedule}")
        if value == "auto" or _finite_number(value) or (isinstance(value, float) and default == value):
            return None  # "auto": RLlib takes it for a few counts (evaluation_duration...)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return ("a finite number", f"e.g. {example}")
        expected = "a number" + (" or a schedule [[timestep, value], ...]" if name in SCHEDULED_HYPERPARAMETERS else "")
        return (expected, f"e.g. {example}")
    if isinstance(default, str):
        # Text settings with a sentinel default ("auto") often take a number too (rollout_fragment_length).
        ok = isinstance(value, str) or _finite_number(value)
        return None if ok else ("text" + (" or a number" if default == "auto" else ""), f"e.g. `{name}: {default}`")
    if isinstance(default, list | tuple):
        return None if isinstance(value, list | tuple) else ("a list", f"e.g. `{name}: {list(default)!r}`")
    if isinstance(default, dict):
        return None if isinstance(value, dict) else ("a mapping", f"give `{name}:` as `key: value` lines")
    return None


def _is_deprecated(cfg, name: str) -> bool:
    """A setting RLlib keeps only to refuse it (its default is DEPRECATED_VALUE, or reading it raises)."""
    try:
        default = getattr(cfg, name)
    except Exception:
        return True
    return type(default) is int and default == _DEPRECATED_VALUE


def _dropped_notice(key: str, value: Any) -> str:
    if key in ("framework", "use_pytorch"):
        given = f"`{key}: {_shown(value)}`"
        torch = value in ("torch", True)
        return f"hyperparameter {given} " + (
            "is the default here: RLlib's new API stack runs torch"
            if torch
            else f"ignored: {DROPPED_HYPERPARAMETERS[key]}"
        )
    return f"hyperparameter `{key}` ignored: {DROPPED_HYPERPARAMETERS[key]}"


def _translate_model(value: dict, notices: list[str], bad: list[tuple[str, str]]) -> tuple[dict, dict]:
    """The old `model` dict -> (DefaultModelConfig settings, Atari env settings). `dim` is the Atari frame size
    (`env_config.dim`); unknown keys are refused with a hint (RLlib would raise a TypeError in the job)."""
    import dataclasses

    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    fields = [f.name for f in dataclasses.fields(DefaultModelConfig)]
    out, atari = {}, {}
    for key, v in value.items():
        if key == "dim":
            atari["dim"] = v
            notices.append("hyperparameter `model.dim` (legacy) sets the Atari frame size (`env_config.dim`)")
        elif key in DROPPED_MODEL_KEYS:
            notices.append(f"hyperparameter `model.{key}` ignored: {DROPPED_MODEL_KEYS[key]}")
        elif key in UNMAPPABLE_MODEL_KEYS or key.startswith("attention_"):
            bad.append((f"model.{key}", UNMAPPABLE_MODEL_KEYS.get(key, UNMAPPABLE_MODEL_KEYS["use_attention"])))
        elif key == "lstm_use_prev_action_reward":
            out["lstm_use_prev_action"] = out["lstm_use_prev_reward"] = v
            notices.append(
                "hyperparameter `model.lstm_use_prev_action_reward` is RLlib's legacy name; using "
                "`model.lstm_use_prev_action` and `model.lstm_use_prev_reward`"
            )
        elif key in LEGACY_MODEL_KEYS:
            out[LEGACY_MODEL_KEYS[key]] = v
            notices.append(
                f"hyperparameter `model.{key}` is RLlib's legacy name; using `model.{LEGACY_MODEL_KEYS[key]}`"
            )
        elif key in fields:
            out[key] = v
        else:
            hint = did_you_mean(key, fields)
            bad.append(
                (
                    f"model.{key}",
                    (f"{hint}; " if hint else "")
                    + "RLlib's DefaultModelConfig takes: "
                    + ", ".join(f for f in fields if "initializer" not in f),
                )
            )
    return out, atari


def translate_hyperparameters(
    algorithm: str, hyperparameters: dict[str, Any], *, check_types: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """Map legacy names, drop meaningless ones, and refuse unknown ones (with a hint) before submission, and
    values of the wrong type (`lr: "fast"`) where RLlib's default tells the type (see `_type_problem`).
    `check_types=False`: map the names only (the values are placeholders).

    Legacy keys (see LEGACY_HYPERPARAMETERS and the tables after it) get one notice each; a key that cannot
    carry over is an error naming its replacement. `train_batch_size` keeps its old meaning, the whole batch:
    `build_config` divides it among the plan's learners (`train_batch_size_per_learner`)."""
    cls = _config_class(algorithm)
    cfg = cls()
    valid = {n for n in dir(cfg) if not n.startswith("_") and not callable(getattr(type(cfg), n, None))}
    valid |= {"model_config", "lambda_", "clip_rewards"}
    out, notices, bad, wrong, unmappable = {}, [], [], [], []
    for key, value in hyperparameters.items():
        if key in DROPPED_HYPERPARAMETERS:
            notices.append(_dropped_notice(key, value))
            continue
        if key == "observation_filter":
            if value in (None, "NoFilter"):
                notices.append("hyperparameter `observation_filter: NoFilter` ignored: no filter is the default")
            else:
                unmappable.append(
                    (
                        key,
                        "the served and exported policy would not see the filter; scale observations in the env "
                        "(`env_config.observation_scale`) or a Gymnasium ObservationWrapper",
                    )
                )
            continue
        if key == "num_cpus_per_worker":
            if value == 1:
                notices.append("hyperparameter `num_cpus_per_worker: 1` ignored: the plan gives each env runner 1 CPU")
            else:
                unmappable.append(
                    (
                        key,
                        "the planner gives each env runner 1 CPU; fewer env runners (`job.num_env_runners`) leave "
                        "CPUs to an env that uses threads",
                    )
                )
            continue
        if key in UNMAPPABLE_HYPERPARAMETERS:
            unmappable.append((key, UNMAPPABLE_HYPERPARAMETERS[key]))
            continue
        if key == "model" and isinstance(value, dict):
            model, atari = _translate_model(value, notices, unmappable)
            if atari:
                out.setdefault("_atari", {}).update(atari)
            if model:
                out.setdefault("model_config", {}).update(model)
            continue
        if key == "vf_share_layers" and _is_deprecated(cfg, key):
            out.setdefault("model_config", {})["vf_share_layers"] = value
            notices.append(
                "hyperparameter `vf_share_layers` is RLlib's legacy place for it; using `model.vf_share_layers`"
            )
            continue
        new = LEGACY_HYPERPARAMETERS.get(key, key)
        if new != key and new not in PLANNED:
            notices.append(f"hyperparameter `{key}` is RLlib's legacy name; using `{new}`")
        if key == "train_batch_size":
            notices.append(
                "hyperparameter `train_batch_size` is the whole batch (as in RLlib's old API stack): "
                "`train_batch_size_per_learner` = train_batch_size / the plan's learners"
            )
        if new in PLANNED:
            legacy = f" (RLlib's legacy name of `{new}`)" if new != key else ""
            notices.append(
                f"hyperparameter `{key}`{legacy} is set by the planner; put it in the job (`job.{new}`) to override "
                "the plan"
            )
            out.setdefault("_planned", {})[new] = value
            continue
        if new not in valid:
            bad.append((key, did_you_mean(key, sorted(valid))))
            continue
        if new != "lambda_" and _is_deprecated(cfg, new):
            unmappable.append(
                (
                    key,
                    f"RLlib keeps `{new}` only to refuse it (old API stack); remove it, or see RLlib's "
                    f"{cls.__name__} for its new-API-stack settings",
                )
            )
            continue
        problem = _type_problem(cfg, new, value) if check_types else None
        if problem:
            wrong.append((key, new, value, *problem))
            continue
        if key.endswith("_schedule") or f"{key}_schedule" not in hyperparameters:
            out[new] = value  # a schedule wins over the plain value, as it did on the old API stack
    if unmappable:
        raise UserError(
            "; ".join(f"`job.hyperparameters.{k}` cannot carry over to RLlib's new API stack" for k, _ in unmappable),
            fix="; ".join(f"`{k}`: {fix}" for k, fix in unmappable),
        )
    if wrong and not bad:
        raise UserError(
            "; ".join(
                f"`job.hyperparameters.{shorten(k)}` is {_describe(v)} (`{_shown(v)}`), but RLlib's {cls.__name__}.{n} "
                f"takes {expected}"
                for k, n, v, expected, _ in wrong
            ),
            fix="; ".join(fix for *_, fix in wrong),
        )
    if bad:
        raise UserError(
            f"unknown {algorithm} hyperparameter(s): " + ", ".join(f"`{k}`" + (f" ({h})" if h else "") for k, h in bad),
            fix=f"use attributes of RLlib's {cls.__name__} (e.g. lr, gamma, "
            "train_batch_size_per_learner, minibatch_size, num_epochs, entropy_coeff)",
        )
    return out, notices


def build_config(
    job: dict,
    *,
    num_env_runners: int,
    num_envs_per_env_runner: int,
    num_learners: int,
    num_gpus_per_learner: float,
    source_dir: str | None = None,
    callbacks=None,
    placement: bool = False,
):
    """The AlgorithmConfig for a (validated) job spec dict and the plan's numbers. Job side.

    `placement`: the cluster was brought up by `rlo cluster` (its nodes carry the pool resources of
    `orchestrator.placement`): the driver/learner ask for the head, env runners for the plan's env-runner slots."""
    from ray import tune

    algorithm = job["algorithm"]
    env_id = job["env"]
    kind = validate_env(env_id, source_dir)
    hp, _ = translate_hyperparameters(algorithm, job.get("hyperparameters") or {})
    env_config = dict(job.get("env_config") or {})
    env_config.update(hp.pop("_atari", {}) if kind == "atari" else {})
    hp.pop("_planned", None)
    settings = preset(algorithm, kind) | hp
    if kind == "atari" and "model_config" in hp:
        settings["model_config"] = preset(algorithm, kind)["model_config"] | hp["model_config"]
    if _finite_number(hp.get("train_batch_size")) and "train_batch_size_per_learner" not in hp:
        # Its old meaning, the whole batch, shared by the plan's learners (a preset's per-learner size would win).
        settings.pop("train_batch_size")
        settings["train_batch_size_per_learner"] = max(1, math.ceil(hp["train_batch_size"] / max(1, num_learners)))
    per_learner = settings.get("train_batch_size_per_learner")
    if "minibatch_size" not in hp and _finite_number(per_learner) and settings.get("minibatch_size", 0) > per_learner:
        settings["minibatch_size"] = per_learner  # a preset's minibatch larger than the user's batch

    name = registered_env_name(env_id)
    tune.register_env(name, env_creator(env_id, source_dir))
    config = (
        _config_class(algorithm)()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(name, env_config=env_config, clip_rewards=settings.pop("clip_rewards", None))
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            # An env with its own batched VectorEnv steps all sub-envs at once (NumPy), not one by one.
            gym_env_vectorize_mode="vector_entry_point" if has_vector_entry_point(env_id) else "sync",
        )
        .learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner)
    )
    # An env runner that dies (killed, its node lost) is restarted after a short delay (RLlib's default waits 60 s);
    # training goes on with the healthy ones meanwhile.
    config.fault_tolerance(
        restart_failed_env_runners=True, max_num_env_runner_restarts=1000, delay_between_env_runner_restarts_s=2.0
    )
    if placement:
        from .placement import job_custom_resources

        res = job_custom_resources()
        config.env_runners(custom_resources_per_env_runner=res["custom_resources_per_env_runner"])
        config.resources(custom_resources_for_main_process=res["custom_resources_for_main_process"])
        config.learners(custom_resources_per_learner=res["custom_resources_per_learner"])
    if callbacks is not None:
        config.callbacks(callbacks)
    if job.get("seed") is not None:
        config.debugging(seed=job["seed"])
    model_config = settings.pop("model_config", None)
    if model_config:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        config.rl_module(model_config=DefaultModelConfig(**model_config))
    config.update_from_dict(settings)
    return config
