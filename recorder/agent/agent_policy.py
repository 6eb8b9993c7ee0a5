"""The agent's policies: one per repository from the admin's directory, read at each job's start.

    POLICY_DIR/default.yml             every job without a policy of its own
    POLICY_DIR/repos/OWNER/REPO.yml    the jobs of that repository

A job gets its repository's file, else the default, else no blocking at all
(recorded only). A policy the repository sends with its job (`job start
--repo-policy FILE`) is combined with that file by the admin's rule
(`agent --repository-policies narrow|extend`, cicd_audit.policy_merge), and
ignored by default. The files are read again at every job start, so a changed
policy holds from the next job on, without restarting the agent. The
repository comes from the job's identity; only a plain OWNER/REPO name is
looked up, so no identity can name a file outside the directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cicd_audit.policy import Policy, PolicyError, load_policy, parse_policy
from cicd_audit.policy_merge import combine

_REPOSITORY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}/[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
DEFAULT = "default.yml"


@dataclass(frozen=True)
class JobPolicy:
    policy: Policy | None        # None: the job is recorded, not blocked
    source: str                  # the file, or why there is none
    note: str | None = None      # what became of the repository's own policy, when it sent one


class PolicyDirectory:
    def __init__(self, path: Path, repository_policies: str = "ignore") -> None:
        self.path = Path(path)
        self.repository_policies = repository_policies     # policy_merge.MODES

    def for_job_with(self, identity: dict, repository_text: str | None) -> JobPolicy:
        """The admin's policy for the job, combined with the one its repository sent (if any)."""
        admin = self.for_job(identity)
        if repository_text is None:
            return admin
        if self.repository_policies == "ignore":
            return JobPolicy(admin.policy, admin.source, "the repository's policy was ignored: the agent does not "
                                                         "take repository policies (--repository-policies)")
        if admin.policy is None:
            return JobPolicy(None, admin.source, "the repository's policy was not used: it only narrows or extends "
                                                 "one of the admin's")
        try:
            own = parse_policy(repository_text, source="the repository's policy (job start --repo-policy)")
        except PolicyError as exc:
            return JobPolicy(admin.policy, admin.source, f"the repository's policy was not used: {exc}")
        merged = combine(admin.policy, own, self.repository_policies)
        return JobPolicy(merged, merged.source)

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
