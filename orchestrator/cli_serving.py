"""`rlo deploy | undeploy | endpoints | plot`: serving a trained policy over HTTP, and plotting training.

Each command parses its arguments and calls the Python API (`orchestrator.serving`, `orchestrator.plots`).
"""

from __future__ import annotations

import json
import sys

from .tables import fmt_time, print_table


def cmd_deploy(args) -> int:
    from .run import attach
    from .serving import deploy

    notices: list[str] = []
    predictor = deploy(
        lambda: attach(args.run),  # looked up once the options are checked
        checkpoint=args.checkpoint,
        name=args.name,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
        no_api_key=args.no_api_key,
        replicas=args.replicas,
        num_cpus=args.num_cpus,
        max_batch_size=args.max_batch_size,
        batch_wait_timeout_s=args.batch_wait_ms / 1000.0,
        max_body_mb=args.max_body_mb,
        quiet=not args.verbose,
        notices_out=notices,
    )
    for n in notices:
        print(f"[rlo] note: {n}", file=sys.stderr)
    info = predictor.info()
    if args.json:
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
        from .registry import Registry
        from .settings import settings

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


def cmd_undeploy(args) -> int:
    from .errors import UserError
    from .serving_ray import undeploy

    if bool(args.name) == bool(args.all):
        raise UserError("give an endpoint NAME or --all", fix="`rlo endpoints` lists what is deployed")
    names = undeploy(args.name, all_endpoints=args.all, quiet=not args.verbose)
    for n in names:
        print(f"undeployed {n}")
    if not names:
        print("no endpoint was deployed")
    return 0


def cmd_endpoints(args) -> int:
    from .serving import endpoints

    rows = endpoints(include_undeployed=args.all)
    if args.json:
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


def cmd_plot(args) -> int:
    from .plots import plot_runs
    from .run import attach

    print(plot_runs([attach(r) for r in args.runs], args.output, title=args.title))
    return 0


def run_and_checkpoint_args(sp) -> None:
    """RUN and --checkpoint, as `deploy` and `export` take them."""
    sp.add_argument("run", metavar="RUN", help="run id (or a unique prefix of it)")
    sp.add_argument(
        "--checkpoint",
        default="latest",
        metavar="best|latest|PATH",
        help="which checkpoint: latest (default), best (highest mean episode return), or a checkpoint folder",
    )


def register(add) -> None:
    sp = add("deploy", cmd_deploy, "serve a run's policy over HTTP (Ray Serve on 127.0.0.1); prints its URL")
    run_and_checkpoint_args(sp)
    sp.add_argument("--name", help="endpoint name, the URL's prefix (default: the job's name, else the run id)")
    sp.add_argument(
        "--host",
        help="where Serve listens (default 127.0.0.1); 0.0.0.0 makes every endpoint reachable from other machines",
    )
    sp.add_argument("--port", type=int, help="Serve's HTTP port (default 8000; shared by all endpoints)")
    key = sp.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-file", metavar="FILE", help="require the API key in FILE (a new random key is written if missing)"
    )
    key.add_argument("--api-key", metavar="KEY", help="require this API key (visible in `ps`; prefer --api-key-file)")
    key.add_argument(
        "--no-api-key",
        action="store_true",
        help="serve without an API key, even when redeploying an endpoint that had one (a redeploy keeps its key)",
    )
    sp.add_argument("--replicas", type=int, default=1, help="replicas of the policy (default 1)")
    sp.add_argument("--num-cpus", type=float, default=0, help="CPUs reserved per replica (default 0: none)")
    sp.add_argument("--max-batch-size", type=int, default=32, help="concurrent requests batched per forward pass")
    sp.add_argument("--batch-wait-ms", type=float, default=1.0, help="how long a batch waits to fill (default 1)")
    sp.add_argument(
        "--max-body-mb",
        type=float,
        metavar="MB",
        help="largest /predict request body (default: room for 4096 observations, 1 to 8 MB); larger ones get 413",
    )
    sp.add_argument("--json", action="store_true", help="print the endpoint's info as JSON")
    sp.add_argument("--verbose", action="store_true", help="show Ray's and Serve's own log lines")

    sp = add("undeploy", cmd_undeploy, "stop a deployed endpoint")
    sp.add_argument("name", metavar="NAME", nargs="?", help="endpoint name (`rlo endpoints` lists them)")
    sp.add_argument("--all", action="store_true", help="stop every endpoint")
    sp.add_argument("--verbose", action="store_true", help="show Ray's and Serve's own log lines")

    sp = add("endpoints", cmd_endpoints, "deployed endpoints: URL, run, checkpoint, and whether they answer")
    sp.add_argument("--all", action="store_true", help="include undeployed ones (history)")
    sp.add_argument("--json", action="store_true")

    sp = add("plot", cmd_plot, "PNG of episode return against env steps and wall time, one or several runs")
    sp.add_argument("runs", metavar="RUN", nargs="+", help="run ids (or unique prefixes)")
    sp.add_argument("-o", "--output", metavar="PNG", help="where to write it (default: ./RUN.png)")
    sp.add_argument("--title", help="figure title")
