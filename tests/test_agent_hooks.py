"""`cicd-audit job install-hooks github RUNNER_DIR`: the scripts, and the runner's .env kept intact."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from cicd_audit.cli import main


def install(runner_dir: Path, *extra: str):
    return CliRunner().invoke(main, ["job", "install-hooks", "github", str(runner_dir), *extra])


def test_scripts_installed_and_env_lines_replaced_not_duplicated(tmp_path):
    (tmp_path / ".env").write_text("LANG=C.UTF-8\nACTIONS_RUNNER_HOOK_JOB_STARTED=/old/hook.sh\nhttp_proxy=x\n")
    for _ in range(2):                       # idempotent
        result = install(tmp_path, "--socket", "/run/custom.sock")
        assert result.exit_code == 0, result.output
    env = (tmp_path / ".env").read_text().splitlines()
    hooks = tmp_path / "cicd-audit-hooks"
    assert env == ["LANG=C.UTF-8", "http_proxy=x",
                   f"ACTIONS_RUNNER_HOOK_JOB_STARTED={hooks / 'job-started.sh'}",
                   f"ACTIONS_RUNNER_HOOK_JOB_COMPLETED={hooks / 'job-completed.sh'}",
                   "CICD_AUDIT_SOCKET=/run/custom.sock"]
    for script in ("job-started.sh", "job-completed.sh"):
        path = hooks / script
        assert os.access(path, os.X_OK) and path.read_text().startswith("#!/bin/sh")


def test_a_runner_without_env_file_gets_one(tmp_path):
    assert install(tmp_path).exit_code == 0
    assert "CICD_AUDIT_SOCKET" not in (tmp_path / ".env").read_text()


def test_unknown_platform_or_missing_directory_is_a_usage_error(tmp_path):
    assert install(tmp_path / "missing").exit_code == 2
    result = CliRunner().invoke(main, ["job", "install-hooks", "jenkins", str(tmp_path)])
    assert result.exit_code == 2


def test_retention_removes_the_oldest_finished_sessions_only(tmp_path):
    from cicd_audit.recorder.agent import prune_sessions
    for name in ("20261201T000000Z-job1", "20261202T000000Z-job2", "20261203T000000Z-job3", "20261204T000000Z-job4"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "job.json").write_text("{}")
    (tmp_path / "20261130T000000Z-job0").mkdir()              # still recording: no job.json
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (tmp_path / "20261101T000000Z-link").symlink_to(outside)
    removed = prune_sessions(tmp_path, 2)
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261101T000000Z-link", "20261130T000000Z-job0",
                                                          "20261203T000000Z-job3", "20261204T000000Z-job4"]
    assert (outside / "keep").exists()
