"""recorder/logs/ci_steps.py on a fake /proc: the step from the process or its nearest ancestor, secrets left alone."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from cicd_audit.recorder.logs.ci_steps import Step, step_of


def fake_process(root: Path, pid: int, ppid: int, env: dict[str, str] | None, comm: str = "sh") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194304\n")
    if env is not None:
        (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))


def test_an_action_step_from_the_process_itself(tmp_path):
    fake_process(tmp_path, 40, 1, {"PATH": "/bin", "GITHUB_ACTION": "__actions_setup-node",
                                   "GITHUB_ACTION_REPOSITORY": "actions/setup-node", "GITHUB_ACTION_REF": "v4",
                                   "GITHUB_TOKEN": "ghs_secret"})
    step = step_of(40, tmp_path)
    assert step == Step("__actions_setup-node", "actions/setup-node@v4")
    assert "secret" not in repr(step)


def test_a_process_that_cleared_its_environment_is_found_under_its_ancestor(tmp_path):
    fake_process(tmp_path, 10, 1, {"GITHUB_ACTION": "build"})
    fake_process(tmp_path, 11, 10, {"HOME": "/root"}, comm="make) (evil")       # a comm with ") ("
    fake_process(tmp_path, 12, 11, {})
    assert step_of(12, tmp_path) == Step("build")
    assert str(step_of(12, tmp_path)) == "build"


def test_outside_any_step_or_gone(tmp_path):
    fake_process(tmp_path, 20, 1, {"PATH": "/bin"})
    assert step_of(20, tmp_path) is None
    assert step_of(999, tmp_path) is None


def test_a_parent_loop_ends(tmp_path):
    fake_process(tmp_path, 30, 31, {})
    fake_process(tmp_path, 31, 30, {})
    assert step_of(30, tmp_path) is None


def test_a_real_child_process_of_a_step(tmp_path):
    env = {**os.environ, "GITHUB_ACTION": "__run_2"}
    child = subprocess.Popen(["sh", "-c", "env -i sleep 5; true"], env=env)     # "; true": sh forks, never execs
    try:
        for _ in range(100):
            kids = Path(f"/proc/{child.pid}/task/{child.pid}/children")
            pids = kids.read_text().split() if kids.exists() else []
            if pids:
                break
            time.sleep(0.02)
        assert pids, "sh did not start its child"
        assert step_of(int(pids[0])) == Step("__run_2"), "env -i cleared it: found through its parent"
    finally:
        child.kill()
        child.wait()
