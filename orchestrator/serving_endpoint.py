"""What runs inside the Serve replica: the HTTP routes of a policy endpoint (the contract and its checks are
`predict_api`'s, shared with the Ray-free server). Concurrent requests are batched (`@serve.batch`) into one
forward pass of the policy; a request that arrives alone is answered at once, without waiting for company.

With `config["server_timing"]` (benchmarks/serving_profile.py sets it) /predict answers carry a `Server-Timing`
header: the replica's own time per phase, so a profile can tell the replica's share from the transport's."""

# No `from __future__ import annotations` here: FastAPI reads the routes' parameter types (`Request`) at runtime.
import time
from typing import cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from .policy import CheckpointPolicy
from .predict_api import (  # noqa: F401 - re-exported: the names of the endpoint's contract
    MAX_OBSERVATIONS_PER_REQUEST,
    BadRequest,
    ObservationChecker,
    PredictRequest,
    answer_batch,
    check_api_key,
    check_content_type,
    default_body_limit,
    describe_space,
    key_digest,
    preprocess_atari_frames,
    preprocessing_note,
    read_body,
    served_observation_space,
)

app = FastAPI(title="rl-orchestrator policy endpoint", docs_url=None, redoc_url=None, openapi_url=None)


def _error(e: BadRequest) -> JSONResponse:
    return JSONResponse({"detail": e.detail}, status_code=e.status)


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class PolicyEndpoint:
    """One replica: the policy of one checkpoint, loaded once (no env, no learner)."""

    def __init__(self, config: dict) -> None:
        import torch

        # A small MLP is fastest on one thread; more threads only fight the proxy and the other replicas.
        torch.set_num_threads(int(config.get("torch_threads", 1)))
        self.config = config
        self.policy = CheckpointPolicy.load(config["checkpoint"], config.get("env_config"))
        space = served_observation_space(self.policy)
        atari = config.get("atari")
        if atari and tuple(space.shape) != (atari["dim"], atari["dim"], atari["framestack"]):
            atari = None  # the policy was not trained on RLlib's Atari wrappers' frames: no raw-frame input
        self.checker = ObservationChecker(space, atari=atari)
        self._digest = config.get("api_key_sha256")
        self.max_body_bytes = int(config.get("max_body_bytes") or default_body_limit(tuple(space.shape), atari))
        # serve.batch's annotations return a plain callable; at run time the method has its batch queue's setters
        self._answer.set_max_batch_size(int(config.get("max_batch_size", 32)))  # type: ignore[attr-defined]
        wait_s = float(config.get("batch_wait_timeout_s", 0.001))
        self._answer.set_batch_wait_timeout_s(wait_s)  # type: ignore[attr-defined]
        self.info = {
            "name": config["name"],
            "run_id": config["run_id"],
            "checkpoint": config["checkpoint"],
            "env": config.get("env"),
            "algorithm": config.get("algorithm"),
            "observation_space": describe_space(space),
            "action_space": describe_space(self.policy.action_space),
            "preprocessing": preprocessing_note(atari, getattr(self.policy, "observation_scale", None)),
            "outputs": ["actions", "action_probabilities", "values"],
            "batching": {
                "max_batch_size": int(config.get("max_batch_size", 32)),
                "batch_wait_timeout_s": float(config.get("batch_wait_timeout_s", 0.001)),
            },
            "max_observations_per_request": MAX_OBSERVATIONS_PER_REQUEST,
            "max_body_bytes": self.max_body_bytes,
            "api_key_required": self._digest is not None,
        }
        from gymnasium import spaces

        self._probabilities_ok = isinstance(self.policy.action_space, spaces.Discrete | spaces.MultiDiscrete)
        self._batching = int(config.get("max_batch_size", 32)) > 1
        self._in_flight = 0  # /predict requests in this replica (one event loop: no lock needed)
        self._server_timing = bool(config.get("server_timing"))

    def describe(self) -> dict:
        """What /info answers, for a caller with a handle on this deployment (deploy: over Ray, no HTTP key)."""
        return self.info

    # The routes are `async def`: they never block, and a sync route would hop to a thread pool per request.
    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def model_info(self, request: Request):
        try:
            check_api_key(request.headers, self._digest)
        except BadRequest as e:
            return _error(e)
        return self.info

    @app.post("/predict")
    async def predict(self, request: Request):
        # Counted from arrival: a request that finds others on their way (reading their bodies, or queued for a
        # batch) waits for them in `@serve.batch`; one that arrives alone is answered at once, without the batch
        # wait and the task switches of the queue.
        self._in_flight += 1
        try:
            t0 = time.perf_counter()
            try:
                check_api_key(request.headers, self._digest)
                check_content_type(request.headers)
                body = await read_body(request, self.max_body_bytes)
                t1 = time.perf_counter()
                req = self.checker.parse(body)
                if req.probabilities and not self._probabilities_ok:
                    raise BadRequest(
                        422, f"action probabilities need a discrete action space, not {self.info['action_space']}"
                    )
            except BadRequest as e:
                return _error(e)
            t2 = time.perf_counter()
            if self._batching and self._in_flight > 1:
                answer = await self._answer(req)
            else:
                answer = answer_batch(self.policy, [req])[0]
        finally:
            self._in_flight -= 1
        # A JSONResponse of the plain dict: FastAPI would otherwise walk it again (jsonable_encoder) to encode it.
        if not self._server_timing:
            return JSONResponse(answer)
        t3 = time.perf_counter()
        timing = f"body;dur={(t1 - t0) * 1e3:.3f}, parse;dur={(t2 - t1) * 1e3:.3f}, answer;dur={(t3 - t2) * 1e3:.3f}"
        return JSONResponse(answer, headers={"Server-Timing": timing})

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.001)
    async def _answer(self, requests: list[PredictRequest]) -> list[dict]:
        return answer_batch(self.policy, requests)


def build(config: dict):
    """The Serve application for one endpoint (`config`: see serving.deploy)."""
    # @serve.deployment made the class a Deployment; mypy does not apply class decorators' types
    deployment = cast(serve.Deployment, PolicyEndpoint)
    return deployment.options(
        name="policy",
        num_replicas=int(config.get("replicas", 1)),
        max_ongoing_requests=max(8, 4 * int(config.get("max_batch_size", 32))),
        ray_actor_options={
            "num_cpus": float(config.get("num_cpus", 0)),
            # Torch's thread count is per thread (OpenMP), and Serve runs requests on another thread than the
            # constructor: the variable makes every thread of the replica start with it.
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(int(config.get("torch_threads", 1)))}},
        },
    ).bind(config)
