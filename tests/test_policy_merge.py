"""policy_merge.combine: a repository's policy narrowing or extending the admin's (pure tier)."""

from __future__ import annotations

import pytest

from cicd_audit.policy import parse_policy
from cicd_audit.policy_merge import combine


def policy(domains=(), cidrs=(), source="<p>"):
    q = ", ".join(f'"{x}"' for x in domains)
    c = ", ".join(f'"{x}"' for x in cidrs)
    return parse_policy(f"allowed:\n  domains: [{q}]\n  cidrs: [{c}]\n", source)


def rules(p):
    return sorted(str(r) for r in p.domains) + sorted(str(r) for r in p.cidrs)


ADMIN = policy(["*.github.com", "pypi.org", "*.pythonhosted.org:443", "registry.npmjs.org"],
               ["10.0.0.0/8", "fd00::/8", "192.0.2.0/24:53"], "admin.yml")


@pytest.mark.parametrize("repo, expected", [
    # exact within a wildcard, and the same exact name: the repository's rule stays
    (policy(["api.github.com", "pypi.org"]), ["api.github.com", "pypi.org"]),
    # a wildcard wider than the admin's keeps the admin's; a narrower one is kept
    (policy(["*.com"]), ["*.github.com"]),
    (policy(["*.files.pythonhosted.org"]), ["*.files.pythonhosted.org:443"]),
    # ports meet: any port meets 443; 80 never meets 443
    (policy(["*.pythonhosted.org:80", "pypi.org:443"]), ["pypi.org:443"]),
    # names the admin does not allow are not allowed
    (policy(["evil.test", "*.npmjs.org"]), ["registry.npmjs.org"]),
    # CIDRs: nested ones meet in the smaller, other families and disjoint ranges do not
    (policy(cidrs=["10.1.0.0/16", "0.0.0.0/0:443", "fd00::/16", "192.0.2.0/24:443"]),
     ["10.0.0.0/8:443", "10.1.0.0/16", "fd00::/16"]),
    # an empty repository policy allows nothing
    (policy(), []),
])
def test_narrow_allows_only_what_both_allow(repo, expected):
    assert rules(combine(ADMIN, repo, "narrow")) == sorted(expected)


def test_narrow_agrees_with_both_policies_name_by_name():
    repo = policy(["*.github.com:443", "raw.githubusercontent.com", "*.org"], ["10.2.0.0/16", "192.0.2.7:53"])
    merged = combine(ADMIN, repo, "narrow")
    names = ["github.com", "api.github.com", "a.b.github.com", "pypi.org", "files.pythonhosted.org",
             "registry.npmjs.org", "raw.githubusercontent.com", "evil.org"]
    for name in names:
        for port in (None, 53, 443, 8080):
            assert merged.allows_name(name, port) == (ADMIN.allows_name(name, port) and repo.allows_name(name, port)), \
                (name, port)
    for addr in ("10.2.3.4", "10.3.0.1", "192.0.2.7", "192.0.2.8", "fd00::1"):
        for port in (None, 53, 443):
            assert merged.allows_address(addr, port) == (ADMIN.allows_address(addr, port)
                                                         and repo.allows_address(addr, port)), (addr, port)


def test_extend_allows_what_either_allows_each_rule_once():
    repo = policy(["pypi.org", "crates.io"], ["203.0.113.0/24"], "repo")
    merged = combine(ADMIN, repo, "extend")
    assert sorted(rules(merged)) == sorted(rules(ADMIN) + ["crates.io", "203.0.113.0/24"])
    assert merged.source == "admin.yml extended by repo"


def test_ignore_is_the_admins_policy():
    assert combine(ADMIN, policy(["evil.test"]), "ignore") is ADMIN


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        combine(ADMIN, ADMIN, "union")
