"""Where the time of one `POST /predict` goes: one client, one observation per request, one request at a time,
measured piece by piece in one run, and printed as a breakdown.

    .venv/bin/python benchmarks/serving_profile.py [--run RUN] [--seconds 3]

How each piece is measured (nothing is estimated):
- client: this process's CPU time per request while it calls the endpoint in a loop (`Predictor`: the
  observation to JSON, http.client, the answer from JSON), and the same with `requests.Session` (the old client);
- replica handler: the `Server-Timing` header of each answer (`deploy(server_timing=True)`): reading the body,
  parsing and checking it (predict_api), answering (the policy's forward pass and the answer as lists);
- the pieces in-process: the same parse, `answer_batch` and `policy.act` calls in this process;
- Serve's own floor: a trivial ingress app in the same Serve (`POST` that returns a constant, with and without
  reading the body), through the proxy and direct;
- end to end: p50 of the real endpoint, direct (the Predictor's default) and through the proxy.
"transport" is end to end minus client CPU minus the replica's handler: Serve's and uvicorn's request handling,
the kernel's loopback and the scheduling of three processes on the machine's CPUs.

Measured on the 2-CPU machine, shared with other jobs (read the ratios). Before the change (Serve's proxy,
`requests`, every request through `@serve.batch`; py-spy of proxy and replica, load average ~8): p50 15-24 ms;
a trivial ingress app through the proxy 8-10 ms without reading the body, 13-18 ms reading it (the replica calls
back into the proxy for the body: a second actor round trip, most of the py-spy samples of both processes);
`requests` 1.9 ms of CPU per call vs 0.4 ms for http.client; the batch wait (up to 1 ms) on every lone request.
After (this script, load average 1.8):

    in-process: parse + check one body (predict_api)               0.025
    in-process: policy.act, one observation                        0.308
    in-process: answer_batch (act + lists), one request            0.261
    replica handler: read the body (Server-Timing)                 0.021
    replica handler: parse + check (Server-Timing)                 0.117
    replica handler: policy + answer (Server-Timing)               0.629
    client: Predictor CPU per request (http.client)                0.346
    client: requests.Session CPU per request (before)              1.673  p50 3.87 ms
    Serve floor, direct: POST, no body read                        0.743
    Serve floor, direct: POST, body read                           0.907
    Serve floor, proxy: POST, no body read                         6.774
    Serve floor, proxy: POST, body read                           10.606
    end to end: Predictor, direct (after)                          1.860
    end to end: raw http.client, direct                            1.826
    end to end: Predictor through the proxy                       13.543
    transport (end to end - client - replica handler)              0.747  direct

py-spy of the replica after: of its samples, about a third in `answer_batch` (most of `policy.act` in RLlib's
action distribution: TorchMultiCategorical / torch Categorical construction and `Module.eval()` per call, not
the MLP), the rest Serve's and uvicorn's request handling (middlewares, metrics, access log ~4%) and the socket
writes.

Without `--run` it trains a short auto-scaling policy first in a private RLO_HOME (as benchmarks/serving.py).
"""

# No `from __future__ import annotations`: FastAPI reads the floor app's `Request` annotation at runtime.
import argparse
import contextlib
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, observations, train_autoscale  # noqa: E402  (the benchmark's helpers)


def timed_loop(call, seconds: float, warmup: int = 30) -> tuple[float, float, int]:
    """(p50 wall ms, CPU ms of this process per call, calls) of `call()` repeated for `seconds`."""
    for _ in range(warmup):
        call()
    lat = []
    cpu0, deadline = time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t0)
    return float(np.median(lat)) * 1e3, (time.process_time() - cpu0) / len(lat) * 1e3, len(lat)


def raw_post(url: str, body: bytes):
    """A minimal kept-alive http.client POST loop body (for Serve's floor)."""
    parts = url.split("/", 3)
    host, port = parts[2].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    path = "/" + parts[3]

    def call() -> None:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status

    return call


def deploy_floor(port: int) -> tuple[str, list[str]]:
    """A trivial ingress app beside the endpoint: (URL through the proxy, direct URLs)."""
    from fastapi import FastAPI, Request

    from orchestrator.local_ray import LocalRayManager
    from orchestrator.serving_ray import direct_urls, ray_session

    with ray_session(LocalRayManager().current()):
        from ray import serve

        app = FastAPI()

        @serve.deployment(ray_actor_options={"num_cpus": 0})
        @serve.ingress(app)
        class Floor:
            @app.post("/empty")
            async def empty(self) -> dict:
                return {"action": 0}

            @app.post("/body")
            async def body(self, request: Request) -> dict:
                await request.body()
                return {"action": 0}

        serve.run(Floor.bind(), name="profile-floor", route_prefix="/profile-floor")
        direct = direct_urls("profile-floor", "127.0.0.1", 1)
    return f"http://127.0.0.1:{port}/profile-floor", direct


def delete_floor() -> None:
    from orchestrator.local_ray import LocalRayManager
    from orchestrator.serving_ray import ray_session

    with ray_session(LocalRayManager().current()):
        from ray import serve

        serve.delete("profile-floor")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="an auto-scaling run (default: train a short one in a private RLO_HOME)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per piece")
    args = ap.parse_args()
    tmp = None if args.run else tempfile.TemporaryDirectory(prefix="rlo-bench-profile-")
    if tmp is not None:
        os.environ["RLO_HOME"] = str(Path(tmp.name) / "home")
        Path(os.environ["RLO_HOME"]).mkdir(parents=True)
    import requests
    import torch

    from orchestrator.local_ray import LocalRayManager
    from orchestrator.predict_api import ObservationChecker, answer_batch, served_observation_space
    from orchestrator.predictor import Predictor
    from orchestrator.run import attach
    from orchestrator.serving_ray import undeploy

    secs = args.seconds
    rows: list[tuple[str, float, str]] = []
    try:
        run = attach(args.run or train_autoscale(Path(os.environ["RLO_HOME"])))
        obs = observations(1024)
        bodies = [json.dumps({"observation": o.tolist()}).encode() for o in obs]

        # In-process pieces, on one thread as in the replica.
        torch.set_num_threads(1)
        policy = run.policy()
        checker = ObservationChecker(served_observation_space(policy))
        it = iter(range(10**9))
        parse = lambda: checker.parse(bodies[next(it) % len(bodies)])  # noqa: E731
        reqs = [checker.parse(b) for b in bodies]
        rows.append(("in-process: parse + check one body (predict_api)", timed_loop(parse, secs)[0], ""))
        act = lambda: policy.act(obs[next(it) % len(obs)][None])  # noqa: E731
        rows.append(("in-process: policy.act, one observation", timed_loop(act, secs)[0], ""))
        answer = lambda: answer_batch(policy, [reqs[next(it) % len(reqs)]])  # noqa: E731
        rows.append(("in-process: answer_batch (act + lists), one request", timed_loop(answer, secs)[0], ""))

        port = free_port()
        predictor = run.deploy(name="bench-profile", port=port, server_timing=True)
        predictor.info()
        floor_proxy, floor_direct = deploy_floor(port)

        # The replica's own phases, from its Server-Timing header, on a raw connection to the replica.
        target = predictor.direct_urls[0] if predictor.direct_urls else predictor.url
        parts = target.split("/", 3)
        host, p = parts[2].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(p), timeout=30)
        phases: dict[str, list[float]] = {}

        def timed_call() -> None:
            conn.request(
                "POST",
                f"/{parts[3]}/predict",
                body=bodies[next(it) % len(bodies)],
                headers={"Content-Type": "application/json"},
            )
            r = conn.getresponse()
            r.read()
            for item in (r.getheader("Server-Timing") or "").split(","):
                name, _, dur = item.strip().partition(";dur=")
                if dur:
                    phases.setdefault(name, []).append(float(dur))

        raw_p50 = timed_loop(timed_call, secs)[0]
        handler = 0.0
        for name, what in (("body", "read the body"), ("parse", "parse + check"), ("answer", "policy + answer")):
            med = float(np.median(phases.get(name, [float("nan")])))
            handler += med
            rows.append((f"replica handler: {what} (Server-Timing)", med, ""))

        one = lambda: predictor.predict(obs[next(it) % len(obs)])  # noqa: E731
        direct_p50, client_cpu, _ = timed_loop(one, secs)
        rows.append(("client: Predictor CPU per request (http.client)", client_cpu, ""))
        session = requests.Session()
        url = f"{target}/predict"

        def with_requests() -> None:
            o = obs[next(it) % len(obs)]
            session.post(
                url, data=json.dumps({"observation": o.tolist()}), headers={"Content-Type": "application/json"}
            ).json()

        req_p50, req_cpu, _ = timed_loop(with_requests, secs)
        rows.append(("client: requests.Session CPU per request (before)", req_cpu, f"p50 {req_p50:.2f} ms"))

        body = bodies[0]
        if floor_direct:
            rows.append(
                (
                    "Serve floor, direct: POST, no body read",
                    timed_loop(raw_post(floor_direct[0] + "/empty", body), secs)[0],
                    "",
                )
            )
            rows.append(
                (
                    "Serve floor, direct: POST, body read",
                    timed_loop(raw_post(floor_direct[0] + "/body", body), secs)[0],
                    "",
                )
            )
        rows.append(
            ("Serve floor, proxy: POST, no body read", timed_loop(raw_post(floor_proxy + "/empty", body), secs)[0], "")
        )
        rows.append(
            ("Serve floor, proxy: POST, body read", timed_loop(raw_post(floor_proxy + "/body", body), secs)[0], "")
        )
        via_proxy = Predictor(predictor.url)
        proxy_p50 = timed_loop(lambda: via_proxy.predict(obs[next(it) % len(obs)]), secs)[0]
        rows.append(("end to end: Predictor, direct (after)", direct_p50, ""))
        rows.append(("end to end: raw http.client, direct", raw_p50, ""))
        rows.append(("end to end: Predictor through the proxy", proxy_p50, ""))
        transport = direct_p50 - client_cpu - handler
        rows.append(("transport (end to end - client - replica handler)", transport, "direct"))
    finally:
        with contextlib.suppress(Exception):
            delete_floor()
        with contextlib.suppress(Exception):
            undeploy("bench-profile")
        if tmp is not None:
            LocalRayManager().down()
            tmp.cleanup()

    load = os.getloadavg()[0]
    print(f"\none /predict, one observation, one client: {os.cpu_count()} CPUs, load average {load:.1f}\n")
    print(f"{'piece':58} {'ms (p50)':>9}")
    for name, ms, extra in rows:
        print(f"{name:58} {ms:9.3f}  {extra}")
    print(
        f"\nof {direct_p50:.2f} ms end to end (direct): client {client_cpu:.2f} ms, replica handler {handler:.2f} ms, "
        f"transport {transport:.2f} ms; through the proxy {proxy_p50:.2f} ms ({proxy_p50 / direct_p50:.1f}x)"
    )


if __name__ == "__main__":
    main()
