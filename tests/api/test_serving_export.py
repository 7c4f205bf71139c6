"""Exported policies (`rlo export`) and the Ray-free server (`rlo serve`): the artifact's contents, its refusals,
and parity: the same observations given to the evaluation's policy (CheckpointPolicy), the Ray Serve endpoint
(`rlo deploy`), the artifact in-process (OnnxPolicy) and the artifact behind `rlo serve` (run with `import ray`
and `import torch` made to fail) get the same actions, and the same probabilities within 1e-5."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import test_serving
from serving_helpers import ROOT, free_port, http, ok, rlo, spec_file
from test_serving import env_observations, training_observations

from orchestrator import attach
from orchestrator.predictor import Predictor

# test_serving's short PPO run on the auto-scaling env with observation_scale (a module fixture: trained once here).
autoscale_run = test_serving.autoscale_run
PORT = free_port()  # Serve's HTTP proxy for this module's `rlo deploy`s
N_AUTOSCALE = 10_000
MAX_PER_REQUEST = 4096
TOLERANCE = 1e-5

# `rlo serve` with Ray and torch unimportable: any attempt is an ImportError, and is reported on stderr.
NO_RAY_NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ray", "torch"):
                print(f"[blocked] import {name}", file=sys.stderr, flush=True)
                raise ImportError(f"{name} is not importable here")

    sys.meta_path.insert(0, Blocked())
    from orchestrator.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


# --- helpers -----------------------------------------------------------------------------------------------------


class EdgeServer:
    """`rlo serve ARTIFACT --port 0 ...` in a subprocess without Ray and torch; its URL is the first line it prints."""

    def __init__(self, home: Path, artifact: Path, *args, timeout: float = 120) -> None:
        self.stderr_path = Path(home) / f"edge-{time.time_ns()}.err"
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", NO_RAY_NO_TORCH, "serve", str(artifact), "--port", "0", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, RLO_HOME=str(home)),
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http://"):
            self.stop()
            raise AssertionError(f"rlo serve did not start: {line!r}\n{self.stderr()}")
        self.url = line

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._err.close()
        return self.proc.returncode


def chunks(n: int, size: int = MAX_PER_REQUEST):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def over_http(predictor: Predictor, obs: np.ndarray, size: int = MAX_PER_REQUEST, **flags):
    """The whole batch, in requests of at most `size` observations: (actions, probabilities or None)."""
    parts = [predictor.query(obs[s], **flags) for s in chunks(len(obs), size)]
    actions = np.concatenate([p.actions for p in parts])
    probs = np.concatenate([p.action_probabilities for p in parts]) if flags.get("probabilities") else None
    return actions, probs


def as_rows(probs) -> np.ndarray:
    """In-process probabilities (one array per sub-action for MultiDiscrete) in the HTTP answer's layout."""
    return np.stack(probs, axis=1) if isinstance(probs, list) else np.asarray(probs)


def autoscale_observations(n: int) -> np.ndarray:
    """Half from a random-action rollout, half from the target-tracking baseline's (the states a working policy
    sees), of the real env with the run's env_config; plus the space's corners."""
    from orchestrator.autoscale.baselines import make_baseline

    random_half = env_observations("rlo/AutoScale-v0", n // 2, seed=3, max_time_steps=200)
    env = gym.make("rlo/AutoScale-v0", max_time_steps=200)
    baseline = make_baseline("target_tracking", {"max_time_steps": 200})
    obs, info = env.reset(seed=4)
    rest = []
    while len(rest) < n - len(random_half) - 2:
        rest.append(obs)
        obs, _, terminated, truncated, info = env.step(baseline.act(obs[None], None)[0])
        if terminated or truncated:
            obs, info = env.reset()
    corners = np.stack([env.observation_space.low, env.observation_space.high])
    return np.concatenate([random_half, np.stack(rest), corners]).astype(np.float32)


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(rlo_home, autoscale_run, tmp_path_factory):
    """`rlo export` of the auto-scaling run (the real command)."""
    folder = tmp_path_factory.mktemp("export")
    path = folder / "autoscale.onnx"
    res = ok(rlo(rlo_home, "export", autoscale_run, "-o", path, "--json"))
    return {"path": path, "result": json.loads(res.stdout), "folder": folder}


@pytest.fixture(scope="module")
def observations():
    return autoscale_observations(N_AUTOSCALE)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "parity.key"  # made with a new key by the first server


@pytest.fixture(scope="module")
def served(rlo_home, autoscale_run, key_file):
    """The run deployed on Ray Serve (`Run.deploy`, as `rlo deploy`), behind the API key."""
    predictor = attach(autoscale_run).deploy(name="parity", port=PORT, api_key_file=str(key_file))
    yield predictor
    predictor.undeploy()


@pytest.fixture(scope="module")
def edge(rlo_home, artifact, served, key_file):
    """The artifact behind `rlo serve`, with the same name and key file as the Serve endpoint."""
    server = EdgeServer(rlo_home, artifact["path"], "--name", "parity", "--api-key-file", key_file)
    yield server
    assert server.stop() == 0, server.stderr()


def key(key_file: Path) -> str:
    return key_file.read_text().strip()


# --- the artifact ------------------------------------------------------------------------------------------------


@pytest.mark.ray
def test_export_writes_one_self_contained_onnx_file(artifact, autoscale_run):
    import onnx

    from orchestrator.edge.spaces import space_from_json

    run = attach(autoscale_run)
    assert sorted(p.name for p in artifact["folder"].iterdir()) == ["autoscale.onnx"]  # nothing left beside it
    model = onnx.load(str(artifact["path"]))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["rlo"])
    assert meta == artifact["result"]["metadata"]
    assert meta["run_id"] == run.id and meta["checkpoint"] == str(Path(run.latest_checkpoint()).resolve())
    assert meta["env"] == "rlo/AutoScale-v0" and meta["algorithm"] == "PPO"
    assert meta["tool"]["version"] and meta["onnx"]["opset"] == 17
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    scale = run.policy_info()["env_config"]["observation_scale"]
    assert meta["preprocessing"]["observation_scale"] == scale and meta["preprocessing"]["atari"] is None
    # The env's own observation space (what callers send) and the action space, exact.
    assert space_from_json(meta["observation_space"]) == gym.spaces.Box(0.0, 1.0, (25,), np.float32)
    assert space_from_json(meta["action_space"]) == gym.spaces.MultiDiscrete([11, 11])
    assert meta["actions"]["distribution"] == "multi_categorical" and meta["actions"]["nvec"] == [11, 11]
    # One input with a dynamic batch axis; logits for both sub-actions and the value.
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "obs" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [25]
    assert [o.name for o in model.graph.output] == ["logits", "value"]
    assert artifact["result"]["max_abs_diff"] < 1e-5


@pytest.mark.ray
def test_run_export_python_api_defaults_to_the_run_id(autoscale_run, tmp_path, monkeypatch):
    from orchestrator.edge import OnnxPolicy

    monkeypatch.chdir(tmp_path)
    path = attach(autoscale_run).export(checkpoint="best")
    assert path == tmp_path / f"{autoscale_run}.onnx" and path.is_file()
    policy = OnnxPolicy.load(path)
    assert policy.metadata["checkpoint_choice"] == "best" and policy.metadata["run_id"] == autoscale_run
    assert policy.observation_space.shape == (25,) and policy.act(np.zeros((3, 25))).shape == (3, 2)


# --- parity --------------------------------------------------------------------------------------------------------


@pytest.mark.ray
def test_deterministic_actions_are_identical_everywhere(autoscale_run, artifact, observations, served, edge, key_file):
    from orchestrator.edge import OnnxPolicy

    assert observations.shape == (N_AUTOSCALE, 25)
    evaluated = attach(autoscale_run).policy().act(observations)  # what `rlo evaluate` runs
    assert evaluated.shape == (N_AUTOSCALE, 2) and len(np.unique(evaluated, axis=0)) > 1  # not a constant policy
    on_serve, _ = over_http(served, observations, probabilities=False, values=False)
    in_process = OnnxPolicy.load(artifact["path"]).act(observations)
    on_edge, _ = over_http(Predictor(edge.url, key(key_file)), observations, probabilities=False, values=False)
    for name, got in (("Serve", on_serve), ("OnnxPolicy", in_process), ("rlo serve", on_edge)):
        differing = int((got != evaluated).any(axis=1).sum())
        assert differing == 0, f"{name}: {differing} of {N_AUTOSCALE} actions differ from the evaluation's"


@pytest.mark.ray
def test_sampling_mode_gives_the_same_probabilities(autoscale_run, artifact, observations, served, edge, key_file):
    from orchestrator.edge import OnnxPolicy

    policy = attach(autoscale_run).policy()
    evaluated = as_rows(policy.action_probabilities(observations))
    assert evaluated.shape == (N_AUTOSCALE, 2, 11)
    flags = {"deterministic": False, "probabilities": True, "values": False}
    _, on_serve = over_http(served, observations, **flags)
    onnx_policy = OnnxPolicy.load(artifact["path"], seed=0)
    in_process = as_rows(onnx_policy.action_probabilities(observations))
    sampled, on_edge = over_http(Predictor(edge.url, key(key_file)), observations, **flags)
    for name, got in (("Serve", on_serve), ("OnnxPolicy", in_process), ("rlo serve", on_edge)):
        worst = float(np.max(np.abs(got - evaluated)))
        assert worst <= TOLERANCE, f"{name}: probabilities differ by up to {worst:g}"
    # The values too (the same network's other head).
    v = policy.value(observations[:500])
    np.testing.assert_allclose(onnx_policy.value(observations[:500]), v, atol=TOLERANCE, rtol=0)

    # Sampled actions: valid, reproducible with a seed, and distributed as the probabilities say.
    assert sampled.shape == (N_AUTOSCALE, 2) and sampled.min() >= 0 and sampled.max() <= 10
    draws = OnnxPolicy.load(artifact["path"], seed=7).act(observations, deterministic=False)
    again = OnnxPolicy.load(artifact["path"], seed=7).act(observations, deterministic=False)
    np.testing.assert_array_equal(draws, again)
    for sub in range(2):
        freq = np.bincount(draws[:, sub], minlength=11) / N_AUTOSCALE
        # Each frequency is a mean of 10,000 draws: its standard deviation is at most 0.005.
        assert np.max(np.abs(freq - evaluated[:, sub].mean(axis=0))) < 0.03


# --- the Ray-free server -------------------------------------------------------------------------------------------


@pytest.mark.ray
def test_rlo_serve_runs_without_ray_or_torch(edge, served, key_file):
    assert edge.url == f"{edge.url.rsplit('/', 1)[0]}/parity" and edge.url.startswith("http://127.0.0.1:")
    assert http("GET", edge.url + "/healthz") == (200, {"status": "ok"})
    obs = env_observations("rlo/AutoScale-v0", 5, seed=9, max_time_steps=200)
    assert Predictor(edge.url, key(key_file)).predict(obs).shape == (5, 2)
    assert "[blocked]" not in edge.stderr()  # nothing on its import path even tried to import Ray or torch
    # Its /info is the Serve endpoint's, but for how it batches and what runs it.
    own = {"batching", "artifact", "runtime", "tool_version"}
    edge_info = Predictor(edge.url, key(key_file)).info()
    serve_info = served.info()
    assert {k: v for k, v in edge_info.items() if k not in own} == {
        k: v for k, v in serve_info.items() if k != "batching"
    }


def _requests(limit: int, good: str) -> list[tuple[str, str, bytes | None, dict]]:
    """(method, route, body, headers) for answers both servers must give alike."""
    over = b'{"observations": [' + b" " * (limit + 10) + b"]}"
    many = json.dumps({"observations": np.zeros((4097, 25)).tolist()}).encode()
    json_type = {"Content-Type": "application/json"}
    return [
        ("POST", "predict", good.encode(), json_type),  # no key
        ("POST", "predict", good.encode(), {**json_type, "Authorization": "Bearer not-the-key"}),
        ("GET", "info", None, {}),
        ("POST", "predict", good.encode(), {"KEY": "", "Content-Type": "text/plain"}),
        ("POST", "predict", good.encode(), {"KEY": "", "Content-Type": "application/x-www-form-urlencoded"}),
        ("POST", "predict", over, {"KEY": "", **json_type}),
        ("POST", "predict", many, {"KEY": "", **json_type}),
        ("POST", "predict", b'{"observation": [0.5', {"KEY": "", **json_type}),
        ("POST", "predict", b'{"observation": [0.5, 0.5]}', {"KEY": "", **json_type}),
        ("POST", "predict", json.dumps({"observation": [1.5] * 25}).encode(), {"KEY": "", **json_type}),
        (
            "POST",
            "predict",
            json.dumps({"observation": [0.5] * 25, "obsevation": 1}).encode(),
            {"KEY": "", **json_type},
        ),
        ("POST", "predict", json.dumps({"frames": [[[[0, 0, 0]]]]}).encode(), {"KEY": "", **json_type}),
        ("POST", "predict", good.encode(), {"KEY": "", **json_type}),
    ]


@pytest.mark.ray
def test_rlo_serve_answers_refusals_like_the_serve_endpoint(edge, served, key_file):
    limit = served.info()["max_body_bytes"]
    good = json.dumps({"observation": [0.5] * 25, "probabilities": True, "values": True})
    statuses = []
    for method, route, body, headers in _requests(limit, good):
        if "KEY" in headers:
            headers = {k: v for k, v in headers.items() if k != "KEY"} | {"X-API-Key": key(key_file)}
        got_serve = http(method, f"{served.url}/{route}", body, headers)
        got_edge = http(method, f"{edge.url}/{route}", body, headers)
        if got_serve[0] == 200:  # the same answer; its floats from two runtimes, equal within the tolerance
            (_, a), (_, b) = got_serve, got_edge
            assert a.keys() == b.keys() and a["action"] == b["action"]
            np.testing.assert_allclose(b["action_probabilities"], a["action_probabilities"], atol=TOLERANCE, rtol=0)
            assert abs(b["value"] - a["value"]) <= TOLERANCE
        else:
            assert got_edge == got_serve, (route, headers, body[:80] if body else None)
        statuses.append(got_serve[0])
    assert statuses == [401, 403, 401, 415, 415, 413, 413, 400, 422, 422, 400, 400, 200]
    # Unknown routes and methods: Serve's proxy answers 404 in plain text, FastAPI in JSON; the status is the same.
    for method, route in (("GET", "predict"), ("GET", "nope")):
        assert http(method, f"{edge.url}/{route}")[0] == http(method, f"{served.url}/{route}")[0]


@pytest.mark.ray
@pytest.mark.parametrize("server", ["edge", "served"])
def test_a_body_over_the_limit_gets_its_413_while_the_client_is_still_sending(server, request, key_file):
    """Answering before the body is read and closing left the client's unsent bytes to a reset connection: CI saw
    `Broken pipe` instead of the 413. The body here (16 MiB over the limit) is far larger than loopback's socket
    buffers, so a server that does not read it to its end resets the connection every time, not only when the
    timing is unlucky."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(request.getfixturevalue(server).url)
    limit = http("GET", f"{url.scheme}://{url.netloc}{url.path}/info", None, {"X-API-Key": key(key_file)})[1]
    from orchestrator.predict_api import DRAIN_BYTES

    size = limit["max_body_bytes"] + DRAIN_BYTES  # the largest body that is drained: every byte of it must be read
    head = (
        f"POST {url.path}/predict HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {key(key_file)}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=60) as s:
        s.sendall(head)
        block = b" " * 2**16
        for _ in range(size // len(block)):
            s.sendall(block)
        s.sendall(b" " * (size % len(block)))
        answer = b""
        while chunk := s.recv(2**16):
            answer += chunk
    status = answer.split(b"\r\n", 1)[0]
    assert status.split()[1] == b"413", answer[:300]
    assert b"takes at most" in answer


# --- refusals ------------------------------------------------------------------------------------------------------


def _refused(capsys, *args) -> str:
    from orchestrator.cli import main  # in this process: the same code path as `rlo`, without the start-up

    assert main([*map(str, args)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


@pytest.mark.ray
def test_export_refuses_what_cannot_be_exported(autoscale_run, tmp_path, capsys):
    assert "no run `rlo-no-such-run`" in _refused(capsys, "export", "rlo-no-such-run", "-o", tmp_path / "a.onnx")
    (tmp_path / "empty").mkdir()
    err = _refused(capsys, "export", autoscale_run, "--checkpoint", tmp_path / "empty", "-o", tmp_path / "b.onnx")
    assert "is not an RLlib checkpoint" in err
    assert "no such folder" in _refused(capsys, "export", autoscale_run, "--checkpoint", tmp_path / "nowhere")
    assert "is a folder; it takes a file" in _refused(capsys, "export", autoscale_run, "-o", tmp_path)
    assert "cannot" in _refused(capsys, "export", autoscale_run, "-o", "/proc/rlo/policy.onnx")
    assert "'tflite' is not one of 'onnx'" in _refused(capsys, "export", autoscale_run, "--format", "tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing written by a refused export


def test_serve_refuses_what_is_not_an_artifact(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    assert "is not an ONNX model ONNX Runtime can load" in _refused(capsys, "serve", text)
    plain = tmp_path / "identity.onnx"  # a valid ONNX model, but not one `rlo export` wrote
    x = helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["obs"], ["logits"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(plain))
    assert "not an `rlo export` artifact" in _refused(capsys, "serve", plain)
    assert "no such file" in _refused(capsys, "serve", tmp_path / "missing.onnx")
    assert "is a folder" in _refused(capsys, "serve", tmp_path)
    assert "--port 70000 is not a TCP port" in _refused(capsys, "serve", plain, "--port", 70000)


@pytest.mark.ray
def test_serve_on_an_exposed_host_needs_a_key_or_consent(artifact, capsys):
    err = _refused(capsys, "serve", artifact["path"], "--host", "0.0.0.0", "--port", free_port())
    assert "reachable from other machines, and it has no API key" in err and "--no-api-key" in err


# --- Pong -----------------------------------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_pong_frame_stacks_get_the_same_answers_everywhere(rlo_home, tmp_path):
    """A tiny IMPALA Pong run (test_serving's job: one iteration, about 90 s here), exported and deployed."""
    from ray.rllib.utils.images import resize, rgb2gray

    from orchestrator.edge import OnnxPolicy
    from orchestrator.predict_api import preprocess_atari_frames

    job = {
        "name": "export-pong",
        "algorithm": "IMPALA",
        "env": "ALE/Pong-v5",
        "hyperparameters": {"train_batch_size_per_learner": 200, "min_time_s_per_iteration": 1},
        "stop": {"training_iteration": 1},
    }
    run_id = ok(rlo(rlo_home, "submit", spec_file(tmp_path, job), "--wait")).stdout.splitlines()[0].strip()
    run = attach(run_id)
    path = tmp_path / "pong.onnx"
    meta = json.loads(ok(rlo(rlo_home, "export", run_id, "-o", path, "--json")).stdout)["metadata"]
    atari = meta["preprocessing"]["atari"]
    assert (atari["dim"], atari["framestack"], atari["grayscale"], atari["value_range"]) == (64, 4, True, [-1.0, 1.0])

    obs = training_observations("ALE/Pong-v5", 200)  # through RLlib's Atari wrappers, as training sees them
    policy = run.policy()
    evaluated, probs = policy.act(obs), policy.action_probabilities(obs)
    onnx_policy = OnnxPolicy.load(path)
    np.testing.assert_array_equal(onnx_policy.act(obs), evaluated)
    assert np.max(np.abs(onnx_policy.action_probabilities(obs) - probs)) <= TOLERANCE

    raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    frame, _ = raw.reset(seed=0)
    frames = [frame]
    for i in range(11):
        frame, *_ = raw.step(i % 6)
        frames.append(frame)
    # 3 stacks of 4 raw frames: ~5 MB of JSON, under the 8 MB body limit.
    stacks = np.stack([np.stack(frames[i : i + 4]) for i in (0, 4, 8)])
    # The Ray-free frame pipeline (both servers') is RLlib's, bit for bit.
    for s in stacks:
        rllib = np.stack([resize(rgb2gray(f), height=64, width=64) for f in s], axis=2).astype(np.float32) / 128 - 1
        np.testing.assert_array_equal(preprocess_atari_frames(s, 64), rllib)

    predictor = run.deploy(name="pong", port=PORT)
    server = EdgeServer(rlo_home, path)
    try:
        edge = Predictor(server.url)
        assert server.url.endswith("/export-pong")  # the run's endpoint name, as `rlo deploy` names it
        flags = {"deterministic": False, "probabilities": True, "values": False}
        # 16 observations of 64x64x4 are ~6 MB of JSON: under the 8 MB body limit.
        for name, client in (("Serve", predictor), ("rlo serve", edge)):
            actions, _ = over_http(client, obs, size=16, probabilities=False, values=False)
            assert (actions == evaluated).all(), name
            _, got = over_http(client, obs[:64], size=16, **flags)
            assert np.max(np.abs(got - probs[:64])) <= TOLERANCE, name
        want = policy.act(np.stack([preprocess_atari_frames(s, 64) for s in stacks]))
        np.testing.assert_array_equal(predictor.predict_frames(stacks), want)
        np.testing.assert_array_equal(edge.predict_frames(stacks), want)
        assert "[blocked]" not in server.stderr()
    finally:
        assert server.stop() == 0, server.stderr()
        predictor.undeploy()
