"""`rlo`: the command line. Each command parses its arguments and calls the Python API (the same calls).

Exit codes: 0 success, 1 the job or the engine failed, 2 a user error (bad spec, flag, request), 130
detached with Ctrl-C (the job goes on).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from .errors import RloError, quiet_stdout, run_main
from .tables import fmt_metric, fmt_time, print_table

# --- commands ---------------------------------------------------------------------------------------------------


def cmd_plan(args) -> int:
    from .planner import plan_spec
    from .spec import load_spec
    from .submission import prepare

    spec = load_spec(args.spec)
    # Only --check runs the user's code (it imports the env module); plain `rlo plan` reads the spec alone.
    prepared = prepare(spec) if args.check else None
    plan = prepared.plan if prepared else plan_spec(spec)
    checked = list(prepared.notices) if prepared else []
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    print(plan.explain(source=args.spec))  # the same text as Estimator(...).plan().explain()
    for n in checked:
        print(f"note: {n}")
    return 0


def cmd_submit(args) -> int:
    from .spec import load_spec
    from .submit import submit

    spec = load_spec(args.spec)
    if args.name:
        from pydantic import ValidationError

        from .errors import SpecError
        from .spec import JobSpec, problems_from

        try:
            spec.job.name = args.name
        except ValidationError as e:
            problems = [
                ("--name", what, "letters, digits, `-`, `_` and `.`, starting with a letter or digit")
                for _, what, _ in problems_from(e, JobSpec)
            ]
            raise SpecError(args.spec, problems) from None
    if getattr(args, "backend", "ray") == "azureml":
        from .cli_render import submit_azureml

        return submit_azureml(spec, args)
    notices: list[str] = []
    if spec.schedule is not None:
        notices.append("`rlo submit` runs the job once, now; `rlo schedule add SPEC` schedules it (`schedule:`)")
    run = submit(spec, address=args.address, token=args.token, notices_out=notices)
    for n in notices:
        print(f"[rlo] note: {n}", file=sys.stderr)
    print(run.id)
    sys.stdout.flush()
    if not args.wait:
        print(f"[rlo] submitted; follow it with `rlo attach {run.id}`", file=sys.stderr)
        return 0
    return _attach(run, args)


def _attach(run, args) -> int:
    live = None
    if getattr(args, "plot", False) or getattr(args, "plot_to", None):  # keep a PNG of the curves up to date
        from .plots import LivePlot

        live = LivePlot(run, getattr(args, "plot_to", None)).start()
    try:
        final = run.attach(progress=not getattr(args, "raw", False), raw=getattr(args, "raw", False))
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


def cmd_attach(args) -> int:
    from .run import attach

    return _attach(attach(args.run, token=args.token), args)


def cmd_status(args) -> int:
    from .run import attach

    run = attach(args.run, token=args.token)
    rec = run.refresh()
    if args.json:
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
    from . import metrics

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


def cmd_logs(args) -> int:
    from .run import attach

    run = attach(args.run, token=args.token)
    if args.follow:
        final = run.follow_logs()
        return 0 if final == "SUCCEEDED" else 1
    sys.stdout.write(run.logs())
    return 0


def cmd_stop(args) -> int:
    from .run import attach

    run = attach(args.run, token=args.token)
    before = run.status()
    final = run.stop()
    if before in ("SUCCEEDED", "FAILED", "STOPPED", "SUBMIT_FAILED"):
        print(f"{run.id} had already ended: {before}")
    else:
        print(f"{run.id}: {final}")
    return 0


def cmd_list(args) -> int:
    from . import metrics
    from .registry import Registry
    from .run import Run, list_runs
    from .settings import settings

    records = list_runs(limit=args.limit)
    registry = Registry(settings().registry_path)
    refreshed = []
    for rec in records:  # bring unfinished runs up to date when their engine answers
        if not rec.terminal:
            try:
                rec = Run(rec, registry).refresh()
            except RloError:
                pass
        refreshed.append(rec)
    if args.json:
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


def cmd_metrics(args) -> int:
    from . import metrics
    from .run import attach

    series = attach(args.run, token=args.token).metrics()
    if args.json:
        print(json.dumps(series, indent=2))
        return 0
    print(f"{'iter':>5} {'env steps':>12} {'return mean':>12} {'time (s)':>9}")
    for r in series:
        print(
            f"{fmt_metric(r.get('training_iteration')):>5} {fmt_metric(r.get(metrics.ENV_STEPS)):>12} "
            f"{fmt_metric(r.get(metrics.RETURN_MEAN)):>12} {fmt_metric(r.get('time_total_s')):>9}"
        )
    return 0


def cmd_up(args) -> int:
    from .local_ray import LocalRayManager

    t0 = time.monotonic()
    local = LocalRayManager().ensure()
    print(f"embedded Ray up at {local.dashboard_url} ({local.num_cpus} CPUs) [{time.monotonic() - t0:.1f} s]")
    return 0


def cmd_resume(args) -> int:
    from .run import attach

    run = attach(args.run, token=args.token).resume()
    print(run.id)
    attempts = run.registry.attempts(run.id)
    last = attempts[-1]
    print(
        f"[rlo] run {run.id}: attempt {last['attempt']} submitted, continuing from "
        + (f"checkpoint {last['from_checkpoint']}" if last["from_checkpoint"] else "its last checkpoint"),
        file=sys.stderr,
    )
    if args.wait:
        return _attach(run, args)
    return 0


def cmd_down(args) -> int:
    from .local_ray import LocalRayManager

    print("embedded Ray stopped" if LocalRayManager().down() else "the embedded Ray was not running")
    return 0


# --- parser -------------------------------------------------------------------------------------------------------


# Modules that add commands (evaluate, deploy, plot, ...): each defines `register(add)`, where
# `add(name, fn, help)` returns an argparse sub-parser whose `fn(args) -> exit code` runs the command.
COMMAND_MODULES: list[str] = [
    "orchestrator.cli_serving",
    "orchestrator.cli_autoscale",
    "orchestrator.cli_schedule",
    "orchestrator.cli_render",
    "orchestrator.cli_sweep",
    "orchestrator.cli_cluster",
    "orchestrator.cli_export",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlo", description="Reinforcement-learning jobs on Ray: plan, submit, watch.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    def run_arg(sp):
        sp.add_argument("run", metavar="RUN", help="run id (or a unique prefix of it)")
        sp.add_argument("--token", help="auth token of a remote Ray cluster")

    sp = add("plan", cmd_plan, "show the cluster plan for a spec: pools, vCPUs, GPUs, env runners, and why")
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("--json", action="store_true")
    sp.add_argument(
        "--check",
        action="store_true",
        help="also check the env and hyperparameters: this imports the env module (its import-time code runs); "
        "plain `rlo plan` runs no code of yours",
    )

    sp = add("submit", cmd_submit, "submit a spec; prints the run id at once")
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("--wait", action="store_true", help="stay attached until the job ends (exit 0 iff it succeeded)")
    sp.add_argument("--address", help="a Ray cluster's dashboard, e.g. http://HOST:8265 (default: embedded Ray)")
    sp.add_argument("--token", help="auth token of that cluster (default: RAY_AUTH_TOKEN / ~/.ray/auth_token)")
    sp.add_argument("--name", help="a name for the run")
    sp.add_argument("--raw", action="store_true", help="with --wait: print the log verbatim")
    importlib.import_module("orchestrator.cli_render").add_submit_args(sp)  # --backend azureml and its flags

    sp = add("resume", cmd_resume, "continue a run whose driver or Ray died from its last checkpoint (same run id)")
    run_arg(sp)
    sp.add_argument("--wait", action="store_true", help="attach until it ends (exit 0 iff it succeeded)")
    sp.add_argument("--raw", action="store_true", help="with --wait: print the log verbatim")

    sp = add("attach", cmd_attach, "stream a run's log and progress until it ends (exit 0 iff it succeeded)")
    run_arg(sp)
    sp.add_argument("--raw", action="store_true", help="print the log verbatim (no progress line)")
    sp.add_argument("--plot", action="store_true", help="keep a PNG of the return curves up to date (./RUN.png)")
    sp.add_argument("--plot-to", metavar="PNG", help="the same, written to PNG")

    sp = add("status", cmd_status, "a run's status, final metrics and checkpoints")
    run_arg(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("logs", cmd_logs, "a run's log")
    run_arg(sp)
    sp.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")

    sp = add("stop", cmd_stop, "stop a run")
    run_arg(sp)

    sp = add("list", cmd_list, "run history, newest first")
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument("--json", action="store_true")

    sp = add("metrics", cmd_metrics, "a run's per-iteration metrics")
    run_arg(sp)
    sp.add_argument("--json", action="store_true")

    add("up", cmd_up, "start the embedded local Ray (submit does this by itself)")
    add("down", cmd_down, "stop the embedded local Ray and every job on it")

    # Commands of other parts of the workflow live in their own modules: each has `register(add)`.
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(add)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse prints its own message; a usage error is a user error
        return 2 if e.code not in (0, None) else 0
    except BrokenPipeError:  # `rlo --help | head`
        quiet_stdout()
        return 0
    code = run_main(lambda: args.fn(args))
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the last lines were still buffered when the reader went away
        quiet_stdout()
    return code


if __name__ == "__main__":
    sys.exit(main())
