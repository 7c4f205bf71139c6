"""`rlo render kuberay|azureml SPEC`: the spec as KubeRay manifests or Azure ML entities, written to files, or
with `-o -` to stdout as one YAML stream (`rlo render kuberay SPEC -o - | kubectl apply -f -`): only the
documents go there, every other line goes to stderr. Also the Azure ML side of `rlo submit --backend azureml`.

What `-o -` writes: kuberay, the RayJob (with its files' ConfigMap) -- the job on a cluster made for it, what
`kubectl apply` of one spec means; `--manifest raycluster` the lasting RayCluster instead. azureml, every entity
as `-o DIR` would write them (compute-POOL.yml for each pool, then job.yml), one document each; `az ml ... create`
reads files, so that stream is to read, diff or split, and a job that ships its code (a `code/` folder) needs DIR.
"""

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from ..errors import UserError
from ..outputs import is_stdout, output_dir
from .common import arg, command, new_app, opt

app = new_app("write a spec as KubeRay manifests or Azure ML entities (rlo render TARGET SPEC)")

SpecArg = Annotated[str, arg("SPEC")]
ImageOpt = Annotated[str | None, opt("--image", help="one image for every node (default: the docker/ images' tags)")]
HeadImageOpt = Annotated[
    str | None, opt("--head-image", help="the head's image (default: rl-orchestrator-head:VERSION)")
]
WorkerImageOpt = Annotated[
    str | None, opt("--worker-image", help="the worker pools' image (default: rl-orchestrator-worker:VERSION)")
]
VmSizeOpt = Annotated[
    list[str] | None,
    opt("--vm-size", metavar="POOL=SIZE", help="Azure VM size of a pool (default: its instance_type)"),
]
VnetOpt = Annotated[str | None, opt("--vnet", help="virtual network of the computes (they must reach each other)")]
SubnetOpt = Annotated[str | None, opt("--subnet", help="subnet of the computes")]
OutOpt = Annotated[
    str | None,
    opt(
        "-o", "--out", metavar="DIR", help="where to write (default: ./rendered/NAME); `-`: to stdout, one YAML stream"
    ),
]
NamespaceOpt = Annotated[
    str | None, opt("--namespace", help="Kubernetes namespace of the objects (default: kubectl's)")
]


def _out_dir(out: str | None, spec, target: str) -> Path:

    return output_dir(out or Path("rendered") / f"{spec.job.name or spec.cluster.name}-{target}", flag="-o")


def to_stdout(out: str | None) -> bool:
    """`-o -`: the documents go to stdout, and every other line of the command to stderr."""

    return is_stdout(out)


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


def _kinds(docs: list[dict]) -> str:
    return ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in docs)


@command(app, "kuberay", "RayCluster + RayJob manifests (KubeRay CRDs ray.io/v1)")
def kuberay(
    spec: SpecArg,
    out: OutOpt = None,
    image: ImageOpt = None,
    head_image: HeadImageOpt = None,
    worker_image: WorkerImageOpt = None,
    namespace: NamespaceOpt = None,
    auth_secret: Annotated[
        str | None,
        opt(
            "--auth-secret",
            help="an existing Secret (key auth_token) with the Ray token (default: KubeRay makes one)",
        ),
    ] = None,
    manifest: Annotated[
        Literal["rayjob", "raycluster"] | None,
        opt("--manifest", help="write only this file (with `-o -`, which goes to stdout; default there: rayjob)"),
    ] = None,
) -> int:
    from ..render import prepare_render
    from ..render.kuberay import render_kuberay, write_yaml
    from ..spec import load_spec

    loaded = load_spec(spec)
    rendering = render_kuberay(
        prepare_render(loaded), **kuberay_options(namespace, image, head_image, worker_image, auth_secret)
    )
    files = rendering.files
    if manifest:
        files = {f"{manifest}.yaml": files[f"{manifest}.yaml"]}
    if to_stdout(out):
        from ..render.kuberay import to_yaml

        name = f"{manifest or 'rayjob'}.yaml"
        write_stream([to_yaml(rendering.files[name])])
        kinds = _kinds(rendering.files[name])
        print(f"wrote {name} to stdout: {kinds}; run id: {rendering.run_id}", file=sys.stderr)
        return 0
    folder = _out_dir(out, loaded, "kuberay")
    for name, docs in files.items():
        path = write_yaml(docs, folder / name)
        kinds = _kinds(docs)
        print(f"wrote {path}: {kinds}")
    print(f"run id: {rendering.run_id}")
    if manifest:
        return 0
    print(f"apply:  kubectl apply -f {folder / 'rayjob.yaml'}     (the job on a cluster made for it, removed after)")
    print(f"   or:  kubectl apply -f {folder / 'raycluster.yaml'}  (a lasting cluster; then port-forward its head's")
    print("        8265 and `rlo submit SPEC --address http://127.0.0.1:8265 --token TOKEN`)")
    return 0


def raycronjob(
    spec: Annotated[str, arg("SPEC", help="a spec with a `schedule:` section (or give --cron)")],
    out: Annotated[
        str | None,
        opt(
            "-o",
            "--out",
            metavar="DIR",
            help="where to write raycronjob.yaml (default: ./rendered/NAME-raycronjob); `-`: to stdout",
        ),
    ] = None,
    name: Annotated[
        str | None, opt("--name", help="the RayCronJob's name (default: schedule.name, else the job's name)")
    ] = None,
    cron: Annotated[str | None, opt("--cron", help="cron expression (default: the spec's schedule.cron)")] = None,
    timezone: Annotated[
        str | None, opt("--timezone", help="IANA time zone (default: the spec's schedule.timezone, else UTC)")
    ] = None,
    namespace: NamespaceOpt = None,
    image: ImageOpt = None,
    head_image: Annotated[str | None, opt("--head-image", help="the head's image")] = None,
    worker_image: Annotated[str | None, opt("--worker-image", help="the worker pools' image")] = None,
    auth_secret: Annotated[
        str | None, opt("--auth-secret", help="an existing Secret (key auth_token) with the Ray token")
    ] = None,
    suspend: Annotated[bool, opt("--suspend", help="render it suspended (spec.suspend: true)")] = False,
) -> int:
    """`rlo render raycronjob SPEC` (= `rlo schedule render SPEC`): the schedule as a KubeRay RayCronJob."""
    from ..render import prepare_render
    from ..render.kuberay import write_yaml
    from ..render.raycronjob import render_raycronjob
    from ..schedule import merged_schedule
    from ..spec import load_spec

    loaded = load_spec(spec)
    if cron or timezone or name or loaded.schedule is None:
        loaded.schedule = merged_schedule(loaded, source=spec, name=name, cron=cron, timezone=timezone)
    rendered = render_raycronjob(
        prepare_render(loaded),
        suspend=suspend,
        **kuberay_options(namespace, image, head_image, worker_image, auth_secret),
    )
    the_cron = rendered.raycronjob
    if is_stdout(out):  # `-o -`: the documents alone on stdout (`| kubectl apply -f -`), notes on stderr
        from ..render.kuberay import to_yaml

        write_stream([to_yaml(rendered.documents)])
        kinds = _kinds(rendered.documents)
        print(f"wrote raycronjob.yaml to stdout: {kinds}", file=sys.stderr)
        for n in rendered.notices:
            print(f"note: {n}", file=sys.stderr)
        return 0
    folder = output_dir(out or Path("rendered") / f"{the_cron['metadata']['name']}-raycronjob", flag="-o")
    path = write_yaml(rendered.documents, folder / "raycronjob.yaml")
    print(f"wrote {path}: " + ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in rendered.documents))
    print(
        f"schedule: `{the_cron['spec']['schedule']}` in {the_cron['spec']['timeZone']} "
        "(KubeRay creates a RayJob each time)"
    )
    print(f"apply:    kubectl apply -f {path}   (KubeRay's RayCronJob feature gate must be on)")
    for n in rendered.notices:
        print(f"note: {n}")
    return 0


# The spec's `schedule:` as a RayCronJob (also `rlo schedule render`, cli/schedule.py).
command(app, "raycronjob", "the spec's schedule: as a KubeRay RayCronJob (ray.io/v1)")(raycronjob)


@command(app, "azureml", "AmlCompute per pool + a pipeline job (azure-ai-ml SDK YAML)")
def azureml(
    spec: SpecArg,
    out: OutOpt = None,
    image: ImageOpt = None,
    head_image: HeadImageOpt = None,
    worker_image: WorkerImageOpt = None,
    vm_size: VmSizeOpt = None,
    vnet: VnetOpt = None,
    subnet: SubnetOpt = None,
) -> int:
    from ..render import prepare_render
    from ..render.azureml import build_azureml, write_azureml
    from ..spec import load_spec

    loaded = load_spec(spec)
    options = azureml_options(image, head_image, worker_image, vm_size, vnet, subnet)
    rendering = build_azureml(prepare_render(loaded), **options)
    if to_stdout(out):
        if rendering.package is not None:
            raise UserError(
                "`-o -`: this job ships its code (a `code/` folder beside job.yml), which a YAML stream cannot hold",
                fix=f"render into a folder: `rlo render azureml {spec} -o DIR`",
            )
        texts = _azureml_texts(rendering)
        write_stream(list(texts.values()))
        print(f"wrote {', '.join(texts)} to stdout; run id: {rendering.run_id}", file=sys.stderr)
        for n in rendering.notes:
            print(f"note: {n}", file=sys.stderr)
        return 0
    folder = _out_dir(out, loaded, "azureml")
    for path in write_azureml(rendering, folder):
        print(f"wrote {path}")
    print(f"run id: {rendering.run_id}")
    computes = " && ".join(f"az ml compute create -f {folder / f'compute-{pool}.yml'}" for pool in rendering.computes)
    print(f"apply:  {computes}")
    print(f"        az ml job create -f {folder / 'job.yml'}     (or `rlo submit SPEC --backend azureml`)")
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


def kuberay_options(
    namespace: str | None,
    image: str | None,
    head_image: str | None,
    worker_image: str | None,
    auth_secret: str | None,
) -> dict[str, Any]:
    """The options `rlo render kuberay` and `rlo render raycronjob` share, as the renderers' keywords."""
    kw = {"namespace": namespace, "image": image, "head_image": head_image, "worker_image": worker_image}
    return kw | {"auth_secret": auth_secret}


def azureml_options(
    image: str | None,
    head_image: str | None,
    worker_image: str | None,
    vm_size: list[str] | None,
    vnet: str | None,
    subnet: str | None,
) -> dict[str, Any]:
    """The Azure ML flags (`rlo render azureml`, `rlo submit --backend azureml`) as `build_azureml`'s keywords."""
    kw = {"image": image, "head_image": head_image, "worker_image": worker_image, "vnet": vnet, "subnet": subnet}
    return kw | {"vm_sizes": vm_sizes(vm_size)}


def submit_azureml(
    spec,
    *,
    address: str | None,
    subscription: str | None,
    resource_group: str | None,
    workspace: str | None,
    options: dict[str, Any],
) -> int:
    """`rlo submit SPEC --backend azureml`: render, check workspace and credentials, create, submit."""
    from ..estimator import Estimator

    if address:
        raise UserError(
            "--address is for Ray clusters; --backend azureml submits to an Azure ML workspace",
            fix="drop --address, or drop --backend azureml",
        )
    result = Estimator(spec=spec).fit_azureml(
        subscription=subscription, resource_group=resource_group, workspace=workspace, **options
    )
    print(result.name)
    print(
        f"[rlo] submitted to Azure ML as {result.name} (run id {result.run_id}); follow it in the studio"
        + (f": {result.studio_url}" if result.studio_url else "")
        + f" or with `az ml job stream -n {result.name}`",
        file=sys.stderr,
    )
    return 0
