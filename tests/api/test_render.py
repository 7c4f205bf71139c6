"""Rendering for other engines: KubeRay manifests checked against KubeRay's CRD schemas, Azure ML entities built,
dumped and re-loaded by the azure-ai-ml SDK, the Azure ML node launcher's pieces, `rlo submit --backend azureml`
without Azure, and the Dockerfiles. Offline, no Ray."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest
import yaml
from crd_validation import crds, validate_manifest

from orchestrator.cli import main
from orchestrator.errors import UserError
from orchestrator.nodes import node_params
from orchestrator.placement import ENV_RUNNER_SLOT, HEAD_POOL
from orchestrator.planner import plan_spec
from orchestrator.render import default_images, prepare_render
from orchestrator.render import kuberay as kr
from orchestrator.spec import Spec, load_spec, parse_spec

# azure-ai-ml's schemas warn about marshmallow 4 on every load/dump: not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "cluster_configs"
USER_JOB = Path(__file__).resolve().parents[1] / "data" / "user_job"


def _spec(data: dict, base_dir: Path | None = None) -> Spec:
    return parse_spec(data, "<test>", base_dir)


def pong_azure() -> Spec:
    return load_spec(CONFIGS / "azure-pong-impala.yaml")


def two_pools() -> Spec:
    return _spec(
        {
            "cluster": {
                "name": "Mixed_Cluster",
                "head": {"vcpus": 8, "gpus": 2, "memory": "30GB"},
                "workers": [
                    {"name": "small", "vcpus": 2, "memory": "4GB", "node_count": 3},
                    {"name": "big", "instance_type": "STANDARD_D4_V2", "node_count": 2},
                ],
            },
            "job": {"algorithm": "PPO", "env": "CartPole-v1", "pip": ["tabulate"], "env_vars": {"MY_FLAG": "1"}},
        }
    )


def user_script() -> Spec:
    return _spec(
        {
            "cluster": {"name": "u", "head": {"vcpus": 2}, "workers": [{"name": "w", "vcpus": 2}]},
            "job": {
                "name": "contract",
                "entry_script": "contract_job.py",
                "script_args": {"episodes": 3, "config": {"a": "b c"}},
                "max_run_duration_seconds": 60,
            },
        },
        USER_JOB,
    )


SPECS = {
    "azure-pong": pong_azure,
    "local-cartpole": lambda: load_spec(CONFIGS / "local-cartpole.yaml"),
    "packaged-script": lambda: load_spec(CONFIGS / "local-pong-impala-script.yaml"),
    "two-pools": two_pools,
    "user-script": user_script,
}


# --- the validator itself -------------------------------------------------------------------------------------


def test_the_crds_are_there():
    assert {("ray.io", "v1", "RayCluster"), ("ray.io", "v1", "RayJob"), ("ray.io", "v1", "RayCronJob")} <= set(crds())


def test_the_validator_catches_what_the_api_server_would_refuse_or_drop():
    good = kr.raycluster_manifest(pong_azure())
    assert validate_manifest(good) == []
    bad = json.loads(json.dumps(good))
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "4"  # wrong type
    bad["spec"]["workerGroupSpecs"][0]["nodeCount"] = 4  # unknown: would be pruned
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "6 cores"
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"  # typo
    bad["spec"]["authOptions"]["mode"] = "password"  # not in the enum
    bad["metadata"]["name"] = "Azure_Pong"
    problems = "\n".join(validate_manifest(bad))
    for needle in ("replicas", "nodeCount", "6 cores", "imagePullPolice", "password", "Azure_Pong"):
        assert needle in problems, f"{needle} not reported in:\n{problems}"
    del bad["spec"]["workerGroupSpecs"][0]["groupName"]  # required
    assert any("groupName" in p for p in validate_manifest(bad))


# --- KubeRay ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPECS))
def test_rendered_manifests_are_valid_for_kuberay_crds(name, tmp_path):
    rendering = kr.render_kuberay(prepare_render(SPECS[name]()))
    for file, docs in rendering.files.items():
        # What is written is what was checked: read the YAML back.
        written = list(yaml.safe_load_all(kr.write_yaml(docs, tmp_path / file).read_text()))
        assert written == docs
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", k) for k in doc.get("data", {}))
                continue
            assert validate_manifest(doc) == [], f"{file} {doc['kind']}"
            assert doc["apiVersion"] == "ray.io/v1"


def test_head_and_pools_follow_the_plan_and_placement():
    spec = pong_azure()
    plan = plan_spec(spec)
    cluster = kr.raycluster_manifest(spec)["spec"]
    head = cluster["headGroupSpec"]
    res = head["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"] == res["limits"] == {"cpu": "6", "memory": "56Gi", "nvidia.com/gpu": "1"}
    assert head["rayStartParams"] == {**node_params(plan, HEAD_POOL).ray_start_params(), "dashboard-host": "0.0.0.0"}
    assert head["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    (group,) = cluster["workerGroupSpecs"]
    assert group["groupName"] == "worker-cpu"
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 4
    assert group["rayStartParams"] == node_params(plan, "worker-cpu").ray_start_params()
    wres = group["template"]["spec"]["containers"][0]["resources"]
    assert wres["limits"] == {"cpu": "2", "memory": "7Gi"} and "tolerations" not in group["template"]["spec"]
    assert cluster["authOptions"] == {"mode": "token"}
    images = (head["template"]["spec"]["containers"][0]["image"], group["template"]["spec"]["containers"][0]["image"])
    assert images == default_images() and images[0].startswith("rl-orchestrator-head:")

    # KubeRay passes each rayStartParam as `--key=value` through a shell: the resources must come out as JSON.
    def custom(params):
        (arg,) = shlex.split(f"--resources={params['resources']}")
        return json.loads(arg.split("=", 1)[1])

    slots = (
        custom(head["rayStartParams"]).get(ENV_RUNNER_SLOT, 0) + 4 * custom(group["rayStartParams"])[ENV_RUNNER_SLOT]
    )
    assert slots >= plan.num_env_runners == 13
    assert custom(head["rayStartParams"])["rlo_head"] == 1


def test_ray_start_params_are_real_ray_start_options():
    """KubeRay turns rayStartParams into `ray start --KEY=VALUE ...` run by bash: parse that with Ray's own CLI."""
    from ray.scripts.scripts import start

    cluster = kr.raycluster_manifest(two_pools())["spec"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    plan = plan_spec(two_pools())
    for pool, group in groups:
        line = " ".join(f"--{k}={v}" for k, v in group["rayStartParams"].items())
        ctx = start.make_context("start", ["--head", *shlex.split(line)] if pool == "head" else shlex.split(line))
        params = node_params(plan, pool)
        assert ctx.params["num_cpus"] == params.num_cpus and ctx.params["num_gpus"] == params.num_gpus
        assert json.loads(ctx.params["resources"]) == params.resources
        assert ctx.params["memory"] == params.memory_bytes


def test_images_are_overridable_and_several_pools_get_their_own_groups():
    spec = two_pools()
    cluster = kr.raycluster_manifest(spec, image="reg.io/rlo:1", head_image="reg.io/rlo-gpu:1")["spec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == "reg.io/rlo-gpu:1"
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"small", "big"}
    assert {g["template"]["spec"]["containers"][0]["image"] for g in groups.values()} == {"reg.io/rlo:1"}
    assert groups["small"]["replicas"] == 3 and groups["big"]["replicas"] == 2
    assert groups["big"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "8", "memory": "28Gi"}
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert head == {"cpu": "8", "memory": "30Gi", "nvidia.com/gpu": "2"}
    assert kr.raycluster_manifest(spec)["metadata"]["name"] == "mixed-cluster"


def test_the_rayjob_carries_the_spec_and_the_contract():
    spec = two_pools()
    job = kr.rayjob_manifest(prepare_render(spec), run_id="rlo-ppo-20260101-000000-abcd")
    js = job["spec"]
    assert js["entrypoint"] == "python -u -m entry_scripts.train"
    assert js["jobId"] == "rlo-ppo-20260101-000000-abcd"
    assert job["metadata"]["labels"]["rl-orchestrator.io/run-id"] == js["jobId"]
    assert len(job["metadata"]["name"]) <= 47
    assert js["shutdownAfterJobFinishes"] is True and js["ttlSecondsAfterFinished"] == kr.DEFAULT_TTL_AFTER_FINISHED_S
    assert "activeDeadlineSeconds" not in js  # the spec sets no bound
    runtime_env = yaml.safe_load(js["runtimeEnvYAML"])
    env = runtime_env["env_vars"]
    assert Spec.model_validate(json.loads(env["RLO_SPEC_JSON"])).to_dict() == spec.to_dict()
    assert env["RLO_RUN_ID"] == js["jobId"] and env["RLO_RUN_DIR"] == f"{kr.RUNS_DIR}/{js['jobId']}"
    plan = plan_spec(spec)
    assert {k: env[k] for k in plan.as_env()} == plan.as_env()
    assert env["MY_FLAG"] == "1" and runtime_env["pip"] == ["tabulate"]
    assert "RLO_JOB_STARTED_AT" not in env  # the job's clock starts in the cluster, not at render time
    assert js["rayClusterSpec"] == kr.raycluster_spec(spec)


def test_a_time_bound_becomes_the_rayjob_deadline_with_the_jobs_grace():
    from orchestrator.jobside import HARD_KILL_GRACE_S

    assert kr.JOB_GRACE_S == HARD_KILL_GRACE_S
    js = kr.rayjob_spec(prepare_render(pong_azure()), run_id="r")
    assert js["activeDeadlineSeconds"] == 3600 + HARD_KILL_GRACE_S + kr.DEFAULT_STARTUP_ALLOWANCE_S


def test_a_users_script_travels_as_a_configmap_mounted_on_every_pod():
    spec = user_script()
    rendering = kr.render_kuberay(prepare_render(spec), run_id="rlo-contract-20260101-000000-abcd")
    cm, job = rendering.files["rayjob.yaml"]
    assert cm["kind"] == "ConfigMap" and job["kind"] == "RayJob"
    items = {
        i["path"]: cm["data"][i["key"]]
        for i in job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"][1]["configMap"]["items"]
    }
    assert set(items) == {"contract_job.py", "corridor_env.py", "helper.py"}
    assert items["helper.py"] == (USER_JOB / "helper.py").read_text()
    pods = [job["spec"]["rayClusterSpec"]["headGroupSpec"], *job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    for pod in pods:
        mounts = pod["template"]["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "job-files", "mountPath": kr.JOB_FILES_DIR, "readOnly": True} in mounts
        assert pod["template"]["spec"]["volumes"][1]["configMap"]["name"] == cm["metadata"]["name"]
    ep = job["spec"]["entrypoint"]
    assert ep.startswith(f"cd {kr.JOB_FILES_DIR} && python -u contract_job.py ")
    assert shlex.split(ep.split("&&")[1]) == [
        "python",
        "-u",
        "contract_job.py",
        "--episodes",
        "3",
        "--config",
        '{"a": "b c"}',
    ]
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["PYTHONPATH"] == kr.JOB_FILES_DIR
    assert job["spec"]["activeDeadlineSeconds"] == 60 + kr.JOB_GRACE_S + kr.DEFAULT_STARTUP_ALLOWANCE_S
    # The lasting RayCluster has no job files (`rlo submit --address` ships them as the working_dir).
    assert len(rendering.files["raycluster.yaml"][0]["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]) == 1
    # The builder that RayCronJob embeds refuses to forget the files.
    with pytest.raises(UserError, match="ConfigMap"):
        kr.rayjob_spec(prepare_render(spec))


def test_the_projects_own_entry_scripts_run_from_the_image():
    js = kr.rayjob_spec(prepare_render(load_spec(CONFIGS / "local-pong-impala-script.yaml")), run_id="r")
    assert js["entrypoint"].startswith("python -u -m entry_scripts.pong_impala --run IMPALA ")
    assert "job-files" not in json.dumps(js) and "PYTHONPATH" not in js["runtimeEnvYAML"]


def test_an_existing_cluster_by_selector():
    job = kr.rayjob_manifest(prepare_render(pong_azure()), cluster_selector={"ray.io/cluster": "azure-pong"})
    assert validate_manifest(job) == []
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "azure-pong"}
    assert "rayClusterSpec" not in job["spec"] and "shutdownAfterJobFinishes" not in job["spec"]


def test_auth_secret_and_namespace(tmp_path):
    r = kr.render_kuberay(prepare_render(pong_azure()), namespace="rl", auth_secret="ray-token")
    for docs in r.files.values():
        for d in docs:
            assert d["metadata"]["namespace"] == "rl"
            assert validate_manifest(d) == []
    assert r.files["raycluster.yaml"][0]["spec"]["authOptions"] == {"mode": "token", "secretName": "ray-token"}


def test_quantities():
    assert kr.quantity_memory(56 * 1024**3) == "56Gi"
    assert kr.quantity_memory(int(7.5 * 1024**3)) == "7680Mi"
    assert kr.quantity_memory(1000) == "1000"


def test_cli_render_kuberay(tmp_path, capsys):
    assert main(["render", "kuberay", str(CONFIGS / "azure-pong-impala.yaml"), "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kubectl apply -f" in out
    for f in ("raycluster.yaml", "rayjob.yaml"):
        for doc in yaml.safe_load_all((tmp_path / f).read_text()):
            assert validate_manifest(doc) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "cluster: {head: {vcpus: 2}, workers: [{name: w, vcpus: 2, nodecount: 2}]}\njob: {algorithm: PPO, env: X}\n"
    )
    assert main(["render", "kuberay", str(bad), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "node_count" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


# --- Azure ML --------------------------------------------------------------------------------------------------


def test_azure_vm_sizes():
    from orchestrator.render.azureml import azure_vm_size

    assert azure_vm_size("STANDARD_NC6") == "Standard_NC6"
    assert azure_vm_size("STANDARD_D2_V2") == "Standard_D2_v2"
    assert azure_vm_size("STANDARD_NC4AS_T4_V3") == "Standard_NC4as_T4_v3"
    assert azure_vm_size("STANDARD_NC6S_V3") == "Standard_NC6s_v3"
    assert azure_vm_size("ml.c5.xlarge") is None and azure_vm_size(None) is None


def test_azureml_entities_dump_and_reload_with_the_sdk(tmp_path):
    from azure.ai.ml import load_compute, load_job
    from azure.ai.ml.entities import AmlCompute, PipelineJob

    from orchestrator.render.azureml import build_azureml, write_azureml

    spec = pong_azure()
    r = build_azureml(prepare_render(spec), run_id="rlo-pong-impala-20260101-000000-abcd", image="acr.io/rlo:1")
    paths = write_azureml(r, tmp_path)
    assert [p.name for p in paths] == ["compute-head.yml", "compute-worker-cpu.yml", "job.yml"]

    head, worker = load_compute(tmp_path / "compute-head.yml"), load_compute(tmp_path / "compute-worker-cpu.yml")
    assert isinstance(head, AmlCompute) and (head.size, head.max_instances) == ("Standard_NC6", 1)
    assert (worker.size, worker.max_instances, worker.min_instances) == ("Standard_D2_v2", 4, 0)
    for c in (head, worker):
        assert re.fullmatch(r"[a-z][a-z0-9-]{1,15}", c.name)

    job = load_job(tmp_path / "job.yml")
    assert isinstance(job, PipelineJob)
    assert set(job.jobs) == {"head", "pool_worker_cpu"}
    h, w = job.jobs["head"], job.jobs["pool_worker_cpu"]
    assert h.compute.removeprefix("azureml:") == head.name and w.compute.removeprefix("azureml:") == worker.name
    assert h.resources.instance_count == 1 and w.resources.instance_count == 4
    assert w.distribution.process_count_per_instance == 1 and h.distribution is None
    assert h.environment.image == w.environment.image == "acr.io/rlo:1"
    assert h.limits.timeout == 3600 + 120 + 1800
    assert job.settings.force_rerun is True and job.settings.continue_on_step_failure is False
    assert h.component.is_deterministic is False
    assert h.outputs["rendezvous"].path == w.outputs["rendezvous"].path
    assert "rlo-pong-impala-20260101-000000-abcd" in h.outputs["rendezvous"].path
    assert Spec.model_validate(json.loads(h.environment_variables["RLO_SPEC_JSON"])).to_dict() == spec.to_dict()
    assert h.environment_variables["RLO_NUM_ENV_RUNNERS"] == "13"
    assert "RLO_JOB_STARTED_AT" not in h.environment_variables
    # The head's command, as a shell splits it, ends with the job's own entrypoint after `--`.
    argv = shlex.split(h.command)
    assert argv[:3] == ["python", "-m", "orchestrator.render.azureml_node"]
    assert argv[argv.index("--") + 1 :] == ["python", "-u", "-m", "entry_scripts.train"]
    assert "--run-dir" in argv and "--" not in shlex.split(w.command)


def test_azureml_needs_an_azure_size_for_every_pool(tmp_path, capsys):
    from orchestrator.render.azureml import build_azureml

    spec = load_spec(CONFIGS / "local-cartpole.yaml")
    with pytest.raises(UserError, match="--vm-size head=SIZE"):
        build_azureml(prepare_render(spec))
    with pytest.raises(UserError, match="did you mean `head`"):
        build_azureml(prepare_render(spec), vm_sizes={"haed": "Standard_D4_v2"})
    r = build_azureml(prepare_render(spec), vm_sizes={"head": "Standard_D4_v2"})
    assert r.computes["head"].size == "Standard_D4_v2" and list(r.job.jobs) == ["head"]
    out = tmp_path / "aml"
    assert main(["render", "azureml", str(CONFIGS / "local-cartpole.yaml"), "-o", str(out)]) == 2
    assert "--vm-size head=" in capsys.readouterr().err and not out.exists()
    argv = [
        "render",
        "azureml",
        str(CONFIGS / "local-cartpole.yaml"),
        "-o",
        str(out),
        "--vm-size",
        "head=Standard_D4_v2",
    ]
    assert main(argv) == 0
    assert "az ml job create -f" in capsys.readouterr().out and (out / "job.yml").is_file()


def test_azureml_user_script_ships_as_code(tmp_path):
    from azure.ai.ml import load_job

    from orchestrator.render.azureml import build_azureml, write_azureml

    r = build_azureml(prepare_render(user_script()), vm_sizes={"head": "Standard_D2_v2", "w": "Standard_D2_v2"})
    write_azureml(r, tmp_path)
    h = load_job(tmp_path / "job.yml").jobs["head"]
    # The code snapshot is a copy of exactly what ships (package.job_package), never the folder as it is.
    assert Path(h.code).resolve() == (tmp_path / "code").resolve()
    shipped = {p.relative_to(tmp_path / "code").as_posix() for p in (tmp_path / "code").rglob("*") if p.is_file()}
    assert shipped == {p.name for p in USER_JOB.iterdir() if p.is_file() and p.suffix == ".py"}
    assert (tmp_path / "code" / "contract_job.py").read_bytes() == (USER_JOB / "contract_job.py").read_bytes()
    argv = shlex.split(h.command)
    assert argv[argv.index("--") + 1 :] == [
        "python",
        "-u",
        "contract_job.py",
        "--episodes",
        "3",
        "--config",
        '{"a": "b c"}',
    ]


# --- the Azure ML node launcher (its pieces; the whole only runs inside Azure ML) ----------------------------------


def test_node_launcher_refuses_what_it_cannot_run(monkeypatch, tmp_path):
    from orchestrator.render import azureml_node as node

    monkeypatch.delenv("RLO_SPEC_JSON", raising=False)
    with pytest.raises(SystemExit, match="RLO_SPEC_JSON"):
        node.main(["--pool", "head", "--rendezvous", str(tmp_path)])
    monkeypatch.setenv("RLO_SPEC_JSON", json.dumps(pong_azure().to_dict()))
    with pytest.raises(UserError, match="no pool `worker-cpux`"):
        node.main(["--pool", "worker-cpux", "--rendezvous", str(tmp_path)])
    with pytest.raises(SystemExit):  # the head needs its run folder and the job's command
        node.main(["--pool", "head", "--rendezvous", str(tmp_path)])
    # A worker whose head never shows up gives up with the reason, at its timeout.
    monkeypatch.setattr(node, "POLL_S", 0.01)
    t0 = time.monotonic()
    with pytest.raises(SystemExit, match="waiting for the head's address"):
        node.main(["--pool", "worker-cpu", "--rendezvous", str(tmp_path), "--join-timeout", "0.2"])
    assert time.monotonic() - t0 < 5


def test_node_launcher_environment(monkeypatch, tmp_path):
    from orchestrator.render import azureml_node as node

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/x")
    env = node.ray_env("tok")
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == "tok"
    assert env["PYTHONPATH"].split(":") == [str(tmp_path), "/x"]
    assert node.run_dir_env("/mnt/run")["SM_MODEL_DIR"] == "/mnt/run/model"


# --- rlo submit --backend azureml without Azure ----------------------------------------------------------------------


@pytest.fixture
def no_azure(monkeypatch, tmp_path):
    """No Azure credentials of any kind, and a private RLO_HOME to prove nothing gets recorded."""
    import os

    for var in list(os.environ):
        if var.startswith(("AZURE_", "AZUREML_", "MSI_", "IDENTITY_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no `az`
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "rlo"))
    return tmp_path


def _nothing_recorded(home: Path) -> bool:
    from orchestrator.registry import Registry
    from orchestrator.settings import settings

    return not (home / "rlo").exists() or Registry(settings().registry_path).list() == []


def test_submit_azureml_says_which_workspace_settings_are_missing(no_azure, capsys):
    argv = ["submit", str(CONFIGS / "azure-pong-impala.yaml"), "--backend", "azureml", "--workspace", "ws"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--subscription (or AZURE_SUBSCRIPTION_ID)" in err and "--resource-group (or AZURE_RESOURCE_GROUP)" in err
    assert "--workspace" not in err.split("missing")[1].split("\n")[0]
    assert "Traceback" not in err and _nothing_recorded(no_azure)


def test_submit_azureml_without_credentials_fails_fast_and_clearly(no_azure, capsys):
    argv = ["submit", str(CONFIGS / "azure-pong-impala.yaml"), "--backend", "azureml"]
    argv += ["--subscription", "00000000-0000-0000-0000-000000000000", "--resource-group", "rg", "--workspace", "ws"]
    t0 = time.monotonic()
    assert main(argv) == 2
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert "no Azure credentials" in err and "az login" in err and "AZURE_CLIENT_SECRET" in err
    assert "Traceback" not in err and took < 20, took
    assert _nothing_recorded(no_azure)


@pytest.fixture
def fake_azure(no_azure, monkeypatch):
    """A workspace and credentials: stand-ins for the cloud's two calls that keep what the SDK itself serializes
    for the wire (`_to_rest_object`). Yields what was sent, in order."""
    import azure.ai.ml

    from orchestrator.render import azureml as aml

    sent: list[tuple[str, dict]] = []

    class Poller:
        def result(self):
            return None

    class FakeMLClient:  # the cloud side only; the entities and their serialization are the SDK's
        def __init__(self, credential, subscription, resource_group, workspace):
            assert (subscription, resource_group, workspace) == ("sub", "rg", "ws")
            outer = self

            class Compute:
                def begin_create_or_update(self, compute):
                    sent.append(("compute", compute._to_rest_object().as_dict()))
                    return Poller()

            class Jobs:
                def create_or_update(self, job, experiment_name=None):
                    sent.append(("job", job._to_rest_object().as_dict()))
                    job.name = "shy_job_123"
                    return job

            outer.compute, outer.jobs = Compute(), Jobs()

    monkeypatch.setattr(aml, "azure_credential", lambda: object())
    monkeypatch.setattr(azure.ai.ml, "MLClient", FakeMLClient)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    return sent


def _sent_is_the_pong_job(sent: list[tuple[str, dict]]) -> None:
    assert [kind for kind, _ in sent] == ["compute", "compute", "job"]
    wire = [c["properties"]["properties"] for _, c in sent[:2]]  # the REST body, as sent
    assert [(w["vmSize"], w["scaleSettings"]["maxNodeCount"]) for w in wire] == [
        ("Standard_NC6", 1),
        ("Standard_D2_v2", 4),
    ]
    jobs = sent[2][1]["properties"]["jobs"]
    assert set(jobs) == {"head", "pool_worker_cpu"} and jobs["pool_worker_cpu"]["resources"]["instance_count"] == 4


def test_submit_azureml_creates_the_computes_then_the_job(fake_azure, capsys):
    argv = ["submit", str(CONFIGS / "azure-pong-impala.yaml"), "--backend", "azureml", "--workspace", "ws"]
    argv += ["--image", "acr.io/rlo:1"]
    assert main(argv) == 0
    _sent_is_the_pong_job(fake_azure)
    assert capsys.readouterr().out.strip() == "shy_job_123"


def test_estimator_fit_azureml_sends_what_the_cli_sends(fake_azure):
    from orchestrator import Estimator

    est = Estimator.from_yaml(CONFIGS / "azure-pong-impala.yaml")
    job = est.fit_azureml(workspace="ws", image="acr.io/rlo:1")
    _sent_is_the_pong_job(fake_azure)
    assert job.name == "shy_job_123" and job.run_id.startswith("rlo-")
    with pytest.raises(UserError, match="Ray `address`"):
        Estimator.from_yaml(CONFIGS / "azure-pong-impala.yaml", address="http://h:8265").fit_azureml(workspace="ws")
    assert len(fake_azure) == 3  # the refused one sent nothing


def test_estimator_render_is_rlo_render():
    from orchestrator import Estimator

    est = Estimator(spec=pong_azure())
    ours = est.render("kuberay", run_id="rlo-r", namespace="rl")
    theirs = kr.render_kuberay(prepare_render(pong_azure()), run_id="rlo-r", namespace="rl")
    assert ours.files["raycluster.yaml"] == theirs.files["raycluster.yaml"]
    job_ours, job_theirs = ours.files["rayjob.yaml"][-1], theirs.files["rayjob.yaml"][-1]
    assert job_ours["spec"] == job_theirs["spec"] and job_ours["metadata"]["namespace"] == "rl"
    assert est.render("azureml", run_id="rlo-r").run_id == "rlo-r"
    with pytest.raises(UserError, match="render target `helm`"):
        est.render("helm")  # type: ignore[arg-type]


def test_submit_azureml_refuses_a_ray_address(no_azure, capsys):
    argv = ["submit", str(CONFIGS / "azure-pong-impala.yaml"), "--backend", "azureml", "--address", "http://h:8265"]
    assert main(argv) == 2
    assert "--address is for Ray clusters" in capsys.readouterr().err


# --- docker/ -----------------------------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["Dockerfile.head", "Dockerfile.worker"])
def test_dockerfiles_install_this_project(name):
    import tomllib

    path = ROOT / "docker" / name
    steps = _instructions(path)
    ignore = (path.parent / f"{name}.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][0] == "*", "the context should be an allow-list (the repo holds .venv)"
    assert steps[0][0] in ("ARG", "FROM") and any(w == "FROM" for w, _ in steps)
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "SHELL"}
    assert {w for w, _ in steps} <= known
    for word, rest in steps:
        if word == "COPY" and "--from" not in rest:
            *sources, _dest = [a for a in rest.split() if not a.startswith("--")]
            for s in sources:  # the build context is the repository root, filtered by NAME.dockerignore
                assert (ROOT / s).exists(), f"{name}: COPY source {s} is not in the repository"
                assert f"!{s}" in ignore, f"{name}.dockerignore leaves {s} out of the build context"
    runs = " ".join(rest for w, rest in steps if w == "RUN")
    assert re.search(r"pip install [^;&]*(\s|/)\.(\[[a-z,]*\])?(\s|$)", runs), "does not pip install the project"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch=="))
    ray_pin = next(d for d in project["dependencies"] if d.startswith("ray["))
    text = path.read_text()
    assert torch_pin.split("==")[1] in text, "torch version differs from pyproject.toml"
    if name == "Dockerfile.head":
        assert "nvidia/cuda" in text and re.search(r"ARG TORCH_CUDA=cu\d+", text)
        assert "download.pytorch.org/whl/${TORCH_CUDA}" in text
    else:
        assert "download.pytorch.org/whl/cpu" in text
    assert ray_pin not in text  # the engine's pin comes from pyproject.toml, not a copy that could drift


# --- the Azure ML node launcher, for real: a head and a pool node on this machine --------------------------------

_PROBE = """
import json, os, ray
ray.init()
res = ray.cluster_resources()
head_node = ray.get_runtime_context().get_node_id()
@ray.remote(num_cpus=1, resources={"rlo_env_runner_slots": 1})
def where():
    return ray.get_runtime_context().get_node_id()
runner_node = ray.get(where.remote(), timeout=60)
out = {"resources": res, "runner_on_head": runner_node == head_node, "auth": os.environ.get("RAY_AUTH_MODE"),
       "run_dir": os.environ["RLO_RUN_DIR"], "model_dir": os.environ["RLO_MODEL_DIR"]}
open(os.path.join(os.environ["RLO_RUN_DIR"], "probe.json"), "w").write(json.dumps(out))
"""


@pytest.mark.ray
def test_node_launcher_builds_one_ray_cluster_across_steps(tmp_path):
    """What the Azure ML steps run, on this machine: the pool node joins the head through the rendezvous
    folder with the placement resources and token auth, the job runs on the head, env-runner work lands on the
    pool, and both nodes leave when the job is done."""
    import os
    import subprocess
    import sys

    spec = _spec(
        {
            "cluster": {"name": "t", "head": {"vcpus": 1}, "workers": [{"name": "sim", "vcpus": 1}]},
            "job": {"algorithm": "PPO", "env": "CartPole-v1"},
        }
    )
    rv, run_dir = tmp_path / "rv", tmp_path / "run"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RLO_SPEC_JSON"] = json.dumps(spec.to_dict())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    node = [sys.executable, "-m", "orchestrator.render.azureml_node", "--rendezvous", str(rv), "--free-ports"]
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    worker = subprocess.Popen([*node, "--pool", "sim", "--job-timeout", "240"], env=env, start_new_session=True)
    try:
        head = subprocess.run(
            [*node, "--pool", "head", "--port", str(port), "--temp-dir", f"/tmp/rlo-t{port}", "--run-dir",
             str(run_dir), "--join-timeout", "120", "--", sys.executable, "-c", _PROBE],
            env=env, timeout=300, capture_output=True, text=True,
        )  # fmt: skip
        assert head.returncode == 0, head.stdout[-3000:] + head.stderr[-3000:]
        assert worker.wait(timeout=90) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 9)
    probe = json.loads((run_dir / "probe.json").read_text())
    res = probe["resources"]
    assert res["rlo_pool_head"] == 1 and res["rlo_head"] == 1 and res["rlo_pool_sim"] == 1
    assert res["rlo_env_runner_slots"] == 1 and res["CPU"] == 2
    assert probe["runner_on_head"] is False  # the env runner's slot is on the pool node only
    assert probe["auth"] == "token" and probe["model_dir"] == f"{run_dir}/model"
    assert (rv / "done").read_text() == "0"
    # Nothing of either node is left running.
    left = subprocess.run(["pgrep", "-f", f"temp-dir=/tmp/rlo-t{port}"], capture_output=True, text=True).stdout
    assert left.strip() == ""
