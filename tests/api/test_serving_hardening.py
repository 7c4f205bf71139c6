"""Hardening of `rlo deploy` and the policy endpoint (issue 11).

Without Ray: deploy flags that can never work are exit 2 with what, where and the fix, before anything is looked
up or started (no Ray, no endpoint row); the request checks that bound what one request costs (nesting, unknown
fields, the body limit, the content type). With real Serve on 127.0.0.1 (marked `ray`): one endpoint of a short
real training run takes every HTTP case (body limit before reading, chunked bodies, deep JSON, content types),
then redeploys of it keep its API key unless `--no-api-key` asks for none."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.parse
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from serving_helpers import free_port, http, ok, rlo, spec_file

from orchestrator import UserError, attach
from orchestrator.predictor import Predictor
from orchestrator.records import EndpointRecord, RunRecord
from orchestrator.registry import Registry

# --- deploy flags, without Ray ---------------------------------------------------------------------------------------

RUN_ID = "rlo-20260101-000000-hard"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private RLO_HOME whose registry knows a run and a key-protected endpoint, and no embedded Ray."""
    home = tmp_path / "home"
    monkeypatch.setenv("RLO_HOME", str(home))
    reg = Registry(home / "registry.db")
    now = time.time()
    reg.create(RunRecord(RUN_ID, "hard", now, now, "ray-local", "SUCCEEDED", {"job": {"name": "hard"}}))
    reg.add_endpoint(
        EndpointRecord(
            "kept",
            RUN_ID,
            "/nowhere/checkpoint",
            "http://127.0.0.1:8000/kept",
            "ray-local",
            created_at=now,
            extra={"api_key_required": True, "api_key_sha256": "0" * 64},
        )
    )
    return home


def endpoint_rows(home: Path) -> list:
    return [(e.name, e.checkpoint, e.live, e.extra) for e in Registry(home / "registry.db").endpoints(True)]


def refused_before_anything_starts(home: Path, capsys, *flags) -> str:
    """`rlo deploy RUN FLAGS` (in this process: the CLI's own code path) is exit 2, one message, no traceback,
    and left no trace: no embedded Ray, no Ray in this process, the registry's endpoints unchanged."""
    from orchestrator.cli import main

    before = endpoint_rows(home)
    assert main(["deploy", RUN_ID, *map(str, flags)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlo: error: ") and "Traceback" not in err and "internal error" not in err, err
    assert not (home / "local-ray" / "state.json").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert endpoint_rows(home) == before
    return err


BAD_FLAGS = [
    (["--name", "../../x"], ["endpoint name `../../x` is not usable in a URL", "^[a-z0-9][-a-z0-9_.]{0,62}$"]),
    (["--name", "UPPER"], ["endpoint name `UPPER`", "lowercase letters"]),
    (["--host", "not a host"], ["--host `not a host` is not a host name or an IP address", "fix: give --host"]),
    (["--host", "no-such-host.invalid"], ["--host `no-such-host.invalid` does not resolve", "127.0.0.1"]),
    (["--host", "192.0.2.1"], ["(192.0.2.1) is not an address of this machine", "fix: give --host"]),
    (["--num-cpus", "nan"], ["--num-cpus nan is not a finite number"]),
    (["--num-cpus", "inf"], ["--num-cpus inf is not a finite number"]),
    (["--num-cpus", "-1"], ["--num-cpus -1.0: CPUs reserved per replica cannot be negative", "fix: --num-cpus 0"]),
    (["--replicas", "0"], ["--replicas 0: an endpoint needs at least 1 replica"]),
    (["--replicas", "-1"], ["--replicas -1: an endpoint needs at least 1 replica"]),
    (["--max-batch-size", "0"], ["--max-batch-size 0: the requests batched per forward pass must be 1..4096"]),
    (["--batch-wait-ms", "nan"], ["--batch-wait-ms (batch_wait_timeout_s) nan is not a finite number"]),
    (["--batch-wait-ms", "-1"], ["--batch-wait-ms -1: how long a request waits", "fix: --batch-wait-ms 1"]),
    (["--port", "0"], ["--port 0 is not a TCP port", "1..65535"]),
    (["--port", "70000"], ["--port 70000 is not a TCP port", "1..65535"]),
    (["--max-body-mb", "0"], ["--max-body-mb 0.0: the largest request body must be more than 0"]),
    (["--max-body-mb", "nan"], ["--max-body-mb nan is not a finite number"]),
    (["--api-key", "two words"], ["the API key (--api-key) holds spaces"]),
]


@pytest.mark.parametrize("flags,needles", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_deploy_flags_that_cannot_work_are_exit_2_before_anything_starts(home, capsys, flags, needles):
    err = refused_before_anything_starts(home, capsys, *flags)
    for n in needles:
        assert n in err, err
    assert "another port" not in err  # a bad host is not a busy port


def test_api_key_files_that_cannot_be_used(home, tmp_path, capsys):
    folder = tmp_path / "keys"
    folder.mkdir()
    err = refused_before_anything_starts(home, capsys, "--api-key-file", folder)
    assert f"--api-key-file {folder} is a folder, not a key file" in err and "fix: give the path of a file" in err

    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    assert f"the API key file {empty} is empty" in refused_before_anything_starts(home, capsys, "--api-key-file", empty)

    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\xff\xfe\x00key")
    assert f"the API key file {binary} is not text" in refused_before_anything_starts(
        home, capsys, "--api-key-file", binary
    )

    spaced = tmp_path / "spaced.key"
    spaced.write_text("two words\n")
    assert "holds spaces" in refused_before_anything_starts(home, capsys, "--api-key-file", spaced)

    under_a_file = binary / "sub" / "new.key"  # its folder cannot be made: a file is in the way
    err = refused_before_anything_starts(home, capsys, "--api-key-file", under_a_file)
    assert f"cannot write a new API key to {under_a_file}" in err and "a folder you can write to" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_api_key_file(home, tmp_path, capsys):
    locked = tmp_path / "locked.key"
    locked.write_text("secret-key\n")
    locked.chmod(0)
    err = refused_before_anything_starts(home, capsys, "--api-key-file", locked)
    assert f"cannot read the API key file {locked}" in err and "chmod 600" in err


def test_python_api_refuses_the_same_values(home):
    from orchestrator.serving import deploy

    for options, words in [
        ({"num_cpus": float("nan")}, "--num-cpus nan is not a finite number"),
        ({"replicas": 1.5}, "--replicas 1.5 is not a whole number"),
        ({"replicas": True}, "--replicas True is not a whole number"),
        ({"port": 0}, "--port 0 is not a TCP port"),
        ({"no_api_key": True, "api_key": "k" * 32}, "or --no-api-key, not both"),
    ]:
        looked_up: list[str] = []  # the run is looked up only once every option is checked: here, never

        def lookup(seen: list[str] = looked_up):
            seen.append(RUN_ID)
            return attach(RUN_ID)

        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            deploy(lookup, **options)
        assert looked_up == []
    # A run id is not a Run: refused with the call that works, before anything starts.
    with pytest.raises(UserError, match=r"deploy\(\) takes a Run, not the run id") as e:
        deploy(RUN_ID)
    assert f"orchestrator.attach('{RUN_ID}').deploy(...)" in e.value.fix
    assert not (home / "local-ray" / "state.json").exists()


def test_no_api_key_and_an_api_key_are_exclusive_flags(home, capsys):
    from orchestrator.cli import main

    assert main(["deploy", RUN_ID, "--no-api-key", "--api-key-file", "x.key"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not (home / "local-ray" / "state.json").exists()


def test_one_deploy_or_undeploy_at_a_time(home):
    """The serving lock is the embedded Ray's serving.lock, exclusive: another holder (another thread here, as
    another process would) waits until it is let go."""
    import threading

    from orchestrator.serving_ray import serving_lock
    from orchestrator.settings import settings

    order = []

    def second() -> None:
        with serving_lock():
            order.append("other")

    with serving_lock():
        assert (settings().local_ray_dir / "serving.lock").is_file()
        other = threading.Thread(target=second)
        other.start()
        time.sleep(0.5)
        order.append("first lets go")
    other.join(10)
    assert order == ["first lets go", "other"]


def test_port_in_use_is_said_only_for_a_busy_port():
    from orchestrator.serving_options import check_port_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError) as e:
            check_port_free("127.0.0.1", port)
    assert "something else listens there" in str(e.value) and "pick another port with --port" in str(e.value)
    with pytest.raises(UserError) as e:
        check_port_free("192.0.2.1", free_port())  # not this machine's address: not a port problem
    assert "another port" not in str(e.value) and "an address of this machine" in str(e.value)


# --- request checks, without Ray -------------------------------------------------------------------------------------


def cartpole_checker():
    from orchestrator.serving_endpoint import ObservationChecker

    return ObservationChecker(gym.spaces.Box(-4.8, 4.8, (4,), np.float32))


def bad_request(body: bytes):
    from orchestrator.serving_endpoint import BadRequest

    with pytest.raises(BadRequest) as e:
        cartpole_checker().parse(body)
    return e.value


def test_deep_json_is_a_400_not_a_crash():
    deep = b"[" * 100_000 + b"]" * 100_000  # Python's json gives up with RecursionError
    e = bad_request(deep)
    assert e.status == 400 and "nested more than 64 levels deep" in e.detail
    # Deep enough to pass json's own limit, deeper than any observation array.
    e = bad_request(b'{"observation": ' + b"[" * 200 + b"0" + b"]" * 200 + b"}")
    assert e.status == 400 and "nested more than 64 levels deep" in e.detail
    ok_req = cartpole_checker().parse(json.dumps({"observations": [[0.0, 0.1, 0.2, 0.3]] * 3}).encode())
    assert ok_req.obs.shape == (3, 4)


def test_many_unknown_fields_get_a_short_answer():
    body = json.dumps({f"field{i}": 0 for i in range(100_000)}).encode()
    e = bad_request(body)
    assert e.status == 400 and "and 99995 more" in e.detail and len(e.detail) < 500


@pytest.mark.parametrize(
    "body,status,detail",
    [
        # Flags are JSON booleans only (strict: no 1, no "true").
        ({"observation": [0] * 4, "values": 1}, 400, "`values` must be true or false, got 1"),
        ({"observation": [0] * 4, "probabilities": "true"}, 400, '`probabilities` must be true or false, got "true"'),
        # An input given as null counts as given: refused as not an array.
        ({"observation": None}, 422, "`observation` must be an array of numbers, got NoneType"),
        ({"observation": [0] * 4, "frames": None}, 400, "; got observation and frames"),
        # Unknown fields are named first, whatever else is wrong.
        ({"deterministic": "no", "extra": 1}, 400, "unknown field(s) `extra`; known fields: observation, observations"),
        ({"observations": [[0] * 4], "valeus": True}, 400, "(did you mean `values`?)"),
    ],
)
def test_request_fields_and_flags(body, status, detail):
    e = bad_request(json.dumps(body).encode())
    assert (e.status, detail in e.detail) == (status, True), e.detail


def test_a_good_request_gets_its_flags_and_atari_bodies_are_told_about_frames():
    from orchestrator.predict_api import BadRequest, ObservationChecker

    req = cartpole_checker().parse(b'{"observation": [0, 0.1, 0.2, 0.3], "deterministic": false, "values": true}')
    assert req.single and req.obs.shape == (1, 4) and req.obs.dtype == np.float32
    assert (req.deterministic, req.probabilities, req.values) == (False, False, True)
    atari = ObservationChecker(gym.spaces.Box(-1, 1, (64, 64, 4), np.float32), atari={"dim": 64, "framestack": 4})
    with pytest.raises(BadRequest) as e:
        atari.parse(b'{"values": true}')
    assert e.value.status == 400 and e.value.detail.endswith(
        "`observations` (a batch) or `frames` (raw Atari frames); got none"
    )


def test_default_body_limit_follows_the_observation_size():
    from orchestrator.serving_endpoint import default_body_limit

    assert default_body_limit((4,)) == 1 << 20  # CartPole: 4096 observations fit in the 1 MB floor
    assert default_body_limit((25,)) == 25 * 24 * 4096  # the auto-scaling env: 2.4 MB
    assert default_body_limit((64, 64, 4), {"dim": 64, "framestack": 4}) == 8 << 20  # Atari: the 8 MB cap


def test_content_type_must_be_json():
    from orchestrator.serving_endpoint import BadRequest, check_content_type

    for fine in ("application/json", "application/json; charset=utf-8", "Application/JSON", "application/x+json"):
        check_content_type({"content-type": fine})
    for bad in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        with pytest.raises(BadRequest) as e:
            check_content_type({"content-type": bad} if bad else {})
        assert e.value.status == 415 and "-H 'Content-Type: application/json'" in e.value.detail


# --- real Serve on 127.0.0.1 ---------------------------------------------------------------------------------------

PORT = free_port()
NAME = "hard"
OBS = [0.01, -0.02, 0.03, 0.04]


@pytest.fixture(scope="module")
def trained(rlo_home, tmp_path_factory):
    """A one-iteration real PPO run on CartPole."""
    folder = tmp_path_factory.mktemp("serving-hardening")
    job = {
        "name": "serve-hardening",
        "algorithm": "PPO",
        "env": "CartPole-v1",
        "hyperparameters": {"train_batch_size_per_learner": 500, "minibatch_size": 250, "num_epochs": 1},
        "stop": {"training_iteration": 1},
    }
    return ok(rlo(rlo_home, "submit", spec_file(folder, job), "--wait")).stdout.splitlines()[0].strip()


@pytest.fixture(scope="module")
def keyed(rlo_home, trained, tmp_path_factory):
    """The run's policy behind an API key (a key file), deployed once for the module; undeployed at the end."""
    key_file = tmp_path_factory.mktemp("keys") / "hard.key"
    res = ok(rlo(rlo_home, "deploy", trained, "--name", NAME, "--port", PORT, "--api-key-file", key_file, "--json"))
    info = json.loads(res.stdout)
    # The replica's own HTTP server (Serve's direct ingress), where Predictor sends requests: the same checks.
    (direct,) = Predictor.attach(NAME).direct_urls
    yield {**info, "key_file": key_file, "key": key_file.read_text().strip(), "direct": direct}
    rlo(rlo_home, "undeploy", "--all")


# --- the client, without the engine ---------------------------------------------------------------------------------

CLIENT_WITHOUT_RAY = """
import importlib.abc, sys

class NoRay(importlib.abc.MetaPathFinder):  # as on a machine where Ray is not installed
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")

sys.meta_path.insert(0, NoRay())

from orchestrator.predictor import Predictor
import orchestrator

url, key, obs = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3:]]
assert orchestrator.Predictor is Predictor
p = Predictor(url, key)
assert p.healthy()
one, three = p.predict(obs).tolist(), p.predict([obs] * 3).tolist()
assert one in (0, 1) and len(three) == 3 and set(three) <= {0, 1}, (one, three)
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""


@pytest.mark.ray
def test_the_client_queries_an_endpoint_without_ray(keyed):
    """`orchestrator.predictor` in a fresh interpreter where Ray cannot be imported: it loads no `ray` module and
    queries the real Serve endpoint (with its API key)."""
    import subprocess

    res = subprocess.run(
        [sys.executable, "-c", CLIENT_WITHOUT_RAY, keyed["url"], keyed["key"], *map(str, OBS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[]"]


def auth(keyed) -> dict:
    return {"Authorization": f"Bearer {keyed['key']}"}


def raw_http(head: str, parts=(), timeout: float = 30, port: int = PORT) -> tuple[int, dict]:
    """Send a request's head and then `parts` (bytes) on one connection, without finishing a body unless the
    parts do; read the answer. A server that waited for the rest of the body would time out here."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode())
        for p in parts:
            try:
                s.sendall(p)
            except (BrokenPipeError, ConnectionResetError):  # the server answered and stopped reading
                break
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, body = data.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next((int(ln.split(":", 1)[1]) for ln in lines if ln.lower().startswith("content-length:")), None)
        assert length is not None and length < 65536, lines
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, json.loads(body[:length])


def head(path: str, headers: dict, port: int = PORT) -> str:
    lines = [f"POST /{NAME}/{path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


def ports(keyed) -> list[int]:
    """Serve's proxy and the replica's own server: every check must hold on both ways in."""
    return [PORT, urllib.parse.urlsplit(keyed["direct"]).port]


@pytest.mark.ray
def test_info_shows_the_body_limit(keyed):
    assert keyed["max_body_bytes"] == 1 << 20 and keyed["api_key_required"] is True
    served = {k: v for k, v in keyed.items() if k not in ("url", "key_file", "key", "direct")}
    assert http("GET", keyed["url"] + "/info", headers=auth(keyed)) == (200, served)
    assert http("GET", keyed["direct"] + "/info", headers=auth(keyed)) == (200, served)


@pytest.mark.ray
def test_an_oversized_body_is_refused_before_it_is_read(keyed):
    # 200 MB announced, 64 KB sent: the answer must come without the rest of the body.
    headers = {**auth(keyed), "Content-Type": "application/json", "Content-Length": str(200 << 20)}
    for port in ports(keyed):
        status, out = raw_http(head("predict", headers, port), [b" " * 65536], port=port)
        assert status == 413, (port, out)
        assert f"the request body is {200 << 20} bytes; this endpoint takes at most {1 << 20} bytes" in out["detail"]
    # The endpoint still answers normally afterwards.
    body = json.dumps({"observation": OBS})
    assert http("POST", keyed["url"] + "/predict", body, auth(keyed))[0] == 200
    assert http("POST", keyed["direct"] + "/predict", body, auth(keyed))[0] == 200


@pytest.mark.ray
def test_a_chunked_body_is_refused_once_over_the_limit(keyed):
    headers = {**auth(keyed), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    chunk = b" " * 65536
    for port in ports(keyed):
        # 1.25 MB in 20 chunks and never the last chunk: the endpoint stops reading at 1 MB and answers.
        parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(20)]
        status, out = raw_http(head("predict", headers, port), parts, port=port)
        assert status == 413 and f"more than {1 << 20} bytes" in out["detail"], (port, out)

        # A chunked body under the limit is read whole.
        body = json.dumps({"observations": [OBS, OBS]}).encode()
        pieces = [body[:10], body[10:25], body[25:]]
        parts = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]
        status, out = raw_http(head("predict", headers, port), parts, port=port)
        assert status == 200 and len(out["actions"]) == 2, (port, out)


@pytest.mark.ray
def test_deep_json_over_http_is_a_400(keyed):
    for url in (keyed["url"], keyed["direct"]):
        status, out = http("POST", url + "/predict", "[" * 100_000 + "]" * 100_000, auth(keyed))
        assert status == 400 and "nested more than 64 levels deep" in out["detail"], (url, out)


@pytest.mark.ray
def test_only_json_bodies_are_taken(keyed):
    for base, port in zip((keyed["url"], keyed["direct"]), ports(keyed), strict=True):
        url, body = base + "/predict", json.dumps({"observation": OBS})
        for ctype in ("text/plain", "application/x-www-form-urlencoded"):  # the latter: curl -d's and urllib's
            status, out = http("POST", url, body, {**auth(keyed), "Content-Type": ctype})
            assert status == 415 and f"got `{ctype}`" in out["detail"] and "--json" in out["detail"], out
        headers = {**auth(keyed), "Content-Length": str(len(body))}
        status, out = raw_http(head("predict", headers, port), [body.encode()], port=port)
        assert status == 415 and "no Content-Type" in out["detail"], out
        status, out = http("POST", url, body, {**auth(keyed), "Content-Type": "application/json; charset=utf-8"})
        assert status == 200 and out["action"] in (0, 1)
        # Without the key, the key is what is refused first (nothing about the request is told).
        assert http("POST", url, body, {"Content-Type": "text/plain"})[0] == 401


@pytest.mark.ray
def test_a_redeploy_keeps_the_api_key_unless_asked_for_none(rlo_home, keyed, trained):
    url, body = keyed["url"] + "/predict", json.dumps({"observation": OBS})
    registry = Registry(Path(rlo_home) / "registry.db")

    # 1. Redeployed without a key flag (and with a smaller body limit): the key file's key still counts.
    res = ok(rlo(rlo_home, "deploy", trained, "--name", NAME, "--port", PORT, "--max-body-mb", "0.5"))
    assert f"endpoint `{NAME}` keeps the API key in {keyed['key_file']}" in res.stderr
    assert "kept from the previous deploy" in res.stderr and "--no-api-key" in res.stderr
    assert http("POST", url, body)[0] == 401
    assert http("POST", url, body, auth(keyed))[0] == 200
    (direct,) = Predictor.attach(NAME).direct_urls  # the new replica's own server: the key holds there too
    assert http("POST", direct + "/predict", body)[0] == 401
    assert http("POST", direct + "/predict", body, auth(keyed))[0] == 200
    status, info = http("GET", keyed["url"] + "/info", headers=auth(keyed))
    assert status == 200 and info["api_key_required"] is True and info["max_body_bytes"] == 1 << 19
    assert registry.endpoint(NAME).extra["api_key_required"] is True

    # 2. A key given with --api-key (the Python API here), then a redeploy without one: that key is kept, from
    #    its recorded hash (the key itself is stored nowhere), and deploy's own output still works.
    run = attach(trained)
    literal = "a-literal-key-0123456789abcdef"
    run.deploy(name=NAME, port=PORT, api_key=literal)
    notices: list[str] = []
    predictor = run.deploy(name=NAME, port=PORT, notices_out=notices)
    assert any(f"endpoint `{NAME}` keeps the API key it was deployed with" in n for n in notices), notices
    assert predictor.info()["api_key_required"] is True
    assert http("POST", url, body, {"Authorization": f"Bearer {literal}"})[0] == 200
    assert http("POST", url, body, auth(keyed))[0] == 403
    assert literal.encode() not in (Path(rlo_home) / "registry.db").read_bytes()
    res = ok(rlo(rlo_home, "deploy", trained, "--name", NAME, "--port", PORT, "--json"))
    assert json.loads(res.stdout)["api_key_required"] is True and "keeps the API key it was deployed with" in res.stderr
    assert http("POST", url, body, {"X-API-Key": literal})[0] == 200

    # 3. Asked for none: the endpoint is open, and the output says so.
    res = ok(rlo(rlo_home, "deploy", trained, "--name", NAME, "--port", PORT, "--no-api-key"))
    assert f"endpoint `{NAME}` no longer needs an API key (--no-api-key)" in res.stderr
    assert "API key     none" in res.stderr
    status, out = http("POST", url, body)
    assert status == 200 and out["action"] in (0, 1)
    assert registry.endpoint(NAME).extra["api_key_required"] is False
