"""Serve on this machine's embedded Ray: one deploy/undeploy at a time (a lock file), a driver session, Serve's
start-up and its routing table (the replicas' own addresses), an application's errors, and stopping endpoints
(`undeploy`). Ray is imported only inside the functions that need it.

Every endpoint is a Serve application on the embedded Ray, under its own route prefix
(``http://127.0.0.1:8000/NAME/predict``). All endpoints share Serve's one HTTP proxy, which binds 127.0.0.1
unless the user asks for another host. Each replica also answers HTTP itself on its own port, same host (Serve's
direct ingress, see SERVE_ENV_VARS). The applications outlive the command that deployed them, like jobs do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import urllib.parse

from filelock import BaseFileLock, FileLock

from .errors import EngineError, UserError, did_you_mean
from .local_ray import LocalRayManager
from .records import EndpointRecord
from .registry import Registry
from .serving_options import DEFAULT_HOST, DEFAULT_PORT, check_port_free
from .settings import settings


def serving_lock() -> BaseFileLock:
    """One deploy/undeploy at a time on this machine's embedded Ray (they read and change Serve's state): `with
    serving_lock():` waits, without a time limit, for the exclusive lock on the embedded Ray's serving.lock. A new
    lock each call, so two threads of one process wait for each other too."""
    path = settings().local_ray_dir / "serving.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


@contextlib.contextmanager
def ray_session(local, quiet: bool = True):
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


def serve_client():
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


def start_serve(host: str | None, port: int | None, registry: Registry) -> tuple[str, int]:
    """Serve's proxy address: the running one (refusing a different one asked for), or a new one."""
    from ray import serve

    client = serve_client()
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
    check_port_free(host, port)
    serve.start(
        http_options={"host": host, "port": port},
        controller_options={"runtime_env": {"env_vars": dict(SERVE_ENV_VARS)}},
    )
    return host, port


def direct_urls(name: str, host: str, replicas: int, timeout_s: float = 10.0) -> list[str]:
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
            groups = ray.get(serve_client()._controller.get_target_groups.remote(app_name=name), timeout=10)
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


def app_error(name: str) -> str:
    """What Serve says of application `name` (its and its deployments' messages), or "" when it says nothing."""

    from ray import serve

    try:
        app = serve.status().applications.get(name)
    except Exception:
        return ""
    if app is None:
        return ""
    parts = [app.message] + [d.message for d in app.deployments.values() if d.message]
    return "\n".join(p for p in parts if p)


def live_endpoint(registry: Registry, name: str) -> EndpointRecord:
    """The live endpoint `name`, or a UserError that names the ones there are."""
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

    if name is None and not all_endpoints:
        raise UserError("undeploy() needs an endpoint's name, or all_endpoints=True", fix="`rlo endpoints` lists them")
    registry = Registry(settings().registry_path)
    records = registry.endpoints() if all_endpoints or name is None else [live_endpoint(registry, name)]
    names = [e.name for e in records]
    direct = [u for e in records for u in (e.extra.get("direct_urls") or [])]
    local = LocalRayManager().current()
    if names and local is not None:
        with serving_lock(), ray_session(local, quiet=quiet):
            from ray import serve

            if serve_client() is not None:
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
