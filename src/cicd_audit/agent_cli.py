"""`cicd-audit agent` and `cicd-audit job start|end|status` (recorder/agent.py, recorder/control.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cicd_audit.errors import CicdAuditError
from cicd_audit.recorder.control import DEFAULT_SOCKET

# The job's identity, read by `job start` from the environment the CI platform gives its hooks.
IDENTITY_FROM_ENV = {
    "repository": ("GITHUB_REPOSITORY", "CI_PROJECT_PATH"),
    "workflow": ("GITHUB_WORKFLOW", "CI_PIPELINE_SOURCE"),
    "run_id": ("GITHUB_RUN_ID", "CI_PIPELINE_ID"),
    "run_attempt": ("GITHUB_RUN_ATTEMPT",),
    "job": ("GITHUB_JOB", "CI_JOB_NAME"),
    "job_id": ("CI_JOB_ID",),
    "runner": ("RUNNER_NAME", "CI_RUNNER_DESCRIPTION"),
}

SOCKET_OPTION = click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path),
                             default=DEFAULT_SOCKET, show_default=True, help="The agent's control socket.")


def _fail(exc: CicdAuditError) -> None:
    click.echo(f"cicd-audit: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the sessions: one subdirectory per job. Keep it where jobs cannot write.")
@click.option("--iface", "interfaces", multiple=True, help="Interface to record (repeatable). Default: every one up.")
@click.option("--cgroup", type=click.Path(file_okay=False, path_type=Path),
              help="cgroup v2 directory whose processes' sockets are named. Default: the whole host.")
@click.option("--format", "fmt", type=click.Choice(["tsv", "json"]), default="tsv", show_default=True)
@SOCKET_OPTION
@click.option("--socket-group", help="Group allowed to use the socket besides root (the runner's hooks' group).")
@click.option("--process-args", is_flag=True, help="Fill conn.log's proc.cmdline column (command lines can carry secrets).")
@click.option("--no-analysis", is_flag=True, help="Do not run `cicd-audit analyze` into each session at its end.")
def agent(out_dir, interfaces, cgroup, fmt, socket_path, socket_group, process_args, no_analysis):
    """Record continuously, one session per CI job; jobs begin and end with `cicd-audit job`.

    \b
      cicd-audit agent --out /var/lib/cicd-audit/sessions --socket-group runner
      cicd-audit job start --label repository=org/app    # in the runner's job-started hook
      cicd-audit job end                                  # in its job-completed hook
    """
    from cicd_audit.recorder.agent import Agent
    try:
        runner = Agent(out_dir, interfaces, cgroup, fmt, socket_path, socket_group, process_args,
                       analyze=not no_analysis)
        sys.exit(runner.run())
    except CicdAuditError as exc:
        _fail(exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def job():
    """Mark a CI job's start and end for the running agent (from the CI platform's job hooks)."""


@job.command("start")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Part of the job's identity (repeatable); GitHub's and GitLab's own variables are read too.")
@SOCKET_OPTION
def job_start(labels, socket_path):
    """Begin a job's session; prints its directory."""
    identity = {key: os.environ[name] for key, names in IDENTITY_FROM_ENV.items()
                for name in names if os.environ.get(name)}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            _fail(_usage(f"--label {label!r}: expected KEY=VALUE"))
        identity[key] = value
    reply = _ask(socket_path, {"op": "start", "labels": identity})
    click.echo(reply["session"])


@job.command("end")
@SOCKET_OPTION
def job_end(socket_path):
    """End the current job: its logs are closed and analyzed; prints the session's directory."""
    reply = _ask(socket_path, {"op": "end"})
    if reply.get("analysis") not in (None, "done"):
        click.echo(f"cicd-audit: the session's analysis failed: {reply['analysis']}", err=True)
    click.echo(reply["session"])


@job.command("status")
@SOCKET_OPTION
def job_status(socket_path):
    """The agent's current job (or none) and counters, as JSON."""
    import json
    reply = _ask(socket_path, {"op": "status"})
    reply.pop("ok", None)
    click.echo(json.dumps(reply, sort_keys=True))


def _usage(message: str) -> CicdAuditError:
    from cicd_audit.errors import UsageError
    return UsageError(message)


def _ask(socket_path: Path, message: dict) -> dict:
    from cicd_audit.recorder.control import request
    try:
        reply = request(socket_path, message)
    except CicdAuditError as exc:
        _fail(exc)
    if not reply.get("ok"):
        from cicd_audit.analyzers.safe_text import for_terminal
        click.echo(f"cicd-audit: the agent refused: {for_terminal(reply.get('error', 'no reason given'))}", err=True)
        sys.exit(2)
    return reply
