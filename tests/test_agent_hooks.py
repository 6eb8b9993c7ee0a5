"""`cicd-audit job install-hooks github RUNNER_DIR`: the scripts, and the runner's .env kept intact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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
    from cicd_audit.recorder.agent.agent import prune_sessions
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


def test_the_hook_client_runs_without_site_packages_and_talks_to_the_agent(tmp_path):
    """`cicd-audit-job`, beside the scripts: `python3 -SI`, this package's job client only,
    and the same request on the wire as `cicd-audit job`."""
    import json
    import socket
    import subprocess
    import threading

    assert install(tmp_path).exit_code == 0
    client = tmp_path / "cicd-audit-hooks" / "cicd-audit-job"
    assert os.access(client, os.X_OK) and client.read_text().splitlines()[0].endswith(" -SI")
    sock_path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    seen = []

    def answer_once():
        conn, _ = server.accept()
        with conn:
            seen.append(json.loads(conn.makefile().readline()))
            conn.sendall(b'{"ok": true, "session": "/sessions/job1"}\n')

    thread = threading.Thread(target=answer_once)
    thread.start()
    env = {"PATH": os.environ["PATH"], "GITHUB_REPOSITORY": "octo/repo"}
    r = subprocess.run([str(client), "start", "--socket", str(sock_path), "--label", "k=v"],
                       capture_output=True, text=True, env=env, timeout=30)
    thread.join(10)
    server.close()
    assert (r.returncode, r.stdout, r.stderr) == (0, "/sessions/job1\n", "")
    assert seen == [{"op": "start", "labels": {"repository": "octo/repo", "k": "v"}}]
    # What it imports: the standard library and two modules of this package, no site.
    probe = client.read_text().replace("from cicd_audit.job_client import main\nsys.exit(main(sys.argv[1:]))\n",
                                       "import cicd_audit.job_client\n"
                                       "print(sorted(m for m in sys.modules if m.startswith(('cicd_audit', 'site'))))\n")
    shebang, _, body = probe.partition("\n")
    out = subprocess.run([*shebang[2:].split(), "-c", body], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == str(["cicd_audit", "cicd_audit.control_protocol", "cicd_audit.errors",
                                      "cicd_audit.job_client"]), out.stderr


@pytest.mark.parametrize("argv, message", [
    ([], "expected one of start, end, status"),
    (["stop"], "expected one of start, end, status"),
    (["start", "--sock", "/x"], "unrecognized argument '--sock'"),
    (["start", "--socket"], "--socket needs a value"),
    (["start", "--join", "abc"], "--join 'abc': not a process id"),
    (["end", "--join", "1"], "--join and --repo-policy go with start"),
    (["status", "--repo-policy", "p.yml"], "--join and --repo-policy go with start"),
    (["start", "--socket=/nonexistent.sock", "--label", "\x1b]0;pwned\x07"], "expected KEY=VALUE"),
])
def test_job_client_usage_errors_are_one_clear_line(capsys, argv, message):
    from cicd_audit.job_client import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err and "\x1b" not in err, err


def test_job_client_takes_both_option_forms(monkeypatch):
    from cicd_audit import job_client
    sent = []
    monkeypatch.setattr(job_client, "request", lambda path, msg: sent.append((path, msg)) or {"ok": True, "session": "s"})
    assert job_client.main(["start", "--socket=/a.sock", "--join", "42", "--label=x=1", "--label", "y=2"]) == 0
    assert sent[0][0] == "/a.sock" and sent[0][1]["join"] == 42
    assert {"x": "1", "y": "2"}.items() <= sent[0][1]["labels"].items()


def test_job_start_sends_the_repository_policy_as_text(monkeypatch, tmp_path, capsys):
    from cicd_audit import job_client
    sent = []
    monkeypatch.setattr(job_client, "request", lambda path, msg: sent.append(msg) or
                        {"ok": True, "session": "s", "note": "the repository's policy was ignored\x1b[2J"})
    (tmp_path / "egress.yml").write_text("allowed:\n  domains: [pypi.org]\n")
    assert job_client.main(["start", "--socket=/a.sock", "--repo-policy", str(tmp_path / "egress.yml")]) == 0
    assert sent[0]["repo_policy"] == "allowed:\n  domains: [pypi.org]\n"
    err = capsys.readouterr().err
    assert "note: the repository's policy was ignored" in err and "\x1b" not in err


@pytest.mark.parametrize("content, message", [
    (None, "No such file"),
    (b"x" * (32 * 1024 + 1), "larger than 32 KiB"),
    (b"allowed: \xff\n", "not UTF-8"),
])
def test_a_repository_policy_the_client_cannot_send_is_one_clear_line(monkeypatch, tmp_path, capsys, content, message):
    from cicd_audit import job_client
    monkeypatch.setattr(job_client, "request", lambda path, msg: pytest.fail("nothing may be sent"))
    path = tmp_path / "egress.yml"
    if content is not None:
        path.write_bytes(content)
    assert job_client.main(["start", "--socket=/a.sock", "--repo-policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err, err
