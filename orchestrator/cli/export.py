"""`rlo export | serve`: a run's policy as one ONNX file, and that file served over HTTP without Ray.

Each command is a thin function over the Python API (`orchestrator.export`, `orchestrator.edge.server`).
`rlo serve` imports neither Ray nor torch (nor the modules that do).
"""

import json
import sys
from typing import Annotated, Literal

from ..outputs import output_file
from .common import arg, command, exclusive, new_app, opt
from .serving import ApiKeyFileOpt, CheckpointOpt, MaxBodyOpt, RunArg

app = new_app()


@command(app, "export", "write a run's policy as one self-contained ONNX file (runs without Ray)")
def export_cmd(
    run_id: RunArg,
    checkpoint: CheckpointOpt = "latest",
    format_: Annotated[Literal["onnx"], opt("--format", help="the artifact's format (onnx)")] = "onnx",
    out: Annotated[
        str | None, opt("-o", "--out", metavar="FILE", help="where to write it (default: ./RUN.onnx)")
    ] = None,
    as_json: Annotated[bool, opt("--json", help="print what was written, with its metadata, as JSON")] = False,
) -> int:
    from ..export import export_run
    from ..run import attach

    if out is not None:  # a bad -o is refused before the run is looked up
        output_file(out, flag="-o", example="policy.onnx")
    result = export_run(attach(run_id), checkpoint=checkpoint, format=format_, out=out)
    meta = result["metadata"]
    if as_json:
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


@command(app, "serve", "serve an exported policy (rlo export) over HTTP without Ray, in the foreground; prints its URL")
def serve_cmd(
    artifact: Annotated[str, arg("ARTIFACT", help="an ONNX file written by `rlo export`")],
    host: Annotated[
        str | None,
        opt("--host", help="where to listen (default 127.0.0.1); 0.0.0.0 makes it reachable from others"),
    ] = None,
    port: Annotated[int | None, opt("--port", help="the HTTP port (default 8080; 0 picks a free one)")] = None,
    name: Annotated[
        str | None, opt("--name", help="the URL's prefix, /NAME/predict (default: the run's endpoint name)")
    ] = None,
    api_key_file: ApiKeyFileOpt = None,
    no_api_key: Annotated[
        bool,
        opt(
            "--no-api-key",
            help="serve without an API key also on a --host other machines can reach "
            "(on 127.0.0.1 none is the default)",
        ),
    ] = False,
    max_body_mb: MaxBodyOpt = None,
) -> int:
    from ..edge.server import serve

    exclusive(**{"--api-key-file": api_key_file, "--no-api-key": no_api_key})
    return serve(
        artifact,
        host=host,
        port=port,
        name=name,
        api_key_file=api_key_file,
        no_api_key=no_api_key,
        max_body_mb=max_body_mb,
    )
