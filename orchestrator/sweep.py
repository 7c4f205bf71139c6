"""Hyperparameter sweeps: a spec's `sweep:` section as Tune's search space, scheduler and trial table.

The spec side (`SweepSpec`) and the arithmetic of how many trials run at once (`planner.plan_sweep`) are pure;
this module holds what the job does with them (`tune_setup`, `summarize_sweep`, importing Ray lazily) and what
the submitting side shows (`trials_table`, `plot_trials`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from . import events
from . import metrics as m
from .errors import UserError
from .plots import Series, render
from .spec import JobSpec, SweepSpec
from .training import translate_hyperparameters


def _distribution(kind: str, values: list[Any], grid_choices: bool):
    from ray import tune

    if kind == "grid" or (kind == "choice" and grid_choices):
        return tune.grid_search(list(values))
    if kind == "choice":
        return tune.choice(list(values))
    lo, hi = values
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](lo, hi)


def config_key(algorithm: str, path: str) -> tuple[str, ...]:
    """Where a sweep parameter lives in RLlib's config dict: `hyperparameters.lr` -> (lr,), legacy names mapped;
    `env_config.x` -> (env_config, x)."""
    section, name = path.split(".", 1)
    if section == "env_config":
        return ("env_config", name)

    out = translate_hyperparameters(algorithm, {name: 0}, check_types=False).settings
    return (next(iter(out)),) if len(out) == 1 else (name,)


def _set(d: dict, key: tuple[str, ...], value) -> None:
    for k in key[:-1]:
        d = d.setdefault(k, {})
    d[key[-1]] = value


def _get(d: dict, key: tuple[str, ...]):
    for k in key:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def swept_keys(sweep: SweepSpec, algorithm: str) -> dict[str, tuple[str, ...]]:
    """Each sweep parameter (`hyperparameters.lr`) -> where it lives in a trial's config (MLflow's trial runs)."""
    return {path: config_key(algorithm, path) for path in sweep.parameters}


def trial_values(config: dict, swept: dict[str, tuple[str, ...]]) -> dict:
    """The values a trial runs with, nested as the spec's job section has them: `{"hyperparameters": {"lr": ..}}`."""
    out: dict = {}
    for path, key in swept.items():
        section, name = path.split(".", 1)
        out.setdefault(section, {})[name] = _get(config, key)
    return out


def tune_setup(config, sweep: SweepSpec, job: JobSpec, concurrent: int, reward_scale: float = 1.0) -> dict:
    """Tune's `param_space` and `TuneConfig` arguments for a sweep over `config` (an RLlib AlgorithmConfig)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler

    algorithm = job.algorithm
    assert algorithm is not None, "a spec with a sweep has a job.algorithm (Spec validates it)"
    space = config.to_dict()
    mutations: dict = {}
    for path, dist in sweep.parameters.items():
        kind, values = next(iter(dist.items()))
        key = config_key(algorithm, path)
        _set(space, key, _distribution(kind, values, grid_choices=sweep.search == "grid"))
        if kind != "grid":
            _set(mutations, key, list(values) if kind == "choice" else _distribution(kind, values, False))
    metric = m.normalize(sweep.metric)[0]
    scheduler: TrialScheduler | None = None
    s = sweep.scheduler
    if s is not None and s.type == "asha":
        scheduler = ASHAScheduler(
            time_attr=s.time_attr, max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor
        )
    elif s is not None and s.type == "pbt":
        scheduler = PopulationBasedTraining(
            time_attr=s.time_attr,
            perturbation_interval=s.perturbation_interval,
            quantile_fraction=s.quantile_fraction,
            hyperparam_mutations=mutations,
        )
    elif s is not None:
        scheduler = FIFOScheduler()
    return {
        "param_space": space,
        "tune_config": {
            "num_samples": sweep.num_samples,
            "max_concurrent_trials": max(1, concurrent),
            "scheduler": scheduler,
            "metric": metric,
            "mode": sweep.mode,
        },
    }


def _best_of(values: list[float], mode: str) -> float | None:
    vals = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not vals:
        return None
    return max(vals) if mode == "max" else min(vals)


def summarize_sweep(results, sweep: SweepSpec, job: JobSpec, reward_scale: float = 1.0) -> dict:
    """The trials table and the best trial (by the metric's best value over each trial's iterations)."""
    from callbacks.metrics import compact_result

    metric = m.normalize(sweep.metric)[0]
    scale = reward_scale if "episode_return" in metric else 1.0
    algorithm = job.algorithm
    assert algorithm is not None, "a spec with a sweep has a job.algorithm (Spec validates it)"
    trials: list[dict[str, Any]] = []
    for r in results:
        df = r.metrics_dataframe
        series = list(df[metric]) if df is not None and metric in df.columns else []
        last = r.metrics or {}
        trials.append(
            {
                "trial_id": last.get("trial_id") or Path(r.path).name,
                "config": {p: _get(r.config, config_key(algorithm, p)) for p in sweep.parameters},
                "best": (lambda b: None if b is None else b / scale)(_best_of(series, sweep.mode)),
                "last": compact_result(last, reward_scale) if last else None,
                "iterations": last.get("training_iteration"),
                "status": "ERROR" if r.error is not None else "TERMINATED",
                "error": str(r.error).strip().splitlines()[-1] if r.error is not None else None,
                "checkpoint": r.checkpoint.path if r.checkpoint is not None else None,
                "checkpoints": [
                    {"path": c.path, "iteration": (mm or {}).get("training_iteration")}
                    for c, mm in (r.best_checkpoints or [])
                ],
            }
        )
    scored = [t for t in trials if t["best"] is not None]
    best = None
    if scored:
        pick = max if sweep.mode == "max" else min
        best = pick(scored, key=lambda t: t["best"])["trial_id"]
    return {"metric": metric, "mode": sweep.mode, "trials": trials, "best_trial": best}


# --- the submitting side ------------------------------------------------------------------------------------


def sweep_summary(run) -> dict:
    """The sweep part of a finished run's summary (from its folder, or from the job log's summary line)."""
    import json

    summary = None
    if run.run_dir and (run.run_dir / "summary.json").is_file():
        summary = json.loads((run.run_dir / "summary.json").read_text())
    if summary is None:
        summary = next((p for k, p in reversed(events.parse_log(run.logs())) if k == "summary"), None)
    if not run.record.spec.get("sweep"):
        raise UserError(f"run {run.id} is not a sweep", fix="give the id of a run whose spec has a `sweep:` section")
    if not summary or not summary.get("sweep"):
        raise UserError(
            f"sweep {run.id} has no results yet (status {run.status()})",
            fix=f"wait for it to finish: `rlo attach {run.id}`",
        )
    return summary["sweep"]


def trials_table(sw: dict) -> tuple[list[str], list[list[str]]]:
    params = list(sw["trials"][0]["config"]) if sw["trials"] else []
    head = (
        ["", "trial"]
        + [p.split(".", 1)[1] for p in params]
        + [f"best {sw['metric'].split('/')[-1]}", "iters", "status"]
    )
    rows = []
    for t in sorted(
        sw["trials"], key=lambda t: (t["best"] is None, -(t["best"] or 0) if sw["mode"] == "max" else (t["best"] or 0))
    ):
        rows.append(
            ["*" if t["trial_id"] == sw["best_trial"] else "", t["trial_id"]]
            + [_fmt(t["config"].get(p)) for p in params]
            + [_fmt(t["best"]), str(t["iterations"] or "-"), t["status"]]
        )
    return head, rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_trials(run, sw: dict, out: str | Path) -> Path:
    """All trials' learning curves on one figure (the best trial marked)."""

    by_trial: dict[str, list[dict]] = {}
    for rec in run.metrics():
        by_trial.setdefault(rec.get("trial_id", "?"), []).append(rec)
    series = []
    for t in sw["trials"]:
        cfg = ", ".join(f"{p.split('.', 1)[1]}={_fmt(v)}" for p, v in t["config"].items())
        mark = " (best)" if t["trial_id"] == sw["best_trial"] else ""
        series.append(
            Series(
                label=f"{t['trial_id']}{mark}: {cfg}",
                records=by_trial.get(t["trial_id"], []),
                stop=run._stop_criteria(),
            )
        )
    return render(series, out, title=f"sweep {run.id}: {len(series)} trials")
