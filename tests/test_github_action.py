"""The GitHub Action's entry points (action.yml, action/*.js), run as the runner runs them.

A simulated Actions environment (RUNNER_TEMP, GITHUB_STATE, GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY, INPUT_*): `node action/pre.js` in the lab's client
namespace starts the recorder, the job makes its requests, the runner turns
GITHUB_STATE into STATE_* for `node action/post.js`, which stops, analyzes,
writes the step summary and fails the job on findings at or above fail-on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cicd_audit.lab import CICD_AUDIT, HTTP_PORT, OTHER_V4
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NODE = shutil.which("node") or "/usr/bin/node"


class Runner:
    def __init__(self, lab, tmp_path: Path, inputs: dict[str, str]) -> None:
        self.lab = lab
        self.temp = tmp_path / "runner_temp"
        self.temp.mkdir()
        self.files = {name: tmp_path / name for name in ("state", "output", "summary.md")}
        self.env = {**os.environ, "PATH": f"{Path(CICD_AUDIT).parent}:{os.environ['PATH']}",
                    "RUNNER_TEMP": str(self.temp), "GITHUB_JOB": "build", "GITHUB_ACTION_PATH": str(REPO),
                    "GITHUB_STATE": str(self.files["state"]), "GITHUB_OUTPUT": str(self.files["output"]),
                    "GITHUB_STEP_SUMMARY": str(self.files["summary.md"])}
        self.env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})

    def step(self, script: str):
        env = dict(self.env)
        if self.files["state"].exists():             # the runner hands the pre step's state to post
            for line in self.files["state"].read_text().splitlines():
                name, _, value = line.partition("=")
                env[f"STATE_{name}"] = value
        # nsenter straight to node: a shell in between would drop INPUT_FAIL-ON (not a shell name).
        argv = ["nsenter", f"--net=/run/netns/{self.lab.client_ns}", NODE, str(REPO / "action" / script)]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

    def values(self, name: str) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.files[name].read_text().splitlines())


def test_action_metadata_names_its_entry_points():
    meta = yaml.safe_load((REPO / "action.yml").read_text())
    assert meta["runs"]["using"] == "node20"
    for key in ("pre", "main", "post"):
        assert (REPO / meta["runs"][key]).is_file()
    assert {"policy", "block", "fail-on", "format"} <= set(meta["inputs"])


@pytest.mark.parametrize("fail_on, fails", [("medium", True), ("", False)])
def test_pre_and_post_record_analyze_summarize_and_fail_on_findings(lab, tmp_path, fail_on, fails):
    policy = tmp_path / "egress.yml"
    policy.write_text("allowed:\n  domains: [www.example.test]\n")
    runner = Runner(lab, tmp_path, {"policy": str(policy), "fail-on": fail_on, "interfaces": lab.client_if,
                                    "cgroup": str(lab.cgroup), "block": "false"})
    pre = runner.step("pre.js")
    assert pre.returncode == 0 and "::warning::" not in pre.stdout, pre.stdout + pre.stderr
    session = Path(runner.values("state")["out"])
    job = lab.run(lab.client_ns, lab.in_cgroup(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                                 f"http://{OTHER_V4}:{HTTP_PORT}/"]))
    assert job.stdout == "200"
    post = runner.step("post.js")
    assert (post.returncode == 1) == fails, post.stdout + post.stderr
    assert ("::error::" in post.stdout) == fails
    assert runner.values("output")["session"] == str(session)
    summary = runner.files["summary.md"].read_text()
    assert OTHER_V4 in summary, summary
    web = [c for c in read_log(session / "conn.log")[1] if c["id.resp_h"] == OTHER_V4]
    assert web and web[0]["proc.name"] == "curl"
    assert lab.tc_filters() == "", "the post step left the recorder attached"


def test_post_without_a_recording_does_nothing(lab, tmp_path):
    runner = Runner(lab, tmp_path, {})
    post = runner.step("post.js")
    assert post.returncode == 0 and not runner.files["summary.md"].exists()
