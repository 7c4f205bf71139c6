"""The /predict contract of a served policy, without Ray: the request's schema and checks, the limits on what
one request may cost, and the answer for a batch of requests. The Ray Serve endpoint (`serving_endpoint`) and
any Ray-free server of the same policy use this one definition, so both answer the same requests the same way.

    GET  /healthz    {"status": "ok"}                                    (no API key needed)
    GET  /info       run id, checkpoint, env, observation and action spaces, preprocessing, batching
    POST /predict    {"observation": [...]}  or  {"observations": [[...], ...]}
                     optional: "deterministic": true (default), "probabilities": false, "values": false
                     Atari runs also take raw RGB frames: {"frames": [k frames of HxWx3 in 0..255]}

The observation is the one the policy was trained on, *after* the run's preprocessing: for Atari that is the
stacked, resized, grayscale frames in [-1, 1] (shape (64, 64, 4) by default). `frames` applies the same
preprocessing to raw frames without state: send the last k frames (k = the frame stack), each already the
max over the skipped frames if you want exactly the training input.

A request that does not fit the observation space gets a 4xx whose `detail` says what was wrong and where.

What one request may cost is bounded before it is parsed: the body must be `Content-Type: application/json`
(415 otherwise: a browser page cannot send that cross-origin without the endpoint's consent, so no web page can
make a visitor's browser call a loopback endpoint), at most `max_body_bytes` (413, checked on Content-Length
before the body is kept, and while reading a body without one; the rest is read and dropped so that the client
gets the answer), and JSON nested no deeper than an array of observations needs (400).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from .errors import did_you_mean

MAX_OBSERVATIONS_PER_REQUEST = 4096
# The default body limit: room for a full batch of observations as JSON, within these bounds.
MIN_BODY_BYTES = 1 << 20
MAX_DEFAULT_BODY_BYTES = 8 << 20
JSON_BYTES_PER_NUMBER = 24  # a float32 as json.dumps writes it, with its separator: "-0.12345678901234567, "
MAX_JSON_DEPTH = 64  # deeper than any observation array (numpy has at most 64 dimensions)
MAX_UNKNOWN_FIELDS_SHOWN = 5


class BadRequest(Exception):
    """A request the endpoint refuses: an HTTP status (4xx) and a reason for the caller."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# --- describing spaces ----------------------------------------------------------------------------------------


def _num(v: float) -> float | str:
    f = float(v)
    return f if math.isfinite(f) else ("inf" if f > 0 else "-inf")


def _bounds(a: np.ndarray) -> Any:
    flat = np.unique(a)
    if flat.size == 1:
        return _num(flat[0])
    return [_num(x) for x in np.ravel(a)] if a.size <= 64 else f"per-element ({a.shape})"


def describe_space(space) -> dict:
    """A JSON description of a Gymnasium space (what /info shows)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bounds(space.low),
            "high": _bounds(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in np.ravel(space.nvec)]}
    return {"type": type(space).__name__, "repr": repr(space)}


# --- checking requests -------------------------------------------------------------------------------------------


def _index(flat_index: int, shape: tuple[int, ...]) -> str:
    return "".join(f"[{i}]" for i in np.unravel_index(flat_index, shape))


def _as_numbers(value: Any, field: str) -> np.ndarray:
    """A JSON array of numbers as a numpy array, or a 422 saying why not."""
    if not isinstance(value, list):
        raise BadRequest(422, f"`{field}` must be an array of numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except ValueError:
        raise BadRequest(422, f"`{field}` is not a rectangular array (rows of different lengths)") from None
    if arr.dtype.kind not in "iuf":
        what = {"b": "booleans", "U": "strings", "O": "mixed or nested values"}.get(arr.dtype.kind, str(arr.dtype))
        raise BadRequest(422, f"`{field}` must hold only numbers, got {what}")
    return arr


def too_deep() -> str:
    return (
        f"the request body is JSON nested more than {MAX_JSON_DEPTH} levels deep; an observation array needs "
        "as many levels as the observation space has dimensions, plus one for a batch"
    )


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests lists/objects deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, list | dict):
            if depth > limit:
                return True
            # Only the first element of each array: observation arrays are rectangular (checked later), and
            # this stays O(depth), not O(size).
            items = v.values() if isinstance(v, dict) else v[:1]
            stack.extend((x, depth + 1) for x in items)
    return False


def default_body_limit(observation_shape: tuple[int, ...], atari: dict | None = None) -> int:
    """Room for the most observations one request may carry, as JSON, within 1 to 8 MB."""
    per_observation = int(np.prod(observation_shape)) * JSON_BYTES_PER_NUMBER
    if atari:  # raw 210x160 RGB frames of 0..255 ("255, ": 5 bytes each), k of them per observation
        per_observation = max(per_observation, int(atari["framestack"]) * 210 * 160 * 3 * 5)
    return int(min(max(per_observation * MAX_OBSERVATIONS_PER_REQUEST, MIN_BODY_BYTES), MAX_DEFAULT_BODY_BYTES))


def check_content_type(headers) -> None:
    """JSON only, declared as such (see the module's docstring for why a missing type is refused too)."""
    given = headers.get("content-type")
    media = (given or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise BadRequest(
        415,
        "the request body must be JSON, sent with `Content-Type: application/json` (got "
        + (f"`{given[:100]}`" if given else "no Content-Type")
        + "); with curl: -H 'Content-Type: application/json' (or --json)",
    )


def _too_big(size: str, limit: int) -> BadRequest:
    return BadRequest(
        413,
        f"the request body is {size}; this endpoint takes at most {limit} bytes ({limit / 2**20:.3g} MB): send "
        "fewer observations per request (or redeploy with a larger --max-body-mb)",
    )


# An over-limit body up to this size is read to its end (and dropped) before the 413 goes out. A server that
# answers and closes while the client is still sending leaves unread bytes in its socket, so the kernel resets the
# connection and the client sees "Broken pipe" or "Connection reset" instead of the 413 that says what to do
# (nginx's "lingering close"). Larger bodies are refused without reading them, at that cost.
DRAIN_BYTES = 16 * 2**20
DRAIN_SECONDS = 2.0  # ... and for at most this long: a client that stops sending gets its answer then


async def read_body(request, limit: int) -> bytes:
    """The body, refused (413) when its Content-Length is over `limit`, and as soon as it goes over when it comes
    without one (chunked); the rest is drained (up to DRAIN_BYTES, for DRAIN_SECONDS at most) so that the client
    can read the refusal."""
    length = request.headers.get("content-length")
    chunks = request.stream()
    if length is not None:
        if not length.strip().isdigit():
            raise BadRequest(400, f"Content-Length `{length[:40]}` is not a number of bytes")
        if int(length) > limit:
            if int(length) <= limit + DRAIN_BYTES:
                await _drain(chunks, 0, limit + DRAIN_BYTES)
            raise _too_big(f"{int(length)} bytes", limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            await _drain(chunks, len(body), limit + DRAIN_BYTES)
            raise _too_big(f"more than {limit} bytes", limit)
    return bytes(body)


async def _drain(chunks, seen: int, most: int) -> None:
    """Read and drop the rest of a body, `seen` bytes of it read already, until `most` bytes in all."""
    try:
        await asyncio.wait_for(_read_up_to(chunks, seen, most), DRAIN_SECONDS)
    except Exception:  # too slow (a client that stalls is answered anyway), or gone (ClientDisconnect)
        return


async def _read_up_to(chunks, seen: int, most: int) -> None:
    async for chunk in chunks:
        seen += len(chunk)
        if seen > most:
            return


class PredictBody(BaseModel):
    """A /predict body: one of the inputs (checked against the observation space by `ObservationChecker`) and the
    flags. Strict: a flag is a JSON boolean, and a field not named here is refused."""

    model_config = ConfigDict(strict=True, extra="forbid")

    observation: Any = None
    observations: Any = None
    frames: Any = None
    deterministic: bool = True
    probabilities: bool = False
    values: bool = False

    @model_validator(mode="after")
    def _one_input(self, info: ValidationInfo) -> PredictBody:
        if len(self.inputs()) != 1:
            frames = (info.context or {}).get("frames")
            raise PydanticCustomError(
                "one_input",
                "give exactly one of `observation` (one observation), `observations` (a batch)"
                + (" or `frames` (raw Atari frames)" if frames else "")
                + (f"; got {' and '.join(self.inputs())}" if self.inputs() else "; got none"),
            )
        return self

    def inputs(self) -> list[str]:
        """The input fields the body has (a field given as null counts: it is then refused as not an array)."""
        return [k for k in INPUT_FIELDS if k in self.model_fields_set]


# Field names of a /predict request.
INPUT_FIELDS = ("observation", "observations", "frames")
REQUEST_FIELDS = tuple(PredictBody.model_fields)


def _refusal(e: ValidationError, payload: Any) -> BadRequest:
    """What is wrong with a body the model refused, for the caller: not an object, unknown fields (with "did you
    mean"), then the model's first error. Unknown fields are named from the body's keys, not from pydantic's
    errors: a body of many keys has one error per key, and listing them would cost more than the rest."""
    if not isinstance(payload, dict):
        return BadRequest(400, 'the request body must be a JSON object such as {"observation": [...]}')
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        shown = unknown[:MAX_UNKNOWN_FIELDS_SHOWN]  # a body of a million keys gets a short answer
        hints = [h for h in (did_you_mean(k, REQUEST_FIELDS) for k in shown) if h]
        more = len(unknown) - len(shown)
        return BadRequest(
            400,
            f"unknown field(s) {', '.join(f'`{k[:64]}`' for k in shown)}"
            + (f" and {more} more" if more else "")
            + (f" ({'; '.join(hints)})" if hints else "")
            + f"; known fields: {', '.join(REQUEST_FIELDS)}",
        )
    err = e.errors(include_url=False, include_context=False)[0]
    if err["type"] == "bool_type":
        return BadRequest(400, f"`{err['loc'][0]}` must be true or false, got {json.dumps(err['input'])}")
    return BadRequest(400, err["msg"])


@dataclass
class PredictRequest:
    obs: np.ndarray  # (N, *observation shape), in the space's dtype
    single: bool
    deterministic: bool = True
    probabilities: bool = False
    values: bool = False


class ObservationChecker:
    """Turns a /predict body into a batch of observations for the policy, checked against its space."""

    def __init__(self, observation_space, atari: dict | None = None) -> None:
        from gymnasium import spaces

        if not isinstance(observation_space, spaces.Box):
            raise TypeError(f"only Box observation spaces can be served (this policy has {observation_space})")
        self.space = observation_space
        self.shape = tuple(observation_space.shape)
        self.dtype = np.dtype(observation_space.dtype)
        self.low = np.asarray(observation_space.low, dtype=self.dtype)
        self.high = np.asarray(observation_space.high, dtype=self.dtype)
        self.atari = atari  # {"dim": 64, "framestack": 4} when the run's env is Atari

    def parse(self, body: bytes) -> PredictRequest:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(400, f"the request body is not valid JSON: {e}") from None
        except RecursionError:
            raise BadRequest(400, too_deep()) from None
        if _depth_over(payload, MAX_JSON_DEPTH):
            raise BadRequest(400, too_deep())
        try:
            req = PredictBody.model_validate(payload, context={"frames": bool(self.atari)})
        except ValidationError as e:
            raise _refusal(e, payload) from None
        (field,) = req.inputs()
        if field == "frames":
            obs, single = self._from_frames(req.frames)
        else:
            obs, single = self._observations(getattr(req, field), field)
        return PredictRequest(
            obs=obs, single=single, deterministic=req.deterministic, probabilities=req.probabilities, values=req.values
        )

    def _observations(self, value: Any, field: str) -> tuple[np.ndarray, bool]:
        arr = _as_numbers(value, field)
        single = field == "observation"
        if not single and arr.size == 0:
            raise BadRequest(422, "`observations` is empty")
        want = self.shape if single else ("N", *self.shape)
        if single and arr.shape != self.shape or not single and arr.shape[1:] != self.shape:
            hint = ""
            if single and arr.shape[1:] == self.shape:
                hint = " (a batch: send it as `observations`)"
            elif not single and arr.shape == self.shape:
                hint = " (one observation: send it as `observation`, or wrap it in a list)"
            raise BadRequest(
                422,
                f"`{field}` has shape {tuple(arr.shape)}, expected {tuple(want)}{hint}; "
                f"the observation space is Box{self.shape} {self.dtype}",
            )
        batch = arr[None] if single else arr
        if batch.shape[0] > MAX_OBSERVATIONS_PER_REQUEST:
            raise BadRequest(
                413, f"{batch.shape[0]} observations in one request; at most {MAX_OBSERVATIONS_PER_REQUEST}"
            )
        return self._check_values(batch, field, single), single

    def _check_values(self, batch: np.ndarray, field: str, single: bool) -> np.ndarray:
        def where(flat: int) -> str:
            idx = _index(flat, batch.shape)
            return field + (idx[3:] if single else idx)  # drop the batch axis of a single observation

        finite = np.isfinite(batch)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise BadRequest(422, f"{where(bad)} is {batch.flat[bad]}: observations must be finite numbers")
        if self.dtype.kind in "iu":
            fractional = batch != np.round(batch)
            if fractional.any():
                bad = int(np.flatnonzero(fractional)[0])
                raise BadRequest(422, f"{where(bad)} = {batch.flat[bad]} is not an integer ({self.dtype} space)")
            # Compared before the cast: 256 must not wrap around to a valid 0 in uint8.
            compared, low, high = batch, self.low.astype(np.float64), self.high.astype(np.float64)
        else:
            # Compared in the space's own dtype, as `space.contains` does.
            compared, low, high = batch.astype(self.dtype), self.low, self.high
            overflow = ~np.isfinite(compared)
            if overflow.any():
                bad = int(np.flatnonzero(overflow)[0])
                raise BadRequest(422, f"{where(bad)} = {batch.flat[bad]:g} does not fit in {self.dtype}")
        outside = (compared < low) | (compared > high)
        if outside.any():
            bad = int(np.flatnonzero(outside)[0])
            per_obs = bad % int(np.prod(self.shape))
            lo, hi = self.low.flat[per_obs], self.high.flat[per_obs]
            raise BadRequest(
                422, f"{where(bad)} = {batch.flat[bad]:g} is outside the observation space ([{lo:g}, {hi:g}] there)"
            )
        obs = batch.astype(self.dtype)
        return obs

    def _from_frames(self, value: Any) -> tuple[np.ndarray, bool]:
        if not self.atari:
            raise BadRequest(
                400,
                "`frames` (raw Atari frames) is only for policies trained on RLlib's Atari wrappers' frames; "
                "this endpoint takes `observation`/`observations` (GET /info shows the observation space)",
            )
        k = int(self.atari["framestack"])
        arr = _as_numbers(value, "frames")
        if arr.ndim not in (4, 5) or arr.shape[-1] != 3 or arr.shape[-4] != k:
            raise BadRequest(
                422,
                f"`frames` has shape {tuple(arr.shape)}, expected ({k}, H, W, 3): the last {k} raw RGB frames "
                f"(or a batch of them, (N, {k}, H, W, 3))",
            )
        if arr.ndim == 5 and arr.shape[0] > MAX_OBSERVATIONS_PER_REQUEST:
            raise BadRequest(413, f"{arr.shape[0]} observations in one request; at most {MAX_OBSERVATIONS_PER_REQUEST}")
        if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise BadRequest(422, "`frames` must hold integer pixel values 0..255")
        if arr.min() < 0 or arr.max() > 255:
            raise BadRequest(422, "`frames` must hold pixel values in 0..255")
        single = arr.ndim == 4
        stacks = arr[None] if single else arr
        obs = np.stack([preprocess_atari_frames(s.astype(np.uint8), int(self.atari["dim"])) for s in stacks])
        if obs.shape[1:] != self.shape:
            raise BadRequest(422, f"preprocessed frames have shape {obs.shape[1:]}, the policy takes {self.shape}")
        return obs.astype(self.dtype), single


def preprocess_atari_frames(frames: np.ndarray, dim: int) -> np.ndarray:
    """k raw RGB frames (k, H, W, 3) uint8 -> the policy's observation (dim, dim, k) in [-1, 1]: RLlib's Atari
    wrappers' grayscale + resize (GrayScaleAndResize: the OpenCV calls of `ray.rllib.utils.images`, OpenCL off as
    there), scaling (NormalizedImageEnv) and stacking (FrameStack). OpenCV only, so that a server without Ray
    preprocesses the same; imported when raw frames come."""
    import cv2

    cv2.ocl.setUseOpenCL(False)
    gray = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (dim, dim), interpolation=cv2.INTER_AREA) for f in frames]
    return (np.stack(gray, axis=2).astype(np.float32) / 128.0) - 1.0


# --- computing answers ---------------------------------------------------------------------------------------------


def _rows(x) -> list:
    return np.asarray(x).tolist()


def answer_batch(policy, requests: list[PredictRequest]) -> list[dict]:
    """One forward pass (per kind of output asked for) over all requests' observations; split per request."""
    sizes = [len(r.obs) for r in requests]
    bounds = np.cumsum([0, *sizes])
    obs = np.concatenate([r.obs for r in requests]) if len(requests) > 1 else requests[0].obs
    actions: list = [None] * len(obs)
    for deterministic in (True, False):
        idx = np.concatenate(
            [np.arange(bounds[i], bounds[i + 1]) for i, r in enumerate(requests) if r.deterministic == deterministic]
            or [np.zeros(0, dtype=int)]
        )
        if len(idx):
            acts = policy.act(obs if len(idx) == len(obs) else obs[idx], deterministic=deterministic)
            for j, a in zip(idx, _rows(acts), strict=True):
                actions[j] = a
    probs = values = None
    if any(r.probabilities for r in requests):
        p = policy.action_probabilities(obs)
        # MultiDiscrete: one array per sub-action -> per observation, a list of per-sub-action lists.
        probs = [list(t) for t in zip(*(_rows(x) for x in p), strict=True)] if isinstance(p, list) else _rows(p)
    if any(r.values for r in requests):
        v = policy.value(obs)
        values = _rows(v) if v is not None else [None] * len(obs)
    out = []
    for i, r in enumerate(requests):
        lo, hi = bounds[i], bounds[i + 1]
        # probs / values were computed above whenever a request asks for them
        if r.single:
            ans: dict = {"action": actions[lo]}
            if r.probabilities:
                assert probs is not None
                ans["action_probabilities"] = probs[lo]
            if r.values:
                assert values is not None
                ans["value"] = values[lo]
        else:
            ans = {"actions": actions[lo:hi]}
            if r.probabilities:
                assert probs is not None
                ans["action_probabilities"] = probs[lo:hi]
            if r.values:
                assert values is not None
                ans["values"] = values[lo:hi]
        out.append(ans)
    return out


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def check_api_key(headers, digest: str | None) -> None:
    """Accept `Authorization: Bearer KEY` or `X-API-Key: KEY` when the endpoint has a key."""
    if digest is None:
        return
    given = headers.get("x-api-key")
    auth = headers.get("authorization") or ""
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given:
        raise BadRequest(401, "this endpoint needs an API key: send `Authorization: Bearer KEY` (or `X-API-Key: KEY`)")
    if not hmac.compare_digest(key_digest(given), digest):
        raise BadRequest(403, "the API key is not the one this endpoint was deployed with")


def served_observation_space(policy):
    """The observation space callers send: the env's own. A policy trained on scaled observations
    (env_config.observation_scale) has the scaled space and scales its inputs itself, so undo the scaling."""
    from gymnasium import spaces

    space = policy.observation_space
    scale = getattr(policy, "observation_scale", None)
    if scale is None or not isinstance(space, spaces.Box):
        return space
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), space.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = space.low / scale, space.high / scale
    low = np.where(scale == 0, -np.inf, np.minimum(a, b))
    high = np.where(scale == 0, np.inf, np.maximum(a, b))
    return spaces.Box(low.astype(space.dtype), high.astype(space.dtype), space.shape, space.dtype)


def preprocessing_note(atari: dict | None, scale) -> str:
    if atari:
        return (
            f"RLlib's Atari wrappers: grayscale, resized to {atari['dim']}x{atari['dim']}, scaled to [-1, 1], the "
            f"last {atari['framestack']} frames stacked on the last axis. `observation(s)` takes that; `frames` "
            "takes the raw RGB frames and does it here."
        )
    if scale is not None:
        return "observations are the env's own; the endpoint applies the training's observation_scale"
    return "none: observations are the env's own"
