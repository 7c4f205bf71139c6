"""`rlo cluster start-head|join|status|stop`: bring up a spec's cluster on your own machines or VMs."""

from __future__ import annotations

import sys


def cmd_cluster(args) -> int:
    from . import cluster
    from .tables import print_table

    notices: list[str] = []
    if args.action == "start-head":
        state, plan = cluster.start_head(
            args.spec,
            node_ip=args.node_ip_address,
            port=args.port,
            dashboard_host=args.dashboard_host,
            dashboard_port=args.dashboard_port,
            token_file=args.token_file,
            name=args.name,
            notices=notices,
        )
        for n in notices:
            print(f"note: {n}", file=sys.stderr)
        print(f"Ray head up: GCS {state.gcs_address}, dashboard and Job API {state.dashboard_url}")
        print(f"token: {state.token_path} (token authentication is on; copy it to the worker machines)")
        print("\nOn each worker machine (the spec's pools and node counts):")
        for p in plan.pools:
            print(
                f"  rlo cluster join {state.gcs_address} --pool {p.name} --token-file TOKEN_FILE    # x {p.node_count}"
            )
        print("\nThen, from anywhere that can reach the dashboard:")
        print(f"  rlo cluster status --address {state.dashboard_url} --token-file TOKEN_FILE")
        print(f"  rlo submit {args.spec} --address {state.dashboard_url} --token $(cat TOKEN_FILE)")
        return 0
    if args.action == "join":
        state, _ = cluster.join(
            args.address,
            args.pool,
            token_file=args.token_file,
            spec_path=args.spec,
            node_ip=args.node_ip_address,
            name=args.name,
            notices=notices,
        )
        for n in notices:
            print(f"note: {n}", file=sys.stderr)
        print(f"node `{state.name}` of pool `{state.pool}` joined {state.gcs_address} (pid {state.pid})")
        return 0
    if args.action == "status":
        from .backends import RayJobsBackend
        from .spec import load_spec

        spec = load_spec(args.spec) if args.spec else None
        if args.address:
            token = args.token or (open(args.token_file).read().strip() if args.token_file else None)
            backend = RayJobsBackend.remote(args.address, token)
        else:
            heads = [n for n in cluster.local_nodes() if n.role == "head" and n.alive()]
            if not heads:
                from .errors import UserError

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
            if spec is None and head.spec_path:
                spec = load_spec(head.spec_path)
        nodes = [
            {"node_id": n.get("node_id"), "resources_total": n.get("resources_total") or {}} for n in backend.nodes()
        ]
        print(
            f"cluster at {backend.address}: {len(nodes)} node(s) alive"
            + (f", spec `{spec.cluster.name or 'cluster'}`" if spec else "")
        )
        print_table(cluster.status_rows(nodes, spec))
        return 0
    if args.action == "stop":
        stopped = cluster.stop(args.name)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"), file=sys.stderr)
        return 0
    return 2


def register(add) -> None:
    sp = add("cluster", cmd_cluster, "bring up a spec's cluster on your machines: start-head, join, status, stop")
    sub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")

    h = sub.add_parser("start-head", help="start this machine as the spec's head node (token auth on)")
    h.add_argument("spec", metavar="SPEC")
    h.add_argument("--node-ip-address", default="127.0.0.1", help="this machine's address the workers reach")
    h.add_argument("--port", type=int, default=6379, help="the GCS port workers join (default 6379)")
    h.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="where the dashboard / Job API listens (default loopback; 0.0.0.0 to reach it from others)",
    )
    h.add_argument("--dashboard-port", type=int, default=8265)
    h.add_argument("--token-file", help="use this token (default: a new one in RLO_HOME/cluster/NAME/auth_token)")
    h.add_argument("--name", default="head", help="a name for this node (for `rlo cluster stop NAME`)")

    j = sub.add_parser("join", help="start this machine as a node of a worker pool and join the head")
    j.add_argument("address", metavar="ADDRESS", help="the head's GCS address HOST:PORT")
    j.add_argument("--pool", required=True, help="the spec's worker pool this node belongs to")
    j.add_argument("--token-file", help="the head's token (default: RAY_AUTH_TOKEN)")
    j.add_argument("--spec", help="the spec (default: the one the head publishes)")
    j.add_argument("--node-ip-address", default="127.0.0.1", help="this machine's address the others reach")
    j.add_argument("--name", help="a name for this node (default: POOL-xxxx)")

    s = sub.add_parser("status", help="nodes per pool against the spec")
    s.add_argument("--address", help="the dashboard http://HOST:8265 (default: the head started here)")
    s.add_argument("--token", help="the cluster's token")
    s.add_argument("--token-file", help="a file holding the cluster's token")
    s.add_argument("--spec", help="the spec to compare with (default: the head's, when it runs here)")

    st = sub.add_parser("stop", help="stop the nodes this RLO_HOME started on this machine (or the one named)")
    st.add_argument("name", nargs="?", metavar="NAME")
