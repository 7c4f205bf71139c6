"""The default view of a job's log (`orchestrator.logview`): the engine's lines hidden and counted, the tool's
and the job's own shown. The lines below are copied from a real main-job log (Ray 2.60, RLlib's new stack)."""

from __future__ import annotations

from orchestrator.logview import LogView, is_engine_line

ENGINE = [
    "2026-12-01 18:14:37,149\tINFO dashboard_sdk.py:371 -- Uploading package gcs://_ray_pkg_839354944e51d45d.zip.",
    "Running entrypoint for job rlo-exp-net-20261201-181436-0d53: python -u autoscale_ppo.py --eval_episodes 100",
    "2026-12-01 18:14:49,323\tWARNING algorithm_config.py:5160 -- You are running PPO on the new API stack!",
    "/venv/lib/python3.11/site-packages/gymnasium/spaces/box.py:236: UserWarning: \x1b[33mWARN: Box low's precision",
    "  gym.logger.warn(",
    "╭──────────────────────────────────────────────╮",
    "│ Configuration for experiment     tune        │",
    "Trial status: 1 PENDING",
    "Current time: 2026-12-01 18:14:49. Total running time: 0s",
    "View detailed results here: /tmp/exp/home-net/runs/rlo-exp/output/tune",
    "Trial PPO_rlo-env:rlo_AutoScale-v0_189b3_00000 started with configuration:",
    "Trial PPO_rlo-env:rlo_AutoScale-v0_189b3_00000 completed after 50 iterations at 2026-12-01 18:17:39.",
    "\x1b[36m(PPO pid=4169)\x1b[0m [2026-12-01 18:14:56,669 E 4169 4169] core_worker.cc:2465: Actor with class name:"
    " 'SingleAgentEnvRunner' and ID: 'b97e' has died",
    "\x1b[36m(PPO(env=rlo-env:rlo/AutoScale-v0; env-runners=1; learners=0; multi-agent=False) pid=4169)\x1b[0m "
    "Checkpoint successfully created at: Checkpoint(filesystem=local, path=/tmp/x/checkpoint_000009)",
    "\x1b[36m(SingleAgentEnvRunner pid=7703)\x1b[0m Exception ignored in: <function EnvRunner.__del__ at 0x7fd>",
    "\x1b[36m(SingleAgentEnvRunner pid=7703)\x1b[0m SystemExit: 1",
    "(raylet) [2026-12-01 18:14:56] a worker died",
]
OWN = [
    "[rlo] starting the embedded Ray on 127.0.0.1 (2 CPUs) ...",
    "rlo-exp-net-20261201-181436-0d53",
    "[rlo] training finished: stop criterion met: training_iteration = 50 >= 50",
    "100 episodes of 10,000 minutes (max_time_steps) per policy, the same seeds for all; mean per episode [95% CI]",
    "ppo                                      26,256 [25,718, 26,795]  0.2 [0.2, 0.3]    309,418 [306,122, 312,714]",
    "best baseline by profit: target_tracking",
    "Traceback (most recent call last):",  # the driver's own traceback: the user must see it
    '  File "train.py", line 3, in <module>',
    "ValueError: my env is broken",
    "episode 3: return 12.5 (my own print, 2026-12-01 18:14:37)",
]


def test_engine_lines_are_recognised_and_the_jobs_own_are_not():
    assert [line for line in ENGINE if not is_engine_line(line)] == []
    assert [line for line in OWN if is_engine_line(line)] == []


def test_the_view_counts_what_it_hides_and_shows_the_tail_when_the_job_failed():
    view = LogView(keep_tail=3)
    shown = [line for line in [*ENGINE[:5], "", "", *OWN[:3], "", *ENGINE[5:]] if view.shows(line)]
    assert shown == [*OWN[:3], ""]  # blank lines left by hidden blocks collapse
    assert view.hidden == len(ENGINE)
    assert view.footer("rlo-x", failed=False) == [
        f"[rlo] {len(ENGINE)} lines of the engine's log not shown: `rlo logs rlo-x` (or --raw)"
    ]
    failed = view.footer("rlo-x", failed=True)
    assert failed[0] == "[rlo] the last 3 lines of the engine's log (hidden above):"
    assert failed[2] == "  (SingleAgentEnvRunner pid=7703) SystemExit: 1"  # colours stripped
    assert LogView().footer("rlo-x", failed=True) == []  # nothing hidden, nothing to say
