"""Azure ML's RL estimator code (the seed's Pong article, 002) through orchestrator.compat.azureml with its imports
changed; the entry script (tests/data/azureml/files/pong_rllib.py) is the seed's with its imports changed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.compat.azureml import (
    AmlCompute,
    ComputeTarget,
    ComputeTargetException,
    Experiment,
    Ray,
    ReinforcementLearningEstimator,
    Run,
    WorkerConfiguration,
    Workspace,
)
from orchestrator.compat.rllib_legacy import train, tune
from orchestrator.errors import PlanError, UserError

FILES = Path(__file__).parents[1] / "data" / "azureml" / "files"


def seed_compute(ws, name, vm_size, max_nodes):
    # The seed's "create the compute target if it has not been created already" block.
    if name in ws.compute_targets:
        return ws.compute_targets[name]
    provisioning_config = AmlCompute.provisioning_configuration(
        vm_size=vm_size,
        min_nodes=0,
        max_nodes=max_nodes,
        vnet_resourcegroup_name=ws.resource_group,
        vnet_name="your_vnet",
        subnet_name="default",
    )
    target = ComputeTarget.create(ws, name, provisioning_config)
    target.wait_for_completion(show_output=True, min_node_count=None, timeout_in_minutes=20)
    print(target.get_status().serialize())
    return target


def seed_estimator(head_compute_target, worker_compute_target, script_params, use_gpu=True, node_count=4):
    # The seed's WorkerConfiguration and ReinforcementLearningEstimator calls, argument for argument.
    pip_packages = ["ray[rllib]==0.8.3"]
    worker_conf = WorkerConfiguration(
        compute_target=worker_compute_target, node_count=node_count, use_gpu=False, pip_packages=pip_packages
    )
    return ReinforcementLearningEstimator(
        source_directory=str(FILES),
        entry_script="pong_rllib.py",
        script_params=script_params,
        compute_target=head_compute_target,
        pip_packages=pip_packages,
        use_gpu=use_gpu,
        rl_framework=Ray(),
        worker_configuration=worker_conf,
        cluster_coordination_timeout_seconds=3600,
        max_run_duration_seconds=3600,
        shm_size=24 * 1024 * 1024 * 1024,
    )


SEED_PARAMS = {
    "--run": "IMPALA",
    "--env": "PongNoFrameskip-v4",
    "--config": '\'{"num_gpus": 1, "num_workers": 13}\'',
    "--stop": '\'{"episode_reward_mean": 18, "time_total_s": 3600}\'',
}


def test_the_seeds_cluster_plans_its_13_workers_and_needs_its_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))
    ws = Workspace.from_config()
    head = seed_compute(ws, "head-gpu", "STANDARD_NC6", 2)
    workers = seed_compute(ws, "worker-cpu", "STANDARD_D2_V2", 4)
    assert seed_compute(ws, "head-gpu", "STANDARD_NC6", 2) is head  # found in ws.compute_targets the second time
    est = seed_estimator(head, workers, SEED_PARAMS)
    plan = est.plan()
    # The seed's arithmetic: 6 CPUs + 4 x 2 CPUs - 1 head CPU = 13 workers; the learner on the NC6's GPU.
    assert plan.num_env_runners == 13 and plan.num_gpus_per_learner == 1.0
    assert est.spec.job.pip == []  # the seed's ray[rllib]==0.8.3 pin is dropped: the job runs the cluster's Ray
    err = capsys.readouterr().err
    for noticed in ("Workspace ignored", "vnet_name", "shm_size", "cluster_coordination_timeout_seconds", "ray[rllib]"):
        assert err.count(noticed) >= 1, noticed
    # This machine has no GPU and 2 CPUs: the planner's error, before anything is submitted.
    with pytest.raises(PlanError, match="GPU"):
        Experiment(workspace=ws, name="rllib-pong-multi-node").submit(config=est)
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())


def test_a_gpu_request_without_a_gpu_is_the_planners_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))
    est = ReinforcementLearningEstimator(
        source_directory=str(FILES), entry_script="pong_rllib.py", compute_target="local", use_gpu=True
    )
    with pytest.raises(PlanError) as e:
        Experiment(Workspace.from_config(), "gpu").submit(est)
    assert "asks for a GPU learner" in e.value.message and "has no GPU" in e.value.message


def test_unknown_vm_sizes_and_targets_are_refused():
    with pytest.raises(ComputeTargetException) as e:
        AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V9", max_nodes=4)
    assert "unknown VM size `STANDARD_D2_V9`" in e.value.message and "did you mean `STANDARD_D2_V2`" in e.value.message
    assert "STANDARD_NC6" in e.value.fix
    with pytest.raises(ComputeTargetException, match="unknown VM size `Standard_Z9`"):
        ReinforcementLearningEstimator(
            source_directory=str(FILES), entry_script="pong_rllib.py", compute_target="Standard_Z9"
        )
    with pytest.raises(ComputeTargetException, match="compute target `cpu-cluster` not found"):
        ComputeTarget(workspace=Workspace(), name="cpu-cluster")
    assert ComputeTarget(Workspace(), "Standard_D2_v2").vm_size == "Standard_D2_v2"  # Azure's spelling
    with pytest.raises(UserError, match=r"node_count=5\) is more than compute target"):
        seed_estimator("local", seed_compute(Workspace(), "w", "STANDARD_D2_V2", 4), {}, use_gpu=False, node_count=5)


def test_offline_run_logs_locally(capsys):
    run = Run.get_context()
    assert run.id.startswith("OfflineRun_")
    run.log(name="episode_reward_mean", value=1.5)
    run.log(name="episode_reward_mean", value=2.5)
    run.log("episodes_total", 3)
    assert "Attempted to log scalar metric episode_reward_mean" in capsys.readouterr().out
    metrics = Run.get_context().get_metrics()  # the same offline run
    assert metrics["episode_reward_mean"][-2:] == [1.5, 2.5] and metrics["episodes_total"] == 3


def test_the_removed_rllib_parser_reads_the_seeds_arguments(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.4:6379")  # what Ray sets for a job's entry script
    args = train.create_parser().parse_args([x for kv in SEED_PARAMS.items() for x in kv])
    assert args.run == "IMPALA" and args.env == "PongNoFrameskip-v4"
    assert args.config == {"num_gpus": 1, "num_workers": 13}  # the seed's extra single quotes are accepted
    assert args.stop == {"episode_reward_mean": 18, "time_total_s": 3600}
    assert args.ray_address == "10.0.0.4:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert train.create_parser().parse_args(["--run", "PPO"]).ray_address is None  # the seed then uses its default


@pytest.mark.parametrize(
    "algorithm, config, kwargs, says, fix",
    [
        ("A2C", {"env": "CartPole-v1"}, {}, "no longer has the algorithm `A2C`", "tune.run('PPO', ...)"),
        ("PPO", {"env": "CartPole-v1", "callbacks": {"on_episode_end": print}}, {}, "on_episode_end", "RLlibCallback"),
        ("PPO", {"env": "CartPole-v1", "horizon": 200}, {}, "horizon", "max_episode_steps"),
        ("PPO", {"env": "CartPole-v1", "lr": {"grid_search": [1e-3, 1e-4]}}, {}, "search space", "sweep"),
        ("PPO", {"env": "CartPole-v1"}, {"restore": "/tmp/ckpt"}, "restore", "rlo resume"),
        ("PPO", {"env": "CartPole-v1", "num_workers": 50}, {}, "50 env runners", "num_env_runners"),
    ],
)
def test_legacy_tune_run_refuses_what_cannot_carry_over(monkeypatch, tmp_path, algorithm, config, kwargs, says, fix):
    monkeypatch.chdir(tmp_path)  # outside a job: the plan is this machine's (2 CPUs here)
    monkeypatch.delenv("RLO_RUN_ID", raising=False)
    import ray

    with pytest.raises(UserError) as e:
        tune.run(algorithm, config=config, stop={"training_iteration": 1}, **kwargs)
    assert says in e.value.message and fix in (e.value.fix or "")
    assert not ray.is_initialized()  # refused before Ray was started


def test_the_seeds_notebook_and_entry_script_train_cartpole(rlo_home, capsys):
    # The seed's notebook with its imports changed; what had to change for a tiny budget on this machine: the
    # compute targets (`local`), the env (CartPole instead of Pong) and the budget.
    ws = Workspace.from_config()
    exp = Experiment(workspace=ws, name="rllib-cartpole-local")
    script_params = {
        "--run": "IMPALA",
        "--env": "CartPole-v1",
        "--config": '\'{"num_gpus": 0, "num_workers": 1}\'',
        # Stop once an episode has ended (IMPALA samples asynchronously), bounded by iterations.
        "--stop": '\'{"episodes_total": 1, "training_iteration": 20}\'',
    }
    rl_estimator = seed_estimator("local", "local", script_params, use_gpu=False)
    run = exp.submit(config=rl_estimator)
    assert run.id.startswith("rlo-rllib-cartpole-local-")
    details = run.wait_for_completion(show_output=True)
    assert details["status"] == "Completed" and run.get_status() == "Completed"

    metrics = run.get_metrics()  # logged by the seed's utils/callbacks.py with Run.get_context().log
    episodes = metrics["episodes_total"] if isinstance(metrics["episodes_total"], list) else [metrics["episodes_total"]]
    rewards = metrics["episode_reward_mean"]
    rewards = rewards if isinstance(rewards, list) else [rewards]
    assert episodes[-1] >= 1 and isinstance(rewards[-1], float) and math.isfinite(rewards[-1]) and rewards[-1] > 0
    assert len(episodes) == len(rewards) == len(run.metrics())  # one of each per training iteration
    log = run.logs()
    for legacy in ("sample_batch_size", "num_sgd_iter", "num_data_loader_buffers", "num_gpus", "model.dim"):
        assert sum(f"`{legacy}" in line for line in log.splitlines() if "[rlo:notice]" in line) == 1, legacy
    assert "`num_workers: 1`" in log and "local_dir" in log
    assert run.latest_checkpoint() is not None  # our Run's methods, through Azure's handle
