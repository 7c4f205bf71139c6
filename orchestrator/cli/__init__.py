"""`rlo`: the command line (typer). Each command is a thin function over the Python API (the same calls), one
module per group of commands: runs (plan, submit, attach, ...), serving, autoscale, schedule, render, sweep,
cluster, export.

Exit codes: 0 success, 1 the job or the engine failed, 2 a user error (bad spec, flag, request), 130
detached with Ctrl-C (the job goes on).
"""

import sys

import typer

from ..errors import quiet_stdout, run_main
from . import autoscale, cluster, export, render, runs, schedule, serving, sweep
from .common import new_app

app = new_app("Reinforcement-learning jobs on Ray: plan, submit, watch.")


def _group(name: str, sub: typer.Typer) -> None:
    """`rlo NAME ACTION ...`: a sub-app's commands under one name (its help also the one-line summary)."""
    app.add_typer(sub, name=name, help=sub.info.help, short_help=sub.info.help)


# In the order `rlo --help` lists them; a nameless sub-app's commands are top-level commands.
app.add_typer(runs.app)
app.add_typer(serving.app)
app.add_typer(autoscale.app)
_group("schedule", schedule.schedule_app)
app.add_typer(schedule.app)  # `rlo scheduler`
_group("render", render.app)
_group("sweep", sweep.app)
_group("cluster", cluster.app)
app.add_typer(export.app)


def main(argv: list[str] | None = None) -> int:
    """`rlo ARGS...` (default: sys.argv[1:]) -> its exit code."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)

    def invoke() -> int:
        try:
            with command.make_context("rlo", args) as ctx:
                return int(command.invoke(ctx) or 0)
        except typer.Exit as e:  # --help, or a command that exits on purpose
            return e.exit_code
        except typer.TyperException as e:  # a usage error (click's, which typer bundles): its message, exit 2
            show = getattr(e, "show", None)
            if show is not None:
                show()
            else:
                print(f"Error: {e.format_message()}", file=sys.stderr)
            return e.exit_code
        except typer.Abort:
            print("\n[rlo] interrupted", file=sys.stderr)
            return 130

    code = run_main(invoke)
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the last lines were still buffered when the reader went away (`rlo --help | head`)
        quiet_stdout()
    return code
