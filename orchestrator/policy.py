"""A trained policy, loaded from an RLlib checkpoint for inference outside training (evaluation, serving).

    policy = CheckpointPolicy.load(path)          # a checkpoint folder written by a run
    actions = policy.act(obs_batch)               # numpy in, numpy out; deterministic by default

It loads only the RLModule (no env, no Ray), so it is cheap enough to build in an evaluation process or a
Serve replica.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError

MODULE_SUBDIR = Path("learner_group") / "learner" / "rl_module" / "default_policy"


def module_dir(checkpoint: str | Path) -> Path:
    """The RLModule folder inside an algorithm checkpoint (or the path itself when it is one)."""
    p = Path(checkpoint)
    for candidate in (p / MODULE_SUBDIR, p):
        if (candidate / "module_state.pkl").exists():
            return candidate
    raise UserError(
        f"`{checkpoint}` is not an RLlib checkpoint with a policy (no {MODULE_SUBDIR})",
        fix="give a checkpoint folder of a run (`rlo status RUN` lists them)",
    )


class CheckpointPolicy:
    #: Evaluation compares it against the baselines (it is not one).
    is_baseline = False

    def __init__(self, module, checkpoint: str | Path, observation_scale=None) -> None:
        self.module = module
        self.checkpoint = str(checkpoint)
        # The training-side observation scaling (env_config.observation_scale), applied to every input.
        self.observation_scale = None if observation_scale is None else np.asarray(observation_scale, np.float32)
        self.observation_space = module.observation_space
        self.action_space = module.action_space
        self._dist_cls = module.get_inference_action_dist_cls()

    @classmethod
    def load(cls, checkpoint: str | Path, env_config: dict | None = None) -> CheckpointPolicy:
        """Load the policy of `checkpoint`; `env_config` is the training job's (for its observation scaling)."""
        from ray.rllib.core.rl_module.rl_module import RLModule

        path = module_dir(checkpoint)
        module = RLModule.from_checkpoint(str(path))
        if hasattr(module, "eval"):
            module.eval()
        return cls(module, checkpoint, (env_config or {}).get("observation_scale"))

    def _tensor(self, obs):
        import torch

        obs = np.asarray(obs, dtype=np.float32)
        if self.observation_scale is not None:
            obs = obs * self.observation_scale
        return torch.as_tensor(obs)

    def _forward(self, obs: np.ndarray) -> dict:
        import torch

        with torch.no_grad():
            return self.module.forward_inference({"obs": self._tensor(obs)})

    def act(self, obs_batch, info=None, *, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations (first axis: batch). `info` is accepted and ignored, so the
        policy fits the evaluation's `act(obs, info)` like the rule-based baselines."""
        out = self._forward(obs_batch)
        if "actions" in out:
            actions = out["actions"]
        else:
            dist = self._dist_cls.from_logits(out["action_dist_inputs"])
            actions = (dist.to_deterministic() if deterministic else dist).sample()
        return np.asarray(actions.cpu().numpy() if hasattr(actions, "cpu") else actions)

    def action_probabilities(self, obs_batch) -> np.ndarray | list[np.ndarray]:
        """Per-action probabilities (a list, one array per sub-action, for MultiDiscrete)."""
        import torch

        logits = self._forward(obs_batch)["action_dist_inputs"]
        nvec = getattr(self.action_space, "nvec", None)
        if nvec is None:
            return torch.softmax(logits, dim=-1).numpy()
        parts = torch.split(logits, [int(n) for n in np.ravel(nvec)], dim=-1)
        return [torch.softmax(p, dim=-1).numpy() for p in parts]

    def value(self, obs_batch) -> np.ndarray | None:
        """The value function's estimate, when the module has one (PPO, IMPALA, APPO do)."""
        import torch

        if not hasattr(self.module, "compute_values"):
            return None
        with torch.no_grad():
            v = self.module.compute_values({"obs": self._tensor(obs_batch)})
        return v.numpy()
