"""From a job spec to an RLlib `AlgorithmConfig` (new API stack): presets, hyperparameters, the config.

The algorithms a spec can name are `orchestrator.algorithms`; the envs, their checks and how a job makes them,
`orchestrator.envs`.

Used on both sides: the submitting side validates the env and the hyperparameters before anything is
submitted; the job's entry script builds the config. RLlib is imported lazily (it takes seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .algorithms import config_class
from .contract import PlanNumbers
from .envs import env_creator, has_vector_entry_point, is_finite_number, registered_env_name, validate_env
from .errors import UserError, did_you_mean, shorten
from .placement import job_custom_resources
from .spec import JobSpec

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
        and all(isinstance(p, list) and len(p) == 2 and all(is_finite_number(x) for x in p) for p in value)
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
        if value == "auto" or is_finite_number(value) or (isinstance(value, float) and default == value):
            return None  # "auto": RLlib takes it for a few counts (evaluation_duration...)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return ("a finite number", f"e.g. {example}")
        expected = "a number" + (" or a schedule [[timestep, value], ...]" if name in SCHEDULED_HYPERPARAMETERS else "")
        return (expected, f"e.g. {example}")
    if isinstance(default, str):
        # Text settings with a sentinel default ("auto") often take a number too (rollout_fragment_length).
        ok = isinstance(value, str) or is_finite_number(value)
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


@dataclass(frozen=True)
class Hyperparameters:
    """A spec's hyperparameters read for RLlib's new API stack (`translate_hyperparameters`)."""

    settings: dict[str, Any]  # AlgorithmConfig attributes (`model_config`, `lambda_`, `clip_rewards` included)
    notices: list[str]  # one per legacy or ignored key
    atari: dict[str, Any] = field(default_factory=dict)  # env_config of our Atari preprocessing (legacy model.dim)
    planned: dict[str, Any] = field(default_factory=dict)  # planner settings given as hyperparameters (ignored)


def translate_hyperparameters(
    algorithm: str, hyperparameters: dict[str, Any], *, check_types: bool = True
) -> Hyperparameters:
    """Map legacy names, drop meaningless ones, and refuse unknown ones (with a hint) before submission, and
    values of the wrong type (`lr: "fast"`) where RLlib's default tells the type (see `_type_problem`).
    `check_types=False`: map the names only (the values are placeholders).

    Legacy keys (see LEGACY_HYPERPARAMETERS and the tables after it) get one notice each; a key that cannot
    carry over is an error naming its replacement. `train_batch_size` keeps its old meaning, the whole batch:
    `build_config` divides it among the plan's learners (`train_batch_size_per_learner`)."""
    cls = config_class(algorithm)
    cfg = cls()
    valid = {n for n in dir(cfg) if not n.startswith("_") and not callable(getattr(type(cfg), n, None))}
    valid |= {"model_config", "lambda_", "clip_rewards"}
    out: dict[str, Any] = {}
    atari_config: dict[str, Any] = {}
    planned: dict[str, Any] = {}
    notices: list[str] = []
    bad: list = []
    wrong: list = []
    unmappable: list = []
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
            atari_config.update(atari)
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
            planned[new] = value
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
    return Hyperparameters(out, notices, atari_config, planned)


def build_config(
    job: JobSpec,
    numbers: PlanNumbers,
    *,
    source_dir: str | None = None,
    callbacks=None,
    placement: bool = False,
):
    """The AlgorithmConfig for a (validated) job spec and the plan's numbers. Job side.

    `placement`: the cluster was brought up by `rlo cluster` (its nodes carry the pool resources of
    `orchestrator.placement`): the driver/learner ask for the head, env runners for the plan's env-runner slots."""
    from ray import tune

    algorithm, env_id = job.algorithm, job.env
    if algorithm is None or env_id is None:
        raise UserError("the job names no algorithm and env (an entry-script job builds its own config)")
    num_env_runners, num_envs_per_env_runner = numbers.num_env_runners, numbers.num_envs_per_env_runner
    num_learners, num_gpus_per_learner = numbers.num_learners, numbers.num_gpus_per_learner
    kind = validate_env(env_id, source_dir)
    translated = translate_hyperparameters(algorithm, dict(job.hyperparameters or {}))
    hp = translated.settings
    env_config = dict(job.env_config or {})
    env_config.update(translated.atari if kind == "atari" else {})
    settings = preset(algorithm, kind) | hp
    if kind == "atari" and "model_config" in hp:
        settings["model_config"] = preset(algorithm, kind)["model_config"] | hp["model_config"]
    if is_finite_number(hp.get("train_batch_size")) and "train_batch_size_per_learner" not in hp:
        # Its old meaning, the whole batch, shared by the plan's learners (a preset's per-learner size would win).
        settings.pop("train_batch_size")
        settings["train_batch_size_per_learner"] = max(1, math.ceil(hp["train_batch_size"] / max(1, num_learners)))
    per_learner = settings.get("train_batch_size_per_learner")
    if "minibatch_size" not in hp and is_finite_number(per_learner) and settings.get("minibatch_size", 0) > per_learner:
        settings["minibatch_size"] = per_learner  # a preset's minibatch larger than the user's batch

    name = registered_env_name(env_id)
    tune.register_env(name, env_creator(env_id, source_dir))
    config = (
        config_class(algorithm)()
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
        res = job_custom_resources()
        config.env_runners(custom_resources_per_env_runner=res["custom_resources_per_env_runner"])
        config.resources(custom_resources_for_main_process=res["custom_resources_for_main_process"])
        config.learners(custom_resources_per_learner=res["custom_resources_per_learner"])
    if callbacks is not None:
        config.callbacks(callbacks)
    if job.seed is not None:
        config.debugging(seed=job.seed)
    model_config = settings.pop("model_config", None)
    if model_config:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        config.rl_module(model_config=DefaultModelConfig(**model_config))
    config.update_from_dict(settings)
    return config
