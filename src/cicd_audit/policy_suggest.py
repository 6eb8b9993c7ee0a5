"""`cicd-audit policy suggest`: the allowlist an audit run earned, for a reviewer to approve.

From one or more recorded sessions (audit mode, no policy) it writes a policy
file (`cicd_audit.policy` format) that allows what the job did, and nothing the
analysis flagged:

- every name the job connected to, grouped by registered domain: one name is
  allowed as itself; several names under one registered domain (regional
  endpoints, API and CDN hosts of one service) become ``*.domain``, plus the
  domain itself when it was used too. A tenant of a shared service (a bucket
  under ``s3.amazonaws.com``, a ``cloudfront.net`` distribution) is a
  registered domain of its own by the public suffix list, so it stays exact:
  a wildcard there would allow every other tenant's bucket too, the classic
  place to send stolen data;
- each rule limited to the ports the job used (up to a few; more ports, any
  port);
- names only looked up (DNS answers the job never connected to) as names;
- addresses no DNS answer explains, as host CIDRs with their ports;
- anything a finding of severity medium or above points at (its registered
  domain or address) is left out, listed commented out with the finding, so
  that the reviewer decides and the policy never silently allows an exfiltration.

Each rule carries a comment saying how often, how much and which process. Every
string from the logs is written as a quoted YAML scalar or inside a comment
whose control characters are escaped, and the result is parsed back with the
policy loader before it is returned: what this writes always loads.
"""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from cicd_audit.analyzers.findings import counted, human_bytes
from cicd_audit.policy import PolicyError, parse_domain_rule, parse_policy

#: More distinct ports than this for one rule: the rule allows any port.
MAX_PORTS_PER_RULE = 3
#: Findings at or above this severity keep their destination out of the suggestion.
FLAGGED_SEVERITIES = ("medium", "high", "critical")


@dataclass
class _Use:
    """How the job used one rule's worth of destinations."""

    connections: int = 0
    orig_bytes: int = 0
    ports: set = field(default_factory=set)
    names: set = field(default_factory=set)
    processes: set = field(default_factory=set)


def suggest_policy(logs, sessions: list[str], services_list=None) -> str:
    """The policy text for loaded logs (zeeklog.reader.load_logs) of `sessions`."""
    from cicd_audit.analyzers.analysis import analyze

    result = analyze(logs, sessions=sessions, services_list=services_list)
    flagged = _flagged(result.findings)
    dest = result.destinations
    dest = dest[~dest["local"].astype(bool) & ~dest["resolver"].astype(bool)] if len(dest) else dest
    processes = _processes_by_address(getattr(logs, "conn", None))
    by_domain: dict[str, _Use] = defaultdict(_Use)
    by_address: dict[str, _Use] = defaultdict(_Use)
    for row in dest.itertuples(index=False):
        names = {n for n in (row.names or []) if n}
        domains = sorted({d for d in (row.registered_domains or []) if d})
        port = int(row.port) if pd.notna(row.port) and row.proto in ("tcp", "udp") else None
        targets = [(by_domain[d], d) for d in domains] if names and domains else [(by_address[str(row.address)], None)]
        for use, domain in targets:
            use.connections += int(row.connections)
            use.orig_bytes += int(row.orig_bytes or 0)
            use.processes |= processes.get(str(row.address), set())
            if port is not None:
                use.ports.add(port)
            if domain is not None:
                use.names |= {n for n in names if n == domain or n.endswith("." + domain)}
    looked_up: dict[str, _Use] = defaultdict(_Use)
    for row in result.lookups.itertuples(index=False):
        domain = row.registered_domain if isinstance(row.registered_domain, str) else ""
        if not domain or not row.name:
            continue
        use = by_domain[domain] if domain in by_domain else looked_up[domain]
        use.names.add(row.name)         # a lookup a blocked job makes must be allowed too (else NXDOMAIN)
    lines = [f"# Suggested by `cicd-audit policy suggest` from {counted(len(sessions), 'session')}: "
             + ", ".join(_comment(s) for s in sessions[:5]) + (" ..." if len(sessions) > 5 else ""),
             "# Review every line before enforcing it (cicd-audit record --block --policy FILE).",
             "allowed:", "  domains:"]
    excluded = []
    for domain in sorted(by_domain):
        use = by_domain[domain]
        hits = _flagged_names(domain, use.names, flagged)
        excluded += hits.items()
        if domain not in hits:
            lines += _domain_rules(domain, use, hits)
    for domain in sorted(looked_up):
        hits = _flagged_names(domain, looked_up[domain].names, flagged)
        excluded += hits.items()
        if domain not in hits:
            lines += [_domain_entry(name, "looked up only, never connected to")
                      for name in sorted(looked_up[domain].names - hits.keys())]
    if lines[-1] == "  domains:":
        lines[-1] = "  domains: []"
    lines.append("  cidrs:")
    for address in sorted(by_address, key=_address_order):
        if address in flagged:
            excluded.append((address, flagged[address]))
        else:
            lines += _cidr_rules(address, by_address[address])
    if lines[-1] == "  cidrs:":
        lines[-1] = "  cidrs: []"
    if excluded:
        lines += ["", "# Left out: a finding points at these. Allow them only if you know why the job needs them."]
        lines += [f"#   {_comment(what)}: {_comment(why)}" for what, why in excluded]
    text = "\n".join(lines) + "\n"
    parse_policy(text, "<suggested policy>")       # it must load; a bug here is not the reviewer's problem
    return text


def _flagged_names(domain: str, names: set, flagged: dict) -> dict:
    """{the domain, or each of its names, that a finding points at: why}. A finding's indicator is a
    registered domain or a name (a known service's): a flagged domain takes all its names with it."""
    if domain in flagged:
        return {domain: flagged[domain]}
    return {n: flagged[f] for n in names for f in flagged if n == f or n.endswith("." + f)}


def _domain_rules(domain: str, use: _Use, flagged_names: dict) -> list[str]:
    names = sorted(use.names - flagged_names.keys())
    if len(names) <= 1 or flagged_names:
        # One name, or a flagged name beside them (a wildcard would allow it): each name as itself.
        patterns = names or [domain]
    else:               # several names under one registered domain: its subdomains, and itself if used
        patterns = ([domain] if domain in names else []) + [f"*.{domain}"]
    note = _usage(use) + (f"; names: {', '.join(_comment(n) for n in names[:3])}{' ...' if len(names) > 3 else ''}"
                          if len(names) > 1 else "")
    return [_domain_entry(p if port is None else f"{p}:{port}", note) for p in patterns for port in _ports(use)]


def _domain_entry(entry: str, note: str) -> str:
    """One domain rule line, or a comment when the name from the logs is no DNS name a rule can hold."""
    try:
        parse_domain_rule(entry)
    except PolicyError as exc:
        return f"    # skipped {_comment(entry)}: {_comment(exc.reason)}"
    return f"    - {_quote(entry)}  # {note}"


def _cidr_rules(address: str, use: _Use) -> list[str]:
    ip = ipaddress.ip_address(address)
    prefix = f"{ip}/{ip.max_prefixlen}"
    note = "no DNS answer explains it; " + _usage(use)
    return [f"    - {_quote(prefix if port is None else f'{prefix}:{port}')}  # {note}" for port in _ports(use)]


def _usage(use: _Use) -> str:
    """What a rule's comment says the job did: connections, bytes sent, by which processes."""
    by = f", by {', '.join(_comment(p) for p in sorted(use.processes)[:3])}" if use.processes else ""
    return f"{counted(use.connections, 'connection')}, {human_bytes(use.orig_bytes)} sent{by}"


def _ports(use: _Use) -> list:
    """The ports a rule names: those the job used, or None (any) past MAX_PORTS_PER_RULE."""
    return sorted(use.ports) if 0 < len(use.ports) <= MAX_PORTS_PER_RULE else [None]


def _flagged(findings: pd.DataFrame) -> dict[str, str]:
    """Indicator (registered domain or address) -> why it is left out."""
    out: dict[str, str] = {}
    if findings is None or findings.empty:
        return out
    for row in findings.itertuples(index=False):
        if row.severity in FLAGGED_SEVERITIES and row.indicator:
            out.setdefault(str(row.indicator), f"{row.severity} {row.analyzer}: {row.summary}")
    return out


def _processes_by_address(conn) -> dict[str, set]:
    """Process names that connected to each address, from conn.log's proc.name (when recorded)."""
    if conn is None or "proc.name" not in conn.columns:
        return {}
    pairs = conn[["id.resp_h", "proc.name"]].dropna()
    out: dict[str, set] = defaultdict(set)
    for addr, name in pairs.itertuples(index=False):
        out[str(addr)].add(str(name))
    return out


def _address_order(address: str):
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def _quote(text: str) -> str:
    """A double-quoted YAML scalar (JSON's escapes are YAML's): nothing in it can end the entry."""
    return json.dumps(text, ensure_ascii=True)


def _comment(text) -> str:
    """Text for a comment: one line, control and bidi characters escaped (a comment ends at a newline)."""
    return json.dumps(str(text), ensure_ascii=True)[1:-1]


