"""The envs a job trains on: Gymnasium ids, import paths, Atari and the auto-scaling env; their checks before
submission and how a job makes them (`make_env`, `env_creator`).

Used on both sides: the submitting side validates the env and its env_config; the job makes it."""

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

# Keys of env_config that configure our Atari preprocessing, not the ALE env itself.
ATARI_WRAPPER_KEYS = ("dim", "framestack")
# Keys of env_config that `make_env` applies as wrappers, for any env (not passed to the env).
TRAINING_ENV_KEYS = ("reward_scale", "observation_scale")
# Keyword arguments of `gymnasium.make` itself (not passed to the env).
GYM_MAKE_KEYS = ("max_episode_steps", "disable_env_checker")
# Import paths of the auto-scaling env (its Gymnasium id is rlo/AutoScale-v0).
AUTOSCALE_CLASSES = ("orchestrator.autoscale.env:AutoScaleEnv", "orchestrator.autoscale:AutoScaleEnv")


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
    out: list[tuple[str, str, str | None]] = []
    for key in cfg:
        if key not in known and key != "num_envs":
            hint = did_you_mean(key, known)
            what_is_wrong = f"unknown setting of {what}" + (f"; {hint}" if hint else "")
            out.append((str(key), what_is_wrong, f"known settings: {', '.join(listed)}"))
    return out


def _autoscale_id() -> str:
    from orchestrator.autoscale import ENV_ID

    return ENV_ID


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _training_key_problems(cfg: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    if "reward_scale" in cfg and not is_finite_number(cfg["reward_scale"]):
        out.append(
            ("reward_scale", f"must be a number (got `{shorten(cfg['reward_scale'])}`)", "e.g. `reward_scale: 0.01`")
        )
    if "observation_scale" in cfg:
        v = cfg["observation_scale"]
        if not (is_finite_number(v) or (isinstance(v, list) and v and all(is_finite_number(x) for x in v))):
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
    out: list[tuple[str, str, str | None]] = []
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
        if creator is None:  # a registration without an entry point: nothing to read the settings from
            return None
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


def make_env(env_id: str, source_dir: str | None, env_config: dict | None = None):
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
    return functools.partial(make_env, env_id, source_dir)


def registered_env_name(env_id: str) -> str:
    return "rlo-env:" + env_id
