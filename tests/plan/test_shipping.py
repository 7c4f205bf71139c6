"""What a job ships (orchestrator/package.py): nothing outside the job's folder, by any link, through any path:
Ray's working_dir (checked with Ray's own packing function and on the real embedded Ray), the KubeRay ConfigMap,
the Azure ML code snapshot and the RayCronJob. A link that escapes is refused with exit 2 through the real `rlo`
command, before anything is submitted or written; a folder over Ray's limit is refused before it is packed."""

from __future__ import annotations

import base64
import json
import os
import zipfile
from pathlib import Path

import pytest
import support
import yaml

from orchestrator import package
from orchestrator.errors import UserError
from orchestrator.render import prepare_render
from orchestrator.spec import parse_spec

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "TOP-SECRET-CONTENT"
SCHEDULE = {"cron": "0 2 * * *", "timezone": "UTC"}
COMMANDS = {
    "submit": ["submit"],
    "kuberay": ["render", "kuberay"],
    "azureml": ["render", "azureml", "--vm-size", "head=Standard_D2_v2"],
    "raycronjob": ["render", "raycronjob"],
}


def run_rlo(home: Path, *args, cwd: Path = ROOT):
    return support.run_rlo(*args, home=home, cwd=cwd, timeout=180)


def job_folder(tmp_path: Path) -> Path:
    """tmp/job (the job's folder: train.py, helper.py) and tmp/outside (a secret and a script, not the job's)."""
    job, outside = tmp_path / "job", tmp_path / "outside"
    job.mkdir()
    outside.mkdir()
    (job / "train.py").write_text("print('train')\n")
    (job / "helper.py").write_text("VALUE = 42\n")
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "train.py").write_text(f"print('{SECRET}')\n")
    return job


def write_spec(tmp_path: Path, job: dict, schedule: bool = False) -> Path:
    data = {"cluster": {"head": {"vcpus": 2}}, "job": {"name": "ship", **job}}
    if schedule:
        data["schedule"] = SCHEDULE
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


# Each way out of the job's folder: (make the link in `job`, the link's name, its target as the message shows it).
def _file_link(job: Path):
    (job / "x").symlink_to(job.parent / "outside" / "secret.txt")
    return "x", str(job.parent / "outside" / "secret.txt")


def _dir_link(job: Path):
    (job / "data").symlink_to(job.parent / "outside", target_is_directory=True)
    return "data", str(job.parent / "outside")


def _dotdot_link(job: Path):
    (job / "sub").mkdir()
    (job / "sub" / "up").symlink_to("../../outside/secret.txt")
    return "sub/up", "../../outside/secret.txt"


def _absolute_link(job: Path):
    (job / "shadow").symlink_to("/etc/passwd")
    return "shadow", "/etc/passwd"


def _entry_script_link(job: Path):
    (job / "train.py").unlink()
    (job / "train.py").symlink_to(job.parent / "outside" / "train.py")
    return "train.py", str(job.parent / "outside" / "train.py")


ESCAPES = {
    "file-link": _file_link,
    "dir-link": _dir_link,
    "dotdot-link": _dotdot_link,
    "absolute-link": _absolute_link,
    "symlinked-entry-script": _entry_script_link,
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("escape", ESCAPES)
def test_a_link_out_of_the_jobs_folder_is_refused(tmp_path, escape, command):
    job = job_folder(tmp_path)
    name, target = ESCAPES[escape](job)
    # The script's folder is the job's folder; the dir-link case names it as `source_dir` instead.
    fields = {"entry_script": "job/train.py"}
    if escape == "dir-link":
        fields["source_dir"] = "job"
    spec = write_spec(tmp_path, fields, schedule=command == "raycronjob")
    home, out = tmp_path / "home", tmp_path / "out"
    args = [*COMMANDS[command], spec] + ([] if command == "submit" else ["-o", out])
    res = run_rlo(home, *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert f"`{name}` in the job's folder {job} is a symbolic link to {target}" in res.stderr, res.stderr
    assert "remove the link" in res.stderr
    assert SECRET not in res.stdout + res.stderr
    # Nothing submitted, nothing written.
    registry = home / "registry.db"
    assert not registry.exists() or "rlo-" not in registry.read_bytes().decode("latin1")
    assert not (home / "local-ray" / "state.json").exists()
    assert not out.exists()


def test_plain_plan_does_not_walk_the_folder_but_plan_check_does(tmp_path):
    job = job_folder(tmp_path)
    _file_link(job)
    spec = write_spec(tmp_path, {"entry_script": "job/train.py"})
    assert run_rlo(tmp_path / "home", "plan", spec).returncode == 0
    res = run_rlo(tmp_path / "home", "plan", "--check", spec)
    assert res.returncode == 2 and "`x` in the job's folder" in res.stderr, res.stderr


def test_a_symlinked_entry_script_ships_the_links_folder(tmp_path):
    """The spec's view: a script linked from elsewhere into the user's folder (inside it) ships the user's folder,
    and the entrypoint names the link; before, the target's folder shipped."""
    job = job_folder(tmp_path)
    (job / "real").mkdir()
    (job / "real" / "impl.py").write_text("print('impl')\n")
    (job / "real" / "junk.txt").write_text("not the job's folder\n")
    (job / "run.py").symlink_to(job / "real" / "impl.py")
    spec = parse_spec({"job": {"entry_script": "job/run.py"}}, base_dir=tmp_path)
    assert spec.resolved_entry_script() == job / "run.py"
    pkg = package.job_package(spec)
    assert pkg.root == job
    assert {f.rel for f in pkg.files} == {"train.py", "helper.py", "run.py", "real/impl.py", "real/junk.txt"}
    from orchestrator.render.kuberay import entrypoint

    assert package.entrypoint(spec) == "python -u run.py"
    assert entrypoint(prepare_render(spec)) == "cd /opt/rlo/job && python -u run.py"


def test_links_inside_the_folder_ship_as_their_content_everywhere(tmp_path):
    from azure.ai.ml import load_job

    from orchestrator.render.azureml import build_azureml, write_azureml
    from orchestrator.render.kuberay import job_files
    from orchestrator.render.raycronjob import render_raycronjob

    job = job_folder(tmp_path)
    (job / "alias.py").symlink_to("helper.py")
    (job / "pkg").mkdir()
    (job / "pkg" / "mod.py").write_text("M = 1\n")
    (job / "lib").symlink_to(job / "pkg", target_is_directory=True)
    (job / ".venv").mkdir()
    (job / ".venv" / "out").symlink_to(tmp_path / "outside" / "secret.txt")  # excluded: never looked into
    spec = parse_spec({"cluster": {"head": {"vcpus": 2}}, "job": {"entry_script": "job/train.py"}}, base_dir=tmp_path)
    want = {
        "train.py": "print('train')\n",
        "helper.py": "VALUE = 42\n",
        "alias.py": "VALUE = 42\n",
        "pkg/mod.py": "M = 1\n",
        "lib/mod.py": "M = 1\n",
    }
    assert {f.rel: f.path.read_text() for f in package.job_package(spec).files} == want

    files = job_files(prepare_render(spec))
    assert {i["path"]: files.data[i["key"]] for i in files.items} == want
    scheduled = parse_spec(
        {"cluster": {"head": {"vcpus": 2}}, "job": {"entry_script": "job/train.py"}, "schedule": SCHEDULE},
        base_dir=tmp_path,
    )
    cron = render_raycronjob(prepare_render(scheduled))
    cm = cron.documents[0]
    items = cron.raycronjob["spec"]["jobTemplate"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    paths = {i["key"]: i["path"] for v in items if "configMap" in v for i in v["configMap"]["items"]}
    assert {paths[k]: v for k, v in cm["data"].items()} == want

    r = build_azureml(prepare_render(spec), vm_sizes={"head": "Standard_D2_v2"})
    write_azureml(r, tmp_path / "aml")
    code = Path(load_job(tmp_path / "aml" / "job.yml").jobs["head"].code)
    got = {p.relative_to(code).as_posix(): p for p in code.rglob("*") if not p.is_dir()}
    assert {k: p.read_text() for k, p in got.items()} == want
    assert not any(p.is_symlink() for p in got.values())  # copies: the SDK has no link to follow


def _ray_zip(runtime_env: dict, out: Path) -> dict[str, bytes]:
    """What Ray itself packs for this runtime_env: its default excludes + ours, .gitignore/.rayignore honoured."""
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import _zip_files

    excludes = ray_constants.get_runtime_env_default_excludes() + list(runtime_env["excludes"])
    _zip_files(runtime_env["working_dir"], excludes, str(out), include_gitignore=True)
    with zipfile.ZipFile(out) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}


def test_the_package_is_exactly_what_rays_own_packing_ships(tmp_path, monkeypatch):
    """Ray's working_dir packing (`_zip_files`, which the Job API runs) on the runtime_env `rlo submit` builds
    packs exactly the package's files, with the same contents: the walk mirrors Ray's rules."""
    job = job_folder(tmp_path)
    (job / "alias.py").symlink_to("helper.py")
    (job / "pkg").mkdir()
    (job / "pkg" / "mod.py").write_text("M = 1\n")
    (job / "lib").symlink_to("pkg", target_is_directory=True)
    (job / ".venv" / "bin").mkdir(parents=True)
    (job / ".venv" / "bin" / "python").write_text("venv")
    (job / "__pycache__").mkdir()
    (job / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (job / ".gitignore").write_text("*.log\n/private/\n")
    (job / "run.log").write_text("log")
    (job / "private").mkdir()
    (job / "private" / "key.txt").write_text("key")
    (job / "sub").mkdir()
    (job / "sub" / ".rayignore").write_text("local.txt\n")
    (job / "sub" / "local.txt").write_text("local")
    (job / "sub" / "keep.txt").write_text("keep")
    (job / "dangling").symlink_to(job / "nowhere")
    os.mkfifo(job / "fifo")
    home = job / "home"  # RLO_HOME inside the job's folder: its state never ships
    (home / "local-ray").mkdir(parents=True)
    (home / "local-ray" / "auth_token").write_text("token")
    (home / "registry.db").write_text("")
    monkeypatch.setenv("RLO_HOME", str(home))
    spec = parse_spec({"job": {"entry_script": "job/train.py"}}, base_dir=tmp_path)

    pkg = package.job_package(spec)
    runtime_env = package.runtime_env(spec, pkg, {}, ship_project=False)
    assert runtime_env["working_dir"] == str(job) and runtime_env["excludes"] == list(pkg.excludes)
    shipped = {f.rel: f.path.read_bytes() for f in pkg.files}
    assert set(shipped) == {
        "train.py",
        "helper.py",
        "alias.py",
        "pkg/mod.py",
        "lib/mod.py",
        ".gitignore",
        "sub/.rayignore",
        "sub/keep.txt",
    }
    assert _ray_zip(runtime_env, tmp_path / "pkg.zip") == shipped


def test_before_the_fix_ray_would_have_packed_the_target(tmp_path):
    """Why links must be refused before Ray sees them: Ray's packing ships an escaping link's target content."""
    job = job_folder(tmp_path)
    _file_link(job)
    zipped = _ray_zip({"working_dir": str(job), "excludes": list(package.WORKING_DIR_EXCLUDES)}, tmp_path / "z.zip")
    assert SECRET.encode() in zipped["x"]
    with pytest.raises(UserError, match="`x` in the job's folder"):
        package.walk(job)


def test_a_folder_link_back_to_a_parent_is_refused(tmp_path):
    job = job_folder(tmp_path)
    (job / "sub").mkdir()
    (job / "sub" / "loop").symlink_to("..", target_is_directory=True)
    with pytest.raises(UserError, match="`sub/loop` .* a folder that contains the link"):
        package.walk(job)


def test_a_link_into_the_tools_state_is_refused(tmp_path, monkeypatch):
    job = job_folder(tmp_path)
    (job / "home" / "local-ray").mkdir(parents=True)
    (job / "home" / "local-ray" / "auth_token").write_text("token")
    (job / "token").symlink_to(job / "home" / "local-ray" / "auth_token")
    monkeypatch.setenv("RLO_HOME", str(job / "home"))
    spec = parse_spec({"job": {"entry_script": "job/train.py"}}, base_dir=tmp_path)
    with pytest.raises(UserError, match="`token` .* inside the tool's own state"):
        package.job_package(spec)


def test_the_limit_is_rays(tmp_path):
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    assert package.MAX_PACKAGE_BYTES == GCS_STORAGE_MAX_SIZE


@pytest.mark.parametrize("command", COMMANDS)
def test_a_huge_folder_is_refused_with_its_size_before_packing(tmp_path, command):
    job = job_folder(tmp_path)
    with open(job / "a_big.bin", "wb") as f:  # sparse: no disk used
        f.truncate(package.MAX_PACKAGE_BYTES + 1)
    spec = write_spec(tmp_path, {"entry_script": "job/train.py"}, schedule=command == "raycronjob")
    home, out = tmp_path / "home", tmp_path / "out"
    res = run_rlo(home, *COMMANDS[command], spec, *([] if command == "submit" else ["-o", out]))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"the job's folder {job} is too large to ship: 512.0 MiB or more in 1 files" in res.stderr, res.stderr
    assert "`job.source_dir`" in res.stderr and ".gitignore" in res.stderr
    assert not out.exists() and not (home / "local-ray" / "state.json").exists()


def test_the_walk_stops_as_soon_as_the_limit_is_passed(tmp_path):
    """A home directory or `/` is refused after a few files, not after walking all of it."""
    (tmp_path / "many").mkdir()
    for i in range(30):
        (tmp_path / "many" / f"f{i:02d}").write_text("x" * 10)
    with pytest.raises(UserError, match=r"more than 10 files \(0.0 MiB counted so far\)"):
        package.walk(tmp_path / "many", max_files=10)
    with pytest.raises(UserError, match=r"100 bytes|or more in 10 files"):
        package.walk(tmp_path / "many", max_bytes=100)
    # The machine's root: over Ray's limit long before the end of the walk.
    with pytest.raises(
        UserError, match=r"the job's folder / is too large to ship: .* MiB or more in [\d,]+ files"
    ) as e:
        package.walk(Path("/"))
    count = int(e.value.message.split(" files")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert count < package.MAX_PACKAGE_FILES


@pytest.mark.ray
def test_a_real_job_on_ray_sees_exactly_the_package(rlo, tmp_path):
    """On the real embedded Ray: the job's working dir holds the package's files (an inside link as its content)
    and nothing excluded."""
    job = job_folder(tmp_path)
    (job / "train.py").write_text(
        "import json, os\n"
        "files = sorted(os.path.relpath(os.path.join(d, f)) for d, _, fs in os.walk('.') for f in fs)\n"
        "print('SHIPPED ' + json.dumps(files))\n"
        "print('ALIAS ' + json.dumps([os.path.islink('alias.py'), open('alias.py').read()]))\n"
    )
    (job / "alias.py").symlink_to("helper.py")
    (job / ".venv").mkdir()
    (job / ".venv" / "secret").write_text(SECRET)
    (job / ".gitignore").write_text("*.log\n")
    (job / "big.log").write_text(SECRET)
    spec = write_spec(tmp_path, {"entry_script": "job/train.py"})
    res = rlo("submit", spec, "--wait", check_exit=0)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("SHIPPED "))
    shipped = set(json.loads(line.removeprefix("SHIPPED ")))
    expected = {
        f.rel for f in package.job_package(parse_spec(yaml.safe_load(spec.read_text()), base_dir=tmp_path)).files
    }
    assert shipped == expected == {"train.py", "helper.py", "alias.py", ".gitignore"}
    alias = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("ALIAS ")).removeprefix("ALIAS "))
    assert alias == [False, "VALUE = 42\n"]
    assert SECRET not in res.stdout


def test_binary_files_ship_in_the_configmap_as_base64(tmp_path):
    from orchestrator.render.kuberay import job_files

    job = job_folder(tmp_path)
    (job / "weights.bin").write_bytes(b"\xff\x00\xfe")
    spec = parse_spec({"job": {"entry_script": "job/train.py"}}, base_dir=tmp_path)
    files = job_files(prepare_render(spec))
    key = next(i["key"] for i in files.items if i["path"] == "weights.bin")
    assert base64.b64decode(files.binary[key]) == b"\xff\x00\xfe"
