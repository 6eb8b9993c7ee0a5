"""``job.json``: who ran a session. Written by the runner agent into the session directory.

API::

    read_job_meta(session_dir) -> JobMeta     # .session .repository .workflow .fields
    JOB_FILE                                  # "job.json"

Format (one JSON object; every key optional, unknown keys kept in the
manifest; docs/fleet.md has the table)::

    {"format": "cicd-audit-job", "version": 1,
     "session": "gh-9876543-2-build",     # unique per job run; default: the directory's name
     "repository": "acme/api",            # default: "unknown"
     "workflow": "ci.yml",                # default: "unknown"
     "job": "build", "run_id": "9876543", "run_attempt": 2,
     "runner": "runner-17", "ref": "refs/heads/main", "sha": "..."}

``session`` must be unique across the store: it names the session's files, and
adding a session with a name the store already holds replaces it.

The runner agent's ``job.json`` (``cicd-audit agent``, docs/agent.md) is read too: its
identity is nested, ``{"job": {"repository", "workflow", "runner", ...}, "session":
"<UTC start>-job<N>", "start", "end", "status"}``. Its session is the agent's directory
name, which agents on two runners can both choose, so it is qualified by the runner:
``runner-17/20251011T101500Z-job3``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from ..errors import InputError
from .store import UNKNOWN

JOB_FILE = "job.json"

#: identity fields must be short printable text: they become partition directories.
_IDENTITY = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


@dataclass(frozen=True)
class JobMeta:
    session: str
    repository: str = UNKNOWN
    workflow: str = UNKNOWN
    fields: dict = field(default_factory=dict)


def _identity(value, key: str, where: str, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, (str, int)) or not _IDENTITY.match(str(value)):
        raise InputError(f"{where}: {key!r} must be text of 1-200 printable characters, got {value!r}")
    return str(value)


def read_job_meta(session_dir) -> JobMeta:
    d = os.fspath(session_dir)
    name = os.path.basename(os.path.normpath(d)) or d
    path = os.path.join(d, JOB_FILE)
    if not os.path.isfile(path):
        return JobMeta(session=name)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a JSON object ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object")
    if isinstance(data.get("job"), dict) and "repository" not in data and "workflow" not in data:
        return _agent_meta(data, path, name)
    return JobMeta(
        session=_identity(data.get("session"), "session", path, name),
        repository=_identity(data.get("repository"), "repository", path, UNKNOWN),
        workflow=_identity(data.get("workflow"), "workflow", path, UNKNOWN),
        fields=data,
    )


def _agent_meta(data: dict, path: str, name: str) -> JobMeta:
    """The agent's job.json: identity under "job", the session named by the agent's directory."""
    job = data["job"]
    session = _identity(data.get("session"), "session", path, name)
    runner = _identity(job.get("runner"), "job.runner", path, "")
    return JobMeta(
        session=_identity(f"{runner}/{session}" if runner else session, "session", path, name),
        repository=_identity(job.get("repository"), "job.repository", path, UNKNOWN),
        workflow=_identity(job.get("workflow"), "job.workflow", path, UNKNOWN),
        fields=data,
    )
