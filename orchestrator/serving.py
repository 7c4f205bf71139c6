"""Serving a trained policy over HTTP with Ray Serve (SageMaker's `estimator.deploy()`): choosing what to deploy,
`deploy`, and what is deployed (`endpoints`, `probe`).

    predictor = attach(run_id).deploy()            # rlo deploy RUN [--checkpoint best|latest|PATH]
    predictor.predict(obs)                         # the client: orchestrator.predictor
    predictor.undeploy()                           # rlo undeploy NAME (orchestrator.serving_ray.undeploy)

Each endpoint is a Serve application on the embedded Ray (orchestrator.serving_ray talks to Serve), and the
`Predictor` that deploy returns sends its requests to the replicas' own HTTP servers (Serve's direct ingress),
5-7x faster than through Serve's proxy. What is deployed is recorded in the registry (`rlo endpoints`); the
options are checked first (orchestrator.serving_options), before the run is looked up or Ray starts.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.parse
from pathlib import Path

from .backends import EMBEDDED
from .envs import is_atari
from .errors import EngineError, UserError, did_you_mean
from .local_ray import LocalRayManager
from .policy import module_dir
from .predictor import Predictor
from .records import EndpointRecord
from .registry import Registry
from .serving_options import DEFAULT_HOST, check_name, check_options, is_loopback, read_key_file, resolve_api_key
from .serving_ray import app_error, direct_urls, ray_session, serving_lock, start_serve
from .settings import settings

CHECKPOINT_CHOICES = ("latest", "best")


# --- choosing what to deploy ---------------------------------------------------------------------------------------


def resolve_checkpoint(run, choice: str = "latest") -> tuple[str, dict]:
    """The checkpoint folder to serve for `choice` (latest, best, or a path; see `Run.checkpoint_path`), as an
    absolute path (the replica runs in another folder), and what was chosen (for the record)."""

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


def _kept_key(previous: EndpointRecord) -> tuple[str | None, str | None, str, str]:
    """The API key of the live endpoint a redeploy replaces: (key if known, key file, digest, what to tell).

    A key file is read again (it is where the key lives; a key changed in it counts); without one (a key given
    with --api-key) the replica keeps the recorded digest of the key."""
    from .serving_endpoint import key_digest

    key_file, digest = previous.extra.get("api_key_file"), previous.extra.get("api_key_sha256")
    if key_file and Path(key_file).is_file():
        key = read_key_file(Path(key_file))
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


def _root_cause(text: str) -> str:
    """The last `SomeError: message` line of a replica's traceback."""
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*[\w.]*(Error|Exception)\b.*:", ln)]
    return lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else "unknown error"


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
    with serving_lock(), ray_session(local, quiet=quiet):
        from ray import serve

        from .serving_endpoint import build

        bound_host, bound_port = start_serve(host, port, registry)
        try:
            handle = serve.run(build(config), name=name, route_prefix=f"/{name}")
            # From the replica itself, over Ray: no HTTP key needed (a kept --api-key is not known here).
            info = handle.describe.remote().result(timeout_s=60)
            direct = direct_urls(name, bound_host, int(replicas))
        except Exception as e:
            why = app_error(name) or f"{type(e).__name__}: {e}"
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
    return Predictor(url, key, name=name, direct_urls=direct, info=info)


def atari_preprocessing(spec: dict, env_config: dict) -> dict:
    """The frame size and stack training used (envs.make_env; `model.dim` is the seeds' legacy spelling)."""
    legacy = ((((spec or {}).get("job") or {}).get("hyperparameters") or {}).get("model") or {}).get("dim")
    return {"dim": int(env_config.get("dim", legacy or 64)), "framestack": int(env_config.get("framestack", 4))}


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
