"""`rlo plan | submit | resume | attach | status | logs | stop | list | metrics | up | down`: a run's life.

Each command is a thin function over the Python API (the same calls)."""

import json
import sys
import time
from typing import Annotated, Literal

from .. import metrics
from ..errors import RloError, SpecError
from ..plots import LivePlot
from ..registry import Registry
from ..settings import settings
from ..tables import fmt_metric, fmt_time, print_table
from .common import arg, command, new_app, opt
from .render import (
    HeadImageOpt,
    ImageOpt,
    SubnetOpt,
    VmSizeOpt,
    VnetOpt,
    WorkerImageOpt,
    azureml_options,
    submit_azureml,
)

app = new_app()

RunArg = Annotated[str, arg("RUN", help="run id (or a unique prefix of it)")]
TokenOpt = Annotated[str | None, opt("--token", help="auth token of a remote Ray cluster")]
JsonFlag = Annotated[bool, opt("--json")]
RAW_WAIT = "with --wait: print the log verbatim"


@command(app, "plan", "show the cluster plan for a spec: pools, vCPUs, GPUs, env runners, and why")
def plan(
    spec: Annotated[str, arg("SPEC")],
    as_json: JsonFlag = False,
    check: Annotated[
        bool,
        opt(
            "--check",
            help="also check the env and hyperparameters: this imports the env module (its import-time code runs); "
            "plain `rlo plan` runs no code of yours",
        ),
    ] = False,
) -> int:
    from ..planner import plan_spec
    from ..spec import load_spec
    from ..submission import prepare

    loaded = load_spec(spec)
    # Only --check runs the user's code (it imports the env module); plain `rlo plan` reads the spec alone.
    prepared = prepare(loaded) if check else None
    the_plan = prepared.plan if prepared else plan_spec(loaded)
    checked = list(prepared.notices) if prepared else []
    if as_json:
        print(json.dumps(the_plan.to_dict(), indent=2))
        return 0
    print(the_plan.explain(source=spec))  # the same text as Estimator(...).plan().explain()
    for n in checked:
        print(f"note: {n}")
    return 0


@command(app, "submit", "submit a spec; prints the run id at once")
def submit(
    spec: Annotated[str, arg("SPEC")],
    wait: Annotated[bool, opt("--wait", help="stay attached until the job ends (exit 0 iff it succeeded)")] = False,
    address: Annotated[
        str | None, opt("--address", help="a Ray cluster's dashboard, e.g. http://HOST:8265 (default: embedded Ray)")
    ] = None,
    token: Annotated[
        str | None, opt("--token", help="auth token of that cluster (default: RAY_AUTH_TOKEN / ~/.ray/auth_token)")
    ] = None,
    name: Annotated[str | None, opt("--name", help="a name for the run")] = None,
    raw: Annotated[bool, opt("--raw", help=RAW_WAIT)] = False,
    # The Azure ML flags (used with `--backend azureml`).
    backend: Annotated[Literal["ray", "azureml"], opt("--backend", help="where to submit (default: ray)")] = "ray",
    subscription: Annotated[
        str | None, opt("--subscription", help="(azureml) subscription id (or AZURE_SUBSCRIPTION_ID)")
    ] = None,
    resource_group: Annotated[
        str | None, opt("--resource-group", help="(azureml) resource group (or AZURE_RESOURCE_GROUP)")
    ] = None,
    workspace: Annotated[
        str | None, opt("--workspace", help="(azureml) workspace name (or AZUREML_WORKSPACE_NAME)")
    ] = None,
    image: ImageOpt = None,
    head_image: HeadImageOpt = None,
    worker_image: WorkerImageOpt = None,
    vm_size: VmSizeOpt = None,
    vnet: VnetOpt = None,
    subnet: SubnetOpt = None,
) -> int:
    from ..spec import load_spec
    from ..submit import submit as submit_spec

    loaded = load_spec(spec)
    if name:
        from pydantic import ValidationError

        from ..spec import JobSpec, problems_from

        try:
            loaded.job.name = name
        except ValidationError as e:
            problems = [
                ("--name", what, "letters, digits, `-`, `_` and `.`, starting with a letter or digit")
                for _, what, _ in problems_from(e, JobSpec)
            ]
            raise SpecError(spec, problems) from None
    if backend == "azureml":
        return submit_azureml(
            loaded,
            address=address,
            subscription=subscription,
            resource_group=resource_group,
            workspace=workspace,
            options=azureml_options(image, head_image, worker_image, vm_size, vnet, subnet),
        )
    notices: list[str] = []
    if loaded.schedule is not None:
        notices.append("`rlo submit` runs the job once, now; `rlo schedule add SPEC` schedules it (`schedule:`)")
    run = submit_spec(loaded, address=address, token=token, notices_out=notices)
    for n in notices:
        print(f"[rlo] note: {n}", file=sys.stderr)
    print(run.id)
    sys.stdout.flush()
    if not wait:
        print(f"[rlo] submitted; follow it with `rlo attach {run.id}`", file=sys.stderr)
        return 0
    return follow(run, raw=raw)


def follow(run, *, raw: bool = False, plot: bool = False, plot_to: str | None = None) -> int:
    """Attached until the run ends: 0 iff it succeeded, 130 when detached with Ctrl-C (the job goes on)."""
    live = None
    if plot or plot_to:  # keep a PNG of the curves up to date
        live = LivePlot(run, plot_to).start()
    try:
        final = run.attach(progress=not raw, raw=raw)
    except KeyboardInterrupt:
        print(
            f"\n[rlo] detached; the job goes on. `rlo attach {run.id}` to follow it again, "
            f"`rlo stop {run.id}` to stop it.",
            file=sys.stderr,
        )
        return 130
    finally:
        if live is not None:
            live.stop()
    return 0 if final == "SUCCEEDED" else 1


@command(app, "resume", "continue a run whose driver or Ray died from its last checkpoint (same run id)")
def resume(
    run_id: RunArg,
    token: TokenOpt = None,
    wait: Annotated[bool, opt("--wait", help="attach until it ends (exit 0 iff it succeeded)")] = False,
    raw: Annotated[bool, opt("--raw", help=RAW_WAIT)] = False,
) -> int:
    from ..run import attach

    run = attach(run_id, token=token).resume()
    print(run.id)
    attempts = run.registry.attempts(run.id)
    last = attempts[-1]
    print(
        f"[rlo] run {run.id}: attempt {last['attempt']} submitted, continuing from "
        + (f"checkpoint {last['from_checkpoint']}" if last["from_checkpoint"] else "its last checkpoint"),
        file=sys.stderr,
    )
    if wait:
        return follow(run, raw=raw)
    return 0


@command(app, "attach", "stream a run's log and progress until it ends (exit 0 iff it succeeded)")
def attach_cmd(
    run_id: RunArg,
    token: TokenOpt = None,
    raw: Annotated[bool, opt("--raw", help="print the log verbatim (no progress line)")] = False,
    plot: Annotated[bool, opt("--plot", help="keep a PNG of the return curves up to date (./RUN.png)")] = False,
    plot_to: Annotated[str | None, opt("--plot-to", metavar="PNG", help="the same, written to PNG")] = None,
) -> int:
    from ..run import attach

    return follow(attach(run_id, token=token), raw=raw, plot=plot, plot_to=plot_to)


@command(app, "status", "a run's status, final metrics and checkpoints")
def status(run_id: RunArg, token: TokenOpt = None, as_json: JsonFlag = False) -> int:
    from ..run import attach

    run = attach(run_id, token=token)
    rec = run.refresh()
    if as_json:
        print(
            json.dumps(
                {
                    "id": rec.id,
                    "status": rec.status,
                    "message": rec.message,
                    "stop_reason": rec.stop_reason,
                    "backend": rec.backend,
                    "address": rec.address,
                    "created_at": rec.created_at,
                    "ended_at": rec.ended_at,
                    "run_dir": rec.run_dir,
                    "final_metrics": rec.final_metrics,
                    "checkpoints": [c.path for c in run.registry.checkpoints(rec.id)],
                    "attempts": run.registry.attempts(rec.id),
                    "tracking": rec.extra.get("tracking"),
                },
                indent=2,
            )
        )
        return 0
    print(f"{rec.id}: {rec.status}")
    print(f"  submitted {fmt_time(rec.created_at)} to {rec.backend} ({rec.address})")
    if rec.ended_at:
        print(f"  ended     {fmt_time(rec.ended_at)} ({rec.ended_at - rec.created_at:.0f} s after submission)")
    if rec.stop_reason:
        print(f"  why       {rec.stop_reason}")
    if rec.message and (rec.status != "SUCCEEDED" or rec.extra.get("unreadable_fields")):
        print(f"  message   {rec.message}")

    def reached(label: str, m: dict) -> None:
        print(
            f"  {label} iter {m.get('training_iteration')}, {fmt_metric(m.get(metrics.ENV_STEPS))} env steps, "
            f"return mean {fmt_metric(m.get(metrics.RETURN_MEAN))}"
        )

    if rec.final_metrics:
        reached("final    ", rec.final_metrics)
    elif not rec.terminal:
        latest = run.latest_metrics()
        for i, (trial, m) in enumerate(sorted(latest.items())):
            if i == 10:
                print(f"  ... and {len(latest) - 10} more trials (`rlo metrics {rec.id}`)")
                break
            reached("so far   " if len(latest) == 1 else f"trial {trial}", m)
    cps = run.registry.checkpoints(rec.id)
    if cps:
        print(f"  checkpoints ({len(cps)}), latest: {cps[-1].path}")
    attempts = run.registry.attempts(rec.id)
    for a in attempts[1:] if len(attempts) > 1 else []:
        print(
            f"  attempt {a['attempt']} submitted {fmt_time(a['submitted_at'])} (`rlo resume`)"
            + (f", from iteration {a['from_iteration']}" if a.get("from_iteration") else "")
            + (f": {a['status']}" if a.get("status") else "")
        )
    mlflow = (rec.extra.get("tracking") or {}).get("mlflow")
    if mlflow:
        print(f"  mlflow    run {mlflow.get('run_id')}: {mlflow.get('url') or mlflow.get('tracking_uri')}")
    if rec.run_dir:
        print(f"  folder    {rec.run_dir}")
    return 0


@command(app, "logs", "a run's log")
def logs(
    run_id: RunArg,
    token: TokenOpt = None,
    follow_: Annotated[bool, opt("-f", "--follow", help="keep printing until the job ends")] = False,
) -> int:
    from ..run import attach

    run = attach(run_id, token=token)
    if follow_:
        final = run.follow_logs()
        return 0 if final == "SUCCEEDED" else 1
    sys.stdout.write(run.logs())
    return 0


@command(app, "stop", "stop a run")
def stop(run_id: RunArg, token: TokenOpt = None) -> int:
    from ..run import attach

    run = attach(run_id, token=token)
    before = run.status()
    final = run.stop()
    if before in ("SUCCEEDED", "FAILED", "STOPPED", "SUBMIT_FAILED"):
        print(f"{run.id} had already ended: {before}")
    else:
        print(f"{run.id}: {final}")
    return 0


@command(app, "list", "run history, newest first")
def list_cmd(limit: Annotated[int, opt("--limit")] = 20, as_json: JsonFlag = False) -> int:
    from ..run import Run, list_runs

    records = list_runs(limit=limit)
    registry = Registry(settings().registry_path)
    refreshed = []
    for rec in records:  # bring unfinished runs up to date when their engine answers
        if not rec.terminal:
            try:
                rec = Run(rec, registry).refresh()
            except RloError:
                pass
        refreshed.append(rec)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "status": r.status,
                        "created_at": r.created_at,
                        "backend": r.backend,
                        "final_metrics": r.final_metrics,
                        "stop_reason": r.stop_reason,
                    }
                    for r in refreshed
                ],
                indent=2,
            )
        )
        return 0
    if not refreshed:
        print("no runs yet (rlo submit SPEC.yaml)")
        return 0
    rows = [("RUN", "STATUS", "SUBMITTED", "ITER", "ENV STEPS", "RETURN MEAN", "WHY")]
    for r in refreshed:
        fm, why = r.final_metrics or {}, r.stop_reason or r.message or ""
        if not r.terminal and not fm:  # still going: how far it got (a sweep: its trials, the best return)
            latest = list(Run(r, registry).latest_metrics().values())
            returns = [m[metrics.RETURN_MEAN] for m in latest if isinstance(m.get(metrics.RETURN_MEAN), int | float)]
            fm = {
                "training_iteration": max((m.get("training_iteration") or 0 for m in latest), default=None),
                metrics.ENV_STEPS: sum(m.get(metrics.ENV_STEPS) or 0 for m in latest) if latest else None,
                metrics.RETURN_MEAN: max(returns, default=None),
            }
            if len(latest) > 1:
                why = f"{len(latest)} trials so far; return mean: the best trial's"
        rows.append(
            (
                r.id,
                r.status,
                fmt_time(r.created_at),
                fmt_metric(fm.get("training_iteration")),
                fmt_metric(fm.get(metrics.ENV_STEPS)),
                fmt_metric(fm.get(metrics.RETURN_MEAN)),
                why[:60],
            )
        )
    print_table(rows)
    return 0


@command(app, "metrics", "a run's per-iteration metrics")
def metrics_cmd(run_id: RunArg, token: TokenOpt = None, as_json: JsonFlag = False) -> int:
    from ..run import attach

    series = attach(run_id, token=token).metrics()
    if as_json:
        print(json.dumps(series, indent=2))
        return 0
    print(f"{'iter':>5} {'env steps':>12} {'return mean':>12} {'time (s)':>9}")
    for r in series:
        print(
            f"{fmt_metric(r.get('training_iteration')):>5} {fmt_metric(r.get(metrics.ENV_STEPS)):>12} "
            f"{fmt_metric(r.get(metrics.RETURN_MEAN)):>12} {fmt_metric(r.get('time_total_s')):>9}"
        )
    return 0


@command(app, "up", "start the embedded local Ray (submit does this by itself)")
def up() -> int:
    from ..local_ray import LocalRayManager

    t0 = time.monotonic()
    local = LocalRayManager().ensure()
    print(f"embedded Ray up at {local.dashboard_url} ({local.num_cpus} CPUs) [{time.monotonic() - t0:.1f} s]")
    return 0


@command(app, "down", "stop the embedded local Ray and every job on it")
def down() -> int:
    from ..local_ray import LocalRayManager

    print("embedded Ray stopped" if LocalRayManager().down() else "the embedded Ray was not running")
    return 0
