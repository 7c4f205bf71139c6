"""Plain-text tables and the numbers in them, for the CLI and for the job's own summary (no CLI import)."""

from __future__ import annotations

from datetime import datetime


def fmt_time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def print_table(rows: list[tuple]) -> None:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def fmt_metric(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v):,}"
