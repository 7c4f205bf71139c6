"""`rlo cluster start-head|join|status|stop`: bring up a spec's cluster on your own machines or VMs."""

import sys
from typing import Annotated

from ..errors import UserError
from ..tables import print_table
from .common import arg, command, new_app, opt

app = new_app("bring up a spec's cluster on your machines: start-head, join, status, stop")


@command(app, "start-head", "start this machine as the spec's head node (token auth on)")
def start_head(
    spec: Annotated[str, arg("SPEC")],
    node_ip_address: Annotated[
        str, opt("--node-ip-address", help="this machine's address the workers reach")
    ] = "127.0.0.1",
    port: Annotated[int, opt("--port", help="the GCS port workers join (default 6379)")] = 6379,
    dashboard_host: Annotated[
        str,
        opt(
            "--dashboard-host",
            help="where the dashboard / Job API listens (default loopback; 0.0.0.0 to reach it from others)",
        ),
    ] = "127.0.0.1",
    dashboard_port: Annotated[int, opt("--dashboard-port")] = 8265,
    token_file: Annotated[
        str | None,
        opt("--token-file", help="use this token (default: a new one in RLO_HOME/cluster/NAME/auth_token)"),
    ] = None,
    name: Annotated[str, opt("--name", help="a name for this node (for `rlo cluster stop NAME`)")] = "head",
) -> int:
    from .. import cluster

    notices: list[str] = []
    state, plan = cluster.start_head(
        spec,
        node_ip=node_ip_address,
        port=port,
        dashboard_host=dashboard_host,
        dashboard_port=dashboard_port,
        token_file=token_file,
        name=name,
        notices=notices,
    )
    for n in notices:
        print(f"note: {n}", file=sys.stderr)
    print(f"Ray head up: GCS {state.gcs_address}, dashboard and Job API {state.dashboard_url}")
    print(f"token: {state.token_path} (token authentication is on; copy it to the worker machines)")
    print("\nOn each worker machine (the spec's pools and node counts):")
    for p in plan.pools:
        print(f"  rlo cluster join {state.gcs_address} --pool {p.name} --token-file TOKEN_FILE    # x {p.node_count}")
    print("\nThen, from anywhere that can reach the dashboard:")
    print(f"  rlo cluster status --address {state.dashboard_url} --token-file TOKEN_FILE")
    print(f"  rlo submit {spec} --address {state.dashboard_url} --token $(cat TOKEN_FILE)")
    return 0


@command(app, "join", "start this machine as a node of a worker pool and join the head")
def join(
    address: Annotated[str, arg("ADDRESS", help="the head's GCS address HOST:PORT")],
    pool: Annotated[str, opt("--pool", help="the spec's worker pool this node belongs to")],
    token_file: Annotated[str | None, opt("--token-file", help="the head's token (default: RAY_AUTH_TOKEN)")] = None,
    spec: Annotated[str | None, opt("--spec", help="the spec (default: the one the head publishes)")] = None,
    node_ip_address: Annotated[
        str, opt("--node-ip-address", help="this machine's address the others reach")
    ] = "127.0.0.1",
    name: Annotated[str | None, opt("--name", help="a name for this node (default: POOL-xxxx)")] = None,
) -> int:
    from .. import cluster

    notices: list[str] = []
    state, _ = cluster.join(
        address,
        pool,
        token_file=token_file,
        spec_path=spec,
        node_ip=node_ip_address,
        name=name,
        notices=notices,
    )
    for n in notices:
        print(f"note: {n}", file=sys.stderr)
    print(f"node `{state.name}` of pool `{state.pool}` joined {state.gcs_address} (pid {state.pid})")
    return 0


@command(app, "status", "nodes per pool against the spec")
def status(
    address: Annotated[
        str | None, opt("--address", help="the dashboard http://HOST:8265 (default: the head started here)")
    ] = None,
    token: Annotated[str | None, opt("--token", help="the cluster's token")] = None,
    token_file: Annotated[str | None, opt("--token-file", help="a file holding the cluster's token")] = None,
    spec: Annotated[
        str | None, opt("--spec", help="the spec to compare with (default: the head's, when it runs here)")
    ] = None,
) -> int:
    from .. import cluster
    from ..backends import RayJobsBackend
    from ..spec import load_spec

    loaded = load_spec(spec) if spec else None
    if address:
        secret = token or (open(token_file).read().strip() if token_file else None)
        backend = RayJobsBackend.remote(address, secret)
    else:
        heads = [n for n in cluster.local_nodes() if n.role == "head" and n.alive()]
        if not heads:
            raise UserError(
                "no head started from this RLO_HOME is running here",
                fix="give the cluster's dashboard with `--address http://HOST:8265`",
            )
        head = heads[0]
        if not head.dashboard_url:
            raise UserError(
                "the head started from this RLO_HOME recorded no dashboard address",
                fix="give the cluster's dashboard with `--address http://HOST:8265`",
            )
        backend = RayJobsBackend.remote(head.dashboard_url, open(head.token_path).read().strip())
        if loaded is None and head.spec_path:
            loaded = load_spec(head.spec_path)
    nodes = [{"node_id": n.get("node_id"), "resources_total": n.get("resources_total") or {}} for n in backend.nodes()]
    print(
        f"cluster at {backend.address}: {len(nodes)} node(s) alive"
        + (f", spec `{loaded.cluster.name or 'cluster'}`" if loaded else "")
    )
    print_table(cluster.status_rows(nodes, loaded))
    return 0


@command(app, "stop", "stop the nodes this RLO_HOME started on this machine (or the one named)")
def stop(name: Annotated[str | None, arg("NAME")] = None) -> int:
    from .. import cluster

    stopped = cluster.stop(name)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"), file=sys.stderr)
    return 0
