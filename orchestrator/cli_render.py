"""`rlo render kuberay|azureml SPEC`: the spec as KubeRay manifests or Azure ML entities, written to files, or
with `-o -` to stdout as one YAML stream (`rlo render kuberay SPEC -o - | kubectl apply -f -`): only the
documents go there, every other line goes to stderr. Also the Azure ML side of `rlo submit --backend azureml`.

What `-o -` writes: kuberay, the RayJob (with its files' ConfigMap) -- the job on a cluster made for it, what
`kubectl apply` of one spec means; `--manifest raycluster` the lasting RayCluster instead. azureml, every entity
as `-o DIR` would write them (compute-POOL.yml for each pool, then job.yml), one document each; `az ml ... create`
reads files, so that stream is to read, diff or split, and a job that ships its code (a `code/` folder) needs DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import UserError


def _images(sp) -> None:
    sp.add_argument("--image", help="one image for every node (default: the docker/ images' tags)")
    sp.add_argument("--head-image", help="the head's image (default: rl-orchestrator-head:VERSION)")
    sp.add_argument("--worker-image", help="the worker pools' image (default: rl-orchestrator-worker:VERSION)")


def _common(sp, default_dir: str) -> None:
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        default=None,
        help=f"where to write (default: ./{default_dir}/NAME); `-`: to stdout, one YAML stream",
    )
    _images(sp)


def _out_dir(args, spec, target: str) -> Path:
    from .outputs import output_dir

    return output_dir(args.out or Path("rendered") / f"{spec.job.name or spec.cluster.name}-{target}", flag="-o")


def to_stdout(args) -> bool:
    """`-o -`: the documents go to stdout, and every other line of the command to stderr."""
    from .outputs import is_stdout

    return is_stdout(args.out)


def write_stream(texts: list[str]) -> None:
    """YAML documents (each a file's text, itself possibly several documents) as one stream on stdout."""
    stream = "---\n".join(t if t.endswith("\n") else t + "\n" for t in texts if t.strip())
    sys.stdout.write(stream)
    sys.stdout.flush()


def vm_sizes(values: list[str] | None) -> dict[str, str]:
    out = {}
    for v in values or []:
        pool, sep, size = v.partition("=")
        if not sep or not pool or not size:
            raise UserError(f"--vm-size `{v}` is not POOL=SIZE", fix="e.g. `--vm-size worker-cpu=Standard_D2_v2`")
        out[pool] = size
    return out


def _kuberay_args(args) -> dict:
    """The options `rlo render kuberay` and `rlo render raycronjob` share."""
    return {
        "namespace": args.namespace,
        "image": args.image,
        "head_image": args.head_image,
        "worker_image": args.worker_image,
        "auth_secret": args.auth_secret,
    }


def _kinds(docs: list[dict]) -> str:
    return ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in docs)


def cmd_render_kuberay(args) -> int:
    from .render import prepare_render
    from .render.kuberay import render_kuberay, write_yaml
    from .spec import load_spec

    spec = load_spec(args.spec)
    rendering = render_kuberay(prepare_render(spec), **_kuberay_args(args))
    files = rendering.files
    if args.manifest:
        files = {f"{args.manifest}.yaml": files[f"{args.manifest}.yaml"]}
    if to_stdout(args):
        from .render.kuberay import to_yaml

        name = f"{args.manifest or 'rayjob'}.yaml"
        write_stream([to_yaml(rendering.files[name])])
        kinds = _kinds(rendering.files[name])
        print(f"wrote {name} to stdout: {kinds}; run id: {rendering.run_id}", file=sys.stderr)
        return 0
    out = _out_dir(args, spec, "kuberay")
    for name, docs in files.items():
        path = write_yaml(docs, out / name)
        kinds = _kinds(docs)
        print(f"wrote {path}: {kinds}")
    print(f"run id: {rendering.run_id}")
    if args.manifest:
        return 0
    print(f"apply:  kubectl apply -f {out / 'rayjob.yaml'}     (the job on a cluster made for it, removed after)")
    print(f"   or:  kubectl apply -f {out / 'raycluster.yaml'}  (a lasting cluster; then port-forward its head's")
    print("        8265 and `rlo submit SPEC --address http://127.0.0.1:8265 --token TOKEN`)")
    return 0


def cmd_render_azureml(args) -> int:
    from .render import prepare_render
    from .render.azureml import build_azureml, write_azureml
    from .spec import load_spec

    spec = load_spec(args.spec)
    rendering = build_azureml(prepare_render(spec), **_azureml_kwargs(args))
    if to_stdout(args):
        if rendering.package is not None:
            raise UserError(
                "`-o -`: this job ships its code (a `code/` folder beside job.yml), which a YAML stream cannot hold",
                fix=f"render into a folder: `rlo render azureml {args.spec} -o DIR`",
            )
        texts = _azureml_texts(rendering)
        write_stream(list(texts.values()))
        print(f"wrote {', '.join(texts)} to stdout; run id: {rendering.run_id}", file=sys.stderr)
        for n in rendering.notes:
            print(f"note: {n}", file=sys.stderr)
        return 0
    out = _out_dir(args, spec, "azureml")
    for path in write_azureml(rendering, out):
        print(f"wrote {path}")
    print(f"run id: {rendering.run_id}")
    computes = " && ".join(f"az ml compute create -f {out / f'compute-{pool}.yml'}" for pool in rendering.computes)
    print(f"apply:  {computes}")
    print(f"        az ml job create -f {out / 'job.yml'}     (or `rlo submit SPEC --backend azureml`)")
    for n in rendering.notes:
        print(f"note: {n}")
    return 0


def _azureml_texts(rendering) -> dict[str, str]:
    """File name -> text, each entity dumped by the SDK's own `dump()` as `write_azureml` writes it."""
    import io

    entities = {f"compute-{pool}.yml": compute for pool, compute in rendering.computes.items()}
    entities["job.yml"] = rendering.job
    texts = {}
    for name, entity in entities.items():
        buf = io.StringIO()
        entity.dump(buf)
        texts[name] = buf.getvalue()
    return texts


def _azureml_kwargs(args) -> dict:
    return {
        "image": getattr(args, "image", None),
        "head_image": getattr(args, "head_image", None),
        "worker_image": getattr(args, "worker_image", None),
        "vm_sizes": vm_sizes(getattr(args, "vm_size", None)),
        "vnet": getattr(args, "vnet", None),
        "subnet": getattr(args, "subnet", None),
    }


def _azureml_args(sp) -> None:
    sp.add_argument(
        "--vm-size", action="append", metavar="POOL=SIZE", help="Azure VM size of a pool (default: its instance_type)"
    )
    sp.add_argument("--vnet", help="virtual network of the computes (they must reach each other)")
    sp.add_argument("--subnet", help="subnet of the computes")


def submit_azureml(spec, args) -> int:
    """`rlo submit SPEC --backend azureml`: render, check workspace and credentials, create, submit."""
    from .render import prepare_render
    from .render.azureml import submit_azureml as submit

    if args.address:
        raise UserError(
            "--address is for Ray clusters; --backend azureml submits to an Azure ML workspace",
            fix="drop --address, or drop --backend azureml",
        )
    result = submit(
        prepare_render(spec),
        subscription=args.subscription,
        resource_group=args.resource_group,
        workspace=args.workspace,
        **_azureml_kwargs(args),
    )
    print(result.name)
    print(
        f"[rlo] submitted to Azure ML as {result.name} (run id {result.run_id}); follow it in the studio"
        + (f": {result.studio_url}" if result.studio_url else "")
        + f" or with `az ml job stream -n {result.name}`",
        file=sys.stderr,
    )
    return 0


def add_submit_args(sp) -> None:
    """The Azure ML flags of `rlo submit` (used with `--backend azureml`)."""
    sp.add_argument("--backend", choices=("ray", "azureml"), default="ray", help="where to submit (default: ray)")
    sp.add_argument("--subscription", help="(azureml) subscription id (or AZURE_SUBSCRIPTION_ID)")
    sp.add_argument("--resource-group", help="(azureml) resource group (or AZURE_RESOURCE_GROUP)")
    sp.add_argument("--workspace", help="(azureml) workspace name (or AZUREML_WORKSPACE_NAME)")
    _images(sp)
    _azureml_args(sp)


def cmd_render_raycronjob(args) -> int:
    """`rlo render raycronjob SPEC` (= `rlo schedule render SPEC`): the schedule as a KubeRay RayCronJob."""
    from pathlib import Path

    from .render import prepare_render
    from .render.kuberay import write_yaml
    from .render.raycronjob import render_raycronjob
    from .schedule import merged_schedule
    from .spec import load_spec

    spec = load_spec(args.spec)
    if args.cron or args.timezone or args.name or spec.schedule is None:
        spec.schedule = merged_schedule(spec, source=args.spec, name=args.name, cron=args.cron, timezone=args.timezone)
    out = render_raycronjob(prepare_render(spec), **_kuberay_args(args), suspend=args.suspend)
    cron = out.raycronjob
    from .outputs import is_stdout, output_dir

    if is_stdout(args.out):  # `-o -`: the documents alone on stdout (`| kubectl apply -f -`), notes on stderr
        from .render.kuberay import to_yaml

        write_stream([to_yaml(out.documents)])
        kinds = _kinds(out.documents)
        print(f"wrote raycronjob.yaml to stdout: {kinds}", file=sys.stderr)
        for n in out.notices:
            print(f"note: {n}", file=sys.stderr)
        return 0
    folder = output_dir(args.out or Path("rendered") / f"{cron['metadata']['name']}-raycronjob", flag="-o")
    path = write_yaml(out.documents, folder / "raycronjob.yaml")
    print(f"wrote {path}: " + ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in out.documents))
    print(f"schedule: `{cron['spec']['schedule']}` in {cron['spec']['timeZone']} (KubeRay creates a RayJob each time)")
    print(f"apply:    kubectl apply -f {path}   (KubeRay's RayCronJob feature gate must be on)")
    for n in out.notices:
        print(f"note: {n}")
    return 0


def add_render_arguments(sp) -> None:
    """The arguments of `rlo render raycronjob` / `rlo schedule render` (one place for both)."""
    sp.add_argument("spec", metavar="SPEC", help="a spec with a `schedule:` section (or give --cron)")
    sp.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        help="where to write raycronjob.yaml (default: ./rendered/NAME-raycronjob); `-`: to stdout",
    )
    sp.add_argument("--name", help="the RayCronJob's name (default: schedule.name, else the job's name)")
    sp.add_argument("--cron", help="cron expression (default: the spec's schedule.cron)")
    sp.add_argument("--timezone", help="IANA time zone (default: the spec's schedule.timezone, else UTC)")
    sp.add_argument("--namespace", help="Kubernetes namespace of the objects (default: kubectl's)")
    sp.add_argument("--image", help="one image for every node (default: the docker/ images' tags)")
    sp.add_argument("--head-image", help="the head's image")
    sp.add_argument("--worker-image", help="the worker pools' image")
    sp.add_argument("--auth-secret", help="an existing Secret (key auth_token) with the Ray token")
    sp.add_argument("--suspend", action="store_true", help="render it suspended (spec.suspend: true)")
    sp.set_defaults(fn=cmd_render_raycronjob)


def register(add) -> None:
    sp = add("render", None, "write a spec as KubeRay manifests or Azure ML entities (rlo render TARGET SPEC)")
    targets = sp.add_subparsers(dest="target", required=True, metavar="TARGET")

    t = targets.add_parser("kuberay", help="RayCluster + RayJob manifests (KubeRay CRDs ray.io/v1)")
    t.set_defaults(fn=cmd_render_kuberay)
    _common(t, "rendered")
    t.add_argument("--namespace", help="Kubernetes namespace of the objects (default: kubectl's)")
    t.add_argument(
        "--auth-secret", help="an existing Secret (key auth_token) with the Ray token (default: KubeRay makes one)"
    )
    t.add_argument(
        "--manifest",
        choices=("rayjob", "raycluster"),
        help="write only this file (with `-o -`, which goes to stdout; default there: rayjob)",
    )

    # The spec's `schedule:` as a RayCronJob (also `rlo schedule render`, cli_schedule.py).
    t = targets.add_parser("raycronjob", help="the spec's schedule: as a KubeRay RayCronJob (ray.io/v1)")
    add_render_arguments(t)

    t = targets.add_parser("azureml", help="AmlCompute per pool + a pipeline job (azure-ai-ml SDK YAML)")
    t.set_defaults(fn=cmd_render_azureml)
    _common(t, "rendered")
    _azureml_args(t)
