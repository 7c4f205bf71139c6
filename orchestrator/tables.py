"""Tables (rich) and the numbers in them, for the CLI and for the job's own summary (no CLI import)."""

from __future__ import annotations

import io
import sys
from datetime import datetime

# Into a file or a pipe a table is one line per row however wide (scripts and tests split its rows), not
# wrapped or cut at the 80 columns rich assumes when there is no terminal.
UNLIMITED_WIDTH = 100_000


def fmt_time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def print_table(rows: list[tuple]) -> None:
    """Left-aligned columns, two spaces apart, no borders; the first row is the header (bold on a terminal).

    On a terminal rich fits the table to its width; into a file or a pipe every row is one line, uncut."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold" if tty else None)
    for head in rows[0]:
        table.add_column(Text(str(head)), no_wrap=not tty, overflow="fold" if tty else "ignore")
    for row in rows[1:]:
        table.add_row(*(Text(str(c)) for c in row))  # as they are: `[...]` in a cell is not markup
    if tty:
        Console(file=out).print(table)
        return
    buf = io.StringIO()
    Console(file=buf, width=UNLIMITED_WIDTH, color_system=None, force_terminal=False, highlight=False).print(table)
    for line in buf.getvalue().splitlines():
        print(line.rstrip())


def fmt_metric(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v):,}"
