"""Serving a trained policy over HTTP with Ray Serve, and the `Predictor` that calls it (SageMaker's
`estimator.deploy()` / `predictor.predict()`).

    predictor = attach(run_id).deploy()            # rlo deploy RUN [--checkpoint best|latest|PATH]
    predictor.predict(obs)                         # POST URL/predict -> actions
    predictor.query(obs, probabilities=True, values=True)
    predictor.undeploy()                           # rlo undeploy NAME

Every endpoint is a Serve application on the embedded Ray, under its own route prefix
(``http://127.0.0.1:8000/NAME/predict``). All endpoints share Serve's one HTTP proxy, which binds 127.0.0.1
unless the user asks for another host. Each replica also answers HTTP itself on its own port, same host (Serve's
direct ingress, see SERVE_ENV_VARS): `Predictor` sends its requests there, 5-7x faster than through the proxy.
What is deployed is recorded in the registry (`rlo endpoints`); the applications outlive the command that
deployed them, like jobs do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import http.client
import ipaddress
import itertools
import json
import logging
import math
import numbers
import os
import re
import secrets
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineError, UserError, did_you_mean
from .registry import EndpointRecord, Registry
from .settings import settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
NAME_PATTERN = re.compile(r"^[a-z0-9][-a-z0-9_.]{0,62}$")
CHECKPOINT_CHOICES = ("latest", "best")
MAX_BATCH_SIZE = 4096  # requests in one forward pass (as many as one request may carry observations)
MAX_BATCH_WAIT_S = 60.0  # longer, and a lone request waits a minute for company
MAX_BODY_MB = 1024.0


class PredictionError(UserError):
    """The endpoint refused a request (4xx): `status` and the endpoint's reason."""

    def __init__(self, status: int, detail: str, url: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{url} refused the request ({status}): {detail}")


@dataclass
class Prediction:
    """What `Predictor.query` returns; `action_probabilities` / `values` are None unless asked for."""

    actions: np.ndarray
    action_probabilities: Any = None
    values: np.ndarray | None = None


# --- the client ---------------------------------------------------------------------------------------------------


class Predictor:
    """A client of a deployed policy endpoint. One observation or a batch in, actions out.

    `predict(obs)` tells one observation from a batch by the observation space's shape (from /info, fetched
    once). `url` is the endpoint's stable address (Serve's proxy); `direct_urls`, when deploy found them, are its
    replicas' own HTTP servers (Serve's direct ingress), which answer the same routes without the hop through
    the proxy: requests go there (each thread to one replica), and back to `url` if a replica stops answering.
    One kept-alive connection per thread and server, on the standard library's http.client (`requests` cost
    more CPU per call than a whole answer of the replica; see benchmarks/serving_profile.py)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        name: str | None = None,
        timeout: float = 30,
        direct_urls: list[str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.direct_urls = [u.rstrip("/") for u in direct_urls or []]
        self.name = name
        self.timeout = timeout
        self._api_key = api_key
        self._local = threading.local()
        self._threads = itertools.count()
        self._info: dict | None = None

    def __repr__(self) -> str:
        return f"Predictor({self.url!r})"

    @classmethod
    def attach(cls, name: str, api_key: str | None = None) -> Predictor:
        """A client for the live endpoint `name` (its API key is read from the key file it was deployed with)."""
        rec = _live_endpoint(Registry(settings().registry_path), name)
        if api_key is None and rec.extra.get("api_key_file"):
            with contextlib.suppress(OSError):
                api_key = Path(rec.extra["api_key_file"]).read_text().strip()
        return cls(rec.url, api_key, name=rec.name, direct_urls=rec.extra.get("direct_urls"))

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def _base(self) -> str:
        """This thread's server: one of the replicas' (spread over threads), else the proxy's URL."""
        base = getattr(self._local, "base", None)
        if base is None:
            urls = self.direct_urls or [self.url]
            base = self._local.base = urls[next(self._threads) % len(urls)]
        return base

    def _connection(self, base: str, fresh: bool = False) -> tuple[http.client.HTTPConnection, str]:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        if fresh and base in conns:
            conns.pop(base)[0].close()
        if base not in conns:
            parts = urllib.parse.urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UserError(f"`{base}` is not an http(s) URL", fix="give the endpoint's URL (`rlo endpoints`)")
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conns[base] = (kind(parts.hostname, parts.port, timeout=self.timeout), parts.path)
        return conns[base]

    def _exchange(self, base: str, method: str, route: str, data: bytes | None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        for attempt in (0, 1):
            conn, path = self._connection(base, fresh=attempt > 0)
            reused = conn.sock is not None
            try:
                conn.request(method, f"{path}/{route}", body=data, headers=headers)
                r = conn.getresponse()
                body = r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed the kept-alive connection in between: once more on a new one
                raise
            except Exception:
                conn.close()  # a connection in an unknown state is not used again
                raise
            if r.will_close:
                conn.close()
            return r.status, body
        raise AssertionError("unreachable")

    def _request(self, method: str, route: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        base = self._base()
        try:
            try:
                status, text = self._exchange(base, method, route, data)
            except ConnectionError:  # refused, reset (not a timeout: that request may still be running)
                if base == self.url:
                    raise
                # The replica went away (redeployed, restarted on another port): this thread uses the proxy now.
                base = self._local.base = self.url
                status, text = self._exchange(base, method, route, data)
        except (OSError, http.client.HTTPException) as e:
            raise EngineError(f"cannot reach the endpoint at {base}/{route}: {e}") from None
        url = f"{base}/{route}"
        if 400 <= status < 500:
            try:
                detail = json.loads(text).get("detail", text.decode(errors="replace"))
            except (ValueError, AttributeError):
                detail = text.decode(errors="replace")
            raise PredictionError(status, str(detail), url)
        if status >= 500:
            raise EngineError(f"the endpoint at {url} failed ({status}): {text[:500].decode(errors='replace')}")
        return json.loads(text)

    # --- the API ------------------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        try:
            return self._request("GET", "healthz").get("status") == "ok"
        except (EngineError, PredictionError):
            return False

    def info(self) -> dict:
        """Run id, checkpoint, env, observation and action spaces, preprocessing and batching of the endpoint."""
        if self._info is None:
            self._info = self._request("GET", "info")
        return self._info

    def _body(self, obs, **flags) -> tuple[dict, bool]:
        arr = np.asarray(obs)
        shape = tuple(self.info()["observation_space"].get("shape") or ())
        single = arr.shape == shape
        return {("observation" if single else "observations"): arr.tolist(), **flags}, single

    def predict(self, obs, *, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation (returns one action) or a batch (returns a batch of actions)."""
        body, single = self._body(obs, deterministic=deterministic)
        out = self._request("POST", "predict", body)
        return np.asarray(out["action"] if single else out["actions"])

    def query(self, obs, *, probabilities: bool = True, values: bool = True, deterministic: bool = True) -> Prediction:
        """Actions with, when asked, the action probabilities and the value estimates."""
        body, single = self._body(obs, deterministic=deterministic, probabilities=probabilities, values=values)
        return self._prediction(self._request("POST", "predict", body), single)

    def predict_frames(self, frames, *, deterministic: bool = True) -> np.ndarray:
        """Atari endpoints: actions for the last k raw RGB frames (k, H, W, 3), or a batch (N, k, H, W, 3)."""
        arr = np.asarray(frames)
        out = self._request("POST", "predict", {"frames": arr.tolist(), "deterministic": deterministic})
        return np.asarray(out["action"] if arr.ndim == 4 else out["actions"])

    @staticmethod
    def _prediction(out: dict, single: bool) -> Prediction:
        values = out.get("value" if single else "values")
        return Prediction(
            actions=np.asarray(out["action"] if single else out["actions"]),
            action_probabilities=_array_if_rectangular(out.get("action_probabilities")),
            values=np.asarray(values, dtype=float) if values is not None else None,
        )

    def undeploy(self) -> None:
        if not self.name:
            raise UserError(
                "this Predictor was made from a URL, not a deployed endpoint's name", fix="rlo undeploy NAME"
            )
        undeploy(self.name)


def _array_if_rectangular(x):
    """MultiDiscrete probabilities with sub-actions of different sizes stay nested lists."""
    if x is None:
        return None
    try:
        return np.asarray(x, dtype=float)
    except ValueError:
        return x


# --- choosing what to deploy ---------------------------------------------------------------------------------------


def resolve_checkpoint(run, choice: str = "latest") -> tuple[str, dict]:
    """The checkpoint folder to serve for `choice` (latest, best, or a path; see `Run.checkpoint_path`), as an
    absolute path (the replica runs in another folder), and what was chosen (for the record)."""
    from .backends import EMBEDDED
    from .policy import module_dir

    cps = run.checkpoints()
    if choice in CHECKPOINT_CHOICES:
        if cps and run.record.backend != EMBEDDED and not Path(cps[-1].path).exists():
            raise UserError(
                f"run {run.id} ran on the Ray cluster at {run.record.address}: its checkpoints are on that "
                "cluster, not on this machine",
                fix="copy a checkpoint folder here and pass --checkpoint PATH",
            )
    else:
        choice = str(Path(choice).expanduser())
        if not Path(choice).exists():
            raise UserError(
                f"--checkpoint `{choice}`: no such folder",
                fix=did_you_mean(choice, CHECKPOINT_CHOICES)
                or "give `latest`, `best`, or the path of a checkpoint folder (`rlo status RUN` lists them)",
            )
    path = Path(run.checkpoint_path(choice)).resolve()
    module_dir(path)
    iteration = next((c.iteration for c in cps if Path(c.path).resolve() == path), None)
    return str(path), {"choice": choice if choice in CHECKPOINT_CHOICES else "path", "iteration": iteration}


def default_name(run) -> str:
    job = (run.record.spec or {}).get("job") or {}
    base = (job.get("name") or run.id).lower()
    name = re.sub(r"[^-a-z0-9_.]", "-", base).strip("-._")[:63]
    return name or "policy"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UserError(
            f"endpoint name `{name}` is not usable in a URL",
            fix="use lowercase letters, digits, `-`, `_` and `.` (at most 63, starting with a letter or digit; "
            f"the pattern {NAME_PATTERN.pattern})",
        )
    return name


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(
                    f"cannot serve on {host}:{port}: something else listens there",
                    fix="pick another port with --port (or stop what listens there)",
                ) from None
            raise UserError(f"cannot serve on {host}:{port}: {e.strerror or e}", fix=HOST_FIX) from None


HOST_FIX = "give --host an address of this machine: 127.0.0.1 (the default), or 0.0.0.0 for every interface"


def _check_host(host: str) -> None:
    """`host` is an IP address or a name that resolves, and one this machine can listen on (before Ray starts:
    a bad host must not look like a busy port)."""
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host):
        raise UserError(f"--host `{host}` is not a host name or an IP address", fix=HOST_FIX)
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"--host `{host}` does not resolve to an address ({e})", fix=HOST_FIX) from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family) as s:
        try:
            s.bind((addr[0], 0))  # any free port: only whether the address is this machine's
        except OSError as e:
            raise UserError(
                f"--host `{host}` ({addr[0]}) is not an address of this machine: {e.strerror or e}", fix=HOST_FIX
            ) from None


def check_options(
    *,
    host: str | None,
    port: int | None,
    replicas: int,
    num_cpus: float,
    max_batch_size: int,
    batch_wait_timeout_s: float,
    max_body_mb: float | None,
) -> None:
    """The deploy options that can never work, refused before anything is looked up or started."""

    def number(value: float, flag: str, *, integer: bool) -> float:
        kind = numbers.Integral if integer else numbers.Real  # numpy's numbers too
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            raise UserError(
                f"{flag} {value!r} is not {'a whole number' if integer else 'a finite number'}",
                fix=f"give {flag} a {'whole ' if integer else ''}number (`rlo deploy --help` lists the defaults)",
            )
        return value

    if number(replicas, "--replicas", integer=True) < 1:
        raise UserError(f"--replicas {replicas}: an endpoint needs at least 1 replica", fix="--replicas 1 or more")
    if number(num_cpus, "--num-cpus", integer=False) < 0:
        raise UserError(
            f"--num-cpus {num_cpus}: CPUs reserved per replica cannot be negative",
            fix="--num-cpus 0 (the default: reserve none) or more",
        )
    if not 1 <= number(max_batch_size, "--max-batch-size", integer=True) <= MAX_BATCH_SIZE:
        raise UserError(
            f"--max-batch-size {max_batch_size}: the requests batched per forward pass must be 1..{MAX_BATCH_SIZE}",
            fix="--max-batch-size 32 (the default)",
        )
    wait_ms = number(batch_wait_timeout_s, "--batch-wait-ms (batch_wait_timeout_s)", integer=False) * 1000
    if not 0 <= wait_ms <= MAX_BATCH_WAIT_S * 1000:
        raise UserError(
            f"--batch-wait-ms {wait_ms:g}: how long a request waits for others to batch with must be "
            f"0..{MAX_BATCH_WAIT_S * 1000:g} ms",
            fix="--batch-wait-ms 1 (the default)",
        )
    if port is not None and not 1 <= number(port, "--port", integer=True) <= 65535:
        raise UserError(f"--port {port} is not a TCP port", fix=f"give --port 1..65535 (default {DEFAULT_PORT})")
    if max_body_mb is not None and not 0 < number(max_body_mb, "--max-body-mb", integer=False) <= MAX_BODY_MB:
        raise UserError(
            f"--max-body-mb {max_body_mb}: the largest request body must be more than 0 and at most {MAX_BODY_MB} MB",
            fix="leave it out for the default (from the observation size), or give a few MB",
        )
    if host is not None:
        _check_host(host)


def _valid_key(key: str, where: str) -> str:
    key = key.strip()
    if not key:
        raise UserError(f"{where} is empty", fix="put a key in it (or, for a key file, remove it to get a new one)")
    if not re.fullmatch(r"[\x21-\x7e]+", key):
        raise UserError(
            f"{where} holds spaces or characters that an HTTP header cannot carry",
            fix="use printable ASCII without spaces (a key file that does not exist gets a random one)",
        )
    return key


def _read_key_file(path: Path) -> str:
    """The key in `path`, or a UserError naming the file and the fix."""
    if path.is_dir():
        raise UserError(
            f"--api-key-file {path} is a folder, not a key file", fix="give the path of a file (it is made if missing)"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"the API key file {path} is not text", fix="put the key in it as one line of text") from None
    except OSError as e:
        raise UserError(
            f"cannot read the API key file {path}: {e.strerror or e}",
            fix="make it readable by this user (chmod 600), or give another --api-key-file",
        ) from None
    return _valid_key(text, f"the API key file {path}")


def resolve_api_key(api_key: str | None, api_key_file: str | None) -> tuple[str | None, str | None]:
    """(key, key file). A key file that does not exist yet gets a new random key (mode 600)."""
    if api_key and api_key_file:
        raise UserError("give either an API key or an API key file, not both")
    if api_key_file:
        path = Path(api_key_file).expanduser().resolve()
        if not path.exists() and not path.is_symlink():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(32) + "\n")
            except OSError as e:
                raise UserError(
                    f"cannot write a new API key to {path}: {e.strerror or e}",
                    fix="give --api-key-file a path in a folder you can write to",
                ) from None
        return _read_key_file(path), str(path)
    if api_key is not None:
        return _valid_key(api_key, "the API key (--api-key)"), None
    return None, None


def _kept_key(previous: EndpointRecord) -> tuple[str | None, str | None, str, str]:
    """The API key of the live endpoint a redeploy replaces: (key if known, key file, digest, what to tell).

    A key file is read again (it is where the key lives; a key changed in it counts); without one (a key given
    with --api-key) the replica keeps the recorded digest of the key."""
    from .serving_endpoint import key_digest

    key_file, digest = previous.extra.get("api_key_file"), previous.extra.get("api_key_sha256")
    if key_file and Path(key_file).is_file():
        key = _read_key_file(Path(key_file))
        return key, key_file, key_digest(key), f"the API key in {key_file}"
    if digest:
        lost = f" (its key file {key_file} is gone)" if key_file else ""
        return None, key_file, digest, f"the API key it was deployed with{lost}"
    raise UserError(
        f"endpoint `{previous.name}` requires an API key, and its record does not say which (the key file "
        f"{key_file} is gone)"
        if key_file
        else f"endpoint `{previous.name}` requires an API key, and its record does not say which",
        fix="give the key again (--api-key-file FILE or --api-key KEY), or --no-api-key to serve it without one",
    )


# --- talking to Serve on the embedded Ray ----------------------------------------------------------------------


@contextlib.contextmanager
def _lock():
    """One deploy/undeploy at a time on this machine's embedded Ray (they read and change Serve's state)."""
    path = settings().local_ray_dir / "serving.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _ray_session(local, quiet: bool = True):
    """Connect this process to the embedded Ray as a driver (token auth), and disconnect after.

    The Serve applications live on in the cluster (Serve's controller is a detached actor)."""
    import importlib

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = local.token_path
    os.environ.pop("RAY_AUTH_TOKEN", None)  # the embedded Ray's token file is the one source
    ray = importlib.import_module("ray")
    importlib.import_module("ray.serve")  # it sets up its logger when imported: quiet it after that
    owned = not ray.is_initialized()
    if owned:
        _reload_ray_auth()
    if quiet:
        for name in ("ray", "ray.serve"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if owned:
            try:
                from .local_ray import loopback_driver

                with loopback_driver():  # the embedded Ray listens on 127.0.0.1 only
                    ray.init(address=local.gcs_address, logging_level=logging.WARNING, log_to_driver=False)
            except Exception as e:
                raise EngineError(f"cannot connect to the embedded Ray at {local.gcs_address}: {e}") from None
        yield ray
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if owned:
            _reload_ray_auth()


def _reload_ray_auth() -> None:
    # Ray reads RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH into its C++ config and token cache when it is first
    # imported; refresh both so the variables set (or restored) here count even when Ray was imported before.
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # _raylet.pyi lists few

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _serve_client():
    from ray.serve.context import _get_global_client

    return _get_global_client(raise_if_no_controller_running=False)


# Serve's own options for a fast HTTP path, given to its controller when deploy starts Serve (its proxy and
# replicas inherit the controller's environment). Measured in benchmarks/serving_profile.py: through the proxy
# every /predict makes two actor calls (proxy -> replica, and the replica back to the proxy for the body), most of
# an 11 ms request; with direct ingress each replica answers HTTP itself on its own port.
SERVE_ENV_VARS = {
    # Each ingress replica runs its own HTTP server (on the proxy's host, a port from 30000 up); the proxy stays
    # on its port for the endpoint's stable URL.
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    # Nothing sits in front of the replicas to deregister them from (no HAProxy): no 30 s hold-open on undeploy.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    # The replica's request handling on its main event loop, where its HTTP server runs: no thread hop per request.
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    # Access-log lines written in batches, not one file write per request.
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
}


def _start_serve(host: str | None, port: int | None, registry: Registry) -> tuple[str, int]:
    """Serve's proxy address: the running one (refusing a different one asked for), or a new one."""
    from ray import serve

    client = _serve_client()
    if client is not None:
        cfg = client.http_config
        if (host and host != cfg.host) or (port and port != cfg.port):
            live = [e.name for e in registry.endpoints()]
            raise UserError(
                f"Serve on the embedded Ray already listens on {cfg.host}:{cfg.port}"
                + (f" (endpoints: {', '.join(live)})" if live else "")
                + f"; every endpoint shares it, so it cannot also listen on {host or cfg.host}:{port or cfg.port}",
                fix=f"leave out --host/--port (or use --host {cfg.host} --port {cfg.port}), "
                "or `rlo undeploy --all` first",
            )
        return cfg.host, cfg.port
    host, port = host or DEFAULT_HOST, port or DEFAULT_PORT
    _check_port_free(host, port)
    serve.start(
        http_options={"host": host, "port": port},
        controller_options={"runtime_env": {"env_vars": dict(SERVE_ENV_VARS)}},
    )
    return host, port


def _direct_urls(name: str, host: str, replicas: int, timeout_s: float = 10.0) -> list[str]:
    """The HTTP servers of application `name`'s replicas (direct ingress), from Serve's routing table; none when
    the running Serve was started without direct ingress (the proxy's URL serves alone then)."""
    import ray

    url_host = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    url_host = f"[{url_host}]" if ":" in url_host else url_host
    deadline = time.monotonic() + timeout_s
    urls: list[str] = []
    while True:
        try:
            # The routing table the controller keeps for load balancers; the proxy is listed when there is none.
            groups = ray.get(_serve_client()._controller.get_target_groups.remote(app_name=name), timeout=10)
        except Exception:
            return []
        urls = sorted(
            f"http://{url_host}:{t.port}/{name}"
            for g in groups
            if getattr(g, "app_name", None) == name
            for t in g.targets
            if str(getattr(t, "name", "")).startswith("SERVE_REPLICA::")
        )
        # The controller registers a new replica's port in its next control-loop tick.
        if len(urls) >= replicas or time.monotonic() > deadline:
            return urls if len(urls) >= replicas else []
        time.sleep(0.1)


def _root_cause(text: str) -> str:
    """The last `SomeError: message` line of a replica's traceback."""
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*[\w.]*(Error|Exception)\b.*:", ln)]
    return lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else "unknown error"


def _app_error(name: str) -> str:
    from ray import serve

    try:
        app = serve.status().applications.get(name)
    except Exception:
        return ""
    if app is None:
        return ""
    parts = [app.message] + [d.message for d in app.deployments.values() if d.message]
    return "\n".join(p for p in parts if p)


def deploy(
    run,
    *,
    checkpoint: str = "latest",
    name: str | None = None,
    host: str | None = None,
    port: int | None = None,
    api_key: str | None = None,
    api_key_file: str | None = None,
    no_api_key: bool = False,
    replicas: int = 1,
    num_cpus: float = 0,
    max_batch_size: int = 32,
    batch_wait_timeout_s: float = 0.001,
    max_body_mb: float | None = None,
    quiet: bool = True,
    notices_out: list[str] | None = None,
    server_timing: bool = False,
) -> Predictor:
    """Serve a run's policy over HTTP on the embedded Ray; returns a `Predictor` for it.

    `run`: a `Run` (`Run.deploy` calls this), or a function that returns one: it is called once every option
    has been checked, so a bad option is refused before the run is looked up (`rlo deploy` passes one).

    `host`/`port`: where Serve's HTTP proxy listens (127.0.0.1:8000 unless asked; every endpoint shares it).
    Anything but a loopback host makes the endpoint reachable from other machines: give an API key then.
    Redeploying a name keeps that endpoint's API key unless a new one is given or `no_api_key` asks for none.
    `num_cpus` reserves CPUs for each replica (0: it never holds back a training job on a small machine).
    `max_body_mb`: the largest /predict body (default: from the observation size, 1 to 8 MB).
    `notices_out` collects what the user should know (an endpoint replaced, a key kept, an exposed host).
    `server_timing`: /predict answers carry a `Server-Timing` header with the replica's time per phase (for
    profiling: benchmarks/serving_profile.py)."""
    from .backends import EMBEDDED
    from .envs import is_atari
    from .local_ray import LocalRayManager
    from .serving_endpoint import key_digest

    # Everything that can be refused is refused before the run is looked up and before Ray or Serve start.
    check_options(
        host=host,
        port=port,
        replicas=replicas,
        num_cpus=num_cpus,
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_timeout_s,
        max_body_mb=max_body_mb,
    )
    if name is not None:
        check_name(name)
    if no_api_key and (api_key or api_key_file):
        raise UserError("give an API key (--api-key / --api-key-file) or --no-api-key, not both")
    key, key_file = resolve_api_key(api_key, api_key_file)
    digest = key_digest(key) if key else None

    if isinstance(run, str):
        raise UserError(
            f"deploy() takes a Run, not the run id `{run}`",
            fix=f"orchestrator.attach({run!r}).deploy(...), or `rlo deploy {run}`",
        )
    if callable(run):
        run = run()
    path, chosen = resolve_checkpoint(run, checkpoint)
    name = check_name(name or default_name(run))
    registry = Registry(settings().registry_path)
    previous = registry.endpoint(name)
    notices = []
    if previous is not None and previous.extra.get("api_key_required") and digest is None:
        if no_api_key:
            notices.append(f"endpoint `{name}` no longer needs an API key (--no-api-key)")
        else:
            key, key_file, digest, which = _kept_key(previous)
            notices.append(
                f"endpoint `{name}` keeps {which}: a redeploy keeps the key unless given a new one "
                "(--api-key-file / --api-key) or --no-api-key"
            )

    # The env and training-side preprocessing (observation scaling, Atari frames) the policy was trained with.
    trained = run.policy_info()
    env_id = trained.get("env")
    env_config = dict(trained.get("env_config") or {})
    atari = atari_preprocessing(run.record.spec, env_config) if env_id and is_atari(env_id) else None

    config = {
        "name": name,
        "run_id": run.id,
        "checkpoint": path,
        "env": env_id,
        "env_config": env_config,
        "algorithm": trained.get("algorithm"),
        "atari": atari,
        "api_key_sha256": digest,
        "replicas": int(replicas),
        "num_cpus": float(num_cpus),
        "torch_threads": max(1, int(num_cpus)),
        "max_batch_size": int(max_batch_size),
        "batch_wait_timeout_s": float(batch_wait_timeout_s),
        "max_body_bytes": int(max_body_mb * 2**20) if max_body_mb is not None else None,
        "server_timing": bool(server_timing),
    }
    local = LocalRayManager().ensure(quiet=quiet)
    with _lock(), _ray_session(local, quiet=quiet):
        from ray import serve

        from .serving_endpoint import build

        bound_host, bound_port = _start_serve(host, port, registry)
        try:
            handle = serve.run(build(config), name=name, route_prefix=f"/{name}")
            # From the replica itself, over Ray: no HTTP key needed (a kept --api-key is not known here).
            info = handle.describe.remote().result(timeout_s=60)
            direct = _direct_urls(name, bound_host, int(replicas))
        except Exception as e:
            why = _app_error(name) or f"{type(e).__name__}: {e}"
            with contextlib.suppress(Exception):
                serve.delete(name)
                if not serve.status().applications:
                    serve.shutdown()  # Serve was there only for this endpoint
            registry.mark_undeployed(name)
            raise EngineError(
                f"the endpoint `{name}` failed to start: {_root_cause(why)}"
                + (f"\n{why.strip()[-4000:]}" if not quiet else "\n  (--verbose shows the replica's traceback)")
            ) from None

    url_host = DEFAULT_HOST if bound_host in ("0.0.0.0", "::", "") else bound_host
    url_host = f"[{url_host}]" if ":" in url_host else url_host
    url = f"http://{url_host}:{bound_port}/{name}"
    replaced = registry.add_endpoint(
        EndpointRecord(
            name=name,
            run_id=run.id,
            checkpoint=path,
            url=url,
            backend=EMBEDDED,
            address=local.dashboard_url,
            created_at=time.time(),
            extra={
                **chosen,
                "host": bound_host,
                "port": bound_port,
                "exposed": not is_loopback(bound_host),
                "api_key_required": digest is not None,
                "api_key_file": key_file,
                # What a redeploy keeps when the key was given with --api-key (a hash: the key is never stored).
                "api_key_sha256": digest,
                "env": env_id,
                "replicas": int(replicas),
                "num_cpus": float(num_cpus),
                "max_batch_size": int(max_batch_size),
                "batch_wait_timeout_s": float(batch_wait_timeout_s),
                "max_body_bytes": info.get("max_body_bytes"),
                "direct_urls": direct,
            },
        )
    )
    if replaced is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(replaced.created_at))
        notices.insert(
            0,
            f"endpoint `{name}` replaced the one deployed {when} "
            f"(run {replaced.run_id}, checkpoint {replaced.checkpoint})",
        )
    if not is_loopback(bound_host):
        ports = ", ".join(str(urllib.parse.urlsplit(u).port) for u in direct)
        notices.append(
            f"Serve listens on {bound_host}"
            + (f" (port {bound_port}, and the replicas on {ports})" if ports else "")
            + ": the endpoint is reachable from other machines"
            + ("" if digest else ", and it has no API key (--api-key-file)")
        )
    if notices_out is not None:
        notices_out.extend(notices)
    predictor = Predictor(url, key, name=name, direct_urls=direct)
    predictor._info = info
    return predictor


def atari_preprocessing(spec: dict, env_config: dict) -> dict:
    """The frame size and stack training used (envs.make_env; `model.dim` is the seeds' legacy spelling)."""
    legacy = ((((spec or {}).get("job") or {}).get("hyperparameters") or {}).get("model") or {}).get("dim")
    return {"dim": int(env_config.get("dim", legacy or 64)), "framestack": int(env_config.get("framestack", 4))}


def _live_endpoint(registry: Registry, name: str) -> EndpointRecord:
    rec = registry.endpoint(name)
    if rec is None:
        names = [e.name for e in registry.endpoints()]
        raise UserError(
            f"no endpoint `{name}` is deployed",
            fix=did_you_mean(name, names) or ("`rlo endpoints` lists them" if names else "`rlo deploy RUN` makes one"),
        )
    return rec


def undeploy(name: str | None = None, *, all_endpoints: bool = False, quiet: bool = True) -> list[str]:
    """Stop endpoint `name` (or every endpoint). Serve itself stops with the last application."""
    from .local_ray import LocalRayManager

    if name is None and not all_endpoints:
        raise UserError("undeploy() needs an endpoint's name, or all_endpoints=True", fix="`rlo endpoints` lists them")
    registry = Registry(settings().registry_path)
    records = registry.endpoints() if all_endpoints or name is None else [_live_endpoint(registry, name)]
    names = [e.name for e in records]
    direct = [u for e in records for u in (e.extra.get("direct_urls") or [])]
    local = LocalRayManager().current()
    if names and local is not None:
        with _lock(), _ray_session(local, quiet=quiet):
            from ray import serve

            if _serve_client() is not None:
                for n in names:
                    serve.delete(n)
                if not serve.status().applications:
                    serve.shutdown()
        _wait_closed(direct)
    for n in names:  # without the embedded Ray there is nothing left to stop: only the record
        registry.mark_undeployed(n)
    return names


def _wait_closed(urls: list[str], timeout_s: float = 30.0) -> None:
    """Until the replicas' own servers stop listening: Serve reports an application deleted when its replicas are
    told to stop, and a replica's process lets go of its port a moment later."""
    deadline = time.monotonic() + timeout_s
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        while time.monotonic() < deadline:
            try:
                socket.create_connection((parts.hostname, parts.port), timeout=1).close()
            except OSError:
                break  # refused: nothing listens there any more
            time.sleep(0.05)


def probe(url: str, timeout: float = 2.0) -> bool:
    """Whether an endpoint answers /healthz (no Ray connection needed)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def endpoints(include_undeployed: bool = False) -> list[tuple[EndpointRecord, str]]:
    """What is deployed, newest first, with its state: `up`, `not answering`, `gone` (the embedded Ray it ran
    on has stopped: it cannot come back), or `undeployed`."""
    from .backends import EMBEDDED
    from .local_ray import LocalRayManager

    local = LocalRayManager().current()
    out = []
    for rec in Registry(settings().registry_path).endpoints(include_undeployed=include_undeployed):
        if not rec.live:
            state = "undeployed"
        elif rec.backend == EMBEDDED and (local is None or rec.address != local.dashboard_url):
            state = "gone (its Ray stopped)"
        else:
            state = "up" if probe(rec.url) else "not answering"
        out.append((rec, state))
    return out
