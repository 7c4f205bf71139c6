"""Drop-ins for the RLlib and Tune helpers that the Azure ML and SageMaker RL entry scripts call and that Ray
removed or changed: RLlib's argument parser (`ray.rllib.train.create_parser`, gone since Ray 2.x) and Tune's old
`tune.run("IMPALA", config={...legacy keys...})` / `run_experiments`. Change the import lines, keep the rest:

    # from ray.rllib import train
    # import ray.tune as tune
    from orchestrator.compat.rllib_legacy import train, tune

    args = train.create_parser().parse_args()        # --run, --env, --config JSON, --stop JSON, --ray-address ...
    ray.init(address=args.ray_address)
    tune.run(args.run, config={"env": args.env, "num_workers": 13, "sample_batch_size": 50,
                               "callbacks": {"on_train_result": on_train_result}}, stop=args.stop)

`tune.run` trains through the job path of built-in jobs (orchestrator.jobside.train: Tune, the run's callbacks,
checkpoints, metrics and summary): legacy config keys are mapped by `training.translate_hyperparameters` with one
notice each, `num_workers` is checked by the planner against the cluster, the old dict callback
`on_train_result(info)` gets `info["result"]` with the legacy metric names too (`episode_reward_mean`,
`episodes_total`). Every other attribute of `tune` is Ray's own (`tune.register_env`, `tune.Tuner`, ...).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import os
import re
import types
from collections.abc import Callable
from typing import Any

from .. import events, metrics
from ..contract import job_context
from ..errors import UserError, shorten
from ..planner import plan_env_runners
from ..spec import ClusterSpec, JobSpec, Spec, problems_from
from ..training import translate_hyperparameters

# --- RLlib's old argument parser (ray.rllib.train.create_parser) ---------------------------------------------

EXAMPLE_USAGE = """
Training example:
    python train.py --run IMPALA --env CartPole-v1 --config '{"num_workers": 1}' --stop '{"training_iteration": 2}'
"""


def _json_arg(text: str) -> Any:
    # Azure ML's examples wrapped JSON in an extra pair of single quotes for its shell (`'\\'{"num_gpus": 1}\\''`);
    # a job here passes the argument as it is written, quotes included.
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == "'":
        stripped = stripped[1:-1]
    try:
        return json.loads(stripped)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {shorten(text)}") from None


def create_parser(parser_creator=None, **kwargs) -> argparse.ArgumentParser:
    """RLlib's old `train.create_parser()`: the arguments of `rllib train` (Ray 0.8-1.x). `--ray-address` defaults
    to the cluster of the job the script runs in (Ray sets RAY_ADDRESS for a job's entry script)."""
    options = {
        "formatter_class": argparse.RawDescriptionHelpFormatter,
        "description": "Train a reinforcement learning agent.",
        "epilog": EXAMPLE_USAGE,
        **kwargs,
    }
    parser = (parser_creator or argparse.ArgumentParser)(**options)
    add = parser.add_argument
    add("--run", default=None, type=str, help="The algorithm to train (PPO, IMPALA, APPO, DQN, SAC, ...).")
    add("--env", default=None, type=str, help="The env: a Gymnasium id or `package.module:Class`.")
    add("--config", default={}, type=_json_arg, help="The algorithm's config, as JSON.")
    add("--stop", default={}, type=_json_arg, help='Stop criteria, as JSON (`{"training_iteration": 10}`).')
    add("-f", "--config-file", default=None, type=str, help="A YAML file of experiments (overrides --run...).")
    add("--ray-address", default=os.environ.get("RAY_ADDRESS"), type=str, help="The Ray cluster to connect to.")
    for flag, kind in (
        ("--ray-num-cpus", int),
        ("--ray-num-gpus", int),
        ("--ray-num-nodes", int),
        ("--ray-object-store-memory", int),
        ("--ray-redis-max-memory", int),
        ("--ray-memory", int),
    ):
        add(flag, default=None, type=kind, help="Ignored: the cluster's size comes from its plan.")
    add("--experiment-name", default="default", type=str, help="Ignored: the run has its own id.")
    add("--local-dir", default=None, type=str, help="Ignored: results go to the run's folder.")
    add("--upload-dir", default="", type=str, help="Ignored.")
    add("--checkpoint-freq", default=0, type=int, help="Checkpoint every N iterations.")
    add("--checkpoint-at-end", action="store_true", help="Checkpoint at the end (always done here).")
    add("--keep-checkpoints-num", default=None, type=int, help="How many checkpoints to keep.")
    add("--checkpoint-score-attr", default="training_iteration", type=str, help="Ignored.")
    add("--restore", default=None, type=str, help="Not supported: `rlo resume RUN` continues a run.")
    add("--resources-per-trial", default=None, type=_json_arg, help="Ignored: the plan places the trial.")
    add("--num-samples", default=1, type=int, help="Samples of the config (>1: use a spec's `sweep:`).")
    add("--scheduler", default="FIFO", type=str, help="Ignored (a spec's `sweep.scheduler`).")
    add("--scheduler-config", default="{}", type=_json_arg, help="Ignored.")
    add("--max-failures", default=0, type=int, help="Ignored.")
    add("--queue-trials", action="store_true", help="Ignored.")
    add("--resume", action="store_true", help="Not supported: `rlo resume RUN` continues a run.")
    add("--torch", action="store_true", help="Ignored: RLlib runs torch here.")
    add("--eager", action="store_true", help="Ignored (TensorFlow only).")
    add("--trace", action="store_true", help="Ignored (TensorFlow only).")
    add("-v", action="store_true", help="More output.")
    add("-vv", action="store_true", help="Even more output.")
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> dict:
    """RLlib's old `train.run(args, parser)`: train what the parsed arguments say (or the `-f` YAML file)."""
    if args.config_file:
        import yaml

        with open(args.config_file) as f:
            return run_experiments(yaml.safe_load(f))
    if not args.run or not args.env:
        (parser.error if parser else _usage_error)("the following arguments are required: --run, --env")
    if args.restore or args.resume:
        raise UserError("--restore/--resume cannot carry over", fix="continue a run with `rlo resume RUN`")
    return run_experiment(
        args.run,
        config=dict(args.config, env=args.env),
        stop=args.stop,
        checkpoint_freq=args.checkpoint_freq,
        keep_checkpoints_num=args.keep_checkpoints_num,
        num_samples=args.num_samples,
    )


def _usage_error(message: str):
    raise UserError(message, fix="give --run ALGORITHM --env ENV")


train = types.SimpleNamespace(create_parser=create_parser, run=run, EXAMPLE_USAGE=EXAMPLE_USAGE)


# --- Tune's old tune.run / run_experiments --------------------------------------------------------------------

_notices_given: set[str] = set()


def _notice(message: str) -> None:
    # Job side: the structured notice line the submitting side shows (once per message and process).
    if message not in _notices_given:
        _notices_given.add(message)
        events.emit("notice", {"message": message})


# tune.run's arguments that mean nothing here: accepted, one notice each.
_IGNORED_RUN_ARGS = {
    "name": "the run has its own id (`rlo list`)",
    "local_dir": "results go to the run's folder (RLO_OUTPUT_DIR)",
    "storage_path": "results go to the run's folder (RLO_OUTPUT_DIR)",
    "upload_dir": "results go to the run's folder (RLO_OUTPUT_DIR)",
    "resources_per_trial": "the plan places the trial (`rlo plan`)",
    "queue_trials": "the planner refuses what cannot be placed before submission",
    "verbose": "the job's log has one progress line per iteration",
    "progress_reporter": "the job's log has one progress line per iteration",
    "checkpoint_score_attr": "checkpoints are kept by recency (`job.checkpoint.keep`)",
    "max_failures": "an env runner that fails is restarted; a failed run resumes with `rlo resume`",
    "export_formats": "export a trained policy with `rlo export`",
    "reuse_actors": "one trial per job",
    "log_to_file": "the job's log is kept by Ray (`rlo logs RUN`)",
    "raise_on_failed_trial": "a failed training always raises",
    "metric": "one trial per job (a spec's `sweep.metric` for sweeps)",
    "mode": "one trial per job (a spec's `sweep.mode` for sweeps)",
    "sync_config": "results go to the run's folder (RLO_OUTPUT_DIR)",
    "trial_name_creator": "one trial per job",
    "trial_dirname_creator": "one trial per job",
}
# tune.run's arguments that cannot carry over -> the replacement.
_UNSUPPORTED_RUN_ARGS = {
    "restore": "continue a run with `rlo resume RUN`",
    "resume": "continue a run with `rlo resume RUN`",
    "search_alg": "a spec's `sweep:` (Tune's search space and scheduler)",
    "scheduler": "a spec's `sweep.scheduler` (asha, pbt)",
    "callbacks": "RLlib callbacks go in `config['callbacks']`; Tune callbacks are the run's own here",
    "time_budget_s": "`max_run_duration_seconds` of the estimator (or `job.max_run_duration_seconds`)",
}
# The old dict callbacks (`config["callbacks"] = {"on_train_result": f}`) that have no new-API-stack equivalent
# taking the same `info` dict.
_OLD_EPISODE_CALLBACKS = (
    "on_episode_start",
    "on_episode_step",
    "on_episode_end",
    "on_sample_end",
    "on_postprocess_traj",
)


def _legacy_result(result: dict) -> dict:
    """RLlib's result with the legacy metric names too, as an old `on_train_result(info)` read them: `info["result"]
    ["episode_reward_mean"]` (NaN before the first episode ends, as it was)."""
    out = dict(result)
    for old, new in metrics.LEGACY.items():
        if old not in out and "/" not in old:
            value = metrics.lookup(result, new)
            out[old] = value if value is not None else (0 if old == "episodes_total" else math.nan)
    return out


def _call_on_train_result(fn, *, algorithm=None, result=None, **_ignored) -> None:
    """RLlib's `on_train_result` callable -> the old `on_train_result(info)` with `info = {"trainer", "result"}`."""
    fn({"trainer": algorithm, "algorithm": algorithm, "result": _legacy_result(result or {})})


def _rllib_callbacks(callbacks: Any) -> dict:
    """The config's `callbacks` (the old dict of functions, or an RLlibCallback class) -> `config.callbacks(**)`."""
    if callbacks is None:
        return {}
    if isinstance(callbacks, dict):
        out = {}
        for event, fn in callbacks.items():
            if event == "on_train_result":
                out["on_train_result"] = functools.partial(_call_on_train_result, fn)
            elif event in _OLD_EPISODE_CALLBACKS:
                raise UserError(
                    f"the callback `{event}` of `config['callbacks']` cannot carry over: RLlib's new API stack calls "
                    "episode callbacks with episodes, not the old `info` dict",
                    fix=f"subclass `ray.rllib.callbacks.callbacks.RLlibCallback`, override `{event}(self, *, episode, "
                    "metrics_logger, **kwargs)` and give the class as `config['callbacks']`",
                )
            else:
                raise UserError(
                    f"unknown callback `{event}` in `config['callbacks']`",
                    fix="the old dict callbacks were on_train_result, on_episode_start/step/end, on_sample_end",
                )
        return out
    from ray.rllib.callbacks.callbacks import RLlibCallback

    if isinstance(callbacks, type) and issubclass(callbacks, RLlibCallback):
        return {"callbacks_class": callbacks}
    raise UserError(
        f"`config['callbacks']` must be a dict of functions or an RLlibCallback class (got {shorten(repr(callbacks))})",
        fix="give {'on_train_result': f}, or a subclass of ray.rllib.callbacks.callbacks.RLlibCallback",
    )


def _has_search_space(config: dict) -> str | None:
    for key, value in config.items():
        if isinstance(value, dict) and "grid_search" in value:
            return key
        if type(value).__module__.startswith("ray.tune.search"):
            return key
    return None


def _plan_numbers(job, ctx):
    """The plan's numbers for this training: the planner's, for the job's cluster (the resolved spec in the
    contract; this machine when run by hand), with the legacy `num_workers` as `num_env_runners` when given (the
    planner refuses more than the cluster has)."""

    spec = Spec.model_validate(ctx.spec) if ctx.spec else None
    cluster = spec.cluster if spec is not None else ClusterSpec()
    if spec is not None:
        job = job.model_copy(update={"use_gpu": spec.job.use_gpu})
    return plan_env_runners(cluster, job)


def run_experiment(
    run_or_experiment: Any,
    *,
    config: dict | None = None,
    stop: dict | None = None,
    checkpoint_freq: int = 0,
    checkpoint_at_end: bool = True,
    keep_checkpoints_num: int | None = None,
    num_samples: int = 1,
    **kwargs: Any,
) -> dict:
    """Tune's old `tune.run(ALGORITHM, config={...}, stop={...}, ...)` for an RLlib algorithm: trains it as this
    job (orchestrator.jobside.train) and returns the run's summary; raises TuneError when training fails."""
    from ray.tune.error import TuneError

    if not isinstance(run_or_experiment, str):
        raise UserError(
            f"tune.run({shorten(repr(run_or_experiment))}): this drop-in trains an RLlib algorithm by name",
            fix="give the algorithm's name (`tune.run('PPO', config=...)`); for a trainable of your own, use Ray's "
            "`from ray import tune` and `tune.Tuner`",
        )
    for key, value in kwargs.items():
        if key in _UNSUPPORTED_RUN_ARGS and value not in (None, False):
            raise UserError(f"tune.run({key}=...) cannot carry over", fix=_UNSUPPORTED_RUN_ARGS[key])
        if key not in _IGNORED_RUN_ARGS and key not in _UNSUPPORTED_RUN_ARGS and key != "chdir_to_trial_dir":
            raise TypeError(f"tune.run() got an unexpected keyword argument '{key}'")
    if num_samples and num_samples > 1:
        raise UserError(f"tune.run(num_samples={num_samples}): one trial per job", fix="sweep with a spec's `sweep:`")
    if not isinstance(stop, dict | None):
        raise UserError(
            "tune.run(stop=...) must be a dict of metric: value", fix="e.g. stop={'training_iteration': 10}"
        )

    settings = dict(config or {})
    searched = _has_search_space(settings)
    if searched:
        raise UserError(
            f"`config['{searched}']` is a search space: this job trains one trial",
            fix="sweep with a spec's `sweep.parameters` (e.g. `hyperparameters.lr: {grid: [1e-3, 1e-4]}`)",
        )
    env = settings.pop("env", None)
    if not env:
        raise UserError("tune.run(config=...) has no `env`", fix="set config['env'] to a Gymnasium id (CartPole-v1)")
    env_config = settings.pop("env_config", None) or {}
    rllib_callbacks = _rllib_callbacks(settings.pop("callbacks", None))
    seed = settings.pop("seed", None)
    runners = settings.pop("num_workers", settings.pop("num_env_runners", None))
    envs_per_runner = settings.pop("num_envs_per_worker", settings.pop("num_envs_per_env_runner", 1))

    ctx = job_context()
    limit = ((ctx.spec or {}).get("job") or {}).get("max_run_duration_seconds")
    # A dict, not a CheckpointConfig: JobSpec validates it, and its errors then name `checkpoint.<key>`.
    checkpoint: Any = {
        "frequency": checkpoint_freq or 10,
        "at_end": True,
        **({"keep": keep_checkpoints_num} if keep_checkpoints_num else {}),
    }
    try:
        job = JobSpec(
            algorithm=run_or_experiment,
            env=env,
            env_config=env_config,
            hyperparameters=settings,
            stop=stop or {},
            seed=seed,
            num_env_runners=runners if runners is not None else "auto",
            num_envs_per_env_runner=envs_per_runner,
            max_run_duration_seconds=limit,
            checkpoint=checkpoint,
        )
    except Exception as e:  # pydantic's ValidationError -> one message naming the argument
        from pydantic import ValidationError

        if not isinstance(e, ValidationError):
            raise
        problems = problems_from(e, JobSpec)
        path, what, fix = problems[0]
        where = {"algorithm": "run_or_experiment", "hyperparameters": "config"}.get(path.split(".")[0], path)
        if fix and where == "run_or_experiment":
            fix = re.sub(r"`algorithm: (\w+)`", r"`tune.run('\1', ...)`", fix)
        raise UserError(f"tune.run: `{where}`: {what}", fix=fix) from None
    assert job.algorithm is not None, "JobSpec validated run_or_experiment (a str) as its algorithm"
    notices = translate_hyperparameters(job.algorithm, settings).notices  # the legacy keys'; refuses the rest
    for key in kwargs:
        if key in _IGNORED_RUN_ARGS:
            notices.append(f"tune.run({key}=...) ignored: {_IGNORED_RUN_ARGS[key]}")
    if not checkpoint_at_end:
        notices.append("tune.run(checkpoint_at_end=False) ignored: the run always keeps its final checkpoint")
    plan = _plan_numbers(job, ctx)
    if runners is not None:
        notices.append(
            f"`num_workers: {runners}` is RLlib's legacy name; {runners} env runners (`num_env_runners`), "
            "checked by the planner against the cluster"
        )

    import ray

    from ..jobside import train as train_job

    if not ray.is_initialized():
        ray.init()
    for n in notices:
        _notice(n)
    for d in (ctx.run_dir, ctx.model_dir, ctx.output_dir):
        d.mkdir(parents=True, exist_ok=True)
    summary = train_job(job, ctx, plan.numbers, rllib_callbacks=rllib_callbacks)
    if summary.get("status") != "succeeded":
        raise TuneError(f"the trial did not finish: {summary.get('error')}")
    return summary


def run_experiments(experiments: dict, **kwargs: Any) -> dict:
    """Tune's old `run_experiments({"name": {"run": ..., "env": ..., "config": ..., "stop": ...}})`: one
    experiment per job (each is its own run here)."""
    if not isinstance(experiments, dict) or len(experiments) != 1:
        raise UserError(
            f"run_experiments got {len(experiments) if isinstance(experiments, dict) else 0} experiments; a job "
            "trains one",
            fix="submit each experiment as its own job",
        )
    (spec,) = experiments.values()
    spec = dict(spec)
    config = dict(spec.pop("config", None) or {})
    if "env" in spec:
        config["env"] = spec.pop("env")
    algorithm = spec.pop("run", None)
    options = {
        k: spec.pop(k)
        for k in ("stop", "checkpoint_freq", "checkpoint_at_end", "keep_checkpoints_num", "num_samples")
        if k in spec
    }
    return run_experiment(algorithm, config=config, **options, **spec, **kwargs)


class _LegacyTune(types.ModuleType):
    """`tune` with the old `run`/`run_experiments`; everything else is Ray's own `ray.tune`."""

    run: Callable[..., dict]
    run_experiments: Callable[..., dict]

    def __getattr__(self, name: str):
        return getattr(importlib.import_module("ray.tune"), name)


tune = _LegacyTune("orchestrator.compat.rllib_legacy.tune", "Ray Tune, with the old tune.run for RLlib algorithms.")
tune.run = run_experiment
tune.run_experiments = run_experiments

__all__ = ["create_parser", "run", "run_experiment", "run_experiments", "train", "tune"]
