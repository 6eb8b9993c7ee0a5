"""Which CI job it was: the identity in each session's ``job.json``, added to its findings.

The runner agent writes ``job.json`` into every session it records (the job's
repository, workflow, job, run and runner, as the platform's hook gave them;
``cicd_audit.fleet.jobmeta`` reads both its layout and the hand-written one).
On a runner that serves many repositories, "by node (pid 4211)" says what
ran but not whose job it was; this says that.

``session_jobs(dirs, labels)`` reads the identities; ``attach_jobs(findings,
jobs)`` adds ``evidence["jobs"]`` (one entry per session of the finding that
has an identity) and ends the summary with "in job REPOSITORY WORKFLOW/JOB
run N". Sessions without ``job.json`` leave findings unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from ..fleet.jobmeta import JOB_FILE, read_job_meta
from ..fleet.store import UNKNOWN
from .findings import annotate_findings

#: The identity fields a finding carries, in the order a person reads them.
JOB_FIELDS = ("repository", "workflow", "job", "run_id", "run_attempt", "job_id", "runner")


def session_jobs(dirs: Sequence, labels: Sequence[str]) -> dict[str, dict]:
    """{session label: identity} for the directories that hold a job.json (labels: the
    sessions' names in the loaded logs, in the order of dirs). InputError on a broken file."""
    jobs = {}
    for directory, label in zip(dirs, labels):
        if not os.path.isfile(os.path.join(os.fspath(directory), JOB_FILE)):
            continue
        identity = _identity(read_job_meta(directory))
        if identity:
            jobs[label] = identity
    return jobs


def _identity(meta) -> dict:
    """The job's fields as text, from either layout of job.json (the agent nests them under "job")."""
    data = meta.fields.get("job") if isinstance(meta.fields.get("job"), dict) else meta.fields
    out = {}
    for key in JOB_FIELDS:
        value = data.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) not in ("", UNKNOWN):
            out[key] = str(value)[:200]
    return out


def describe(identity: Mapping) -> str:
    """One line: "acme/api ci.yml/build run 9876543" (the parts the identity has)."""
    where = "/".join(identity[k] for k in ("workflow", "job") if identity.get(k))
    parts = [identity.get("repository"), where or None]
    if identity.get("run_id"):
        attempt = f".{identity['run_attempt']}" if identity.get("run_attempt") not in (None, "1") else ""
        parts.append(f"run {identity['run_id']}{attempt}")
    elif identity.get("job_id"):
        parts.append(f"job id {identity['job_id']}")
    return " ".join(p for p in parts if p) or identity.get("runner", "")


def attach_jobs(findings: pd.DataFrame, jobs: Mapping[str, dict] | None) -> pd.DataFrame:
    """Each finding with the identities of its sessions (all sessions when it names none)."""
    if not jobs or findings.empty:
        return findings

    def add(r, ev: dict) -> str | None:
        sessions = [s for s in (r.sessions or []) if s in jobs] or (list(jobs) if not r.sessions else [])
        if not sessions:
            return None
        ev["jobs"] = [{"session": s, **jobs[s]} for s in sessions]
        first = describe(jobs[sessions[0]])
        more = f" and {len(sessions) - 1} more" if len(sessions) > 1 else ""
        return f"in job {first}{more}" if first else None

    return annotate_findings(findings, add)
