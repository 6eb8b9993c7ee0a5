"""`cicd-audit job start|end|status`: the client CI hooks run on every job's critical path.

Standard library only, and reached before the full command line loads
(cicd_audit.launcher), so a hook costs an interpreter start and one round
trip to the agent, not the import of the whole tool. `cicd-audit job --help`
and `job install-hooks` go through the full command line (agent_cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from cicd_audit.errors import CicdAuditError, UsageError
from cicd_audit.recorder.control import DEFAULT_SOCKET, request

# The job's identity, read from the environment the CI platform gives its hooks.
IDENTITY_FROM_ENV = {
    "repository": ("GITHUB_REPOSITORY", "CI_PROJECT_PATH"),
    "workflow": ("GITHUB_WORKFLOW", "CI_PIPELINE_SOURCE"),
    "run_id": ("GITHUB_RUN_ID", "CI_PIPELINE_ID"),
    "run_attempt": ("GITHUB_RUN_ATTEMPT",),
    "job": ("GITHUB_JOB", "CI_JOB_NAME"),
    "job_id": ("CI_JOB_ID",),
    "runner": ("RUNNER_NAME", "CI_RUNNER_DESCRIPTION"),
}
COMMANDS = ("start", "end", "status")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def identity(labels: list[str], environ=os.environ) -> dict:
    """The job's identity: the platform's variables, then --label KEY=VALUE (which win)."""
    found = {key: environ[name] for key, names in IDENTITY_FROM_ENV.items() for name in names if environ.get(name)}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {label!r}: expected KEY=VALUE")
        found[key] = value
    return found


def start(socket_path: Path, labels: list[str], join: int | None = None) -> dict:
    request = {"op": "start", "labels": identity(labels)}
    if join is not None:
        request["join"] = join
    return _ask(socket_path, request)


def end(socket_path: Path) -> dict:
    return _ask(socket_path, {"op": "end"})


def status(socket_path: Path) -> dict:
    reply = _ask(socket_path, {"op": "status"})
    reply.pop("ok", None)
    return reply


def _ask(socket_path: Path, message: dict) -> dict:
    reply = request(socket_path, message)
    if not reply.get("ok"):
        raise UsageError(f"the agent refused: {_printable(reply.get('error', 'no reason given'))}")
    return reply


def _printable(text) -> str:
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                            str(text))


def main(argv: list[str]) -> int:
    """argv: what follows `cicd-audit job`. Prints what the full command line would."""
    parser = argparse.ArgumentParser(prog="cicd-audit job")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--socket", type=Path, default=DEFAULT_SOCKET)
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--join", type=int)
    args = parser.parse_args(argv)
    if (args.label or args.join is not None) and args.command != "start":
        parser.error("--label and --join go with start")
    try:
        if args.command == "start":
            reply = start(args.socket, args.label, args.join)
            if reply.get("warning"):
                print(f"cicd-audit: warning: {_printable(reply['warning'])}", file=sys.stderr)
            print(reply["session"])
        elif args.command == "end":
            reply = end(args.socket)
            if reply.get("analysis") not in (None, "done"):
                print(f"cicd-audit: the session's analysis failed: {_printable(reply['analysis'])}", file=sys.stderr)
            print(reply["session"])
        else:
            print(json.dumps(status(args.socket), sort_keys=True))
    except CicdAuditError as exc:
        print(f"cicd-audit: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
