"""Where the tool keeps its state. One folder (``RLO_HOME``, default ``~/.rlo``) holds the run registry, the run
folders and the embedded Ray's state; each piece can be moved on its own by its variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    registry_path: Path
    runs_dir: Path
    local_ray_dir: Path

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("RLO_HOME", "~/.rlo")).expanduser().resolve()
        return cls(
            home=home,
            registry_path=Path(os.environ.get("RLO_REGISTRY", home / "registry.db")).expanduser(),
            runs_dir=Path(os.environ.get("RLO_RUNS_DIR", home / "runs")).expanduser(),
            local_ray_dir=home / "local-ray",
        )

    def state_paths(self) -> list[Path]:
        """What the tool keeps (registry and its journal/lock files, run folders, the embedded Ray's state and
        auth token): never to be shipped with a job's files."""
        reg = self.registry_path.resolve()
        paths = [self.runs_dir.resolve(), self.local_ray_dir.resolve()]
        if reg.parent.is_dir():
            paths += [p.resolve() for p in reg.parent.glob(reg.name + "*")]
        return paths


def settings() -> Settings:
    return Settings.from_env()
