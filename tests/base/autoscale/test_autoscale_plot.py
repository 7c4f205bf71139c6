"""The load-profile figure is written as a PNG."""

from __future__ import annotations

import pytest

from orchestrator.autoscale.plot import plot_load_profile


def test_writes_a_png(tmp_path):
    path = plot_load_profile(tmp_path / "figs" / "load.png", days=3, seed=0)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000  # a real line plot, not an empty canvas


def test_rejects_zero_days(tmp_path):
    with pytest.raises(ValueError, match="days must be >= 1"):
        plot_load_profile(tmp_path / "x.png", days=0)
