"""SageMaker RL code with its imports changed: `RLEstimator` / `RLToolkit` / `RLFramework` (the SageMaker Python
SDK's RL page, seed 004) and entry scripts subclassing `SageMakerRayLauncher` in the shape of the public SageMaker
RL Ray examples (tests/data/sagemaker/, unchanged but for the launcher's import line). Checks without Ray first,
then real training on the embedded Ray (one iteration, small batches), analytics over the log, attach, deploy."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from serving_helpers import free_port

from orchestrator import metrics
from orchestrator.compat import sagemaker
from orchestrator.compat.sagemaker import (
    RLEstimator,
    RLFramework,
    RLToolkit,
    SageMakerRayLauncher,
    TrainingJobAnalytics,
    apply_hyperparameters,
    build_experiment,
)
from orchestrator.errors import JobFailed, UserError

DATA = Path(__file__).parents[1] / "data" / "sagemaker"
FLOAT = r"([-+]?[0-9]*\.?[0-9]+)"
# The seed's RLEstimator calls (the SageMaker Python SDK's "Using Reinforcement Learning" page), verbatim but for
# the import line.
SEED_IMPORT = "from orchestrator.compat.sagemaker import RLEstimator, RLToolkit, RLFramework\n"
SEED_TF_CALL = """
rl_estimator = RLEstimator(entry_point='coach-train.py',
                           toolkit=RLToolkit.COACH,
                           toolkit_version='0.11.1',
                           framework=RLFramework.TENSORFLOW,
                           role='SageMakerRole',
                           instance_type='ml.p3.2xlarge',
                           instance_count=1)
rl_estimator.fit()
"""
SEED_MXNET_CALL = """
rl_estimator = RLEstimator(entry_point='coach-train.py',
                           toolkit=RLToolkit.COACH,
                           toolkit_version='0.11.0',
                           framework=RLFramework.MXNET,
                           role='SageMakerRole',
                           instance_type='ml.c4.2xlarge',
                           instance_count=1)
rl_estimator.fit()
predictor = rl_estimator.deploy(instance_type='ml.m4.xlarge', initial_instance_count=1)
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def nothing_started(home: Path) -> bool:
    return not (home / "local-ray" / "state.json").exists() and not (home / "runs").exists()


def estimator(script: str = "train-news-vendor-ppo.py", **kwargs) -> RLEstimator:
    args = dict(
        entry_point=script,
        source_dir=str(DATA),
        toolkit=RLToolkit.RAY,
        toolkit_version="1.6.0",
        framework=RLFramework.PYTORCH,
        role="SageMakerRole",
        instance_type="local",
        instance_count=1,
    )
    return RLEstimator(**{**args, **kwargs})


# --- without Ray ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [SEED_TF_CALL, SEED_MXNET_CALL], ids=["coach-tensorflow", "coach-mxnet"])
def test_seed_004_calls_run_with_imports_changed_and_coach_names_its_replacement(home, tmp_path, monkeypatch, call):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coach-train.py").write_text("print('a Coach preset')\n")
    with pytest.raises(UserError) as e:
        exec(SEED_IMPORT + call, {})
    assert "RLToolkit.COACH" in e.value.message and "Ray RLlib" in e.value.message
    assert "toolkit=RLToolkit.RAY" in e.value.fix and "SageMakerRayLauncher" in e.value.fix
    assert nothing_started(home)


@pytest.mark.parametrize("framework", [RLFramework.TENSORFLOW, RLFramework.MXNET, "tensorflow"])
def test_tensorflow_and_mxnet_are_refused_with_pytorch_as_the_fix(home, framework):
    with pytest.raises(UserError) as e:
        estimator(framework=framework)
    assert "PyTorch only" in e.value.message and e.value.fix.startswith("use `framework=RLFramework.PYTORCH`")
    assert nothing_started(home)


def test_unknown_instance_type_lists_the_known_ones(home):
    with pytest.raises(UserError) as e:
        estimator(instance_type="ml.p3.2xlarg")
    assert "unknown instance type `ml.p3.2xlarg`" in e.value.message and "did you mean `ml.p3.2xlarge`" in str(e.value)
    assert "ml.c5.2xlarge" in e.value.fix and "ml.g4dn.xlarge" in e.value.fix and "`local`" in e.value.fix
    assert nothing_started(home)


def test_ml_instance_types_are_planned_from_the_catalog(home):
    # The seed's GPU instance: its GPU learns, its other vCPUs run env runners.
    plan = estimator(instance_type="ml.p3.2xlarge").plan()
    assert (plan.head.instance_type, plan.head.vcpus, plan.total_gpus) == ("ml.p3.2xlarge", 8, 1)
    assert plan.num_env_runners == 7 and plan.num_gpus_per_learner == 1.0
    # Several instances: one head and instance_count - 1 workers of the same type (8 x 3 - 1 env runners).
    plan = estimator(instance_type="ml.c5.2xlarge", instance_count=3).plan()
    assert [(p.name, p.node_count) for p in plan.pools] == [("algo", 2)]
    assert plan.num_env_runners == 23 and plan.total_gpus == 0
    assert estimator().plan().head.instance_type == "local"


def test_arguments_without_meaning_here_get_one_notice_each(home, capsys):
    est = estimator(
        image_uri="123.dkr.ecr.us-west-2.amazonaws.com/my-rl:1.0",
        sagemaker_session=object(),
        subnets=["subnet-1"],
        use_spot_instances=True,
        max_wait=7200,
    )
    err = capsys.readouterr().err.splitlines()
    for name in ("role", "image_uri", "sagemaker_session", "subnets", "use_spot_instances", "max_wait"):
        lines = [line for line in err if f"`{name}` ignored" in line]
        assert len(lines) == 1 and lines[0].startswith("[rlo] note: RLEstimator"), err
    assert sum("toolkit_version `1.6.0`" in line for line in err) == 1
    assert est.hyperparameters() == {} and est.spec.job.entry_script == str(DATA / "train-news-vendor-ppo.py")
    with pytest.raises(TypeError, match="instance_typ"):
        estimator(instance_typ="local")


def test_missing_entry_point_and_bad_metric_definitions_are_user_errors(home):
    with pytest.raises(UserError, match="entry_point `nope.py` does not exist") as e:
        estimator("nope.py")
    assert "relative to source_dir" in e.value.fix
    with pytest.raises(UserError) as e:  # the spec's checks, named by the SageMaker argument
        estimator(base_job_name="my job!", environment={"SM_CHANNEL_TRAIN": "/data"})
    assert "at `base_job_name`" in str(e.value) and "at `environment`: SM_CHANNEL_TRAIN" in str(e.value)
    with pytest.raises(UserError, match=r"metric_definitions\[0\]"):
        estimator(metric_definitions=[{"Name": "reward", "Regex": "reward: ([0-9"}])


def test_rl_hyperparameters_merge_into_the_experiment_and_legacy_keys_map(monkeypatch):
    hps = {
        "rl.training.config.lr": "0.001",
        "rl.training.config.train_batch_size": 300,
        "rl.training.stop.training_iteration": 2,
        "rl.training.checkpoint_freq": 1,
        "my_own_flag": "left alone",
    }
    monkeypatch.setenv("SM_HPS", json.dumps(hps))
    monkeypatch.setenv("RLO_NUM_ENV_RUNNERS", "3")
    monkeypatch.setenv("RLO_NUM_GPUS", "0")
    monkeypatch.delenv("SM_NUM_GPUS", raising=False)

    class Launcher(SageMakerRayLauncher):
        def get_experiment_config(self):
            return {
                "training": {
                    "env": "NewsVendorGymEnvironment-v1",
                    "run": "PPO",
                    "stop": {"episode_reward_mean": 10},
                    "config": {
                        "lr": 1e-4,
                        "num_sgd_iter": 5,
                        "sgd_minibatch_size": 64,
                        "num_workers": self.num_cpus - 1,
                        "num_gpus": self.num_gpus,
                    },
                }
            }

    launcher = Launcher()
    assert (launcher.num_cpus, launcher.num_gpus) == (4, 0)  # the plan's 3 env runners + the driver/learner
    exp = launcher.customize_experiment_config(launcher.get_experiment_config())
    training = exp["training"]
    assert training["config"]["lr"] == 0.001 and training["config"]["train_batch_size"] == 300  # text -> number
    assert training["stop"] == {"episode_reward_mean": 10, "training_iteration": 2} and training["checkpoint_freq"] == 1
    assert "my_own_flag" not in json.dumps(exp)

    ctx = SimpleNamespace(num_env_runners=3, num_envs_per_env_runner=1, num_learners=0, num_gpus_per_learner=0.0)
    built = build_experiment(exp, ctx)
    config = built["config"]
    assert (config.lr, config.num_epochs, config.minibatch_size, config.num_env_runners) == (0.001, 5, 64, 3)
    assert config.env == "NewsVendorGymEnvironment-v1" and config.enable_rl_module_and_learner
    assert built["stop"] == {metrics.RETURN_MEAN: 10.0, "training_iteration": 2.0}
    assert built["checkpoint"].frequency == 1
    assert any("`num_sgd_iter`" in n for n in built["notices"])
    assert any("episode_reward_mean" in n for n in built["notices"])


@pytest.mark.parametrize(
    "training,needles",
    [
        ({"env": "E", "run": "A2C"}, ["`run: A2C`", "no longer has the algorithm", "use `run: PPO`"]),
        ({"env": "E", "run": "CQL"}, ["offline", "PPO"]),
        ({"env": "E", "run": "PPO", "stop": {"episode_reward_maen": 1}}, ["unknown metric", "episode_reward_mean"]),
        ({"env": "E", "run": "PPO", "config": {"multiagent": {}}}, ["multiagent", "multi-agent"]),
        ({"env": "E", "run": "PPO", "resume": True}, ["unknown experiment key", "`resume`"]),
        ({"run": "PPO"}, ["no `env`", "register_env"]),
    ],
    ids=["dropped-algorithm", "offline-algorithm", "unknown-metric", "multiagent", "unknown-key", "no-env"],
)
def test_experiments_that_cannot_carry_over_are_user_errors(training, needles):
    ctx = SimpleNamespace(num_env_runners=1, num_envs_per_env_runner=1, num_learners=0, num_gpus_per_learner=0.0)
    with pytest.raises(UserError) as e:
        build_experiment({"training": training}, ctx)
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def test_hyperparameters_cannot_reach_unsafe_attributes():
    with pytest.raises(UserError, match="unsafe"):
        apply_hyperparameters({"training": {}}, {"rl.training.__class__.x": 1})


# --- real training on the embedded Ray -------------------------------------------------------------------------------

TINY_PPO = {
    "rl.training.stop.training_iteration": 1,
    "rl.training.config.train_batch_size": 200,
    "rl.training.config.sgd_minibatch_size": 50,
    "rl.training.config.num_sgd_iter": 1,
    "rl.training.config.lr": 0.0003,
}
DEFINITIONS = [
    {"Name": "episode_reward_mean", "Regex": f"episode_reward_mean: {FLOAT}"},
    {"Name": "timesteps", "Regex": "timesteps_total: ([0-9.]+)"},
]


def test_ppo_launcher_trains_and_is_analysed_attached_and_deployed(rlo_home, tmp_path):
    est = estimator(
        hyperparameters=TINY_PPO,
        metric_definitions=DEFINITIONS,
        output_path=f"file://{tmp_path / 'out'}",
        base_job_name="news-vendor",
    )
    run = est.fit()  # raises JobFailed unless the job succeeded
    assert run.status() == "SUCCEEDED" and est.latest_training_job.name == run.id == est._current_job_name
    series = run.metrics()
    assert [r["training_iteration"] for r in series] == [1] and series[0][metrics.ENV_STEPS] >= 200

    # The hyperparameters reached the script as SageMaker passes them: `--key value` and SM_HPS (merged by the
    # launcher into the experiment it saved as params.json).
    assert "--rl.training.config.lr 0.0003" in run.record.extra["entrypoint"]
    with tarfile.open(est.model_data) as tar:
        names = tar.getnames()
        params = json.load(tar.extractfile("params.json"))
    assert est.model_data == str(tmp_path / "out" / run.id / "output" / "model.tar.gz")
    assert any(n.startswith("checkpoint/") for n in names) and "policy.json" in names
    assert params["training"]["config"]["lr"] == 0.0003 and params["training"]["stop"]["training_iteration"] == 1
    assert params["training"]["config"]["train_batch_size"] == 200

    # metric_definitions -> series of the run (as TrainingJobAnalytics(...).dataframe()).
    frame = run.analytics()
    rows = frame.to_dict("records") if hasattr(frame, "to_dict") else frame
    rewards = [r for r in rows if r["metric_name"] == "episode_reward_mean"]
    assert len(rewards) == 1 and rewards[0]["value"] == pytest.approx(series[0][metrics.RETURN_MEAN])
    assert rewards[0]["timestamp"] == pytest.approx(series[0]["time_total_s"])
    assert [r["value"] for r in rows if r["metric_name"] == "timesteps"] == [series[0][metrics.ENV_STEPS]]
    only = TrainingJobAnalytics(run.id, ["timesteps"]).dataframe()
    assert list(only["metric_name"] if hasattr(only, "columns") else [r["metric_name"] for r in only]) == ["timesteps"]

    again = RLEstimator.attach(run.id)
    assert again.model_data == est.model_data and again.metric_definitions == DEFINITIONS
    job = again.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed" and job["HyperParameters"] == TINY_PPO

    predictor = again.deploy(initial_instance_count=1, instance_type="ml.m4.xlarge", port=free_port())
    try:
        action = predictor.predict([0.5, 0.25])
        assert int(action) in range(5)
        assert len(predictor.predict([[0.0, 0.0], [0.9, 1.0]])) == 2
    finally:
        predictor.undeploy()


def test_dqn_launcher_trains_a_custom_env(rlo_home):
    est = estimator(
        "train-battery-dqn.py",
        hyperparameters={
            "rl.training.stop.training_iteration": 1,
            "rl.training.config.num_steps_sampled_before_learning_starts": 100,
            "rl.training.config.min_sample_timesteps_per_iteration": 200,
            "rl.training.config.train_batch_size": 32,
        },
    )
    run = est.fit(logs=False)
    series = run.metrics()
    assert [r["training_iteration"] for r in series] == [1] and series[0][metrics.ENV_STEPS] >= 200
    model = Path(est.model_data)
    assert json.loads((model / "policy.json").read_text())["algorithm"] == "DQN"
    assert (model / "checkpoint").is_dir() and run.latest_checkpoint() is not None
    # No metric_definitions given: SageMaker's defaults for Ray, which the launcher's log lines feed.
    names = {d["Name"] for d in sagemaker.default_metric_definitions()}
    frame = run.analytics()
    rows = frame.to_dict("records") if hasattr(frame, "to_dict") else frame
    assert {r["metric_name"] for r in rows} == names


def test_an_experiment_that_cannot_carry_over_fails_fit_with_its_fix(rlo_home):
    # SageMaker's hyperparameters reach every key of the experiment, `run` included.
    est = estimator("train-battery-dqn.py", hyperparameters={"rl.training.run": "A2C"})
    with pytest.raises(JobFailed) as e:
        est.fit(logs=False)
    assert "ended FAILED: the experiment's `run: A2C`" in str(e.value) and "fix: use `run: PPO`" in str(e.value)
    assert len(str(e.value).splitlines()) == 2
