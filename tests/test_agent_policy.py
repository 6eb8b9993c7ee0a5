"""recorder/agent_policy.py: which policy file a job gets."""

from __future__ import annotations

import pytest

from cicd_audit.policy import PolicyError
from cicd_audit.recorder.agent_policy import PolicyDirectory

ALLOW = "allowed:\n  domains: [{}]\n"


@pytest.fixture
def policies(tmp_path):
    (tmp_path / "repos" / "org").mkdir(parents=True)
    (tmp_path / "default.yml").write_text(ALLOW.format("pypi.org"))
    (tmp_path / "repos" / "org" / "app.yml").write_text(ALLOW.format("registry.npmjs.org"))
    return PolicyDirectory(tmp_path)


def names(job_policy):
    return {r.pattern for r in job_policy.policy.domains}


def test_a_repository_with_its_own_file_gets_it(policies):
    assert names(policies.for_job({"repository": "org/app"})) == {"registry.npmjs.org"}


def test_other_repositories_get_the_default(policies):
    assert names(policies.for_job({"repository": "org/other"})) == {"pypi.org"}
    assert names(policies.for_job({})) == {"pypi.org"}


@pytest.mark.parametrize("repository", ["../../etc/passwd", "org/../../x", "/abs/path", "org/app/extra", "..", "org/.."])
def test_an_identity_never_names_a_file_outside(policies, tmp_path, repository):
    (tmp_path / "repos" / "x.yml").write_text(ALLOW.format("evil.test"))
    assert names(policies.for_job({"repository": repository})) == {"pypi.org"}


def test_no_default_means_recorded_not_blocked(tmp_path):
    job = PolicyDirectory(tmp_path).for_job({"repository": "org/app"})
    assert job.policy is None and "no default.yml" in job.source


def test_a_changed_file_holds_from_the_next_job(policies, tmp_path):
    assert names(policies.for_job({"repository": "org/app"})) == {"registry.npmjs.org"}
    (tmp_path / "repos" / "org" / "app.yml").write_text(ALLOW.format("ghcr.io"))
    assert names(policies.for_job({"repository": "org/app"})) == {"ghcr.io"}


def test_a_broken_file_is_an_error_naming_it(policies, tmp_path):
    (tmp_path / "repos" / "org" / "app.yml").write_text("allowed: [")
    with pytest.raises(PolicyError, match="app.yml"):
        policies.for_job({"repository": "org/app"})
