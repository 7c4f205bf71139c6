"""Training curves as PNG: episode return (mean, and the min-max band) against env steps and against wall time,
one or several runs on one figure, with the stop criteria drawn as lines.

    rlo plot RUN [RUN ...] [-o returns.png]
    rlo attach RUN --plot [PATH]              # the same figure, refreshed while the run goes on

Rendering is a pure function of the runs' metrics records (`render`), drawn with matplotlib's Agg canvas (no
GUI, no pyplot state, so it also runs on the attach command's background thread).
"""

from __future__ import annotations

import math
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import metrics as m
from .outputs import output_file

TIME = "time_total_s"
RETURN_MIN = "env_runners/episode_return_min"
RETURN_MAX = "env_runners/episode_return_max"
FIGSIZE = (13.0, 5.0)  # inches, at DPI: 1300 x 500 pixels
DPI = 100


@dataclass
class Series:
    """One run's curve: its label, its per-iteration metrics records and its (normalized) stop criteria."""

    label: str
    records: list[dict]
    stop: dict[str, float] = field(default_factory=dict)


def series_for(run) -> Series:
    return Series(label=run.id, records=run.metrics(), stop=run._stop_criteria())


def _value(rec: dict, key: str) -> float:
    v = m.lookup(rec, key)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _fmt(v: float) -> str:
    return f"{v:,.1f}" if not float(v).is_integer() else f"{int(v):,}"


def render(series: list[Series], out: str | os.PathLike, title: str | None = None) -> Path:
    """Draw `series` into the PNG `out` (written atomically, so a viewer never sees half a file)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_steps, ax_time = fig.subplots(1, 2, sharey=True)
    colors = [f"C{i % 10}" for i in range(len(series))]
    any_points = False
    stop_lines: dict[tuple[str, float], list[int]] = {}

    for i, s in enumerate(series):
        recs = sorted(s.records, key=lambda r: r.get("training_iteration") or 0)
        steps = [_value(r, m.ENV_STEPS) for r in recs]
        times = [_value(r, TIME) for r in recs]
        mean = [_value(r, m.RETURN_MEAN) for r in recs]
        low = [_value(r, RETURN_MIN) for r in recs]
        high = [_value(r, RETURN_MAX) for r in recs]
        have = [v for v in mean if not math.isnan(v)]
        if have:
            label = f"{s.label}: return {_fmt(have[-1])} at iteration {recs[-1].get('training_iteration', len(recs))}"
        elif recs:
            label = f"{s.label}: no finished episode yet ({len(recs)} iteration{'s' if len(recs) != 1 else ''})"
        else:
            label = f"{s.label}: no metrics yet"
        marker = "o" if len(recs) <= 30 else None
        for ax, xs in ((ax_steps, steps), (ax_time, times)):
            ax.plot(xs, mean, color=colors[i], lw=2, marker=marker, ms=3.5, label=label if ax is ax_steps else None)
            ax.fill_between(xs, low, high, color=colors[i], alpha=0.15, lw=0)
        any_points = any_points or bool(have)
        for key, target in s.stop.items():
            stop_lines.setdefault((key, float(target)), []).append(i)

    # Stop criteria: a return target is a horizontal line on both panels; an env-step or time budget a
    # vertical line on its panel. A line shared by every run is drawn once, in gray.
    for (key, target), who in stop_lines.items():
        color = "0.35" if len(who) == len(series) else colors[who[0]]
        text = f"stop: {m.SHORT.get(key, key.rsplit('/', 1)[-1])} ≥ {target:g}"
        if key == m.RETURN_MEAN or key.endswith("episode_return_mean"):
            for ax in (ax_steps, ax_time):
                ax.axhline(target, color=color, ls="--", lw=1.2, label=text if ax is ax_steps else None)
        elif key == m.ENV_STEPS:
            ax_steps.axvline(target, color=color, ls="--", lw=1.2, label=text)
        elif key == TIME:
            ax_time.axvline(target, color=color, ls="--", lw=1.2, label=text)

    ax_steps.set_xlabel("env steps sampled")
    ax_time.set_xlabel("wall time of training (s)")
    ax_steps.set_ylabel("episode return (line: mean, band: min to max)")
    ax_steps.xaxis.set_major_formatter(EngFormatter(sep=""))
    for ax in (ax_steps, ax_time):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
    if not any_points:
        for ax in (ax_steps, ax_time):
            ax.text(0.5, 0.5, "no episode returns yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax_steps.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.suptitle(title or ("Episode return: " + (series[0].label if len(series) == 1 else f"{len(series)} runs")))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out


def default_output(run_ids: list[str]) -> Path:
    name = run_ids[0] if len(run_ids) == 1 else f"{run_ids[0]}-and-{len(run_ids) - 1}-more"
    return Path.cwd() / f"{name}.png"


def plot_runs(runs: list, out: str | os.PathLike | None = None, title: str | None = None) -> Path:
    """`rlo plot`: render the runs (`Run`s: `orchestrator.attach(id)`) to `out` (default: ./RUN.png)."""
    target = output_file(out or default_output([r.id for r in runs]), flag="-o", example="curves.png")
    return render([series_for(r) for r in runs], target, title)


class LivePlot:
    """Re-renders a run's PNG while it runs (on a background thread), and once more at the end."""

    def __init__(self, run, out: str | os.PathLike | None = None, interval_s: float = 5.0) -> None:
        self.run = run
        self.out = output_file(out, flag="--plot-to", example=f"{run.id}.png") if out else default_output([run.id])
        self.interval_s = interval_s
        self._count = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rlo-live-plot", daemon=True)
        self._warned = False

    def refresh(self) -> bool:
        """Render when there are new records; returns whether it rendered."""
        try:
            s = series_for(self.run)
            if len(s.records) == self._count:
                return False
            render([s], self.out)
            self._count = len(s.records)
            return True
        except Exception as e:  # a plot must never break attach
            if not self._warned:
                print(f"[rlo] live plot: could not render {self.out}: {e}", file=sys.stderr)
                self._warned = True
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.refresh()

    def start(self) -> LivePlot:
        self.refresh()
        print(f"[rlo] live plot: {self.out} (refreshed every {self.interval_s:g} s)", file=sys.stderr, flush=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.refresh()
