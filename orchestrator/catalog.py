"""Instance types the seeds (and their users) name, so a spec can say `instance_type: STANDARD_NC6` instead of
spelling out vCPUs and GPUs. Explicit `vcpus`/`gpus`/`memory` in a spec override the catalog."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    gpus: int
    memory_gib: float
    gpu_model: str | None = None
    cloud: str = ""


_TYPES = [
    # Azure (the seeds' Azure ML Pong example)
    InstanceType("STANDARD_NC6", 6, 1, 56, "K80", "azure"),
    InstanceType("STANDARD_NC12", 12, 2, 112, "K80", "azure"),
    InstanceType("STANDARD_NC24", 24, 4, 224, "K80", "azure"),
    InstanceType("STANDARD_NC6S_V3", 6, 1, 112, "V100", "azure"),
    InstanceType("STANDARD_NC4AS_T4_V3", 4, 1, 28, "T4", "azure"),
    InstanceType("STANDARD_D2_V2", 2, 0, 7, None, "azure"),
    InstanceType("STANDARD_D3_V2", 4, 0, 14, None, "azure"),
    InstanceType("STANDARD_D4_V2", 8, 0, 28, None, "azure"),
    InstanceType("STANDARD_DS3_V2", 4, 0, 14, None, "azure"),
    InstanceType("STANDARD_F4S_V2", 4, 0, 8, None, "azure"),
    # AWS SageMaker (the seeds' SageMaker RL examples)
    InstanceType("ml.p3.2xlarge", 8, 1, 61, "V100", "aws"),
    InstanceType("ml.p3.8xlarge", 32, 4, 244, "V100", "aws"),
    InstanceType("ml.p3.16xlarge", 64, 8, 488, "V100", "aws"),
    InstanceType("ml.g4dn.xlarge", 4, 1, 16, "T4", "aws"),
    InstanceType("ml.g5.xlarge", 4, 1, 16, "A10G", "aws"),
    InstanceType("ml.c4.2xlarge", 8, 0, 15, None, "aws"),
    InstanceType("ml.c5.xlarge", 4, 0, 8, None, "aws"),
    InstanceType("ml.c5.2xlarge", 8, 0, 16, None, "aws"),
    InstanceType("ml.c5.4xlarge", 16, 0, 32, None, "aws"),
    InstanceType("ml.c5.9xlarge", 36, 0, 72, None, "aws"),
    InstanceType("ml.m4.xlarge", 4, 0, 16, None, "aws"),
    InstanceType("ml.m4.4xlarge", 16, 0, 64, None, "aws"),
    InstanceType("ml.m5.xlarge", 4, 0, 16, None, "aws"),
    InstanceType("ml.m5.2xlarge", 8, 0, 32, None, "aws"),
]

CATALOG: dict[str, InstanceType] = {t.name.lower(): t for t in _TYPES}

#: `instance_type: local` means the machine the command runs on.
LOCAL = "local"


def local_machine() -> InstanceType:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = 0.0
    return InstanceType(LOCAL, os.cpu_count() or 1, 0, round(mem, 1), None, "local")


def lookup(name: str) -> InstanceType | None:
    """The catalog entry for `name` (case-insensitive), `local` for this machine, or None."""
    if name.lower() == LOCAL:
        return local_machine()
    return CATALOG.get(name.lower())


def names() -> list[str]:
    return [t.name for t in _TYPES] + [LOCAL]
