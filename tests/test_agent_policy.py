"""recorder/agent/agent_policy.py: which policy file a job gets."""

from __future__ import annotations

import pytest

from cicd_audit.policy import PolicyError
from cicd_audit.recorder.agent.agent_policy import PolicyDirectory

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


def test_a_repository_policy_narrows_the_admins_when_the_agent_says_so(tmp_path):
    (tmp_path / "default.yml").write_text("allowed:\n  domains: [pypi.org, \"*.github.com\"]\n")
    sent = "allowed:\n  domains: [api.github.com, evil.test]\n"
    job = PolicyDirectory(tmp_path, "narrow").for_job_with({}, sent)
    assert names(job) == {"api.github.com"} and job.note is None
    assert job.source == f"{tmp_path / 'default.yml'} narrowed by the repository's policy (job start --repo-policy)"
    assert names(PolicyDirectory(tmp_path, "extend").for_job_with({}, sent)) == {"pypi.org", "github.com",
                                                                               "api.github.com", "evil.test"}


def test_a_repository_policy_is_ignored_by_default_and_says_so(policies):
    job = policies.for_job_with({"repository": "org/app"}, "allowed:\n  domains: [evil.test]\n")
    assert names(job) == {"registry.npmjs.org"} and "ignored" in job.note


def test_a_broken_repository_policy_leaves_the_admins_and_says_why(tmp_path):
    (tmp_path / "default.yml").write_text(ALLOW.format("pypi.org"))
    job = PolicyDirectory(tmp_path, "narrow").for_job_with({}, "allowed: [")
    assert names(job) == {"pypi.org"} and "not used" in job.note and "repo-policy" in job.note


def test_a_repository_policy_never_makes_a_policy_the_admin_did_not(tmp_path):
    job = PolicyDirectory(tmp_path, "extend").for_job_with({}, "allowed:\n  domains: [evil.test]\n")
    assert job.policy is None and "not used" in job.note
