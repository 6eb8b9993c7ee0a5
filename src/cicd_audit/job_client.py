"""`cicd-audit job start|end|status`: the client CI hooks run on every job's critical path.

Standard library only, and reached before the full command line loads
(cicd_audit.launcher), so a hook costs an interpreter start and one round
trip to the agent, not the import of the whole tool. `cicd-audit job --help`
and `job install-hooks` go through the full command line (agent_cli.py).

`job install-hooks` also writes `cicd-audit-job` beside the hook scripts
(hook_client_script): this module run by `python3 -SI`, which skips
site-packages and its .pth files (an editable install's finder, distro
hooks): interpreter start up is then about a fifth of a plain one's.
"""

from __future__ import annotations

import json
import os
import re
import sys

from cicd_audit.control_protocol import DEFAULT_SOCKET, request
from cicd_audit.errors import CicdAuditError, UsageError

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
REPO_POLICY_MAX = 32 * 1024     # a policy is a list of names; the request must fit the socket's message limit
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


def start(socket_path, labels: list[str], join: int | None = None, repo_policy: str | None = None) -> dict:
    request = {"op": "start", "labels": identity(labels)}
    if join is not None:
        request["join"] = join
    if repo_policy is not None:
        request["repo_policy"] = read_repo_policy(repo_policy)
    return _ask(socket_path, request)


def read_repo_policy(path: str) -> str:
    """The repository's policy file, as text: read here, with the hook's own rights, so the
    agent (root) never opens a path a job chose."""
    try:
        with open(path, "rb") as f:
            data = f.read(REPO_POLICY_MAX + 1)
    except OSError as exc:
        raise UsageError(f"--repo-policy {_printable(path)}: {exc.strerror}") from None
    if len(data) > REPO_POLICY_MAX:
        raise UsageError(f"--repo-policy {_printable(path)}: larger than {REPO_POLICY_MAX // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--repo-policy {_printable(path)}: not UTF-8 text") from None


def end(socket_path, labels: list[str] = ()) -> dict:
    return _ask(socket_path, _with_runner({"op": "end"}, labels))


def status(socket_path, labels: list[str] = ()) -> dict:
    reply = _ask(socket_path, _with_runner({"op": "status"}, labels))
    reply.pop("ok", None)
    return reply


def _with_runner(message: dict, labels: list[str]) -> dict:
    """Several runners on one host share one agent: a request names its runner's job."""
    runner = identity(labels).get("runner")
    if runner is not None:
        message["runner"] = runner
    return message


def _ask(socket_path, message: dict) -> dict:
    reply = request(socket_path, message)
    if not reply.get("ok"):
        raise UsageError(f"the agent refused: {_printable(reply.get('error', 'no reason given'))}")
    return reply


def _printable(text) -> str:
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                            str(text))


def main(argv: list[str]) -> int:
    """argv: what follows `cicd-audit job`. Prints what the full command line would."""
    try:
        command, socket_path, labels, join, repo_policy = _parse(argv)
    except UsageError as exc:
        print(f"cicd-audit job: error: {exc} (usage: cicd-audit job {{{','.join(COMMANDS)}}} [--socket PATH] "
              "[--label KEY=VALUE]... [--join PID] [--repo-policy FILE])", file=sys.stderr)
        return exc.exit_code
    try:
        if command == "start":
            reply = start(socket_path, labels, join, repo_policy)
            for kind in ("warning", "note"):
                if reply.get(kind):
                    print(f"cicd-audit: {kind}: {_printable(reply[kind])}", file=sys.stderr)
            print(reply["session"])
        elif command == "end":
            reply = end(socket_path, labels)
            if reply.get("analysis") not in (None, "done"):
                print(f"cicd-audit: the session's analysis failed: {_printable(reply['analysis'])}", file=sys.stderr)
            print(reply["session"])
        else:
            print(json.dumps(status(socket_path, labels), sort_keys=True))
    except CicdAuditError as exc:
        print(f"cicd-audit: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _parse(argv: list[str]) -> tuple[str, str, list[str], int | None, str | None]:
    """(command, socket, labels, join, repo_policy) from `COMMAND [--socket PATH] [--label K=V]...
    [--join PID] [--repo-policy FILE]`,
    each option as `--opt VALUE` or `--opt=VALUE`. By hand: argparse alone would double the start-up."""
    if not argv or argv[0] not in COMMANDS:
        raise UsageError(f"expected one of {', '.join(COMMANDS)}")
    command, socket_path, labels, join, repo_policy = argv[0], DEFAULT_SOCKET, [], None, None
    rest = iter(argv[1:])
    for arg in rest:
        name, eq, value = arg.partition("=")
        if name not in ("--socket", "--label", "--join", "--repo-policy"):
            raise UsageError(f"unrecognized argument {_printable(arg)!r}")
        if not eq:
            value = next(rest, None)
            if value is None:
                raise UsageError(f"{name} needs a value")
        if name == "--socket":
            socket_path = value
        elif name == "--label":
            labels.append(value)
        elif name == "--repo-policy":
            repo_policy = value
        else:
            try:
                join = int(value)
            except ValueError:
                raise UsageError(f"--join {_printable(value)!r}: not a process id") from None
    if (join is not None or repo_policy is not None) and command != "start":
        raise UsageError("--join and --repo-policy go with start")
    return command, socket_path, labels, join, repo_policy


def hook_client_script() -> str:
    """An executable that runs this module without site-packages: this interpreter, and the
    directory this package is imported from (it needs nothing else)."""
    package_root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    return (f"#!{sys.executable} -SI\n"
            "# Written by `cicd-audit job install-hooks`: `cicd-audit job` for CI hooks, without site-packages.\n"
            "import sys\n"
            f"sys.path.insert(0, {package_root!r})\n"
            "from cicd_audit.job_client import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
