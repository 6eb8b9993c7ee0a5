"""The CI runner's own endpoints, kept reachable under `record --block-host`.

With --block the job is judged alone and the runner agent never is. With
--block-host every process is, so the job's policy is widened by the
runner's endpoints (runner_endpoints.yml beside this module, or the user's
own file): the runner keeps receiving and reporting its job, and the job can
reach those endpoints too, which is why --block is the default.
"""

from __future__ import annotations

from pathlib import Path

from cicd_audit.policy import Policy, load_policy

SHIPPED = Path(__file__).with_name("runner_endpoints.yml")


def runner_endpoints(path: Path | None = None) -> Policy:
    """The endpoint list: the user's file, or the shipped one (PolicyError names the file and line)."""
    return load_policy(path or SHIPPED)


def with_runner_endpoints(policy: Policy, path: Path | None = None) -> Policy:
    """policy, also allowing the runner's endpoints."""
    extra = runner_endpoints(path)
    return Policy(domains=policy.domains + extra.domains, cidrs=policy.cidrs + extra.cidrs,
                  source=f"{policy.source} + {extra.source}")
