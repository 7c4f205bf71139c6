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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError, did_you_mean, shorten

ALGORITHM_CONFIGS = {
    "PPO": ("ray.rllib.algorithms.ppo", "PPOConfig"),
    "IMPALA": ("ray.rllib.algorithms.impala", "IMPALAConfig"),
    "APPO": ("ray.rllib.algorithms.appo", "APPOConfig"),
}

# Keys of env_config that configure our Atari preprocessing, not the ALE env itself.
ATARI_WRAPPER_KEYS = ("dim", "framestack")
# Keys of env_config that `_make_env` applies as wrappers, for any env (not passed to the env).
TRAINING_ENV_KEYS = ("reward_scale", "observation_scale")
# Keyword arguments of `gymnasium.make` itself (not passed to the env).
GYM_MAKE_KEYS = ("max_episode_steps", "disable_env_checker")
# Import paths of the auto-scaling env (its Gymnasium id is rlo/AutoScale-v0).
AUTOSCALE_CLASSES = ("orchestrator.autoscale.env:AutoScaleEnv", "orchestrator.autoscale:AutoScaleEnv")

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
                f"(20 + warmup_latency {config.warmup_latency})",
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
    module, name = ALGORITHM_CONFIGS[algorithm]
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


def translate_hyperparameters(
    algorithm: str, hyperparameters: dict[str, Any], *, check_types: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """Map legacy names, drop meaningless ones, and refuse unknown ones (with a hint) before submission, and
    values of the wrong type (`lr: "fast"`) where RLlib's default tells the type (see `_type_problem`).
    `check_types=False`: map the names only (the values are placeholders)."""
    cfg = _config_class(algorithm)()
    valid = {n for n in dir(cfg) if not n.startswith("_") and not callable(getattr(type(cfg), n, None))}
    valid |= {"model_config", "lambda_", "clip_rewards"}
    out, notices, bad, wrong = {}, [], [], []
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
        problem = _type_problem(cfg, new, value) if check_types else None
        if problem:
            wrong.append((key, new, value, *problem))
            continue
        out[new] = value
    if wrong and not bad:
        cls = ALGORITHM_CONFIGS[algorithm][1]
        raise UserError(
            "; ".join(
                f"`job.hyperparameters.{shorten(k)}` is {_describe(v)} (`{_shown(v)}`), but RLlib's {cls}.{n} "
                f"takes {expected}"
                for k, n, v, expected, _ in wrong
            ),
            fix="; ".join(fix for *_, fix in wrong),
        )
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
