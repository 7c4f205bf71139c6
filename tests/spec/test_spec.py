"""Spec models: parsing, shorthand types, round trip, and every kind of bad input."""

from pathlib import Path

import pytest
import yaml

from orchestrator import spec as S
from orchestrator.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]


def problems(data) -> list[tuple[str, str, str | None]]:
    with pytest.raises(SpecError) as e:
        S.parse_spec(data, "t.yaml")
    return e.value.problems


def job(**kw):
    return {"algorithm": "PPO", "env": "CartPole-v1", **kw}


class TestMemory:
    @pytest.mark.parametrize(
        "text,gib", [("16GB", 16), ("7GiB", 7), ("512MB", 0.5), (8, 8), ("1.5G", 1.5), ("2TB", 2048)]
    )
    def test_parses(self, text, gib):
        assert S.WorkerConfiguration(vcpus=1, memory=text).memory == pytest.approx(gib)

    @pytest.mark.parametrize("bad", ["lots", "-3GB", 0, "16 parsecs", True])
    def test_rejects(self, bad):
        with pytest.raises(ValueError):
            S.WorkerConfiguration(vcpus=1, memory=bad)

    def test_serializes_as_size(self):
        assert S.WorkerConfiguration(vcpus=1, memory="16GB").model_dump(mode="json")["memory"] == "16GB"


class TestNodes:
    def test_catalog_resolves(self):
        h = S.HeadConfiguration(instance_type="standard_nc6")
        assert (h.resolved_vcpus, h.resolved_gpus, h.resolved_memory_gib) == (6, 1, 56)

    def test_explicit_overrides_catalog(self):
        w = S.WorkerConfiguration(instance_type="STANDARD_D2_V2", vcpus=4, gpus=1)
        assert (w.resolved_vcpus, w.resolved_gpus) == (4, 1)

    def test_local_is_this_machine(self):
        import os

        assert S.HeadConfiguration(instance_type="local").resolved_vcpus == os.cpu_count()

    def test_needs_a_size(self):
        with pytest.raises(ValueError, match="instance_type"):
            S.WorkerConfiguration(name="w")


class TestRoundTrip:
    @pytest.mark.parametrize("path", sorted((ROOT / "cluster_configs").glob("*.yaml")), ids=lambda p: p.name)
    def test_shipped_specs_load_and_round_trip(self, path):
        spec = S.load_spec(path)
        again = S.parse_spec(yaml.safe_load(spec.to_yaml()))
        assert again.to_dict() == spec.to_dict()

    def test_python_and_yaml_are_the_same_spec(self):
        py = S.Spec(
            cluster=S.ClusterSpec(
                head=S.HeadConfiguration(instance_type="STANDARD_NC6"),
                workers=[S.WorkerConfiguration(name="w", instance_type="STANDARD_D2_V2", node_count=4)],
            ),
            job=S.JobSpec(algorithm="impala", env="PongNoFrameskip-v4", stop={"episode_reward_mean": 18}),
        )
        assert S.parse_spec(yaml.safe_load(py.to_yaml())) == py
        assert py.job.algorithm == "IMPALA"


class TestBadInput:
    def test_unknown_key_suggests(self):
        [(path, what, fix)] = problems({"cluster": {"workers": [{"vcpus": 2, "nodecount": 4}]}, "job": job()})
        assert path == "cluster.workers[0].nodecount"
        assert "unknown key" in what and fix == "did you mean `node_count`?"

    def test_unknown_key_without_close_match_lists_valid_keys(self):
        [(path, _, fix)] = problems({"cluster": {"head": {"vcpus": 2, "zzz": 1}}, "job": job()})
        assert path == "cluster.head.zzz" and "vcpus" in fix

    def test_wrong_type(self):
        [(path, what, _)] = problems({"cluster": {"head": {"vcpus": "many"}}, "job": job()})
        assert path == "cluster.head.vcpus" and "many" in what

    @pytest.mark.parametrize("field", ["node_count", "vcpus"])
    def test_negative_and_zero_counts(self, field):
        for bad in (0, -2):
            worker = {"vcpus": 2, "node_count": 1} | {field: bad}
            [(path, what, fix)] = problems({"cluster": {"workers": [worker]}, "job": job()})
            assert path == f"cluster.workers[0].{field}" and fix == "use a value >= 1"

    def test_unknown_instance_type(self):
        [(path, what, _)] = problems({"cluster": {"head": {"instance_type": "STANDARD_NC7"}}, "job": job()})
        assert path == "cluster.head.instance_type" and "did you mean `STANDARD_NC6`" in what

    def test_unknown_algorithm(self):
        [(path, what, _)] = problems({"job": job(algorithm="PPOO")})
        assert path == "job.algorithm" and "did you mean `PPO`" in what

    def test_stop_on_unknown_metric(self):
        [(path, what, _)] = problems({"job": job(stop={"episode_reward_mea": 18})})
        assert path == "job.stop" and "episode_reward_mean" in what

    def test_missing_job(self):
        [(path, what, fix)] = problems({"cluster": {}})
        assert path == "job" and "missing" in what and fix == "add `job:`"

    def test_nothing_to_run(self):
        [(_, what, _)] = problems({"job": {"env": "CartPole-v1"}})
        assert "algorithm" in what and "entry_script" in what

    def test_bad_env_import_path(self):
        [(path, what, _)] = problems({"job": job(env="my.module:Cls:extra")})
        assert path == "job.env"

    def test_unknown_node_loss_policy(self):
        [(path, what, _)] = problems({"job": job(fault_tolerance={"on_node_loss": "pause"})})
        assert path == "job.fault_tolerance.on_node_loss" and "'continue' or 'wait'" in what

    def test_reserved_env_vars(self):
        [(path, what, _)] = problems({"job": job(env_vars={"RLO_RUN_ID": "x"})})
        assert path == "job.env_vars" and "RLO_RUN_ID" in what

    def test_duplicate_pool_names(self):
        [(_, what, _)] = problems({"cluster": {"workers": [{"vcpus": 1}, {"vcpus": 2}]}, "job": job()})
        assert "repeated: workers" in what

    def test_every_problem_reported_at_once(self):
        ps = problems({"cluster": {"head": {"vcpu": 2}}, "job": job(algorithm="X", seed="s")})
        assert {p[0] for p in ps} >= {"cluster.head.vcpu", "job.algorithm", "job.seed"}

    def test_malformed_yaml_names_line(self, tmp_path):
        f = tmp_path / "bad.yaml"
        f.write_text("job:\n  algorithm: PPO\n  env: [CartPole\n")
        with pytest.raises(SpecError) as e:
            S.load_spec(f)
        assert "bad.yaml:line" in str(e.value) and "not valid YAML" in str(e.value)

    def test_top_level_not_a_mapping(self, tmp_path):
        f = tmp_path / "list.yaml"
        f.write_text("- 1\n- 2\n")
        with pytest.raises(SpecError, match="top level must be a mapping"):
            S.load_spec(f)

    def test_missing_file(self, tmp_path):
        with pytest.raises(SpecError, match="no such file"):
            S.load_spec(tmp_path / "nope.yaml")


def test_legacy_stop_names_are_mapped_with_notice():
    j = S.JobSpec(**job(stop={"episode_reward_mean": 18, "time_total_s": 3600, "timesteps_total": 1e6}))
    stop, notices = j.normalized_stop()
    assert stop == {"env_runners/episode_return_mean": 18, "time_total_s": 3600, "num_env_steps_sampled_lifetime": 1e6}
    assert len(notices) == 2 and all("legacy" in n for n in notices)


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-5` as a string; users write it as a number, as YAML 1.2 does.
    f = tmp_path / "lr.yaml"
    f.write_text(
        "job: {algorithm: PPO, env: CartPole-v1, hyperparameters: {lr: 1e-5, gamma: 0.99}}\n"
        "sweep: {parameters: {hyperparameters.lr: {loguniform: [1e-5, 1E-3]}}}\n"
    )
    spec = S.load_spec(f)
    assert spec.job.hyperparameters == {"lr": 1e-5, "gamma": 0.99}
    assert spec.sweep.parameters["hyperparameters.lr"] == {"loguniform": [1e-5, 1e-3]}
    # Quoted stays text, and plain PyYAML is left as it was.
    # (an env of the user's: its env_config keys are its own)
    f.write_text('job: {algorithm: PPO, env: "my_envs:Custom", env_config: {tag: "1e-5"}}\n')
    assert S.load_spec(f).job.env_config == {"tag": "1e-5"}
    assert yaml.safe_load("a: 1e-5") == {"a": "1e-5"}
