"""Callbacks that report a run's progress: each iteration's metrics go to the run's `metrics.jsonl` and as one
structured line into the job log; a health check fails the job fast when env runners cannot sample."""

from .health import SamplingHealthCheck, WaitForReplacement, health_check_class
from .metrics import MetricsLogger, compact_result

__all__ = ["MetricsLogger", "SamplingHealthCheck", "WaitForReplacement", "compact_result", "health_check_class"]
