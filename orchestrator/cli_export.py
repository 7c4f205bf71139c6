"""`rlo export | serve`: a run's policy as one ONNX file, and that file served over HTTP without Ray.

Each command parses its arguments and calls the Python API (`orchestrator.export`, `orchestrator.edge.server`).
`rlo serve` imports neither Ray nor torch (nor the modules that do).
"""

from __future__ import annotations

import json
import sys


def cmd_export(args) -> int:
    from .export import export_run
    from .run import attach

    if args.out is not None:  # a bad -o is refused before the run is looked up
        from .outputs import output_file

        output_file(args.out, flag="-o", example="policy.onnx")
    result = export_run(attach(args.run), checkpoint=args.checkpoint, format=args.format, out=args.out)
    meta = result["metadata"]
    if args.json:
        print(json.dumps({k: result[k] for k in ("path", "bytes", "max_abs_diff")} | {"metadata": meta}, indent=2))
        return 0
    print(result["path"])
    err = sys.stderr
    obs, act = meta["described"]["observation_space"], meta["described"]["action_space"]
    print(
        f"[rlo] exported run {meta['run_id']} ({meta['algorithm']} on {meta['env']}): {result['bytes']} bytes", file=err
    )
    print(f"  checkpoint  {meta['checkpoint']}", file=err)
    print(f"  observation {obs['type']} {tuple(obs.get('shape', ()))} {obs.get('dtype', '')}", file=err)
    print(f"  action      {act['type']} {act.get('n', act.get('nvec', act.get('shape', '')))}", file=err)
    print(f"  preprocessing: {meta['preprocessing']['note']}", file=err)
    print(
        f"  checked     ONNX Runtime vs torch on random observations: largest difference {result['max_abs_diff']:.2g}",
        file=err,
    )
    print(f"[rlo] `rlo serve {result['path']}` serves it without Ray", file=err)
    return 0


def cmd_serve(args) -> int:
    from .edge.server import serve

    return serve(
        args.artifact,
        host=args.host,
        port=args.port,
        name=args.name,
        api_key_file=args.api_key_file,
        no_api_key=args.no_api_key,
        max_body_mb=args.max_body_mb,
    )


def register(add) -> None:
    from .cli_serving import run_and_checkpoint_args

    sp = add("export", cmd_export, "write a run's policy as one self-contained ONNX file (runs without Ray)")
    run_and_checkpoint_args(sp)
    sp.add_argument("--format", default="onnx", choices=["onnx"], help="the artifact's format (onnx)")
    sp.add_argument("-o", "--out", metavar="FILE", help="where to write it (default: ./RUN.onnx)")
    sp.add_argument("--json", action="store_true", help="print what was written, with its metadata, as JSON")

    sp = add(
        "serve",
        cmd_serve,
        "serve an exported policy (rlo export) over HTTP without Ray, in the foreground; prints its URL",
    )
    sp.add_argument("artifact", metavar="ARTIFACT", help="an ONNX file written by `rlo export`")
    sp.add_argument("--host", help="where to listen (default 127.0.0.1); 0.0.0.0 makes it reachable from others")
    sp.add_argument("--port", type=int, help="the HTTP port (default 8080; 0 picks a free one)")
    sp.add_argument("--name", help="the URL's prefix, /NAME/predict (default: the run's endpoint name)")
    key = sp.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-file", metavar="FILE", help="require the API key in FILE (a new random key is written if missing)"
    )
    key.add_argument(
        "--no-api-key",
        action="store_true",
        help="serve without an API key also on a --host other machines can reach (on 127.0.0.1 none is the default)",
    )
    sp.add_argument(
        "--max-body-mb",
        type=float,
        metavar="MB",
        help="largest /predict request body (default: room for 4096 observations, 1 to 8 MB); larger ones get 413",
    )
