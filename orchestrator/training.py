"""From a job spec to an RLlib `AlgorithmConfig` (new API stack): envs, presets, hyperparameters.

Used on both sides: the submitting side validates the env and the hyperparameters before anything is
submitted; the job's entry script builds the config. RLlib is imported lazily (it takes seconds).
"""

from __future__ import annotations

import functools
import importlib
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError, did_you_mean

ALGORITHM_CONFIGS = {
    "PPO": ("ray.rllib.algorithms.ppo", "PPOConfig"),
    "IMPALA": ("ray.rllib.algorithms.impala", "IMPALAConfig"),
    "APPO": ("ray.rllib.algorithms.appo", "APPOConfig"),
}

# Keys of env_config that configure our Atari preprocessing, not the ALE env itself.
ATARI_WRAPPER_KEYS = ("dim", "framestack")

# Legacy (old API stack / the seeds) hyperparameter names -> current AlgorithmConfig attributes.
LEGACY_HYPERPARAMETERS = {
    "sample_batch_size": "rollout_fragment_length",
    "num_sgd_iter": "num_epochs",
    "sgd_minibatch_size": "minibatch_size",
    "num_workers": "num_env_runners",
    "num_envs_per_worker": "num_envs_per_env_runner",
    "rollout_fragment_length": "rollout_fragment_length",
}
# Legacy keys that have no meaning on the new API stack; dropped with a notice.
DROPPED_HYPERPARAMETERS = {
    "num_data_loader_buffers": "the new API stack loads data on the learner itself",
    "num_gpus": "GPUs come from the cluster plan (`job.use_gpu`, the head's GPUs)",
    "framework": "rl-orchestrator runs RLlib with torch",
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
            raise UserError(
                f"cannot import the env module `{module}` (from `env: {path}`): {e}",
                fix="check the module path; put the module in `job.source_dir` (shipped with the job) or install it",
            ) from None
    try:
        return getattr(mod, name)
    except AttributeError:
        hint = did_you_mean(name, [n for n in dir(mod) if not n.startswith("_")])
        raise UserError(
            f"module `{module}` has no `{name}` (from `env: {path}`)", fix=hint or "check the class name"
        ) from None


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
    module, name = ALGORITHM_CONFIGS[algorithm]
    return getattr(importlib.import_module(module), name)


def translate_hyperparameters(algorithm: str, hyperparameters: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Map legacy names, drop meaningless ones, and refuse unknown ones (with a hint) before submission."""
    cfg = _config_class(algorithm)()
    valid = {n for n in dir(cfg) if not n.startswith("_") and not callable(getattr(type(cfg), n, None))}
    valid |= {"model_config", "lambda_", "clip_rewards"}
    out, notices, bad = {}, [], []
    for key, value in hyperparameters.items():
        if key in DROPPED_HYPERPARAMETERS:
            notices.append(f"hyperparameter `{key}` ignored: {DROPPED_HYPERPARAMETERS[key]}")
            continue
        if key == "model" and isinstance(value, dict):
            # Old-stack model dict: `dim` is the Atari frame size; the rest goes to model_config.
            value = dict(value)
            if "dim" in value:
                out.setdefault("_atari", {})["dim"] = value.pop("dim")
                notices.append("hyperparameter `model.dim` (legacy) sets the Atari frame size (`env_config.dim`)")
            if value:
                out["model_config"] = value
            continue
        new = LEGACY_HYPERPARAMETERS.get(key, key)
        if new != key:
            notices.append(f"hyperparameter `{key}` is RLlib's legacy name; using `{new}`")
        if new in PLANNED:
            notices.append(
                f"hyperparameter `{key}` is set by the planner; put it in the job (`job.{new}`) to override the plan"
            )
            out.setdefault("_planned", {})[new] = value
            continue
        if new not in valid:
            bad.append((key, did_you_mean(key, sorted(valid))))
            continue
        out[new] = value
    if bad:
        raise UserError(
            f"unknown {algorithm} hyperparameter(s): " + ", ".join(f"`{k}`" + (f" ({h})" if h else "") for k, h in bad),
            fix=f"use attributes of RLlib's {ALGORITHM_CONFIGS[algorithm][1]} (e.g. lr, gamma, "
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
