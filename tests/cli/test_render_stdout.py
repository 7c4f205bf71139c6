"""`rlo render TARGET SPEC -o -`: the manifests alone on stdout, one YAML stream (`| kubectl apply -f -`), equal
to what `-o DIR` writes; every other line on stderr. The real command in a subprocess (its real stdout). Offline."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from crd_validation import validate_manifest
from support import run_rlo

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "cluster_configs"
USER_JOB = Path(__file__).resolve().parents[1] / "data" / "user_job"
RUN_ID = re.compile(r"run id: (rlo-[a-z0-9-]+-\d{8}-\d{6}-[0-9a-f]{4})")
NAMED = re.compile(r"\b(RayJob|ConfigMap) ([a-z0-9][-a-z0-9]*[a-z0-9])")


def rlo(cwd: Path, *args) -> subprocess.CompletedProcess:
    return run_rlo(*args, cwd=cwd, timeout=300)


def same_run(text: str, res: subprocess.CompletedProcess) -> str:
    """Two renderings differ in their run id and the random suffix of the objects' names only (new each time):
    compare them without those. The id and the names are the ones the command printed."""
    said = res.stdout + res.stderr
    text = text.replace(RUN_ID.search(said).group(1), "RUN_ID")
    for kind, name in NAMED.findall(said):
        text = re.sub(rf"\b{re.escape(name)}\b", f"{kind}-NAME", text)
    return text


def user_script_spec(tmp_path: Path) -> Path:
    """A job with its own script: the RayJob travels with a ConfigMap of its files (two documents)."""
    data = {
        "cluster": {"name": "u", "head": {"vcpus": 2}, "workers": [{"name": "w", "vcpus": 2}]},
        "job": {"name": "contract", "entry_script": str(USER_JOB / "contract_job.py"), "max_run_duration_seconds": 60},
    }
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("manifest", [None, "rayjob", "raycluster"])
def test_kuberay_to_stdout_is_the_stream_kubectl_applies(tmp_path, manifest):
    spec = user_script_spec(tmp_path)
    flags = ["--manifest", manifest] if manifest else []
    res = rlo(tmp_path, "render", "kuberay", spec, "-o", "-", *flags)
    assert res.returncode == 0, res.stderr
    docs = list(yaml.safe_load_all(res.stdout))
    name = f"{manifest or 'rayjob'}.yaml"
    assert [d["kind"] for d in docs] == (["RayCluster"] if manifest == "raycluster" else ["ConfigMap", "RayJob"])
    assert all(validate_manifest(d) == [] for d in docs if d["kind"] != "ConfigMap")  # KubeRay's CRDs
    assert f"wrote {name} to stdout" in res.stderr and "run id: rlo-" in res.stderr
    assert not (tmp_path / "-").exists() and not (tmp_path / "rendered").exists()  # no folder named `-`

    out = tmp_path / "dir"
    written = rlo(tmp_path, "render", "kuberay", spec, "-o", out, *flags)
    assert written.returncode == 0, written.stderr
    assert same_run(res.stdout, res) == same_run((out / name).read_text(), written)  # byte for byte but the run id
    assert sorted(p.name for p in out.iterdir()) == ([name] if manifest else ["raycluster.yaml", "rayjob.yaml"])


def test_azureml_to_stdout_is_every_entity_as_the_files_hold_them(tmp_path):
    spec = CONFIGS / "azure-pong-impala.yaml"
    res = rlo(tmp_path, "render", "azureml", spec, "-o", "-")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "dir"
    written = rlo(tmp_path, "render", "azureml", spec, "-o", out)
    assert written.returncode == 0, written.stderr
    files = sorted(out.glob("compute-*.yml")) + [out / "job.yml"]
    assert [f.name for f in files] == ["compute-head.yml", "compute-worker-cpu.yml", "job.yml"]
    expected = [yaml.safe_load(same_run(f.read_text(), written)) for f in files]
    assert list(yaml.safe_load_all(same_run(res.stdout, res))) == expected
    assert "wrote compute-head.yml, compute-worker-cpu.yml, job.yml to stdout" in res.stderr
    assert "note: " in res.stderr and "note: " not in res.stdout


def test_azureml_job_with_code_needs_a_folder(tmp_path):
    spec = user_script_spec(tmp_path)
    res = rlo(
        tmp_path,
        "render",
        "azureml",
        spec,
        "-o",
        "-",
        "--vm-size",
        "head=Standard_D2_v2",
        "--vm-size",
        "w=Standard_D2_v2",
    )
    assert res.returncode == 2 and res.stdout == ""
    assert (
        "ships its code" in res.stderr and "fix: render into a folder" in res.stderr and "Traceback" not in res.stderr
    )


def test_raycronjob_to_stdout(tmp_path):
    spec = user_script_spec(tmp_path)
    res = rlo(tmp_path, "render", "raycronjob", spec, "--cron", "0 2 * * *", "-o", "-")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "dir"
    written = rlo(tmp_path, "render", "raycronjob", spec, "--cron", "0 2 * * *", "-o", out)
    assert written.returncode == 0, written.stderr
    assert "RayCronJob" in [d["kind"] for d in yaml.safe_load_all(res.stdout)]
    assert res.stdout == (out / "raycronjob.yaml").read_text()
    assert "wrote raycronjob.yaml to stdout" in res.stderr


def test_a_bad_spec_prints_nothing_on_stdout(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: {algorithm: PPO, env: CartPole-v1, nme: x}\n")
    res = rlo(tmp_path, "render", "kuberay", bad, "-o", "-")
    assert res.returncode == 2 and res.stdout == "" and "did you mean `name`" in res.stderr
