"""The planner: the seeds' arithmetic, placement, and refusals of what cannot run."""

import pytest

from orchestrator.errors import PlanError
from orchestrator.planner import check_fits, plan_env_runners, plan_spec
from orchestrator.spec import ClusterSpec, HeadConfiguration, JobSpec, WorkerConfiguration, load_spec


def cluster(head=None, workers=()):
    return ClusterSpec(head=head or HeadConfiguration(vcpus=2), workers=list(workers))


def ppo(**kw):
    return JobSpec(algorithm="PPO", env="CartPole-v1", **kw)


def test_azure_seed_gives_13_env_runners_and_says_why():
    spec = load_spec("cluster_configs/azure-pong-impala.yaml")
    plan = plan_spec(spec)
    assert plan.num_env_runners == 13
    assert (plan.total_vcpus, plan.total_gpus) == (14, 1)
    assert (plan.num_learners, plan.num_gpus_per_learner) == (0, 1.0)
    assert (plan.trial_cpus, plan.trial_gpus) == (14, 1.0)
    text = plan.explain()
    assert "6 (head) + 4 x 2 (worker-cpu) - 1 reserved for the head role" in text and "= 13" in text
    assert "head's GPU" in text
    assert plan.env_runners_per_pool == {"worker-cpu": 8, "head": 5}


def test_the_same_from_python():
    plan = plan_env_runners(
        ClusterSpec(
            head=HeadConfiguration(instance_type="STANDARD_NC6"),
            workers=[WorkerConfiguration(instance_type="STANDARD_D2_V2", node_count=4)],
        ),
        JobSpec(algorithm="IMPALA", env="PongNoFrameskip-v4"),
    )
    assert plan.num_env_runners == 13


def test_sagemaker_types():
    plan = plan_env_runners(
        cluster(
            HeadConfiguration(instance_type="ml.p3.2xlarge"),
            [WorkerConfiguration(instance_type="ml.c5.xlarge", node_count=2)],
        ),
        ppo(),
    )
    assert plan.num_env_runners == 8 + 2 * 4 - 1


def test_two_vcpu_machine_gives_one_env_runner():
    plan = plan_env_runners(cluster(), ppo(num_envs_per_env_runner=8))
    assert plan.num_env_runners == 1 and plan.trial_cpus == 2 and plan.trial_gpus == 0
    assert plan.as_env()["RLO_NUM_ENV_RUNNERS"] == "1" and plan.as_env()["RLO_NUM_GPUS"] == "0"


def test_single_vcpu_samples_in_the_driver():
    plan = plan_env_runners(cluster(HeadConfiguration(vcpus=1)), ppo())
    assert plan.num_env_runners == 0 and "driver" in plan.explain()


def test_override_within_budget():
    assert plan_env_runners(cluster(HeadConfiguration(vcpus=8)), ppo(num_env_runners=3)).num_env_runners == 3


def test_more_env_runners_than_vcpus_is_refused():
    with pytest.raises(PlanError) as e:
        plan_env_runners(cluster(), ppo(num_env_runners=5))
    assert "5 env runners" in str(e.value) and "at most 1" in e.value.fix


def test_gpu_learner_without_gpu_is_refused():
    with pytest.raises(PlanError) as e:
        plan_env_runners(cluster(HeadConfiguration(instance_type="STANDARD_D2_V2")), ppo(use_gpu=True))
    assert "no GPU" in str(e.value) and "STANDARD_NC6" in e.value.fix


def test_use_gpu_false_keeps_learner_on_cpu():
    plan = plan_env_runners(cluster(HeadConfiguration(instance_type="STANDARD_NC6")), ppo(use_gpu=False))
    assert plan.trial_gpus == 0 and plan.num_env_runners == 5


def test_multi_gpu_head_gets_one_learner_per_gpu():
    plan = plan_env_runners(cluster(HeadConfiguration(instance_type="ml.p3.8xlarge")), ppo())
    assert (plan.num_learners, plan.num_gpus_per_learner, plan.trial_gpus) == (4, 1.0, 4.0)


def test_reserved_more_than_head_is_refused():
    with pytest.raises(PlanError, match="reserves 3 CPUs"):
        plan_env_runners(cluster(HeadConfiguration(vcpus=2, reserved_cpus=3)), ppo())


def test_aggregator_actors_come_out_of_the_budget():
    plan = plan_env_runners(
        cluster(HeadConfiguration(vcpus=8)), ppo(hyperparameters={"num_aggregator_actors_per_learner": 2})
    )
    assert plan.num_env_runners == 5 and plan.trial_cpus == 8


def test_worker_gpus_noted():
    plan = plan_env_runners(cluster(workers=[WorkerConfiguration(instance_type="STANDARD_NC6")]), ppo())
    assert any("GPUs" in n for n in plan.notices)


def test_check_fits_refuses_what_ray_would_leave_pending():
    plan = plan_spec(load_spec("cluster_configs/azure-pong-impala.yaml"))
    with pytest.raises(PlanError) as e:
        check_fits(plan, cpus=2, gpus=0, where="the embedded local Ray")
    assert "14 CPUs" in str(e.value) and "1 GPU" in str(e.value) and "pending forever" in str(e.value)
    check_fits(plan, cpus=14, gpus=1, where="a big cluster")  # fits exactly


def test_planner_does_not_import_ray():
    import subprocess
    import sys

    code = "import orchestrator.planner, orchestrator.spec, sys; print('ray' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "False"


def test_the_python_apis_explanation_is_what_rlo_plan_prints(capsys):
    from orchestrator import Estimator
    from orchestrator.cli import main

    path = "cluster_configs/local-cartpole.yaml"
    assert main(["plan", path]) == 0
    printed = capsys.readouterr().out
    text = Estimator.from_yaml(path).plan().explain(source=path)
    assert printed == text + "\n"
    assert text.startswith(f"Plan for `{path}`: cluster `local`, job: PPO on CartPole-v1")
    assert "where: the embedded local Ray on 127.0.0.1" in text and "stop when: " in text
