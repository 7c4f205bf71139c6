"""The load-profile figure of the SageMaker RL blog post: transactions per minute over three days."""

from __future__ import annotations

from pathlib import Path

from orchestrator.autoscale.load import MINUTES_PER_DAY, LoadSimulator


def plot_load_profile(path_png: str | Path, days: int = 3, seed: int = 0, *, max_tpm: int = 100_000) -> Path:
    """Simulate ``days`` of load with ``seed``; write a PNG line plot of tpm over time. Returns the path."""
    import numpy as np

    # A bare Figure renders with Agg and leaves pyplot's global backend (a user's notebook) alone.
    from matplotlib.figure import Figure

    if days < 1:
        raise ValueError(f"days must be >= 1; got {days}")
    loads = LoadSimulator(seed=seed, max_tpm=max_tpm).profile(days * MINUTES_PER_DAY)
    hours = np.arange(1, loads.size + 1) / 60.0
    fig = Figure(figsize=(10, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(hours, loads, linewidth=0.7)
    ax.set_xlabel("time (hours)")
    ax.set_ylabel("load (transactions per minute)")
    ax.set_title(f"Simulated load, {days} days (seed {seed})")
    ax.set_xlim(0, hours[-1])
    ax.set_ylim(bottom=0)
    ax.set_xticks(np.arange(0, hours[-1] + 1, 12))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
