"""What runs inside the Serve replica: the HTTP routes of a policy endpoint (the contract and its checks are
`predict_api`'s, shared with the Ray-free server). Concurrent requests are batched (`@serve.batch`) into one
forward pass of the policy."""

# No `from __future__ import annotations` here: FastAPI reads the routes' parameter types (`Request`) at runtime.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

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

        from .policy import CheckpointPolicy

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
        self._answer.set_max_batch_size(int(config.get("max_batch_size", 32)))
        self._answer.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.001)))
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

    def describe(self) -> dict:
        """What /info answers, for a caller with a handle on this deployment (deploy: over Ray, no HTTP key)."""
        return self.info

    @app.get("/healthz")
    def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/info")
    def model_info(self, request: Request):
        try:
            check_api_key(request.headers, self._digest)
        except BadRequest as e:
            return _error(e)
        return self.info

    @app.post("/predict")
    async def predict(self, request: Request):
        try:
            check_api_key(request.headers, self._digest)
            check_content_type(request.headers)
            req = self.checker.parse(await read_body(request, self.max_body_bytes))
            if req.probabilities and not self._probabilities_ok:
                raise BadRequest(
                    422, f"action probabilities need a discrete action space, not {self.info['action_space']}"
                )
        except BadRequest as e:
            return _error(e)
        return await self._answer(req)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.001)
    async def _answer(self, requests: list[PredictRequest]) -> list[dict]:
        return answer_batch(self.policy, requests)


def build(config: dict):
    """The Serve application for one endpoint (`config`: see serving.deploy)."""
    return PolicyEndpoint.options(
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
