"""`rlo sweep results RUN` and `rlo sweep plot RUN`: a sweep's trials, the best one marked, and their curves."""

from __future__ import annotations

import json
import sys


def cmd_sweep(args) -> int:
    from .run import attach
    from .sweep import plot_trials, sweep_summary, trials_table
    from .tables import print_table

    run = attach(args.run)
    sw = sweep_summary(run)
    if args.action == "plot" or getattr(args, "plot", None):
        from .outputs import output_file

        flag = "--plot" if getattr(args, "plot", None) else "--out"
        out = output_file(
            getattr(args, "plot", None) or getattr(args, "out", None) or f"{run.id}-trials.png",
            flag=flag,
            example=f"{run.id}-trials.png",
        )
        print(f"wrote {plot_trials(run, sw, out)}", file=sys.stderr if args.action == "results" else sys.stdout)
        if args.action == "plot":
            return 0
    if args.json:
        print(json.dumps(sw, indent=2))
        return 0
    head, rows = trials_table(sw)
    print_table([tuple(head)] + [tuple(r) for r in rows])
    ok = sum(t["status"] != "ERROR" for t in sw["trials"])
    print(f"\n{len(sw['trials'])} trials ({ok} finished), {sw['mode']} {sw['metric']}", end="")
    if sw["best_trial"]:
        print(
            f"; best: {sw['best_trial']} (*), its checkpoints are the run's: "
            f"`rlo evaluate {run.id}` / `rlo deploy {run.id}` take it"
        )
    else:
        print("; no trial reported the metric")
    return 0


def register(add) -> None:
    sp = add("sweep", cmd_sweep, "a sweep's trials: results table (best marked), learning curves")
    sub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = sub.add_parser("results", help="trials: config, best metric, iterations, status; the best one marked")
    r.add_argument("run", metavar="RUN")
    r.add_argument("--json", action="store_true", help="print the trials as JSON")
    r.add_argument("--plot", metavar="PNG", help="also draw all trials' learning curves into PNG")
    p = sub.add_parser("plot", help="all trials' learning curves in one PNG")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", metavar="PNG", help="where (default: RUN-trials.png)")
    p.set_defaults(json=False)
