"""The entry-script contract: variables in, one helper out."""

from orchestrator.contract import contract_env, job_context


def test_env_round_trip(monkeypatch, tmp_path):
    env = contract_env(
        "rlo-x-1",
        str(tmp_path),
        {"RLO_NUM_ENV_RUNNERS": "13", "RLO_NUM_GPUS": "1", "RLO_NUM_ENVS_PER_ENV_RUNNER": "4"},
        '{"job": {}}',
        100.0,
    )
    assert env["SM_MODEL_DIR"] == env["RLO_MODEL_DIR"] == f"{tmp_path}/model"
    assert env["SM_NUM_GPUS"] == "1"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ctx = job_context([])
    assert (ctx.run_id, ctx.num_env_runners, ctx.num_gpus, ctx.num_envs_per_env_runner) == ("rlo-x-1", 13, 1.0, 4)
    assert ctx.spec == {"job": {}} and ctx.started_at == 100.0 and ctx.inside_rlo


def test_cli_args_win_and_unknown_args_are_left(monkeypatch):
    monkeypatch.setenv("RLO_NUM_ENV_RUNNERS", "13")
    ctx = job_context(["--num-env-runners", "2", "--model-dir", "/m", "--my-own", "x"])
    assert ctx.num_env_runners == 2 and str(ctx.model_dir) == "/m"


def test_sagemaker_aliases_are_read(monkeypatch):
    monkeypatch.delenv("RLO_MODEL_DIR", raising=False)
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    assert str(job_context([]).model_dir) == "/opt/ml/model"


def test_defaults_outside_the_tool(monkeypatch, tmp_path):
    for k in ("RLO_RUN_ID", "RLO_RUN_DIR", "RLO_NUM_ENV_RUNNERS", "RLO_MODEL_DIR", "SM_MODEL_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    ctx = job_context([])
    assert not ctx.inside_rlo and ctx.num_env_runners == 1 and ctx.run_dir == tmp_path / "rlo-output" / "manual"
