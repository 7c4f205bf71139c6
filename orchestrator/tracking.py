"""MLflow tracking (a spec's `tracking: {mlflow: {tracking_uri, experiment}}`): the submitting side's checks and
what both sides share (param and metric names within MLflow's limits, the run's URL). No Ray import here; the
job side (the Tune callback and the job's run) is `callbacks.mlflow_tracking`.

MLflow sits beside the registry and the run folder, which stay the source of truth: a tracking server that goes
away while a job runs costs the job its tracking (one notice), never its training. One that cannot be reached
before submission is a UserError, so nothing is submitted that would train untracked.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError, shorten

# MLflow's limits (mlflow.utils.validation, 3.x): a param value is at most 6000 characters, a key 250.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
# Spec sections never logged: environment variables may hold credentials (MLFLOW_TRACKING_TOKEN, cloud keys).
SECRET_SECTIONS = ("job.env_vars",)
# The MLflow client's defaults retry a dead server for ~4 minutes per call; a job's tracking gives up sooner.
JOB_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
CHECK_TIMEOUT_S = 10
# Credentials the MLflow client reads from the environment (the check uses the job's, from `job.env_vars`, too).
CREDENTIAL_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")

_BAD_NAME_CHARS = re.compile(r"[^\w./\- ]")


def settings_of(spec_or_dict: Any) -> dict | None:
    """`{"tracking_uri", "experiment"}` of a Spec or of a resolved spec dict (the job's RLO_SPEC_JSON), or None
    when the spec does not track. `experiment` defaults to the job's name."""
    if hasattr(spec_or_dict, "tracking"):  # a Spec: read as it is (no round trip through a dict)
        mlflow = spec_or_dict.tracking.mlflow if spec_or_dict.tracking is not None else None
        if mlflow is None:
            return None
        experiment = mlflow.experiment or spec_or_dict.job.name or "rl-orchestrator"
        return {"tracking_uri": mlflow.tracking_uri, "experiment": experiment}
    data = spec_or_dict or {}
    cfg = ((data.get("tracking") or {}).get("mlflow")) or None
    if not cfg:
        return None
    experiment = cfg.get("experiment") or (data.get("job") or {}).get("name") or "rl-orchestrator"
    return {"tracking_uri": cfg["tracking_uri"], "experiment": experiment}


def job_env(spec) -> dict[str, str]:
    """MLflow's own variables for the job, so that an entry script's `mlflow.start_run()` logs to the spec's
    server and experiment with no code of ours (as Azure ML sets them in its jobs)."""
    cfg = settings_of(spec)
    if cfg is None:
        return {}
    return {"MLFLOW_TRACKING_URI": cfg["tracking_uri"], "MLFLOW_EXPERIMENT_NAME": cfg["experiment"]}


# --- names and values within MLflow's limits ----------------------------------------------------------------


def name(key: str) -> str:
    """A param or metric name MLflow accepts: letters, digits, `_ - . / ` and space; no `//`, no leading `/`."""
    out = _BAD_NAME_CHARS.sub("_", str(key))
    out = re.sub(r"/{2,}", "/", out).strip("/") or "_"
    out = "/".join("_" if part in (".", "..") else part for part in out.split("/"))
    return out[:MAX_KEY]


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_PARAM_VALUE:
        suffix = f"... ({len(text):,} characters)"
        text = text[: MAX_PARAM_VALUE - len(suffix)] + suffix
    return text


def flatten_params(data: dict, prefix: str = "") -> dict[str, str]:
    """A nested mapping (the resolved spec) as MLflow params: `job.hyperparameters.lr` -> "0.0003". Lists are
    JSON, empty mappings and nulls are left out (nothing to compare), credentials never leave (SECRET_SECTIONS)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path in SECRET_SECTIONS or value is None:
            continue
        if isinstance(value, dict):
            out.update(flatten_params(value, path + "."))
        elif value != []:
            out[name(path)] = _param_value(value)
    return out


def metric_values(record: dict) -> dict[str, float]:
    """The numeric values of a metrics record (metrics.jsonl's names), named as MLflow accepts them."""
    out = {}
    for key, value in record.items():
        if key in ("timestamp", "trial_id") or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[name(key)] = float(value)
    return out


def run_url(tracking_uri: str, experiment_id: str | None, run_id: str | None) -> str | None:
    """The run's page in the MLflow UI (a tracking server over HTTP only)."""
    if not run_id or not experiment_id or not tracking_uri.lower().startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


# --- the submitting side's check ------------------------------------------------------------------------------


@contextlib.contextmanager
def _client_env(extra: dict[str, str]) -> Iterator[None]:
    """Set variables for the MLflow client for a moment (and restore them): no retries, a short timeout, the
    job's credentials where the user gave them in `job.env_vars` only."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _reason(e: Exception) -> str:
    text = str(e)
    for pattern in (r"\[Errno -?\d+\] ([^\"')]+)", r"(Read timed out[^\"')]*)", r"(Connect timeout[^\"')]*)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip().rstrip(".")
    return shorten(text.splitlines()[0] if text else type(e).__name__, 200)


def _is_loopback(uri: str) -> bool:
    host = (urllib.parse.urlparse(uri).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _local_path(uri: str) -> Path | None:
    """The folder or database file of a local store (`/abs/mlruns`, `file:///abs/mlruns`, `sqlite:///abs.db`)."""
    if uri.lower() in ("databricks", "databricks-uc"):
        return None
    if "://" not in uri and ":" not in uri.split("/", 1)[0]:
        return Path(os.path.expanduser(uri))
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "sqlite":  # SQLAlchemy's form: the path is what follows `sqlite:///` (4 slashes: absolute)
        return Path(urllib.parse.unquote(uri.split("///", 1)[1] if "///" in uri else parsed.path))
    return None


def _check_local(path: Path, where: str, sqlite: bool) -> None:
    """A file store's folder is made by MLflow (its nearest existing parent must take a file); an SQLite
    database's folder must exist."""
    import tempfile

    folder = path.parent if sqlite else path
    existing = folder if sqlite else next((p for p in (folder, *folder.parents) if p.exists()), folder)
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    else:
        try:  # permissions, read-only and special filesystems (/proc): only a real write tells
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".rlo-probe-"):
                pass
        except OSError as e:
            problem = f"cannot write in {existing} ({e.strerror or e})"
    if problem:
        raise UserError(
            f"the MLflow store {path} ({where}) cannot be written: {problem}",
            fix="give a folder you can write to, or a tracking server's URL (`http://HOST:5000`)",
        )


def check(spec, *, remote: bool = False) -> list[str]:
    """Before submission (`rlo submit`, `rlo plan --check`): the spec's tracking store must be reachable, the
    experiment usable. Returns notices; raises a UserError naming the URI and the fix. `remote`: the job runs on
    another machine (a cluster address), where a loopback or local-path URI means that machine."""
    cfg = settings_of(spec)
    if cfg is None:
        return []
    uri, experiment = cfg["tracking_uri"], cfg["experiment"]
    where = "`tracking.mlflow.tracking_uri`"
    notices = []
    local = _local_path(uri)
    if local is not None:
        if not local.is_absolute():
            raise UserError(
                f"the MLflow store {uri} ({where}) is a relative path: the job runs in another folder",
                fix="give an absolute path (`sqlite:////data/mlflow.db`, four slashes) or a tracking server's URL",
            )
        _check_local(local, where, sqlite=uri.startswith("sqlite:"))
        if remote:
            notices.append(f"MLflow store {local} is a path: the job writes it on the cluster's head, not here")
        return notices
    if remote and _is_loopback(uri):
        notices.append(f"MLflow tracking URI {uri} is a loopback address: the job on the cluster needs a server there")
    job_vars = {k: v for k, v in (spec.job.env_vars or {}).items() if k in CREDENTIAL_VARS and k not in os.environ}
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise UserError(
            "the spec has `tracking.mlflow`, but MLflow's client is not installed here",
            fix="`pip install mlflow-skinny` (a dependency of rl-orchestrator: reinstall it with scripts/install.sh)",
        ) from None
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CHECK_TIMEOUT_S), **job_vars}
    try:
        with _client_env(env):
            found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    except Exception as e:  # MlflowException, or a plugin's own error for azureml:// / arn:...
        text = str(e)
        if re.search(r"\b(401|403)\b", text) or "PERMISSION_DENIED" in text or "UNAUTHENTICATED" in text:
            raise UserError(
                f"the MLflow tracking server {uri} ({where}) refused the credentials: {_reason(e)}",
                fix="set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) in "
                "`job.env_vars` for the job and in this shell for the check",
            ) from None
        if "registered tracking store" in text or "unsupported uri" in text.lower():
            raise UserError(
                f"MLflow has no tracking store for {uri} ({where}): {_reason(e)}",
                fix="install the store's plugin here and for the job (`job.pip`): `azureml-mlflow` for azureml://, "
                "`sagemaker-mlflow` for arn:aws:sagemaker:...",
            ) from None
        if re.search(r"error code (404|405)\b", text):
            raise UserError(
                f"{uri} ({where}) answers, but not as an MLflow tracking server: {_reason(e)}",
                fix="give the server's base URL (the one its UI is at, e.g. `http://HOST:5000`)",
            ) from None
        if not uri.lower().startswith(("http://", "https://")):
            raise UserError(
                f"MLflow cannot use the tracking URI {uri} ({where}): {_reason(e)}",
                fix="check the URI and its credentials here and for the job (`job.env_vars`): for `databricks`, "
                "DATABRICKS_HOST and DATABRICKS_TOKEN (or `databricks auth login`)",
            ) from None
        raise UserError(
            f"the MLflow tracking server {uri} ({where}) cannot be reached: {_reason(e)}",
            fix="start it (e.g. `mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db`) "
            "or correct the URI; the job must reach it too",
        ) from None
    if found is not None and found.lifecycle_stage == "deleted":
        raise UserError(
            f"the MLflow experiment `{experiment}` on {uri} was deleted (runs cannot be logged to it)",
            fix=f"restore it (`mlflow experiments restore --experiment-id {found.experiment_id}`) or give another "
            "`tracking.mlflow.experiment`",
        )
    return notices
