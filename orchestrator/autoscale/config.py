"""Settings of the auto-scaling simulator, validated once at construction.

Every default is the public SageMaker example's value (``autoscalesim.py``), except ``max_time_steps``: the
blog snippet uses 1000, the public example 10000; we default to the example. A bad value is a
:class:`AutoScaleConfigError` (a ``ValueError``) that names the field, what was received and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.errors import UserError, did_you_mean

# Rates of the exponential moving averages in the observation (public example), fastest first. The rate-1
# average is the raw signal of the last minute, which the baselines read back out of the observation.
EMA_RATES: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001, 0.0001)
# The four smoothed signals, in observation order within each rate.
SIGNALS: tuple[str, ...] = ("load", "failed_fraction", "is_down", "active_machines")
# Observation features the reference lacks, appended after the warm-up queue when asked for (`extra_features`),
# each in [0, 1]: "utilization" = load / capacity of the machines serving and warming (tpm_per_machine each),
# clipped to [0, 2], halved; "load_trend" = (load EMA at rate 0.1 - load EMA at rate 0.01) / the latter, clipped
# to [-1, 1], mapped to [0, 1] (0.5: flat). Both are functions of the reference observation, made explicit.
EXTRA_FEATURES: tuple[str, ...] = ("utilization", "load_trend")


class AutoScaleConfigError(UserError, ValueError):
    """A setting of the auto-scaling simulator that is out of range, of the wrong type, or unknown."""

    def __init__(self, field_name: str, message: str, *, fix: str | None = None) -> None:
        self.field = field_name
        super().__init__(message, fix=fix)


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, kw_only=True)
class AutoScaleConfig:
    """All settings of :class:`~orchestrator.autoscale.env.AutoScaleEnv` (and of the batched env).

    Build it from an RLlib ``env_config`` dict with :meth:`from_mapping`; unknown keys are rejected with a
    "did you mean" hint rather than ignored, so a typo cannot silently train on the defaults.
    """

    warmup_latency: int = field(default=5, metadata=_doc("minutes before a machine turned on starts serving"))
    tpm_per_machine: float = field(default=300.0, metadata=_doc("mean transactions/minute one machine serves"))
    tpm_sigma: float = field(default=30.0, metadata=_doc("std-dev of that capacity, drawn once a minute"))
    machine_cost: float = field(default=0.05, metadata=_doc("$ per machine-minute"))
    transaction_val: float = field(default=0.90, metadata=_doc("$ per thousand successful transactions"))
    downtime_cost: float = field(default=200.0, metadata=_doc("$ per minute of downtime"))
    downtime_percent: float = field(default=99.5, metadata=_doc("availability (%) below which a minute is down"))
    initial_machines: int = field(default=50, metadata=_doc("machines serving at reset"))
    max_time_steps: int = field(
        default=10_000,
        metadata=_doc("episode ends when t > max_time_steps, i.e. after max_time_steps+1 steps"),
    )
    max_machines: int | None = field(
        default=None, metadata=_doc("fleet cap; None means int(2.5 * max_tpm / tpm_per_machine) = 833")
    )
    max_action: int = field(default=10, metadata=_doc("most machines turned on (and off) per minute"))
    max_tpm: int = field(default=100_000, metadata=_doc("load is clipped to [0, max_tpm]; scales observations"))
    extra_features: tuple[str, ...] = field(
        default=(), metadata=_doc(f"observation features appended after the reference's 25: any of {EXTRA_FEATURES}")
    )
    zero_load_is_downtime: bool = field(
        default=True, metadata=_doc("reference quirk: a minute with load 0 counts as downtime (see env.py)")
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise types once, here
        for name in ("warmup_latency", "initial_machines", "max_time_steps", "max_action", "max_tpm"):
            set_(self, name, _as_int(name, getattr(self, name)))
        for name in (
            "tpm_per_machine",
            "tpm_sigma",
            "machine_cost",
            "transaction_val",
            "downtime_cost",
            "downtime_percent",
        ):
            set_(self, name, _as_float(name, getattr(self, name)))
        if not isinstance(self.zero_load_is_downtime, bool | np.bool_):
            raise AutoScaleConfigError(
                "zero_load_is_downtime",
                f"AutoScaleConfig.zero_load_is_downtime must be true or false; got {self.zero_load_is_downtime!r}.",
            )
        set_(self, "zero_load_is_downtime", bool(self.zero_load_is_downtime))
        features = self.extra_features
        if isinstance(features, str) or not isinstance(features, list | tuple):
            features = ["<not a list>"]
        unknown = [f for f in features if f not in EXTRA_FEATURES]
        if unknown or len(set(features)) != len(features):
            raise AutoScaleConfigError(
                "extra_features",
                f"AutoScaleConfig.extra_features must be a list of distinct names from {list(EXTRA_FEATURES)}; "
                f"got {self.extra_features!r}.",
                fix='e.g. `extra_features: ["utilization", "load_trend"]`',
            )
        set_(self, "extra_features", tuple(features))

        _require(
            self.warmup_latency >= 1,
            "warmup_latency",
            self.warmup_latency,
            "an integer >= 1 (a machine turned on at minute t serves from minute t + warmup_latency)",
        )
        _require(self.tpm_per_machine > 0, "tpm_per_machine", self.tpm_per_machine, "a number > 0")
        _require(self.tpm_sigma >= 0, "tpm_sigma", self.tpm_sigma, "a number >= 0 (0 makes capacity exact)")
        for name in ("machine_cost", "transaction_val", "downtime_cost"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "a number >= 0 (dollars)")
        _require(
            0 < self.downtime_percent <= 100,
            "downtime_percent",
            self.downtime_percent,
            "a percentage in (0, 100]",
        )
        _require(self.max_time_steps >= 1, "max_time_steps", self.max_time_steps, "an integer >= 1")
        _require(self.max_action >= 1, "max_action", self.max_action, "an integer >= 1")
        _require(self.max_tpm >= 1, "max_tpm", self.max_tpm, "an integer >= 1")

        max_machines = self.max_machines
        if max_machines is None:
            max_machines = int(2.5 * self.max_tpm / self.tpm_per_machine)
        max_machines = _as_int("max_machines", max_machines)
        set_(self, "max_machines", max_machines)
        _require(max_machines >= 1, "max_machines", max_machines, "an integer >= 1")
        if not 0 <= self.initial_machines <= max_machines:
            raise AutoScaleConfigError(
                "initial_machines",
                f"AutoScaleConfig.initial_machines must be between 0 and max_machines ({max_machines}); "
                f"got {self.initial_machines}.",
                fix="lower initial_machines or raise max_machines",
            )

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any] | AutoScaleConfig | None = None, **overrides: Any
    ) -> AutoScaleConfig:
        """Build from an ``env_config`` dict (RLlib's ``EnvContext`` is one) plus keyword overrides.

        Keys are the field names; an unknown key raises :class:`AutoScaleConfigError` with the closest
        known name.
        """
        if isinstance(mapping, AutoScaleConfig):
            mapping = mapping.to_dict()
        if mapping is not None and not isinstance(mapping, Mapping):
            raise AutoScaleConfigError(
                "<config>", f"the env config must be a dict of settings; got {type(mapping).__name__}."
            )
        values = {**dict(mapping or {}), **overrides}
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                hint = did_you_mean(key, known)
                raise AutoScaleConfigError(
                    str(key),
                    f"unknown auto-scaling setting `{key}`" + (f"; {hint}" if hint else ""),
                    fix=f"known settings: {', '.join(known)}",
                )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings (``max_machines`` filled in), JSON-serialisable."""
        return dataclasses.asdict(self)

    @property
    def resolved_max_machines(self) -> int:
        """``max_machines`` of a built config: ``__post_init__`` fills in the default for None."""
        assert self.max_machines is not None, "__post_init__ sets max_machines"
        return self.max_machines

    @property
    def observation_size(self) -> int:
        return len(EMA_RATES) * len(SIGNALS) + self.warmup_latency + len(self.extra_features)


def describe_settings() -> dict[str, tuple[Any, str]]:
    """Every setting's default and one-line meaning (for ``--help`` texts and docs)."""
    return {f.name: (f.default, f.metadata.get("doc", "")) for f in dataclasses.fields(AutoScaleConfig)}


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise AutoScaleConfigError(name, f"AutoScaleConfig.{name} must be {allowed}; got {value!r}.")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool | np.bool_):
        raise AutoScaleConfigError(name, f"AutoScaleConfig.{name} must be an integer; got {value!r}.")
    if isinstance(value, int | np.integer):
        return int(value)
    # YAML/JSON may deliver 5.0 for 5; accept whole numbers, reject anything else instead of truncating.
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise AutoScaleConfigError(name, f"AutoScaleConfig.{name} must be an integer; got {value!r}.")


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise AutoScaleConfigError(name, f"AutoScaleConfig.{name} must be a number; got {value!r}.")
    if not math.isfinite(float(value)):
        raise AutoScaleConfigError(name, f"AutoScaleConfig.{name} must be a finite number; got {value!r}.")
    return float(value)
