#!/usr/bin/env bash
# Install rl-orchestrator into ./.venv with everything it needs, in ONE pip resolve with a current pip.
# (An old pip crashes resolving ray[default,serve] with other SDKs; installing packages one after the other
# can leave an opentelemetry mismatch that silently disables Ray's dashboard and with it the Job API.)
# Safe to rerun: it only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${RLO_EXTRAS:-dev,bench}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.rlo-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[install] .venv is up to date"
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned in pyproject.toml to the CPU build that lies on this machine's disk.
.venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
# The embedded Ray's Job API needs Ray's dashboard; fail here, not at the first submit, if it cannot load.
.venv/bin/python - <<'PY'
import importlib
for mod in ("ray.dashboard.modules.job.job_head", "ray.rllib", "ale_py", "cv2", "orchestrator"):
    importlib.import_module(mod)
print("[install] ok:", ", ".join(["ray", "rllib", "ale_py", "cv2", "orchestrator"]))
PY
echo "$want" > "$stamp"
