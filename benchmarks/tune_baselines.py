"""Rerun the search that produced the shipped baseline parameters (``TUNED`` in
``orchestrator/autoscale/baselines.py``) and print them, then their profit on held-out evaluation seeds.

    python benchmarks/tune_baselines.py                  # as shipped: 32 training seeds, 96 + 2x48 candidates
    python benchmarks/tune_baselines.py --eval-episodes 0 --baseline target_tracking

Takes about two minutes on one core. Any argument of ``python -m orchestrator.autoscale.baselines`` works.
"""

from __future__ import annotations

import sys

from orchestrator.autoscale.baselines import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--eval-episodes" not in args:
        args += ["--eval-episodes", "200"]
    raise SystemExit(main(["--tune", *args]))
