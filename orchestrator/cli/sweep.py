"""`rlo sweep results RUN` and `rlo sweep plot RUN`: a sweep's trials, the best one marked, and their curves."""

import json
import sys
from typing import Annotated

from ..outputs import output_file
from ..tables import print_table
from .common import arg, command, new_app, opt

app = new_app("a sweep's trials: results table (best marked), learning curves")

RunArg = Annotated[str, arg("RUN")]


def _plot(run, sw, out: str | None, flag: str, to) -> None:
    from ..sweep import plot_trials

    path = output_file(out or f"{run.id}-trials.png", flag=flag, example=f"{run.id}-trials.png")
    print(f"wrote {plot_trials(run, sw, path)}", file=to)


@command(app, "results", "trials: config, best metric, iterations, status; the best one marked")
def results(
    run_id: RunArg,
    as_json: Annotated[bool, opt("--json", help="print the trials as JSON")] = False,
    plot_to: Annotated[
        str | None, opt("--plot", metavar="PNG", help="also draw all trials' learning curves into PNG")
    ] = None,
) -> int:
    from ..run import attach
    from ..sweep import sweep_summary, trials_table

    run = attach(run_id)
    sw = sweep_summary(run)
    if plot_to:
        _plot(run, sw, plot_to, "--plot", sys.stderr)
    if as_json:
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


@command(app, "plot", "all trials' learning curves in one PNG")
def plot(
    run_id: RunArg,
    out: Annotated[str | None, opt("--out", metavar="PNG", help="where (default: RUN-trials.png)")] = None,
) -> int:
    from ..run import attach
    from ..sweep import sweep_summary

    run = attach(run_id)
    _plot(run, sweep_summary(run), out, "--out", sys.stdout)
    return 0
