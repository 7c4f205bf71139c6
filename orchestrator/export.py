"""Export a trained policy as one self-contained file that runs without Ray (`rlo export`, `Run.export`).

    rlo export RUN [--checkpoint best|latest|PATH] --format onnx [-o FILE]
    run.export(checkpoint="latest", format="onnx", out="policy.onnx")

The artifact is an ONNX model of the RLModule's inference forward pass: input `obs` (N, *the env's own
observation shape), float32, the run's `env_config.observation_scale` applied inside the graph (the network was
trained on scaled observations; callers send the env's own, as to `rlo deploy`); outputs `logits` (the action
distribution's inputs: per-action logits, MultiDiscrete's concatenated, a Box's means then log-stds) and, when
the module has a value function, `value` (N,). The batch axis is dynamic.

Everything else a runtime needs is in the model's `metadata_props` under the key `rlo` as JSON (see
`edge.spaces` and `_metadata`): the spaces (exact, to rebuild them, and as `/info` describes them), the
preprocessing (the observation scale; for Atari the frame pipeline's contract), how actions are made from the
logits, and where it came from (run, checkpoint, tool, torch, Ray and ONNX opset). `orchestrator.edge` is the
runtime: `OnnxPolicy` and `rlo serve ARTIFACT` (ONNX Runtime, no Ray, RLlib or torch).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .edge.spaces import ARTIFACT_FORMAT, ARTIFACT_VERSION, METADATA_KEY, space_to_json
from .envs import is_atari
from .errors import UserError
from .outputs import output_file
from .policy import CheckpointPolicy
from .predict_api import describe_space, preprocessing_note, served_observation_space
from .serving import atari_preprocessing, default_name, resolve_checkpoint

FORMATS = ("onnx",)
# Opset 17 runs on every ONNX Runtime of the last years (1.13+); the policy networks need nothing newer.
OPSET = 17
# How many observations the export checks ONNX Runtime against torch on (random points of the space).
SELF_CHECK_SIZE = 256
SELF_CHECK_TOLERANCE = 1e-4

# RLlib's action distribution classes we know how to turn into actions outside torch: the class name -> ours.
_DISTRIBUTIONS = {
    "TorchCategorical": "categorical",
    "TorchMultiCategorical": "multi_categorical",
    "TorchDiagGaussian": "diag_gaussian",
}


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rl-orchestrator")
    except PackageNotFoundError:
        return "unknown"


def _distribution(policy, checkpoint: str) -> str:
    """Which of our action rules fits the module's action space and distribution, or a UserError saying why not."""
    from gymnasium import spaces

    space = policy.action_space
    if not isinstance(space, spaces.Discrete | spaces.MultiDiscrete | spaces.Box):
        raise UserError(
            f"the policy of {checkpoint} has the action space {space}; `rlo export` supports Discrete, "
            "MultiDiscrete and Box action spaces",
            fix="serve it with `rlo deploy` instead (Ray Serve runs any RLlib policy)",
        )
    cls = policy.module.get_inference_action_dist_cls()
    # MultiDiscrete's is a subclass made by RLlib's `partialclass` (with the sub-action sizes): match by ancestry.
    lineage = [c.__name__ for c in getattr(cls, "__mro__", ())]
    name = next((n for n in lineage if n in _DISTRIBUTIONS), getattr(cls, "__name__", str(cls)))
    kind = _DISTRIBUTIONS.get(name)
    expected = {
        spaces.Discrete: "categorical",
        spaces.MultiDiscrete: "multi_categorical",
        spaces.Box: "diag_gaussian",
    }[type(space)]
    if kind != expected:
        raise UserError(
            f"the policy of {checkpoint} draws its actions ({space}) from RLlib's {name}; `rlo export` supports "
            "TorchCategorical (Discrete), TorchMultiCategorical (MultiDiscrete) and TorchDiagGaussian (Box)",
            fix="serve it with `rlo deploy` instead (Ray Serve runs any RLlib policy)",
        )
    return kind


def _network(policy):
    """The torch module that ONNX records: scaled observations in, (logits, value) out."""
    import torch

    module = policy.module
    scale = policy.observation_scale
    has_value = hasattr(module, "compute_values")

    class PolicyNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module
            if scale is not None:
                self.register_buffer("scale", torch.as_tensor(np.asarray(scale, np.float32)))
            else:
                self.scale = None

        def forward(self, obs):
            # The same float32 multiply CheckpointPolicy does in numpy, so the network sees the same bits.
            x = obs * self.scale if self.scale is not None else obs
            logits = self.module.forward_inference({"obs": x})["action_dist_inputs"]
            if not has_value:
                return (logits,)
            return logits, self.module.compute_values({"obs": x})

    return PolicyNetwork().eval(), has_value


def _atari_contract(atari: dict | None, network_shape: tuple[int, ...]) -> dict | None:
    """The frame pipeline the policy was trained behind (RLlib's Atari wrappers), as `frames` requests use it."""
    if not atari or tuple(network_shape) != (atari["dim"], atari["dim"], atari["framestack"]):
        return None  # not trained on RLlib's Atari wrappers' frames: no raw-frame input (as the Serve endpoint)
    return {
        "dim": int(atari["dim"]),
        "framestack": int(atari["framestack"]),
        "grayscale": True,
        "frame": "raw RGB (H, W, 3) uint8, each already the max over the skipped frames (frameskip 4)",
        "pipeline": [
            "gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)",
            "small = cv2.resize(gray, (dim, dim), interpolation=cv2.INTER_AREA)",
            "x = small.astype(float32) / 128.0 - 1.0",
            "obs = the last `framestack` x stacked on the last axis (oldest first): (dim, dim, framestack)",
        ],
        "value_range": [-1.0, 1.0],
    }


def _metadata(
    policy,
    *,
    kind: str,
    has_value: bool,
    run_id: str | None,
    name: str | None,
    checkpoint: str,
    chosen: dict | None,
    env: str | None,
    algorithm: str | None,
    env_config: dict | None,
    atari: dict | None,
) -> dict:
    import ray
    import torch

    served = served_observation_space(policy)
    atari_contract = _atari_contract(atari, tuple(served.shape))
    scale = policy.observation_scale
    nvec = [int(n) for n in np.ravel(policy.action_space.nvec)] if kind == "multi_categorical" else None
    return {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_VERSION,
        "name": name,
        "run_id": run_id,
        "checkpoint": checkpoint,
        "checkpoint_choice": (chosen or {}).get("choice"),
        "iteration": (chosen or {}).get("iteration"),
        "env": env,
        "algorithm": algorithm,
        "exported_at": time.time(),
        "tool": {"name": "rl-orchestrator", "version": tool_version()},
        "exported_with": {"torch": torch.__version__, "ray": ray.__version__},
        "onnx": {
            "opset": OPSET,
            "input": {"name": "obs", "shape": ["N", *served.shape], "dtype": "float32"},
            "outputs": ["logits", "value"] if has_value else ["logits"],
        },
        # `observation_space`: what callers send (the env's own). `network_observation_space`: what the network
        # saw in training (after observation_scale), for reference.
        "observation_space": space_to_json(served),
        "network_observation_space": space_to_json(policy.observation_space),
        "action_space": space_to_json(policy.action_space),
        "described": {
            "observation_space": describe_space(served),
            "action_space": describe_space(policy.action_space),
        },
        "preprocessing": {
            "observation_scale": None if scale is None else np.asarray(scale, np.float64).tolist(),
            "observation_scale_in_graph": scale is not None,
            "atari": atari_contract,
            "note": preprocessing_note(atari_contract, scale),
        },
        "actions": {
            "distribution": kind,
            "nvec": nvec,
            "deterministic": {
                "categorical": "argmax of logits",
                "multi_categorical": "argmax per sub-action (logits split by nvec)",
                "diag_gaussian": "the mean: the first half of logits",
            }[kind],
            "sampling": {
                "categorical": "softmax(logits), then a categorical draw",
                "multi_categorical": "softmax per sub-action, then a categorical draw each",
                "diag_gaussian": "mean + exp(log_std) * N(0, 1), log_std the second half of logits (not clipped)",
            }[kind],
            "probabilities": kind != "diag_gaussian",
        },
        "env_config": {k: v for k, v in (env_config or {}).items() if _jsonable(v)},
    }


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _self_check(policy, network, path: Path, has_value: bool) -> float:
    """ONNX Runtime on the written graph against torch on random points of the space: the largest difference."""
    import onnxruntime as ort
    import torch

    space = served_observation_space(policy)
    rng = np.random.default_rng(0)
    low = np.where(np.isfinite(space.low), space.low, -1.0)
    high = np.where(np.isfinite(space.high), space.high, 1.0)
    obs = rng.uniform(low, high, size=(SELF_CHECK_SIZE, *space.shape)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"obs": obs})
    with torch.no_grad():
        want = [t.numpy() for t in network(torch.as_tensor(obs))]
    return float(max(np.max(np.abs(g - w)) for g, w in zip(got, want, strict=True)))


def export_policy(
    checkpoint: str | os.PathLike,
    *,
    out: str | os.PathLike,
    env_config: dict | None = None,
    run_id: str | None = None,
    name: str | None = None,
    env: str | None = None,
    algorithm: str | None = None,
    atari: dict | None = None,
    chosen: dict | None = None,
    format: str = "onnx",
) -> dict:
    """Write the policy of `checkpoint` (an RLlib checkpoint folder) to `out` as one ONNX artifact.

    `env_config`: the training job's (its observation_scale is applied inside the graph); `atari`: the frame
    pipeline's {"dim", "framestack"} for Atari runs. Returns what was written: path, size, metadata, and the
    largest difference between ONNX Runtime and torch on random observations (`max_abs_diff`)."""
    import torch

    if format not in FORMATS:
        raise UserError(f"--format `{format}` is not one `rlo export` writes", fix=f"use one of: {', '.join(FORMATS)}")
    target = output_file(out, flag="-o", example="policy.onnx")
    checkpoint = str(Path(checkpoint).expanduser().resolve())
    policy = CheckpointPolicy.load(checkpoint, env_config)  # UserError when it holds no policy
    if policy.module.is_stateful():
        raise UserError(
            f"the policy of {checkpoint} is recurrent (it keeps a state between steps); `rlo export` writes "
            "feed-forward policies only",
            fix="serve it with `rlo deploy` instead",
        )
    from gymnasium import spaces

    if not isinstance(policy.observation_space, spaces.Box):
        raise UserError(
            f"the policy of {checkpoint} takes {policy.observation_space} observations; `rlo export` supports Box "
            "observation spaces (as the endpoints do)",
            fix="flatten the observation in the env (gymnasium.wrappers.FlattenObservation) and train again",
        )
    kind = _distribution(policy, checkpoint)
    network, has_value = _network(policy)
    meta = _metadata(
        policy,
        kind=kind,
        has_value=has_value,
        run_id=run_id,
        name=name,
        checkpoint=checkpoint,
        chosen=chosen,
        env=env,
        algorithm=algorithm,
        env_config=env_config,
        atari=atari,
    )
    example = torch.zeros((2, *policy.observation_space.shape), dtype=torch.float32)
    outputs = meta["onnx"]["outputs"]
    tmp_dir = tempfile.mkdtemp(prefix=".rlo-export-", dir=target.parent)
    raw, final = Path(tmp_dir) / "raw.onnx", Path(tmp_dir) / "policy.onnx"
    try:
        _torch_export(network, example, raw, outputs, checkpoint)
        import onnx

        model = onnx.load(str(raw))
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        model.doc_string = (
            f"rl-orchestrator policy of run {run_id or '?'} ({algorithm or '?'} on {env or '?'}); "
            f"metadata_props[{METADATA_KEY!r}] holds its spaces and preprocessing"
        )
        onnx.checker.check_model(model)
        onnx.save(model, str(final))
        diff = _self_check(policy, network, final, has_value)
        if not diff <= SELF_CHECK_TOLERANCE:
            raise UserError(
                f"the ONNX graph of {checkpoint} does not compute what the policy does (largest difference "
                f"{diff:g} on random observations)",
                fix="serve it with `rlo deploy` instead, and report this with the checkpoint",
            )
        os.replace(final, target)  # all or nothing: no half-written artifact under the name asked for
    finally:
        for p in (raw, final):
            p.unlink(missing_ok=True)
        os.rmdir(tmp_dir)
    return {"path": str(target), "bytes": target.stat().st_size, "max_abs_diff": diff, "metadata": meta}


def _torch_export(network, example, path: Path, outputs: list[str], checkpoint: str) -> None:
    import warnings

    import torch

    # The TorchScript exporter: it runs with torch 2.13 as installed (the dynamo one would need onnxscript) and
    # takes the RLModule's dict-in/dict-out forward as it is.
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # its "legacy exporter" notice and tracer warnings are not the user's
            torch.onnx.export(
                network,
                (example,),
                str(path),
                input_names=["obs"],
                output_names=outputs,
                dynamic_axes={n: {0: "batch"} for n in ("obs", *outputs)},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as e:
        raise UserError(
            f"the policy network of {checkpoint} cannot be written as ONNX: {type(e).__name__}: {str(e)[:500]}",
            fix="serve it with `rlo deploy` instead",
        ) from None


def export_run(run, *, checkpoint: str = "latest", format: str = "onnx", out: str | os.PathLike | None = None) -> dict:
    """`Run.export`: the run's checkpoint (latest, best or a path) with the run's preprocessing and provenance."""

    if format not in FORMATS:
        raise UserError(f"--format `{format}` is not one `rlo export` writes", fix=f"use one of: {', '.join(FORMATS)}")
    if out is not None:  # refused before anything is loaded
        output_file(out, flag="-o", example=f"{run.id}.onnx")
    path, chosen = resolve_checkpoint(run, checkpoint)
    trained = run.policy_info()
    env_id = trained.get("env")
    env_config = dict(trained.get("env_config") or {})
    atari = atari_preprocessing(run.record.spec, env_config) if env_id and is_atari(env_id) else None
    return export_policy(
        path,
        out=out if out is not None else Path.cwd() / f"{run.id}.onnx",
        env_config=env_config,
        run_id=run.id,
        name=default_name(run),
        env=env_id,
        algorithm=trained.get("algorithm"),
        atari=atari,
        chosen=chosen,
        format=format,
    )
