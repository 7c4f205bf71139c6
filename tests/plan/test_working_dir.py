"""What travels with a job's folder: never the tool's own state (registry, Ray's auth token), even when the
spec and its script live inside RLO_HOME."""

from __future__ import annotations

from orchestrator.package import WORKING_DIR_EXCLUDES, excludes_for
from orchestrator.render import prepare_render


def test_the_tools_state_never_travels_with_the_job(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "local-ray").mkdir(parents=True)
    (home / "local-ray" / "auth_token").write_text("secret")
    (home / "registry.db").write_text("")
    (home / "jobs").mkdir()
    script = home / "jobs" / "train.py"
    script.write_text("print('hi')")
    monkeypatch.setenv("RLO_HOME", str(home))

    # The job's folder is RLO_HOME itself: its state is left out, the folder holding the script is not.
    ex = excludes_for(home, script)
    assert {"/local-ray", "/registry.db"} <= set(ex) and not any(e.startswith("/jobs") for e in ex)
    # RLO_HOME inside the job's folder: excluded by its path relative to that folder.
    ex = excludes_for(tmp_path, tmp_path / "train.py")
    assert {"/home/local-ray", "/home/registry.db"} <= set(ex)
    # An unrelated folder: only the usual junk.
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert excludes_for(other) == list(WORKING_DIR_EXCLUDES)


def test_kuberay_job_files_leave_the_tools_state_out(tmp_path, monkeypatch):
    from orchestrator.render.kuberay import job_files
    from orchestrator.spec import parse_spec

    home = tmp_path
    (home / "local-ray").mkdir()
    (home / "local-ray" / "auth_token").write_text("secret")
    (home / "registry.db").write_text("")
    (home / "train.py").write_text("print('hi')")
    (home / "helper.py").write_text("X = 1")
    monkeypatch.setenv("RLO_HOME", str(home))
    spec = parse_spec({"job": {"entry_script": "train.py"}}, base_dir=home)
    paths = {item["path"] for item in job_files(prepare_render(spec)).items}
    assert paths == {"train.py", "helper.py"}
