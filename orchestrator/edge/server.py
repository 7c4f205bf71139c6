"""`rlo serve ARTIFACT`: an exported policy over HTTP with FastAPI + uvicorn, without Ray (no RLlib, no torch).

The routes, the request/response schema, the checks, the API key and the body limits are the Serve endpoint's
(`predict_api`, shared by both), under the same URL layout: ``http://127.0.0.1:PORT/NAME/predict``, NAME the
artifact's (the run's endpoint name) unless given, so `orchestrator.predictor.Predictor(url)` works against either.
One process, one policy, requests answered on the event loop (large batches on a worker thread).
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' parameter types (`Request`) at runtime.
import signal
import socket
import sys
from typing import TextIO

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import UserError
from ..predict_api import (
    MAX_OBSERVATIONS_PER_REQUEST,
    BadRequest,
    ObservationChecker,
    answer_batch,
    check_api_key,
    check_content_type,
    default_body_limit,
    describe_space,
    key_digest,
    preprocessing_note,
    read_body,
    served_observation_space,
)
from ..serving_options import bind_error, check_name, check_options, is_loopback, resolve_api_key
from .runtime import OnnxPolicy

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # not Serve's 8000: `rlo deploy` and `rlo serve` of the same run can run side by side
# Up to this many numbers in one request are answered on the event loop; more go to a worker thread, so that
# one large batch does not hold up the small requests of other clients.
INLINE_NUMBERS = 1 << 16


def _error(e: BadRequest) -> JSONResponse:
    return JSONResponse({"detail": e.detail}, status_code=e.status)


def build_app(
    policy: OnnxPolicy, *, name: str, api_key_digest: str | None = None, max_body_bytes: int | None = None
) -> FastAPI:
    """The app serving `policy` under /NAME: healthz, info, predict (as `serving_endpoint.PolicyEndpoint`)."""
    from gymnasium import spaces
    from starlette.concurrency import run_in_threadpool

    meta = policy.metadata
    space = served_observation_space(policy)
    atari = policy.atari
    checker = ObservationChecker(space, atari=atari)
    limit = int(max_body_bytes or default_body_limit(tuple(space.shape), atari))
    probabilities_ok = isinstance(policy.action_space, spaces.Discrete | spaces.MultiDiscrete)
    scale = (meta.get("preprocessing") or {}).get("observation_scale")
    info = {
        "name": name,
        "run_id": meta.get("run_id"),
        "checkpoint": meta.get("checkpoint"),
        "env": meta.get("env"),
        "algorithm": meta.get("algorithm"),
        "observation_space": describe_space(space),
        "action_space": describe_space(policy.action_space),
        "preprocessing": preprocessing_note(atari, scale),
        "outputs": ["actions", "action_probabilities", "values"],
        "batching": {"max_batch_size": 1, "batch_wait_timeout_s": 0.0},  # one request per forward pass
        "max_observations_per_request": MAX_OBSERVATIONS_PER_REQUEST,
        "max_body_bytes": limit,
        "api_key_required": api_key_digest is not None,
        "artifact": policy.path,
        "runtime": "onnxruntime",
        "tool_version": (meta.get("tool") or {}).get("version"),
    }

    app = FastAPI(title="rl-orchestrator exported policy", docs_url=None, redoc_url=None, openapi_url=None)
    router = APIRouter(prefix=f"/{name}")

    @router.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/info")
    def model_info(request: Request):
        try:
            check_api_key(request.headers, api_key_digest)
        except BadRequest as e:
            return _error(e)
        return JSONResponse(info)

    @router.post("/predict")
    async def predict(request: Request):
        try:
            check_api_key(request.headers, api_key_digest)
            check_content_type(request.headers)
            req = checker.parse(await read_body(request, limit))
            if req.probabilities and not probabilities_ok:
                raise BadRequest(422, f"action probabilities need a discrete action space, not {info['action_space']}")
        except BadRequest as e:
            return _error(e)
        if req.obs.size <= INLINE_NUMBERS:
            answer = answer_batch(policy, [req])[0]
        else:
            answer = (await run_in_threadpool(answer_batch, policy, [req]))[0]
        return JSONResponse(answer)

    app.include_router(router)
    app.state.info = info
    return app


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the URL is printed (so the URL is true, and port 0 picks one)."""

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise bind_error(e, host, port) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, name: str) -> str:
    host, port = sock.getsockname()[:2]
    host = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/{name}"


def serve(
    artifact: str,
    *,
    host: str | None = None,
    port: int | None = None,
    name: str | None = None,
    api_key_file: str | None = None,
    no_api_key: bool = False,
    max_body_mb: float | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Serve `artifact` in the foreground until Ctrl-C (or SIGTERM); prints its URL first."""
    import uvicorn

    host = host or DEFAULT_HOST
    port = DEFAULT_PORT if port is None else port
    check_options(  # deploy's checks of the same flags (port 0: any free port)
        host=host,
        port=port or None,
        replicas=1,
        num_cpus=0,
        max_batch_size=1,
        batch_wait_timeout_s=0.0,
        max_body_mb=max_body_mb,
    )
    if no_api_key and api_key_file:
        raise UserError("give --api-key-file or --no-api-key, not both")
    policy = OnnxPolicy.load(artifact)
    name = check_name(name or policy.metadata.get("name") or "policy")
    if not no_api_key and not api_key_file and not is_loopback(host):
        raise UserError(
            f"--host {host} makes the policy reachable from other machines, and it has no API key",
            fix="give --api-key-file FILE (a new random key is written if missing), or --no-api-key to serve it to "
            "anyone who can reach the port",
        )
    key, key_file = resolve_api_key(None, api_key_file)
    digest = key_digest(key) if key else None
    app = build_app(
        policy,
        name=name,
        api_key_digest=digest,
        max_body_bytes=int(max_body_mb * 2**20) if max_body_mb is not None else None,
    )
    sock = _bind(host, port)
    url = url_of(sock, name)
    info = app.state.info
    print(url, file=out, flush=True)
    meta = policy.metadata
    print(
        f"[rlo] serving {artifact} (run {meta.get('run_id')}, {meta.get('algorithm')} on {meta.get('env')})", file=err
    )
    print(f'  predict     POST {url}/predict  {{"observation": [...]}} or {{"observations": [...]}}', file=err)
    print(f"  info        GET  {url}/info    health: GET {url}/healthz", file=err)
    print(
        f"  API key     required (Authorization: Bearer KEY); key file {key_file}"
        if digest
        else "  API key     none (anyone who can reach the port can call it)",
        file=err,
    )
    print(
        f"  limits      request body at most {info['max_body_bytes']} bytes, as Content-Type: application/json",
        file=err,
    )
    if not is_loopback(sock.getsockname()[0]):
        print(f"[rlo] note: listening on {host}: reachable from other machines", file=err)
    print("[rlo] Ctrl-C stops it", file=err, flush=True)

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)

    def _stop(signum, frame):  # uvicorn re-raises the signal it stopped on once it has shut down
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    print("[rlo] stopped", file=err, flush=True)
    return 0
