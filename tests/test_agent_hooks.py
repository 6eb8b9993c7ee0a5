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
