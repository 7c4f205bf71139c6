"""Serving a trained policy: checks without Ray (request checks, Atari frames, registry migration), then real
Ray Serve on 127.0.0.1 (marked `ray`): a checkpoint of a short real training run deployed with `rlo deploy`,
predictions compared with the same policy called in-process, bad requests, the API key, undeploy."""

from __future__ import annotations

import json
import socket
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from serving_helpers import free_port, http, ok, rlo, spec_file

from orchestrator import Estimator, JobSpec, UserError, attach
from orchestrator.predictor import PredictionError, Predictor
from orchestrator.records import EndpointRecord
from orchestrator.registry import Registry
from orchestrator.registry_schema import MIGRATIONS, SCHEMA_VERSION

# Serve's one HTTP proxy is shared by every endpoint: all deployments of this module use this port.
PORT = free_port()


# --- without Ray ---------------------------------------------------------------------------------------------------


def test_registry_migrates_version_1_forward(tmp_path):
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as c:  # a registry written by the previous version
        c.executescript(MIGRATIONS[1])
        c.execute(
            "INSERT INTO runs (id, name, created_at, updated_at, backend, status, spec_json) "
            "VALUES ('r1', 'r1', 1, 1, 'ray-local', 'SUCCEEDED', '{}')"
        )
        c.execute("PRAGMA user_version=1")
    reg = Registry(path)
    assert reg.schema_version == SCHEMA_VERSION >= 3  # migrated through every later version
    assert reg.get("r1").status == "SUCCEEDED"

    first = EndpointRecord("cp", "r1", "/c/1", "http://127.0.0.1:8000/cp", "ray-local", created_at=10.0)
    assert reg.add_endpoint(first) is None
    replaced = reg.add_endpoint(EndpointRecord("cp", "r1", "/c/2", first.url, "ray-local", created_at=20.0))
    assert replaced.checkpoint == "/c/1"
    assert [e.checkpoint for e in reg.endpoints()] == ["/c/2"]
    assert reg.endpoint("cp").checkpoint == "/c/2"
    assert reg.mark_undeployed("cp") and not reg.mark_undeployed("cp")
    assert reg.endpoint("cp") is None and reg.endpoints() == []
    assert [(e.checkpoint, e.live) for e in reg.endpoints(include_undeployed=True)] == [
        ("/c/2", False),
        ("/c/1", False),
    ]


def checker(space, atari=None):
    from orchestrator.serving_endpoint import ObservationChecker

    return ObservationChecker(space, atari=atari)


def refused(chk, body, status: int, words: str):
    from orchestrator.serving_endpoint import BadRequest

    with pytest.raises(BadRequest) as e:
        chk.parse(body if isinstance(body, bytes) else json.dumps(body).encode())
    assert e.value.status == status and words in e.value.detail, e.value.detail


def test_integer_image_spaces_take_integer_pixels():
    chk = checker(gym.spaces.Box(0, 255, (4, 8, 8), np.uint8))
    ok = chk.parse(json.dumps({"observation": np.full((4, 8, 8), 7).tolist()}).encode())
    assert ok.obs.dtype == np.uint8 and ok.obs.shape == (1, 4, 8, 8) and ok.single
    refused(chk, {"observation": np.full((4, 8, 8), 7.5).tolist()}, 422, "is not an integer")
    refused(chk, {"observation": np.full((4, 8, 8), 256).tolist()}, 422, "outside the observation space")
    refused(chk, {"observations": np.zeros((4097, 4, 8, 8)).tolist()}, 413, "at most 4096")


def test_atari_frames_are_preprocessed_like_rllibs_wrappers():
    # Raw frames through RLlib's own wrappers (the ones training uses, in that order) vs the endpoint's function.
    from ray.rllib.env.wrappers.atari_wrappers import FrameStack, GrayScaleAndResize, NormalizedImageEnv

    from orchestrator.serving_endpoint import preprocess_atari_frames

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(4, 210, 160, 3), dtype=np.uint8)

    class Frames(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            self.i = 0
            return frames[0], {}

        def step(self, action):
            self.i += 1
            return frames[self.i], 0.0, False, False, {}

    env = FrameStack(NormalizedImageEnv(GrayScaleAndResize(Frames(), dim=64)), k=4)
    env.reset()
    for _ in range(3):  # after 3 steps the stack holds frames 0..3, oldest first
        expected, *_ = env.step(0)
    got = preprocess_atari_frames(frames, 64)
    assert got.shape == (64, 64, 4) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)

    chk = checker(env.observation_space, atari={"dim": 64, "framestack": 4})
    req = chk.parse(json.dumps({"frames": frames.tolist()}).encode())
    np.testing.assert_array_equal(req.obs[0], expected)
    refused(chk, {"frames": frames[:3].tolist()}, 422, "the last 4 raw RGB frames")
    refused(chk, {"frames": (frames.astype(int) + 300).tolist()}, 422, "0..255")


def test_served_space_undoes_the_trainings_observation_scale():
    from types import SimpleNamespace

    from orchestrator.serving_endpoint import served_observation_space

    scaled = gym.spaces.Box(0.0, 20.0, (3,), np.float32)  # trained on raw [0, 1] x (20, -2, 0)
    policy = SimpleNamespace(observation_space=scaled, observation_scale=np.array([20.0, -2.0, 0.0], np.float32))
    space = served_observation_space(policy)
    np.testing.assert_array_equal(space.high, [1.0, 0.0, np.inf])
    np.testing.assert_array_equal(space.low, [0.0, -10.0, -np.inf])


def test_estimator_deploys_only_after_fit():
    est = Estimator(job=JobSpec(algorithm="PPO", env="CartPole-v1"))
    with pytest.raises(UserError, match="has not trained anything yet"):
        est.deploy()


# --- real Serve on 127.0.0.1 ------------------------------------------------------------------------------------------


def env_observations(env_id: str, n: int, seed: int = 0, **env_config) -> np.ndarray:
    """Observations an agent meets: a random-action rollout of the real env."""
    if env_id.startswith("rlo/"):
        import orchestrator.autoscale  # noqa: F401  (registers the id)
    env = gym.make(env_id, **env_config)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = []
    while len(out) < n:
        out.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(out)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP listener on `port`, from /proc/net/tcp{,6} (Linux)."""
    found = set()
    for name, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(name) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if state == "0A" and int(p, 16) == port:
                    raw = bytes.fromhex(addr)
                    if width == 8:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@pytest.fixture(scope="module")
def cartpole(rlo_home, tmp_path_factory):
    """A short real PPO run on CartPole, followed with `rlo attach --plot-to`."""
    folder = tmp_path_factory.mktemp("serving")
    job = {
        "name": "serve-cartpole",
        "algorithm": "PPO",
        "env": "CartPole-v1",
        "num_envs_per_env_runner": 4,
        "hyperparameters": {"train_batch_size_per_learner": 1000, "minibatch_size": 250, "num_epochs": 2},
        "stop": {"training_iteration": 2},
    }
    run_id = ok(rlo(rlo_home, "submit", spec_file(folder, job))).stdout.strip()
    png = folder / "live.png"
    attached = ok(rlo(rlo_home, "attach", run_id, "--plot-to", png))
    return {"run_id": run_id, "png": png, "attach": attached}


@pytest.fixture(scope="module")
def endpoint(rlo_home, cartpole):
    """The CartPole run's policy deployed with `rlo deploy` (undeployed at the end, whatever happens)."""
    res = ok(rlo(rlo_home, "deploy", cartpole["run_id"], "--name", "cartpole", "--port", PORT, "--json"))
    info = json.loads(res.stdout)
    yield info
    rlo(rlo_home, "undeploy", "--all")


@pytest.fixture(scope="module")
def cartpole_policy(cartpole):
    return attach(cartpole["run_id"]).policy()


@pytest.mark.ray
def test_attach_plot_keeps_a_png_of_the_run(cartpole):
    assert f"live plot: {cartpole['png']}" in cartpole["attach"].stderr
    data = cartpole["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # The final render saw both iterations (it re-renders at the end of attach).
    assert len(attach(cartpole["run_id"]).metrics()) == 2


@pytest.mark.ray
def test_endpoint_acts_like_the_policy_in_process(endpoint, cartpole, cartpole_policy):
    assert endpoint["url"] == f"http://127.0.0.1:{PORT}/cartpole"
    obs = env_observations("CartPole-v1", 64)
    expected = cartpole_policy.act(obs)

    status, out = http("POST", endpoint["url"] + "/predict", json.dumps({"observations": obs.tolist()}))
    assert status == 200 and out["actions"] == expected.tolist()

    predictor = Predictor(endpoint["url"])
    np.testing.assert_array_equal(predictor.predict(obs), expected)
    assert predictor.predict(obs[3]) == expected[3]  # one observation in, one action out

    q = predictor.query(obs[:8])
    np.testing.assert_array_equal(q.actions, expected[:8])
    np.testing.assert_allclose(q.action_probabilities, cartpole_policy.action_probabilities(obs[:8]), atol=1e-6)
    np.testing.assert_allclose(q.action_probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(q.values, cartpole_policy.value(obs[:8]), rtol=1e-5, atol=1e-5)
    assert q.actions.tolist() == q.action_probabilities.argmax(axis=1).tolist()


@pytest.mark.ray
def test_concurrent_requests_get_their_own_answers(endpoint, cartpole_policy):
    # Concurrent requests are batched into one forward pass: each must still get exactly its own answer.
    obs = env_observations("CartPole-v1", 120, seed=1)
    expected = cartpole_policy.act(obs)
    # Through Serve's proxy, and straight to the replica's own server (what `attach`/deploy's Predictor uses).
    for predictor in (Predictor(endpoint["url"]), Predictor.attach("cartpole")):

        def one(i: int, predictor=predictor):
            if i % 3 == 0:
                return predictor.predict(obs[i : i + 7]).tolist(), expected[i : i + 7].tolist()
            if i % 3 == 1:
                return predictor.predict(obs[i]).tolist(), expected[i].tolist()
            return predictor.query(obs[i], values=False).actions.tolist(), expected[i].tolist()

        with ThreadPoolExecutor(16) as pool:
            pairs = list(pool.map(one, range(len(obs) - 7)))
        assert all(got == want for got, want in pairs)


@pytest.mark.ray
def test_predictor_goes_to_the_replica_and_back_to_the_proxy_when_it_is_gone(endpoint, cartpole_policy):
    obs = env_observations("CartPole-v1", 8, seed=2)
    expected = cartpole_policy.act(obs)
    (direct,) = Predictor.attach("cartpole").direct_urls
    assert urllib.parse.urlsplit(direct).port != PORT and direct.endswith("/cartpole")
    assert http("POST", direct + "/predict", json.dumps({"observations": obs.tolist()})) == (
        200,
        {"actions": expected.tolist()},
    )
    # A replica URL where nothing listens any more (a replica restarted on another port): the proxy answers.
    gone = Predictor(endpoint["url"], direct_urls=[f"http://127.0.0.1:{free_port()}/cartpole"])
    np.testing.assert_array_equal(gone.predict(obs), expected)
    assert gone.predict(obs[0]) == expected[0]


BAD_REQUESTS = [
    ('{"observation": [0.1, 0.2, 0.3]', 400, "not valid JSON"),
    ("[0.1, 0.2, 0.3, 0.4]", 400, "must be a JSON object"),
    ("{}", 400, "give exactly one of `observation`"),
    ('{"observation": [0, 0, 0, 0], "observations": [[0, 0, 0, 0]]}', 400, "got observation and observations"),
    ('{"obsevation": [0, 0, 0, 0]}', 400, "unknown field(s) `obsevation` (did you mean `observation`?)"),
    ('{"observation": [0, 0, 0, 0], "deterministic": "yes"}', 400, "`deterministic` must be true or false"),
    ('{"observation": [0.1, 0.2, 0.3]}', 422, "has shape (3,), expected (4,)"),
    ('{"observation": [[0, 0, 0, 0], [0, 0, 0, 0]]}', 422, "a batch: send it as `observations`"),
    ('{"observations": [0, 0, 0, 0]}', 422, "one observation: send it as `observation`"),
    ('{"observations": []}', 422, "`observations` is empty"),
    ('{"observation": [0, [0], 0, 0]}', 422, "not a rectangular array"),
    ('{"observation": [0, "a", 0, 0]}', 422, "must hold only numbers, got strings"),
    ('{"observation": [true, false, true, true]}', 422, "must hold only numbers, got booleans"),
    ('{"observation": "0 0 0 0"}', 422, "must be an array of numbers"),
    ('{"observation": [0, NaN, 0, 0]}', 422, "observation[1] is nan"),
    ('{"observations": [[0, 0, 0, 0], [0, 0, Infinity, 0]]}', 422, "observations[1][2] is inf"),
    ('{"observation": [0, 1e39, 0, 0]}', 422, "observation[1] = 1e+39 does not fit in float32"),
    ('{"observation": [9.5, 0, 0, 0]}', 422, "observation[0] = 9.5 is outside the observation space ([-4.8, 4.8]"),
    ('{"frames": [[[[0, 0, 0]]]]}', 400, "`frames` (raw Atari frames) is only for"),
]


@pytest.mark.parametrize("body,status,reason", BAD_REQUESTS, ids=[r[2][:40] for r in BAD_REQUESTS])
def test_the_shared_request_checks_refuse_with_the_reason(body, status, reason):
    # What both servers (the Serve endpoint, `rlo serve`) run on a body, without Ray.
    from orchestrator.predict_api import BadRequest, ObservationChecker

    with pytest.raises(BadRequest) as e:
        ObservationChecker(gym.make("CartPole-v1").observation_space).parse(body.encode())
    assert (e.value.status, reason in e.value.detail) == (status, True), e.value.detail


@pytest.mark.ray
@pytest.mark.parametrize("body,status,reason", BAD_REQUESTS, ids=[r[2][:40] for r in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_the_reason(endpoint, body, status, reason):
    got, out = http("POST", endpoint["url"] + "/predict", body, {"Content-Type": "application/json"})
    assert (got, reason in out.get("detail", "")) == (status, True), out


@pytest.mark.ray
def test_predictor_raises_the_endpoints_reason(endpoint):
    with pytest.raises(PredictionError) as e:
        Predictor(endpoint["url"]).predict([[0.1, 0.2, 0.3]])
    assert e.value.status == 422 and "has shape (1, 3)" in e.value.detail
    assert http("GET", endpoint["url"] + "/predict")[0] == 405
    assert http("GET", endpoint["url"] + "/nope")[0] == 404


@pytest.mark.ray
def test_info_health_endpoints_and_loopback_only(rlo_home, endpoint, cartpole):
    run = attach(cartpole["run_id"])
    assert http("GET", endpoint["url"] + "/healthz") == (200, {"status": "ok"})
    status, info = http("GET", endpoint["url"] + "/info")
    assert status == 200 and info == {k: v for k, v in endpoint.items() if k != "url"}
    assert info["run_id"] == run.id and info["checkpoint"] == str(Path(run.latest_checkpoint()).resolve())
    assert info["observation_space"]["shape"] == [4] and info["action_space"] == {
        "type": "Discrete",
        "n": 2,
        "start": 0,
    }
    assert info["api_key_required"] is False and info["env"] == "CartPole-v1"

    listed = json.loads(ok(rlo(rlo_home, "endpoints", "--json")).stdout)
    assert [(e["name"], e["state"], e["url"], e["run_id"]) for e in listed] == [
        ("cartpole", "up", endpoint["url"], run.id)
    ]
    assert listed[0]["choice"] == "latest" and listed[0]["iteration"] == 2

    # Serve's HTTP proxy listens on loopback only, and so does the replica's own server (direct ingress).
    assert listening_addresses(PORT) == {"127.0.0.1"}
    (direct,) = Predictor.attach("cartpole").direct_urls
    assert listening_addresses(urllib.parse.urlsplit(direct).port) == {"127.0.0.1"}
    assert http("GET", direct + "/healthz") == (200, {"status": "ok"}) and http("GET", direct + "/info") == (200, info)


@pytest.mark.ray
def test_deploy_refuses_what_cannot_work(rlo_home, endpoint, cartpole, tmp_path, capsys):
    from orchestrator.cli import main  # in this process: the same code path as `rlo`, without the start-up

    def refused(*args) -> str:
        assert main(["deploy", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    run_id = cartpole["run_id"]
    assert "no run `rlo-no-such-run`" in refused("rlo-no-such-run")
    assert "no such folder" in refused(run_id, "--checkpoint", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "is not an RLlib checkpoint" in refused(run_id, "--checkpoint", tmp_path / "empty")
    assert "is not usable in a URL" in refused(run_id, "--name", "Not A Name!")
    # Every endpoint shares Serve's one proxy: another port cannot be had while it runs.
    assert f"already listens on 127.0.0.1:{PORT}" in refused(run_id, "--name", "other", "--port", free_port())
    assert [e.name for e in Registry(Path(rlo_home) / "registry.db").endpoints()] == ["cartpole"]


@pytest.fixture(scope="module")
def autoscale_run(rlo_home, tmp_path_factory):
    """A short real PPO run on the auto-scaling env, trained on scaled observations as the main job is."""
    folder = tmp_path_factory.mktemp("serving-autoscale")
    job = {
        "name": "serve-autoscale",
        "algorithm": "PPO",
        "env": "rlo/AutoScale-v0",
        "env_config": {"max_time_steps": 200, "observation_scale": [20.0, 1.0, 1.0, 20.0] * 5 + [1.0] * 5},
        "hyperparameters": {"train_batch_size_per_learner": 1000, "minibatch_size": 250, "num_epochs": 1},
        "stop": {"training_iteration": 1},
    }
    res = ok(rlo(rlo_home, "submit", spec_file(folder, job), "--wait"))
    return res.stdout.splitlines()[0].strip()


@pytest.mark.ray
def test_autoscale_policy_behind_an_api_key(rlo_home, endpoint, autoscale_run, tmp_path):
    run = attach(autoscale_run)
    key_file = tmp_path / "keys" / "autoscale.key"
    predictor = run.deploy(name="autoscale", api_key_file=str(key_file))  # the Python API, in this process
    try:
        key = key_file.read_text().strip()
        assert len(key) >= 32 and key_file.stat().st_mode & 0o777 == 0o600
        assert predictor.url == f"http://127.0.0.1:{PORT}/autoscale"  # beside the CartPole endpoint

        obs = env_observations("rlo/AutoScale-v0", 50, max_time_steps=200)
        body = json.dumps({"observations": obs.tolist()})
        url = predictor.url + "/predict"
        status, out = http("POST", url, body)
        assert status == 401 and "needs an API key" in out["detail"]
        status, out = http("POST", url, body, {"Authorization": "Bearer not-the-key"})
        assert status == 403 and "not the one" in out["detail"]
        assert http("GET", predictor.url + "/info")[0] == 401
        assert http("GET", predictor.url + "/healthz")[0] == 200  # health needs no key

        policy = run.policy()  # with the run's observation scaling, as training and serving use it
        expected = policy.act(obs)
        status, out = http("POST", url, body, {"X-API-Key": key})
        assert status == 200 and out["actions"] == expected.tolist()
        np.testing.assert_array_equal(predictor.predict(obs), expected)
        assert expected.shape == (50, 2)

        # Another client finds the key through the registry's record of the key file.
        again = Predictor.attach("autoscale")
        q = again.query(obs[:5])
        assert q.action_probabilities.shape == (5, 2, 11)  # MultiDiscrete([11, 11]): one row per sub-action
        np.testing.assert_allclose(q.action_probabilities, np.stack(policy.action_probabilities(obs[:5]), 1), atol=1e-6)
        np.testing.assert_allclose(q.values, policy.value(obs[:5]), rtol=1e-5, atol=1e-5)

        # Requests are checked against the env's own space ([0, 1]), not the scaled one the network saw.
        info = again.info()
        assert info["observation_space"]["low"] == 0.0 and info["observation_space"]["high"] == 1.0
        fine, too_big = obs[0].copy(), obs[0].copy()
        fine[0], too_big[0] = 1.0, 1.5
        assert again.predict(fine).shape == (2,)
        with pytest.raises(PredictionError, match=r"observation\[0\] = 1.5 is outside the observation space"):
            again.predict(too_big)
    finally:
        predictor.undeploy()
    assert http("GET", predictor.url + "/healthz")[0] == 404  # gone; the CartPole endpoint still serves
    assert http("GET", endpoint["url"] + "/healthz")[0] == 200


@pytest.mark.ray
def test_undeploy_stops_the_endpoint(rlo_home, endpoint):
    direct_port = urllib.parse.urlsplit(Predictor.attach("cartpole").direct_urls[0]).port
    res = ok(rlo(rlo_home, "undeploy", "cartpole"))
    assert res.stdout.strip() == "undeployed cartpole"
    # The last endpoint gone, Serve itself stops: nothing listens on the port any more.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(endpoint["url"] + "/healthz", timeout=10)
    assert listening_addresses(PORT) == set() and listening_addresses(direct_port) == set()
    assert "no endpoint is deployed" in ok(rlo(rlo_home, "endpoints")).stdout
    history = json.loads(ok(rlo(rlo_home, "endpoints", "--all", "--json")).stdout)
    assert {(e["name"], e["state"]) for e in history} >= {("cartpole", "undeployed"), ("autoscale", "undeployed")}
    res = ok(rlo(rlo_home, "undeploy", "cartpole"), 2)
    assert "no endpoint `cartpole` is deployed" in res.stderr


def training_observations(env_id: str, n: int, seed: int = 0) -> np.ndarray:
    """Observations of the env as training makes it (envs.make_env; a batched VectorEnv when the env has
    its own and training uses it), from a random-action rollout."""
    from orchestrator import envs

    vectorized = envs.has_vector_entry_point(env_id)
    env = envs.make_env(env_id, None, {"num_envs": 1} if vectorized else {})
    space = env.single_action_space if vectorized else env.action_space
    space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(n):
        out.append(obs[0] if vectorized else obs)
        action = space.sample()
        obs, *_ = env.step(np.array([action]) if vectorized else action)
    env.close()
    return np.stack(out)


@pytest.mark.ray
@pytest.mark.slow
def test_pong_policy_takes_image_observations(rlo_home, tmp_path):
    from orchestrator.serving_endpoint import preprocess_atari_frames

    job = {
        "name": "serve-pong",
        "algorithm": "IMPALA",
        "env": "ALE/Pong-v5",
        "hyperparameters": {"train_batch_size_per_learner": 200, "min_time_s_per_iteration": 1},
        "stop": {"training_iteration": 1},
    }
    run_id = ok(rlo(rlo_home, "submit", spec_file(tmp_path, job), "--wait")).stdout.splitlines()[0].strip()
    run = attach(run_id)
    predictor = run.deploy(name="pong", port=PORT)
    try:
        policy = run.policy()
        info = predictor.info()
        assert info["observation_space"]["shape"] == list(policy.observation_space.shape)
        batch = training_observations("ALE/Pong-v5", 6)
        assert batch.shape[1:] == policy.observation_space.shape
        np.testing.assert_array_equal(predictor.predict(batch), policy.act(batch))
        assert predictor.predict(batch[0]) == policy.act(batch[:1])[0]

        raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
        frame, _ = raw.reset(seed=0)
        frames = [frame]
        for _ in range(3):
            frame, *_ = raw.step(0)
            frames.append(frame)
        frames = np.stack(frames)
        # Trained on RLlib's Atari wrappers' frames (64x64 grey, 4 stacked), so raw frames are preprocessed the same.
        assert policy.observation_space.shape == (64, 64, 4)
        assert info["preprocessing"].startswith("RLlib's Atari wrappers")
        assert predictor.predict_frames(frames) == policy.act(preprocess_atari_frames(frames, 64)[None])[0]
    finally:
        predictor.undeploy()
