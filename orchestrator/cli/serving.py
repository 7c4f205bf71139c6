"""`rlo deploy | undeploy | endpoints | plot`: serving a trained policy over HTTP, and plotting training.

Each command is a thin function over the Python API (`orchestrator.serving`, `orchestrator.plots`).
"""

import json
import sys
from typing import Annotated

from ..errors import UserError
from ..plots import plot_runs
from ..registry import Registry
from ..settings import settings
from ..tables import fmt_time, print_table
from .common import arg, command, exclusive, new_app, opt

app = new_app()

# RUN and --checkpoint, as `deploy` and `export` take them.
RunArg = Annotated[str, arg("RUN", help="run id (or a unique prefix of it)")]
CheckpointOpt = Annotated[
    str,
    opt(
        "--checkpoint",
        metavar="best|latest|PATH",
        help="which checkpoint: latest (default), best (highest mean episode return), or a checkpoint folder",
    ),
]
ApiKeyFileOpt = Annotated[
    str | None,
    opt("--api-key-file", metavar="FILE", help="require the API key in FILE (a new random key is written if missing)"),
]
MaxBodyOpt = Annotated[
    float | None,
    opt(
        "--max-body-mb",
        metavar="MB",
        help="largest /predict request body (default: room for 4096 observations, 1 to 8 MB); larger ones get 413",
    ),
]
VerboseFlag = Annotated[bool, opt("--verbose", help="show Ray's and Serve's own log lines")]


@command(app, "deploy", "serve a run's policy over HTTP (Ray Serve on 127.0.0.1); prints its URL")
def deploy_cmd(
    run_id: RunArg,
    checkpoint: CheckpointOpt = "latest",
    name: Annotated[
        str | None, opt("--name", help="endpoint name, the URL's prefix (default: the job's name, else the run id)")
    ] = None,
    host: Annotated[
        str | None,
        opt(
            "--host",
            help="where Serve listens (default 127.0.0.1); 0.0.0.0 makes every endpoint reachable from other machines",
        ),
    ] = None,
    port: Annotated[int | None, opt("--port", help="Serve's HTTP port (default 8000; shared by all endpoints)")] = None,
    api_key_file: ApiKeyFileOpt = None,
    api_key: Annotated[
        str | None,
        opt("--api-key", metavar="KEY", help="require this API key (visible in `ps`; prefer --api-key-file)"),
    ] = None,
    no_api_key: Annotated[
        bool,
        opt(
            "--no-api-key",
            help="serve without an API key, even when redeploying an endpoint that had one (a redeploy keeps its key)",
        ),
    ] = False,
    replicas: Annotated[int, opt("--replicas", help="replicas of the policy (default 1)")] = 1,
    num_cpus: Annotated[float, opt("--num-cpus", help="CPUs reserved per replica (default 0: none)")] = 0,
    max_batch_size: Annotated[int, opt("--max-batch-size", help="concurrent requests batched per forward pass")] = 32,
    batch_wait_ms: Annotated[float, opt("--batch-wait-ms", help="how long a batch waits to fill (default 1)")] = 1.0,
    max_body_mb: MaxBodyOpt = None,
    as_json: Annotated[bool, opt("--json", help="print the endpoint's info as JSON")] = False,
    verbose: VerboseFlag = False,
) -> int:
    from ..run import attach
    from ..serving import deploy

    exclusive(**{"--api-key-file": api_key_file, "--api-key": api_key, "--no-api-key": no_api_key})
    notices: list[str] = []
    predictor = deploy(
        lambda: attach(run_id),  # looked up once the options are checked
        checkpoint=checkpoint,
        name=name,
        host=host,
        port=port,
        api_key=api_key,
        api_key_file=api_key_file,
        no_api_key=no_api_key,
        replicas=replicas,
        num_cpus=num_cpus,
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_ms / 1000.0,
        max_body_mb=max_body_mb,
        quiet=not verbose,
        notices_out=notices,
    )
    for n in notices:
        print(f"[rlo] note: {n}", file=sys.stderr)
    info = predictor.info()
    if as_json:
        print(json.dumps({"url": predictor.url, **info}, indent=2))
        return 0
    print(predictor.url)
    err = sys.stderr
    obs, act = info["observation_space"], info["action_space"]
    print(f"[rlo] endpoint `{info['name']}` serves run {info['run_id']}", file=err)
    print(f"  checkpoint  {info['checkpoint']}", file=err)
    print(
        f'  predict     POST {predictor.url}/predict  {{"observation": [...]}} or {{"observations": [...]}}', file=err
    )
    print(f"  info        GET  {predictor.url}/info    health: GET {predictor.url}/healthz", file=err)
    print(f"  observation {obs['type']} {tuple(obs.get('shape', ()))} {obs.get('dtype', '')}", file=err)
    print(f"  action      {act['type']} {act.get('n', act.get('nvec', act.get('shape', '')))}", file=err)
    if info.get("preprocessing", "").startswith("RLlib's Atari"):
        print(f"  preprocessing: {info['preprocessing']}", file=err)
    if info["api_key_required"]:
        rec = Registry(settings().registry_path).endpoint(info["name"])
        where = rec.extra.get("api_key_file") if rec else None
        kept = "; kept from the previous deploy" if any(" keeps the API key" in n for n in notices) else ""
        print(
            f"  API key     required (Authorization: Bearer KEY){f'; key file {where}' if where else ''}{kept}",
            file=err,
        )
    else:
        print("  API key     none (anyone who can reach the port can call it)", file=err)
    limit = info["max_body_bytes"]
    print(f"  limits      request body at most {limit} bytes, as Content-Type: application/json", file=err)
    print(f"[rlo] `rlo undeploy {info['name']}` stops it", file=err)
    return 0


@command(app, "undeploy", "stop a deployed endpoint")
def undeploy_cmd(
    name: Annotated[str | None, arg("NAME", help="endpoint name (`rlo endpoints` lists them)")] = None,
    all_: Annotated[bool, opt("--all", help="stop every endpoint")] = False,
    verbose: VerboseFlag = False,
) -> int:
    from ..serving_ray import undeploy

    if bool(name) == bool(all_):
        raise UserError("give an endpoint NAME or --all", fix="`rlo endpoints` lists what is deployed")
    names = undeploy(name, all_endpoints=all_, quiet=not verbose)
    for n in names:
        print(f"undeployed {n}")
    if not names:
        print("no endpoint was deployed")
    return 0


@command(app, "endpoints", "deployed endpoints: URL, run, checkpoint, and whether they answer")
def endpoints_cmd(
    all_: Annotated[bool, opt("--all", help="include undeployed ones (history)")] = False,
    as_json: Annotated[bool, opt("--json")] = False,
) -> int:
    from ..serving import endpoints

    rows = endpoints(include_undeployed=all_)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "state": state,
                        "url": r.url,
                        "run_id": r.run_id,
                        "checkpoint": r.checkpoint,
                        "created_at": r.created_at,
                        "undeployed_at": r.undeployed_at,
                        **{k: r.extra.get(k) for k in ("choice", "iteration", "host", "port", "api_key_required")},
                    }
                    for r, state in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print("no endpoint is deployed (rlo deploy RUN)")
        return 0
    table = [("NAME", "STATE", "URL", "RUN", "CHECKPOINT", "DEPLOYED", "KEY")]
    for r, state in rows:
        it = r.extra.get("iteration")
        cp = f"{r.extra.get('choice', '?')}" + (f" (iter {it})" if it is not None else "")
        table.append(
            (
                r.name,
                state,
                r.url,
                r.run_id,
                cp,
                fmt_time(r.created_at),
                "yes" if r.extra.get("api_key_required") else "no",
            )
        )
    print_table(table)
    return 0


@command(app, "plot", "PNG of episode return against env steps and wall time, one or several runs")
def plot(
    runs: Annotated[list[str], arg("RUN", help="run ids (or unique prefixes)")],
    output: Annotated[
        str | None, opt("-o", "--output", metavar="PNG", help="where to write it (default: ./RUN.png)")
    ] = None,
    title: Annotated[str | None, opt("--title", help="figure title")] = None,
) -> int:
    from ..run import attach

    print(plot_runs([attach(r) for r in runs], output, title=title))
    return 0
