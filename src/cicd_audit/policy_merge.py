"""A repository's own policy combined with the admin's, as the agent's admin allows.

Teams know what their jobs need; admins own what any job may reach. The
runner agent takes a policy from the repository (``job start --repo-policy
FILE``) and combines it with the admin's by one of two rules, the admin's
choice (``cicd-audit agent --repository-policies``):

``narrow``
    Only what both allow: the repository can take away, never add. Safe to
    turn on for every repository.
``extend``
    What either allows: the repository adds its own destinations. Only for
    repositories whose policy file the admin trusts as much as their own
    (a pull request can change it).

The intersection is exact, rule by rule: the names a domain rule covers
(one name, or every name under one) and a CIDR's addresses are nested or
disjoint, so two rules meet in one of them or not at all; their ports meet
when one rule allows any port or both allow the same one. A lookup allowed
by both policies only through rules whose ports differ is not allowed.
"""

from __future__ import annotations

from .policy import CidrRule, DomainRule, Policy

MODES = ("ignore", "narrow", "extend")


def combine(admin: Policy, repository: Policy, mode: str) -> Policy:
    """The job's policy: the admin's and the repository's, by mode ("ignore": the admin's)."""
    if mode == "ignore":
        return admin
    if mode == "extend":
        domains, cidrs = _unique(admin.domains + repository.domains), _unique(admin.cidrs + repository.cidrs)
    elif mode == "narrow":
        domains = _unique(m for a in admin.domains for r in repository.domains if (m := _meet_domains(a, r)))
        cidrs = _unique(m for a in admin.cidrs for r in repository.cidrs if (m := _meet_cidrs(a, r)))
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return Policy(domains=tuple(domains), cidrs=tuple(cidrs),
                  source=f"{admin.source} {mode}ed by {repository.source}")


def _meet_ports(a: int | None, b: int | None) -> tuple[bool, int | None]:
    """(whether two port limits meet, the limit where they do); None allows any port."""
    if a is None or b is None or a == b:
        return True, b if a is None else a
    return False, None


def _covers(rule: DomainRule, other: DomainRule) -> bool:
    """Whether every name `other` allows, `rule` allows too (ports aside)."""
    if not rule.wildcard:
        return not other.wildcard and other.pattern == rule.pattern
    return other.pattern.endswith("." + rule.pattern) or (other.wildcard and other.pattern == rule.pattern)


def _meet_domains(a: DomainRule, b: DomainRule) -> DomainRule | None:
    meet, port = _meet_ports(a.port, b.port)
    if not meet:
        return None
    inner = b if _covers(a, b) else a if _covers(b, a) else None
    if inner is None:
        return None
    return inner if inner.port == port else DomainRule(inner.pattern, inner.wildcard, port)


def _meet_cidrs(a: CidrRule, b: CidrRule) -> CidrRule | None:
    meet, port = _meet_ports(a.port, b.port)
    if not meet or a.network.version != b.network.version:
        return None
    inner = b if b.network.subnet_of(a.network) else a if a.network.subnet_of(b.network) else None
    if inner is None:
        return None
    return inner if inner.port == port else CidrRule(inner.network, port)


def _unique(rules) -> list:
    """Rules in order, each once (by what it allows, not how it was written)."""
    seen, out = set(), []
    for rule in rules:
        key = (rule.pattern, rule.wildcard, rule.port) if isinstance(rule, DomainRule) else (rule.network, rule.port)
        if key not in seen:
            seen.add(key)
            out.append(rule)
    return out
