"""The agent's policies: one per repository from the admin's directory, read at each job's start.

    POLICY_DIR/default.yml             every job without a policy of its own
    POLICY_DIR/repos/OWNER/REPO.yml    the jobs of that repository

A job gets its repository's file, else the default, else no blocking at all
(recorded only). The files are read again at every job start, so a changed
policy holds from the next job on, without restarting the agent. The
repository comes from the job's identity; only a plain OWNER/REPO name is
looked up, so no identity can name a file outside the directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cicd_audit.policy import Policy, load_policy

_REPOSITORY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}/[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
DEFAULT = "default.yml"


@dataclass(frozen=True)
class JobPolicy:
    policy: Policy | None        # None: the job is recorded, not blocked
    source: str                  # the file, or why there is none


class PolicyDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def for_job(self, identity: dict) -> JobPolicy:
        """The policy for a job with this identity (PolicyError, naming the file, for a broken one)."""
        repository = identity.get("repository", "")
        if _REPOSITORY.fullmatch(repository) and ".." not in repository:
            own = self.path / "repos" / f"{repository}.yml"
            if own.is_file():
                return JobPolicy(load_policy(own), str(own))
        default = self.path / DEFAULT
        if default.is_file():
            return JobPolicy(load_policy(default), str(default))
        return JobPolicy(None, f"no {DEFAULT} and no policy for {repository or 'this job'} in {self.path}")
