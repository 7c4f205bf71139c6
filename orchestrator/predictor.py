"""The client of a deployed policy endpoint (SageMaker's `predictor.predict()`): `Predictor`, and what it
returns or raises. It needs no Ray: importing this module loads no `ray` module, so a machine without the
engine installed can query an endpoint.

    predictor = Predictor.attach("my-endpoint")    # or Predictor(URL, api_key), or what deploy() returns
    predictor.predict(obs)                         # POST URL/predict -> actions
    predictor.query(obs, probabilities=True, values=True)
    predictor.undeploy()                           # rlo undeploy NAME
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineError, UserError
from .registry import Registry
from .serving_ray import live_endpoint, undeploy
from .settings import settings


class PredictionError(UserError):
    """The endpoint refused a request (4xx): `status` and the endpoint's reason."""

    def __init__(self, status: int, detail: str, url: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{url} refused the request ({status}): {detail}")


@dataclass
class Prediction:
    """What `Predictor.query` returns; `action_probabilities` / `values` are None unless asked for."""

    actions: np.ndarray
    action_probabilities: Any = None
    values: np.ndarray | None = None


class Predictor:
    """A client of a deployed policy endpoint. One observation or a batch in, actions out.

    `predict(obs)` tells one observation from a batch by the observation space's shape (from /info, fetched
    once). `url` is the endpoint's stable address (Serve's proxy); `direct_urls`, when deploy found them, are its
    replicas' own HTTP servers (Serve's direct ingress), which answer the same routes without the hop through
    the proxy: requests go there (each thread to one replica), and back to `url` if a replica stops answering.
    One kept-alive connection per thread and server, on the standard library's http.client (`requests` cost
    more CPU per call than a whole answer of the replica; see benchmarks/serving_profile.py)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        name: str | None = None,
        timeout: float = 30,
        direct_urls: list[str] | None = None,
        info: dict | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.direct_urls = [u.rstrip("/") for u in direct_urls or []]
        self.name = name
        self.timeout = timeout
        self._api_key = api_key
        self._local = threading.local()
        self._threads = itertools.count()
        self._info: dict | None = info  # the endpoint's /info, when the caller has it (deploy does)

    def __repr__(self) -> str:
        return f"Predictor({self.url!r})"

    @classmethod
    def attach(cls, name: str, api_key: str | None = None) -> Predictor:
        """A client for the live endpoint `name` (its API key is read from the key file it was deployed with)."""

        rec = live_endpoint(Registry(settings().registry_path), name)
        if api_key is None and rec.extra.get("api_key_file"):
            with contextlib.suppress(OSError):
                api_key = Path(rec.extra["api_key_file"]).read_text().strip()
        return cls(rec.url, api_key, name=rec.name, direct_urls=rec.extra.get("direct_urls"))

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def _base(self) -> str:
        """This thread's server: one of the replicas' (spread over threads), else the proxy's URL."""
        base = getattr(self._local, "base", None)
        if base is None:
            urls = self.direct_urls or [self.url]
            base = self._local.base = urls[next(self._threads) % len(urls)]
        return base

    def _connection(self, base: str, fresh: bool = False) -> tuple[http.client.HTTPConnection, str]:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        if fresh and base in conns:
            conns.pop(base)[0].close()
        if base not in conns:
            parts = urllib.parse.urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UserError(f"`{base}` is not an http(s) URL", fix="give the endpoint's URL (`rlo endpoints`)")
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conns[base] = (kind(parts.hostname, parts.port, timeout=self.timeout), parts.path)
        return conns[base]

    def _exchange(self, base: str, method: str, route: str, data: bytes | None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        for attempt in (0, 1):
            conn, path = self._connection(base, fresh=attempt > 0)
            reused = conn.sock is not None
            try:
                conn.request(method, f"{path}/{route}", body=data, headers=headers)
                r = conn.getresponse()
                body = r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed the kept-alive connection in between: once more on a new one
                raise
            except Exception:
                conn.close()  # a connection in an unknown state is not used again
                raise
            if r.will_close:
                conn.close()
            return r.status, body
        raise AssertionError("unreachable")

    def _request(self, method: str, route: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        base = self._base()
        try:
            try:
                status, text = self._exchange(base, method, route, data)
            except ConnectionError:  # refused, reset (not a timeout: that request may still be running)
                if base == self.url:
                    raise
                # The replica went away (redeployed, restarted on another port): this thread uses the proxy now.
                base = self._local.base = self.url
                status, text = self._exchange(base, method, route, data)
        except (OSError, http.client.HTTPException) as e:
            raise EngineError(f"cannot reach the endpoint at {base}/{route}: {e}") from None
        url = f"{base}/{route}"
        if 400 <= status < 500:
            try:
                detail = json.loads(text).get("detail", text.decode(errors="replace"))
            except (ValueError, AttributeError):
                detail = text.decode(errors="replace")
            raise PredictionError(status, str(detail), url)
        if status >= 500:
            raise EngineError(f"the endpoint at {url} failed ({status}): {text[:500].decode(errors='replace')}")
        return json.loads(text)

    # --- the API ------------------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        try:
            return self._request("GET", "healthz").get("status") == "ok"
        except (EngineError, PredictionError):
            return False

    def info(self) -> dict:
        """Run id, checkpoint, env, observation and action spaces, preprocessing and batching of the endpoint."""
        if self._info is None:
            self._info = self._request("GET", "info")
        return self._info

    def _body(self, obs, **flags) -> tuple[dict, bool]:
        arr = np.asarray(obs)
        shape = tuple(self.info()["observation_space"].get("shape") or ())
        single = arr.shape == shape
        return {("observation" if single else "observations"): arr.tolist(), **flags}, single

    def predict(self, obs, *, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation (returns one action) or a batch (returns a batch of actions)."""
        body, single = self._body(obs, deterministic=deterministic)
        out = self._request("POST", "predict", body)
        return np.asarray(out["action"] if single else out["actions"])

    def query(self, obs, *, probabilities: bool = True, values: bool = True, deterministic: bool = True) -> Prediction:
        """Actions with, when asked, the action probabilities and the value estimates."""
        body, single = self._body(obs, deterministic=deterministic, probabilities=probabilities, values=values)
        return self._prediction(self._request("POST", "predict", body), single)

    def predict_frames(self, frames, *, deterministic: bool = True) -> np.ndarray:
        """Atari endpoints: actions for the last k raw RGB frames (k, H, W, 3), or a batch (N, k, H, W, 3)."""
        arr = np.asarray(frames)
        out = self._request("POST", "predict", {"frames": arr.tolist(), "deterministic": deterministic})
        return np.asarray(out["action"] if arr.ndim == 4 else out["actions"])

    @staticmethod
    def _prediction(out: dict, single: bool) -> Prediction:
        values = out.get("value" if single else "values")
        return Prediction(
            actions=np.asarray(out["action"] if single else out["actions"]),
            action_probabilities=_array_if_rectangular(out.get("action_probabilities")),
            values=np.asarray(values, dtype=float) if values is not None else None,
        )

    def undeploy(self) -> None:
        if not self.name:
            raise UserError(
                "this Predictor was made from a URL, not a deployed endpoint's name", fix="rlo undeploy NAME"
            )

        undeploy(self.name)


def _array_if_rectangular(x):
    """MultiDiscrete probabilities with sub-actions of different sizes stay nested lists."""
    if x is None:
        return None
    try:
        return np.asarray(x, dtype=float)
    except ValueError:
        return x
