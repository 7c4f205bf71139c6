"""`OnnxPolicy`: an exported policy (`rlo export`) run by ONNX Runtime, with CheckpointPolicy's interface
(`act`, `action_probabilities`, `value`, `observation_space`, `action_space`), so evaluation code,
`predict_api.answer_batch` and `ObservationChecker` take either. No Ray, RLlib or torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from .spaces import ARTIFACT_FORMAT, ARTIFACT_VERSION, METADATA_KEY, space_from_json

_NOT_ARTIFACT_FIX = "give a file written by `rlo export RUN --format onnx -o FILE`"


def read_metadata(session, path: str) -> dict:
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise UserError(
            f"{path} is an ONNX model but not an `rlo export` artifact (no `{METADATA_KEY}` metadata)",
            fix=_NOT_ARTIFACT_FIX,
        )
    try:
        meta = json.loads(raw)
    except ValueError:
        raise UserError(f"the `{METADATA_KEY}` metadata of {path} is not JSON", fix=_NOT_ARTIFACT_FIX) from None
    if not isinstance(meta, dict) or meta.get("format") != ARTIFACT_FORMAT:
        raise UserError(f"{path} is not an `rlo export` artifact (its format is unknown)", fix=_NOT_ARTIFACT_FIX)
    if int(meta.get("format_version", 0)) > ARTIFACT_VERSION:
        raise UserError(
            f"{path} was written by a newer rl-orchestrator (artifact format {meta.get('format_version')}; this one "
            f"reads up to {ARTIFACT_VERSION})",
            fix="upgrade rl-orchestrator where it runs",
        )
    return meta


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class OnnxPolicy:
    #: Evaluation compares it against the baselines (it is not one).
    is_baseline = False

    def __init__(self, session, metadata: dict, path: str, *, seed: int | None = None) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path
        self.checkpoint = metadata.get("checkpoint")
        # What act() takes: the env's own observations (the training's observation_scale is inside the graph),
        # so `predict_api.served_observation_space` has nothing to undo.
        self.observation_space = space_from_json(metadata["observation_space"])
        self.action_space = space_from_json(metadata["action_space"])
        self.observation_scale = None
        self.atari = (metadata.get("preprocessing") or {}).get("atari")
        actions = metadata["actions"]
        self.distribution = actions["distribution"]
        self._splits = np.cumsum(actions["nvec"])[:-1] if actions.get("nvec") else None
        self._outputs = [o.name for o in session.get_outputs()]
        self._has_value = "value" in self._outputs
        self._rng = np.random.default_rng(seed)

    @classmethod
    def load(cls, path: str | os.PathLike, *, seed: int | None = None, threads: int = 1) -> OnnxPolicy:
        """Load an artifact; `seed` makes sampled actions reproducible, `threads` is ONNX Runtime's per call
        (one is fastest for the small networks RL policies are, and leaves the other cores to the server)."""
        import onnxruntime as ort

        p = Path(path).expanduser()
        if p.is_dir():
            raise UserError(f"{path} is a folder, not an exported policy", fix=_NOT_ARTIFACT_FIX)
        if not p.is_file():
            raise UserError(f"{path}: no such file", fix=_NOT_ARTIFACT_FIX)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # its warnings are about graph optimizations, not for the user
        try:
            session = ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise UserError(
                f"{path} is not an ONNX model ONNX Runtime can load: {first}", fix=_NOT_ARTIFACT_FIX
            ) from None
        return cls(session, read_metadata(session, str(p)), str(p.resolve()), seed=seed)

    # --- the network ---------------------------------------------------------------------------------------------

    def _run(self, obs_batch) -> dict[str, np.ndarray]:
        obs = np.asarray(obs_batch, dtype=np.float32)
        return dict(zip(self._outputs, self.session.run(self._outputs, {"obs": obs}), strict=True))

    def logits(self, obs_batch) -> np.ndarray:
        """The action distribution's inputs, as the RLModule's forward_inference gives them."""
        return self._run(obs_batch)["logits"]

    # --- CheckpointPolicy's interface ------------------------------------------------------------------------------

    def act(self, obs_batch, info=None, *, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations: greedy (argmax per sub-action; a Box's mean), or sampled from
        the distribution with this policy's random generator. `info` is accepted and ignored (evaluation's
        `act(obs, info)`)."""
        logits = self.logits(obs_batch)
        if self.distribution == "diag_gaussian":
            mean, log_std = np.split(logits, 2, axis=-1)
            return mean if deterministic else mean + np.exp(log_std) * self._rng.standard_normal(mean.shape, np.float32)
        parts = np.split(logits, self._splits, axis=-1) if self._splits is not None else [logits]
        if deterministic:
            chosen = [np.argmax(p, axis=-1) for p in parts]
        else:
            chosen = [self._sample(_softmax(p)) for p in parts]
        return np.stack(chosen, axis=-1) if self._splits is not None else chosen[0]

    def _sample(self, probs: np.ndarray) -> np.ndarray:
        cdf = np.cumsum(probs.astype(np.float64), axis=-1)
        u = self._rng.random(probs.shape[:-1] + (1,)) * cdf[..., -1:]
        return np.minimum((cdf <= u).sum(axis=-1), probs.shape[-1] - 1).astype(np.int64)

    def action_probabilities(self, obs_batch) -> np.ndarray | list[np.ndarray]:
        """Per-action probabilities (a list, one array per sub-action, for MultiDiscrete)."""
        if self.distribution == "diag_gaussian":
            raise ValueError("action probabilities need a discrete action space")
        logits = self.logits(obs_batch)
        if self._splits is None:
            return _softmax(logits)
        return [_softmax(p) for p in np.split(logits, self._splits, axis=-1)]

    def value(self, obs_batch) -> np.ndarray | None:
        """The value function's estimate, when the policy has one (PPO, IMPALA, APPO do)."""
        if not self._has_value:
            return None
        return self._run(obs_batch)["value"]
