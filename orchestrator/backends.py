"""Where jobs run. Every Ray cluster, the embedded local one included, is reached through Ray's Job Submission
API, so status, logs, stop and attach come from the engine itself."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from .errors import EngineError, UserError
from .local_ray import LocalRayManager
from .polling import poll

_QUIET_SDK_LOGGERS = (
    "ray.dashboard.modules.dashboard_sdk",
    "ray.dashboard.modules.job.sdk",
    "ray._private.runtime_env.packaging",
)

EMBEDDED = "ray-local"
REMOTE = "ray"

# Ray job status -> our run status (the same names, plus the ones only we have).
_STATUS = {
    "PENDING": "PENDING",
    "RUNNING": "RUNNING",
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "STOPPED": "STOPPED",
}


_LABEL = r"[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


def _normalize_address(address: str) -> str:
    """A Ray dashboard address as the Job API takes it (`http(s)://HOST[:PORT]`), or a UserError saying why not."""
    fix = "give the dashboard address of the cluster's head, e.g. `http://10.0.0.4:8265` or `127.0.0.1:8265`"
    given = address
    address = (address or "").strip()
    if address.startswith("ray://"):
        raise UserError(
            f"`{address}` is a Ray Client address; rl-orchestrator submits through the Job API",
            fix="give the dashboard address instead, e.g. `http://HOST:8265`",
        )
    if "://" not in address:
        address = "http://" + address
    try:
        parts = urllib.parse.urlsplit(address)
        port = parts.port
    except ValueError as e:
        raise UserError(f"the address {given!r} is not a valid address: {e}", fix=fix) from None
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        valid_host = True
    except ValueError:
        valid_host = bool(_HOST.match(host))
    if parts.scheme not in ("http", "https") or not valid_host or parts.query or parts.fragment or parts.username:
        raise UserError(f"the address {given!r} is not a valid address (`http(s)://HOST[:PORT]`)", fix=fix)
    if port == 0:
        raise UserError(f"the address {given!r}: port 0 is not a port", fix=fix)
    return address.rstrip("/")


def _gist(text: str) -> str:
    """The line of an engine's error that says what went wrong: for a server-side traceback (the Job API returns
    them in a 500's body), its last line, not "Traceback (most recent call last):"."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    if "Traceback (most recent call last)" not in text:
        return lines[0]
    head = lines[0].split("Traceback (most recent call last)")[0].strip()
    raised = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b:", ln)]
    cause = raised[-1] if raised else lines[-1]
    return f"{head} {cause}" if head else cause


class JobNotFound(EngineError):
    """The engine does not know the job."""


def _token_for_remote(token: str | None) -> str | None:
    """The bearer token for a remote cluster: the flag, else Ray's own sources (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), as Ray's CLI finds them."""
    if token:
        return token.strip()
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
        if path and Path(path).is_file():
            return Path(path).read_text().strip()
    return None


@dataclass
class RayJobsBackend:
    """A Ray cluster reached through its Job Submission API (dashboard address)."""

    name: str
    address: str
    headers: dict[str, str]

    @classmethod
    def embedded(cls, ensure: bool = True, quiet: bool = False) -> RayJobsBackend:
        mgr = LocalRayManager()
        local = mgr.ensure(quiet=quiet) if ensure else mgr.current()
        if local is None:
            raise EngineError(
                "the embedded Ray is not running",
            )
        return cls(EMBEDDED, local.dashboard_url, local.headers())

    @classmethod
    def remote(cls, address: str, token: str | None = None) -> RayJobsBackend:
        tok = _token_for_remote(token)
        return cls(REMOTE, _normalize_address(address), {"Authorization": f"Bearer {tok}"} if tok else {})

    @classmethod
    def for_record(cls, backend: str, address: str | None, token: str | None = None) -> RayJobsBackend:
        """The backend a registered run was submitted to (the embedded Ray must still be up)."""
        if backend == EMBEDDED:
            local = LocalRayManager().current()
            if local is None:
                raise EngineError(
                    "the embedded Ray this run was submitted to is not running (it was shut down or the machine "
                    "restarted); the run's record and files are kept"
                )
            return cls(EMBEDDED, local.dashboard_url, local.headers())
        return cls.remote(address or "", token)

    # --- the Job API -----------------------------------------------------------------------------------------

    def client(self):
        from ray.job_submission import JobSubmissionClient

        # The Job SDK's own INFO lines in this process ("Uploading package ...", "WebSocket closed ...") are the
        # engine's chatter, not the tool's view; warnings and errors still show.
        for name in _QUIET_SDK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            return JobSubmissionClient(self.address, headers=dict(self.headers))
        except Exception as e:  # connection refused, auth, version
            raise self._translate(e) from None

    def _translate(self, e: Exception) -> Exception:
        text = str(e)
        kind = type(e).__name__
        if kind == "AuthenticationError" or "401" in text or "403" in text or "Unauthorized" in text:
            missing = "Missing" in text or not self.headers
            return UserError(
                f"the Ray cluster at {self.address} refused the request: "
                + ("no authentication token was sent" if missing else "the authentication token is wrong"),
                fix="pass the cluster's token with `--token` (or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH); "
                "`ray get-auth-token` on the head prints it",
            )
        if "Connection" in text or "Failed to connect" in text or "refused" in text:
            return EngineError(f"cannot reach the Ray Job API at {self.address}: {text.splitlines()[0]}")
        return EngineError(f"the Ray Job API at {self.address} failed: {kind}: {_gist(text)}")

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:
            if "does not exist" in str(e):
                raise JobNotFound(f"the Ray cluster at {self.address} has no such job: {e}") from None
            raise self._translate(e) from None
        except Exception as e:
            raise self._translate(e) from None

    def submit(
        self, *, job_id: str, entrypoint: str, runtime_env: dict, metadata: dict, agent_wait_s: float = 60.0
    ) -> str:
        c = self.client()
        # A head that just started answers before its node agent has registered: wait for it.
        retrying = Retrying(
            retry=retry_if_exception(lambda e: "No available agent" in str(e)),
            stop=stop_after_delay(agent_wait_s),
            wait=wait_fixed(1.0),
            reraise=True,
        )
        try:
            return retrying(
                c.submit_job,
                entrypoint=entrypoint,
                submission_id=job_id,
                runtime_env=runtime_env,
                metadata={k: str(v) for k, v in metadata.items()},
            )
        except Exception as e:
            raise self._translate(e) from None

    def job_exists(self, job_id: str, timeout_s: float = 10.0) -> bool:
        """Whether the engine knows `job_id` (a submission id); bounded in time, for roll-backs."""
        req = urllib.request.Request(f"{self.address}/api/jobs/{urllib.parse.quote(job_id)}", headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return r.status == 200
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return False
            raise self._translate(RuntimeError(f"{e.code} {e.reason}")) from None
        except (urllib.error.URLError, OSError) as e:
            raise self._translate(RuntimeError(f"Failed to connect: {e}")) from None

    def status(self, job_id: str) -> tuple[str, str | None]:
        info = self._call(self.client().get_job_info, job_id)
        return _STATUS.get(str(info.status), str(info.status)), info.message

    def info(self, job_id: str):
        return self._call(self.client().get_job_info, job_id)

    def logs(self, job_id: str) -> str:
        return self._call(self.client().get_job_logs, job_id)

    def tail(self, job_id: str) -> AsyncIterator[str]:
        return self.client().tail_job_logs(job_id)

    def stop(self, job_id: str) -> bool:
        return self._call(self.client().stop_job, job_id)

    # --- resources -------------------------------------------------------------------------------------------

    def _get_json(self, path: str) -> Any:
        req = urllib.request.Request(self.address + path, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise self._translate(RuntimeError(f"{e.code} {e.reason}")) from None
        except (urllib.error.URLError, OSError) as e:
            raise self._translate(RuntimeError(f"Failed to connect: {e}")) from None

    def nodes(self) -> list[dict]:
        """The cluster's alive nodes, from Ray's state API: id, ip, resources, labels."""
        data = self._get_json("/api/v0/nodes?limit=1000&detail=true")
        rows = data.get("data", {}).get("result", {}).get("result", [])
        return [n for n in rows if n.get("state") == "ALIVE"]

    def resources(self, wait_s: float = 30.0) -> tuple[float, float]:
        """(CPUs, GPUs) the cluster has in total. A cluster that just started may list no node for a moment."""
        nodes = poll(self.nodes, bool, wait_s, 0.5)
        cpus = gpus = 0.0
        for n in nodes:
            res = n.get("resources_total") or {}
            cpus += float(res.get("CPU", 0))
            gpus += float(res.get("GPU", 0))
        return cpus, gpus

    def describe(self) -> str:
        return (
            f"the embedded local Ray ({self.address})"
            if self.name == EMBEDDED
            else f"the Ray cluster at {self.address}"
        )
