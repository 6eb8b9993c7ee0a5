"""Where did the job connect, and should it have?

Input: conn.log and dns.log DataFrames (one or more sessions), an optional
``Policy`` (``cicd_audit.policy``) and optional baseline logs of earlier runs
of the same job. Output: findings of four analyzers:

``unexpected_destination``
    Connections to addresses that DNS resolved from names the policy does not
    allow (or allows only on other ports). One finding per registered domain.
``direct_ip``
    Connections to addresses that no DNS answer in the same session explains
    and no policy CIDR allows. One finding per address.
``unexpected_lookup``
    Names outside the policy that were looked up but never connected to. One
    finding per registered domain, less severe than a connection.
``new_destination`` / ``new_domain``
    With a baseline: destinations (registered domain, or address when no name
    explains it) and looked-up registered domains never seen in the baseline.

Attribution is per session: a DNS answer explains connections of its own
session only (a cached answer from another run proves nothing). Connections
that never leave the host or the link are not destinations: loopback,
multicast, broadcast and unspecified addresses, ICMP control messages
(neighbour discovery, router solicitation, MLD, errors, redirects: see
``icmp_control``), and the DNS queries themselves (port 53 to an address the
session's dns.log shows answering queries).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import domains
from .dnsindex import DnsIndex, build_index, canon_ip, factorize_keys, parse_ip, positions_in, session_labels, ts_ns
from .findings import concat_findings, human_bytes, make_findings

# ---- thresholds (named, with the reason) -------------------------------------

#: Bytes sent to one unexpected destination that make the finding ``high``:
#: more than a few API calls, enough for a source tree or a credentials dump.
EXFIL_BYTES = 1_000_000

#: Example names/addresses kept in a finding's evidence: enough to act on,
#: small enough to read.
MAX_EXAMPLES = 5

#: DNS port: connections to a resolver on it are the lookups themselves.
DNS_PORT = 53


#: ICMP types that a program sends to reach a host: echo (ping, and the carrier
#: of ICMP tunnels such as ptunnel or icmpsh) and the old query/reply pairs.
#: Zeek (and our recorder) put the ICMP type in ``id.orig_p`` and the
#: counterpart type (or, for one-way messages, the code) in ``id.resp_p``.
#: Every other ICMP message is control traffic of the link or about another
#: flow, not a destination the job chose: neighbour discovery (ICMPv6 133-137,
#: RFC 4861), MLD (130-132, 143; RFC 2710, RFC 3810), inverse ND (141-142,
#: RFC 3122), SEND and multicast router discovery (148-153; RFC 3971, RFC 4286),
#: ICMPv4 router discovery (9-10, RFC 1256), redirects, and error messages
#: (v4 3, 4, 5, 11, 12; v6 1-4), which answer some other connection.
ICMP4_QUERY_TYPES = frozenset({8, 0, 13, 14, 15, 16, 17, 18})  # echo, timestamp, information, address mask (RFC 792, RFC 950)
ICMP6_QUERY_TYPES = frozenset({128, 129, 139, 140})  # echo (RFC 4443), node information (RFC 4620)

_ip = parse_ip
_canon = canon_ip


def icmp_control(proto, orig_p, resp_h) -> bool:
    """True for an ICMP conn.log row that is control traffic rather than a contacted destination.

    ``proto`` is conn.log's ``proto`` ("icmp" for ICMPv4 and ICMPv6 alike; the
    address family tells them apart), ``orig_p`` the ICMP type.
    """
    if proto != "icmp":
        return False
    if orig_p is None or orig_p != orig_p:  # missing type: we cannot tell, keep the row
        return False
    a = parse_ip(resp_h)
    v6 = a is not None and a.version == 6
    return int(orig_p) not in (ICMP6_QUERY_TYPES if v6 else ICMP4_QUERY_TYPES)


def not_a_destination(addr) -> bool:
    """Addresses that never leave the host or link: loopback, multicast, broadcast, unspecified."""
    a = _ip(addr) if isinstance(addr, str) else None
    if a is None:
        return True
    return bool(
        a.is_loopback or a.is_multicast or a.is_unspecified or (a.version == 4 and str(a) == "255.255.255.255")
    )


def is_public(addr) -> bool:
    a = _ip(addr)
    return bool(a is not None and a.is_global)


def resolutions(dns: pd.DataFrame, index: DnsIndex | None = None) -> pd.DataFrame:
    """Distinct (session, address, name) triples: DNS answers that resolved ``name`` to ``address``.

    The name is the query (CNAME targets in the same answer resolve on its behalf).
    """
    ix = index if index is not None else build_index(dns)
    r = ix.resolutions
    if r.empty:
        return pd.DataFrame(columns=["session", "address", "name"])
    return pd.DataFrame(
        {"session": r["session"].to_numpy(dtype=object), "address": r["address"].to_numpy(dtype=object),
         "name": ix.names[r["name_code"].to_numpy(dtype=np.int64)]}
    )


def destination_table(conn: pd.DataFrame, dns: pd.DataFrame, policy=None, index: DnsIndex | None = None) -> pd.DataFrame:
    """One row per (session, address, port, proto) the job connected to, with what explains it.

    Columns: session, address, port, proto, connections, orig_bytes, resp_bytes,
    first_seen, names (names DNS resolved to the address in that session),
    registered_domains, resolver (DNS traffic to the session's resolver),
    local (never leaves host/link, or ICMP control traffic: ``icmp_control``),
    public, allowed (None without a policy), rule (the allowing rule, as text).
    """
    cols = [
        "session", "address", "port", "proto", "connections", "orig_bytes", "resp_bytes", "first_seen",
        "names", "registered_domains", "resolver", "local", "public", "allowed", "rule",
    ]
    if conn is None or conn.empty or "id.resp_h" not in conn.columns:
        return pd.DataFrame(columns=cols)
    n = len(conn)
    sess = session_labels(conn)
    addr = conn["id.resp_h"].to_numpy(dtype=object, na_value=None)
    port = conn["id.resp_p"].to_numpy(dtype="float64", na_value=np.nan) if "id.resp_p" in conn else np.full(n, np.nan)
    proto = conn["proto"].to_numpy(dtype=object, na_value="") if "proto" in conn else np.full(n, "", dtype=object)
    ob = conn["orig_bytes"].to_numpy(dtype="float64", na_value=0.0) if "orig_bytes" in conn else np.zeros(n)
    rb = conn["resp_bytes"].to_numpy(dtype="float64", na_value=0.0) if "resp_bytes" in conn else np.zeros(n)
    ts = ts_ns(conn)
    control = np.zeros(n, dtype=bool)
    icmp = proto == "icmp"
    if icmp.any() and "id.orig_p" in conn:
        oport = conn["id.orig_p"].to_numpy(dtype="float64", na_value=np.nan)
        control[icmp] = [icmp_control("icmp", t_, a_) for t_, a_ in zip(oport[icmp], addr[icmp])]
    # control rows form their own groups (an ICMPv4 error and an echo can share a resp_p)
    g = pd.DataFrame({"session": sess, "address": addr, "port": port, "proto": np.where(control, "icmp-control", proto)})
    keys = [pd.factorize(g[c].to_numpy(dtype=object) if c != "port" else g[c].to_numpy())[0] for c in g.columns]
    key = np.zeros(n, dtype=np.int64)
    for k in keys:
        key = key * (int(k.max()) + 2 if len(k) else 1) + (k + 1)
    gc, gu = pd.factorize(key)
    first_idx = np.full(len(gu), n, dtype=np.int64)
    np.minimum.at(first_idx, gc, np.arange(n))
    t = g.iloc[first_idx].reset_index(drop=True)
    t["connections"] = np.bincount(gc, minlength=len(gu))
    t["orig_bytes"] = np.bincount(gc, weights=ob, minlength=len(gu)).astype(np.int64)
    t["resp_bytes"] = np.bincount(gc, weights=rb, minlength=len(gu)).astype(np.int64)
    first_ts = np.full(len(gu), np.iinfo(np.int64).max)
    np.minimum.at(first_ts, gc, ts)
    t["first_seen"] = pd.to_datetime(first_ts, utc=True)
    t["address"] = [(_canon(a) or a) for a in t["address"]]
    t["port"] = t["port"].astype("Int64") if len(t) else pd.Series(dtype="Int64")
    t_control = (t["proto"] == "icmp-control").to_numpy(dtype=bool)
    t["proto"] = t["proto"].where(~t_control, "icmp")

    ix = index if index is not None else build_index(dns)
    r = ix.resolutions
    # only the addresses connected to need their names (a few thousand of a million answers)
    ra = r["address"].to_numpy(dtype=object)
    m = pd.Index(ra).isin(pd.unique(t["address"].to_numpy(dtype=object))) if len(ra) else np.zeros(0, dtype=bool)
    codes = r["name_code"].to_numpy(dtype=np.int64)[m]
    code_map: dict = {}
    for s_, a_, c_ in zip(r["session"].to_numpy(dtype=object)[m].tolist(), ra[m].tolist(), codes.tolist()):
        code_map.setdefault((s_, a_), set()).add(c_)
    names_of = {k: sorted(ix.names[list(v)].tolist()) for k, v in code_map.items()}
    regs_of = {k: sorted(set(ix.registered[list(v)].tolist())) for k, v in code_map.items()}
    keys = list(zip(t["session"].to_numpy(dtype=object).tolist(), t["address"].to_numpy(dtype=object).tolist()))
    t["names"] = [names_of.get(k, []) for k in keys]
    t["registered_domains"] = [list(regs_of.get(k, [])) for k in keys]

    resolvers = ix.resolvers
    t["resolver"] = [(p == DNS_PORT or p == 853) and (s, a) in resolvers
                     for s, a, p in zip(t["session"], t["address"], t["port"].fillna(-1))]
    t["local"] = np.array([not_a_destination(a) for a in t["address"]], dtype=bool) | t_control
    t["public"] = [is_public(a) for a in t["address"]]
    allowed, rule = [], []
    for r in t.itertuples(index=False):
        if policy is None:
            allowed.append(None)
            rule.append(None)
            continue
        p = None if pd.isna(r.port) else int(r.port)
        cr = policy.cidr_rule_for(r.address, p)
        if cr is not None:
            allowed.append(True)
            rule.append(str(cr))
            continue
        hit = None
        for nm in r.names:
            for dr in policy.domain_rules_for(nm):
                if dr.port is None or dr.port == p:
                    hit = dr
                    break
            if hit:
                break
        allowed.append(hit is not None)
        rule.append(str(hit) if hit else None)
    t["allowed"] = pd.array(allowed, dtype="boolean") if len(t) else pd.array([], dtype="boolean")
    t["rule"] = rule
    return t[cols]


def without_policy(dest: pd.DataFrame) -> pd.DataFrame:
    """A ``destination_table`` as it is made without a policy: nothing allowed, no rule."""
    if dest.empty:
        return dest
    return dest.assign(allowed=pd.array([None] * len(dest), dtype="boolean"), rule=[None] * len(dest))


def _examples(values, k=MAX_EXAMPLES):
    out = []
    for v in values:
        if v not in out:
            out.append(v)
        if len(out) >= k:
            break
    return out


def _ports_text(ports):
    ps = sorted({int(p) for p in ports if not pd.isna(p)})
    if not ps:
        return ""
    return "port " + str(ps[0]) if len(ps) == 1 else "ports " + ", ".join(map(str, ps[:5])) + (" ..." if len(ps) > 5 else "")


def unexpected_destinations(dest: pd.DataFrame, policy) -> pd.DataFrame:
    """``unexpected_destination`` findings: DNS-explained connections the policy does not allow."""
    if policy is None or dest.empty:
        return make_findings([])
    d = dest[~dest["resolver"] & ~dest["local"] & (dest["names"].map(len) > 0) & ~dest["allowed"].fillna(False).astype(bool)]
    if d.empty:
        return make_findings([])
    d = d.assign(indicator=[rd[0] for rd in d["registered_domains"]])
    recs = []
    for ind, grp in d.groupby("indicator", sort=True):
        names = sorted({nm for lst in grp["names"] for nm in lst})
        ports = sorted({int(p) for p in grp["port"].dropna()})
        port_only = [nm for nm in names if policy.allowed_ports(nm)]
        ob, rb = int(grp["orig_bytes"].sum()), int(grp["resp_bytes"].sum())
        conns = int(grp["connections"].sum())
        sev = "high" if ob >= EXFIL_BYTES else "medium"
        why = (
            f"allowed only on port(s) {', '.join(str(p) for p in sorted(set().union(*[policy.allowed_ports(nm) for nm in port_only])))}"
            if port_only and len(port_only) == len(names)
            else "not in the policy"
        )
        summary = (
            f"{conns} connection{'s' if conns != 1 else ''} to {', '.join(_examples(names, 2))}"
            f"{' and others' if len(names) > 2 else ''} ({_ports_text(grp['port'])}), {why}; "
            f"{human_bytes(ob)} sent, {human_bytes(rb)} received"
        )
        recs.append(
            {
                "analyzer": "unexpected_destination",
                "severity": sev,
                "indicator": ind,
                "summary": summary,
                "evidence": {
                    "names": _examples(names, 20),
                    "addresses": _examples(sorted(set(grp["address"])), 20),
                    "ports": ports,
                    "connections": conns,
                    "orig_bytes": ob,
                    "resp_bytes": rb,
                    "first_seen": grp["first_seen"].min().isoformat(),
                    "reason": "port" if why.startswith("allowed only") else "name",
                },
                "sessions": sorted({s for s in grp["session"] if s}),
            }
        )
    return make_findings(recs)


def direct_ip(dest: pd.DataFrame, policy=None) -> pd.DataFrame:
    """``direct_ip`` findings: connections no DNS answer explains (and no CIDR allows)."""
    if dest.empty:
        return make_findings([])
    d = dest[~dest["resolver"] & ~dest["local"] & (dest["names"].map(len) == 0)]
    if policy is not None:
        d = d[~d["allowed"].fillna(False).astype(bool)]
    if d.empty:
        return make_findings([])
    recs = []
    for addr, grp in d.groupby("address", sort=True):
        pub = bool(grp["public"].iloc[0])
        ob, rb = int(grp["orig_bytes"].sum()), int(grp["resp_bytes"].sum())
        conns = int(grp["connections"].sum())
        protos = sorted({p for p in grp["proto"] if p})
        scope = "public" if pub else "non-public"
        recs.append(
            {
                "analyzer": "direct_ip",
                "severity": "high" if pub else "medium",
                "indicator": addr,
                "summary": (
                    f"{conns} connection{'s' if conns != 1 else ''} to {scope} address {addr} "
                    f"({'/'.join(protos)} {_ports_text(grp['port'])}) that no DNS answer in the session explains; "
                    f"{human_bytes(ob)} sent, {human_bytes(rb)} received"
                ),
                "evidence": {
                    "address": addr,
                    "public": pub,
                    "ports": sorted({int(p) for p in grp["port"].dropna()}),
                    "protos": protos,
                    "connections": conns,
                    "orig_bytes": ob,
                    "resp_bytes": rb,
                    "first_seen": grp["first_seen"].min().isoformat(),
                },
                "sessions": sorted({s for s in grp["session"] if s}),
            }
        )
    return make_findings(recs)


def lookup_table(dns: pd.DataFrame, index: DnsIndex | None = None) -> pd.DataFrame:
    """Distinct (session, name) lookups with registered domain, query count, NXDOMAINs, answer addresses
    (a sorted tuple)."""
    cols = ["session", "name", "registered_domain", "queries", "nxdomain", "addresses", "first_seen"]
    ix = index if index is not None else build_index(dns)
    if not len(ix):
        return pd.DataFrame(columns=cols)
    suniq = ix.session.values
    key = ix.session.codes.astype(np.int64) * len(ix.names) + ix.name_code  # (session, name) pairs in first-seen order
    gcodes, guniq = factorize_keys(key, len(ix.session.values) * len(ix.names))
    del key
    n = len(guniq)
    rcode = ix.rcode
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, gcodes, ix.ts)
    name_code = guniq % len(ix.names)
    agg = pd.DataFrame(
        {  # object columns: they share the index's strings (a string column would copy a tunnel's million names)
            "session": pd.Series(np.asarray(suniq, dtype=object)[guniq // len(ix.names)], dtype=object),
            "name": pd.Series(ix.names[name_code], dtype=object),
            "registered_domain": pd.Series(ix.registered[name_code], dtype=object),
            "queries": np.bincount(gcodes, minlength=n),
            "nxdomain": np.bincount(gcodes[rcode == 3], minlength=n),
            "first_seen": pd.to_datetime(first, utc=True),
        }
    )
    agg["addresses"] = _answered_addresses(ix, suniq, guniq)
    return agg[cols]


def _answered_addresses(ix: DnsIndex, suniq, lookup_keys) -> list:
    """The addresses DNS answered for each lookup (keyed session code * names + name code), as a
    sorted tuple: on codes, and the lookups without answers (a tunnel's million) share the one
    empty tuple, so they cost no Python object at all."""
    out = [()] * len(lookup_keys)
    r = ix.resolutions
    if r.empty:
        return out
    sc = positions_in(pd.Index(np.asarray(suniq, dtype=object)), r["session"])
    key = sc * len(ix.names)
    key += r["name_code"].to_numpy()
    row = pd.Index(lookup_keys).get_indexer(key)
    del key
    row[sc < 0] = -1
    del sc
    text, code = np.asarray(r["address"].cat.categories, dtype=object), r["address"].cat.codes.to_numpy()
    rank = np.empty(len(text), dtype=np.int64)
    rank[np.argsort(text, kind="stable")] = np.arange(len(text))  # the addresses' order as text
    keep = row >= 0
    row, code = row[keep], code[keep]
    order = np.lexsort((rank[code], row))
    row, code = row[order], code[order]
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    ends = np.r_[starts[1:], len(row)]
    for a, b in zip(starts.tolist(), ends.tolist()):
        out[row[a]] = tuple(text[code[a:b]].tolist())
    return out


def unexpected_lookups(lookups: pd.DataFrame, dest: pd.DataFrame, policy) -> pd.DataFrame:
    """``unexpected_lookup`` findings: names outside the policy that no connection followed."""
    if policy is None or lookups.empty:
        return make_findings([])
    connected = set()
    if not dest.empty:
        connected = set(zip(dest["session"], dest["address"]))
    out = lookups[[not policy.allows_name(n) for n in lookups["name"]]]
    out = out[[not any((s, a) in connected for a in addrs) for s, addrs in zip(out["session"], out["addresses"])]]
    if out.empty:
        return make_findings([])
    recs = []
    for ind, grp in out.groupby("registered_domain", sort=True):
        names = sorted(set(grp["name"]))
        nq = int(grp["queries"].sum())
        nx = int(grp["nxdomain"].sum())
        reverse = all(domains.is_reverse_name(n) for n in names)
        recs.append(
            {
                "analyzer": "unexpected_lookup",
                "severity": "info" if reverse else "low",
                "indicator": ind,
                "summary": (
                    f"{len(names)} name{'s' if len(names) != 1 else ''} outside the policy looked up "
                    f"({', '.join(_examples(names, 2))}{' ...' if len(names) > 2 else ''}), {nq} quer{'ies' if nq != 1 else 'y'}"
                    f"{f', {nx} NXDOMAIN' if nx else ''}, no connection followed"
                ),
                "evidence": {
                    "names": _examples(names, 20),
                    "unique_names": len(names),
                    "queries": nq,
                    "nxdomain": nx,
                    "reverse_lookups": reverse,
                    "first_seen": grp["first_seen"].min().isoformat() if grp["first_seen"].notna().any() else None,
                },
                "sessions": sorted({s for s in grp["session"] if s}),
            }
        )
    return make_findings(recs)


def _dest_identity(dest: pd.DataFrame) -> pd.Series:
    """A destination's identity for baselines: its registered domain, or its address when no name explains it."""
    return pd.Series(
        [rd[0] if len(rd) else a for rd, a in zip(dest["registered_domains"], dest["address"])], index=dest.index, dtype=object
    )


def baseline_drift(dest: pd.DataFrame, lookups: pd.DataFrame, base_dest: pd.DataFrame, base_lookups: pd.DataFrame) -> pd.DataFrame:
    """``new_destination`` and ``new_domain`` findings against baseline sessions."""
    recs = []
    seen_dest = set()
    if not base_dest.empty:
        bd = base_dest[~base_dest["resolver"] & ~base_dest["local"]]
        seen_dest = set(_dest_identity(bd)) if not bd.empty else set()
    seen_domains = set(base_lookups["registered_domain"]) if not base_lookups.empty else set()
    new_dest_ids = set()
    if not dest.empty:
        d = dest[~dest["resolver"] & ~dest["local"]]
        if not d.empty:
            d = d.assign(identity=_dest_identity(d))
            d = d[~d["identity"].isin(seen_dest)]
            for ind, grp in d.groupby("identity", sort=True):
                new_dest_ids.add(ind)
                conns = int(grp["connections"].sum())
                ob = int(grp["orig_bytes"].sum())
                names = sorted({nm for lst in grp["names"] for nm in lst})
                recs.append(
                    {
                        "analyzer": "new_destination",
                        "severity": "medium",
                        "indicator": ind,
                        "summary": (
                            f"{conns} connection{'s' if conns != 1 else ''} to {ind} "
                            f"({_ports_text(grp['port'])}), never contacted in the baseline; {human_bytes(ob)} sent"
                        ),
                        "evidence": {
                            "names": _examples(names, 20),
                            "addresses": _examples(sorted(set(grp["address"])), 20),
                            "ports": sorted({int(p) for p in grp["port"].dropna()}),
                            "connections": conns,
                            "orig_bytes": ob,
                            "resp_bytes": int(grp["resp_bytes"].sum()),
                            "first_seen": grp["first_seen"].min().isoformat(),
                        },
                        "sessions": sorted({s for s in grp["session"] if s}),
                    }
                )
    if not lookups.empty:
        lk = lookups[~lookups["registered_domain"].isin(seen_domains) & ~lookups["registered_domain"].isin(new_dest_ids)]
        for ind, grp in lk.groupby("registered_domain", sort=True):
            names = sorted(set(grp["name"]))
            nq = int(grp["queries"].sum())
            recs.append(
                {
                    "analyzer": "new_domain",
                    "severity": "low",
                    "indicator": ind,
                    "summary": (
                        f"{ind} looked up ({len(names)} name{'s' if len(names) != 1 else ''}, {nq} quer{'ies' if nq != 1 else 'y'}), "
                        "never looked up in the baseline"
                    ),
                    "evidence": {"names": _examples(names, 20), "unique_names": len(names), "queries": nq},
                    "sessions": sorted({s for s in grp["session"] if s}),
                }
            )
    return make_findings(recs)


def baseline_tables(baseline_conn, baseline_dns, index: DnsIndex | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The baseline's destination and lookup tables (no policy): what drift is measured against."""
    bix = index if index is not None else build_index(baseline_dns)
    return destination_table(baseline_conn, baseline_dns, None, bix), lookup_table(baseline_dns, bix)


def analyze_destinations(conn, dns, policy=None, baseline_conn=None, baseline_dns=None, index: DnsIndex | None = None,
                         baseline: tuple[pd.DataFrame, pd.DataFrame] | None = None):
    """All destination findings, plus the tables behind them: (findings, dest, lookups).

    The baseline comes as its logs, or as its ``baseline_tables`` already made (``baseline``)."""
    ix = index if index is not None else build_index(dns)
    dest = destination_table(conn, dns, policy, ix)
    lookups = lookup_table(dns, ix)
    frames = [direct_ip(dest, policy)]
    if policy is not None:
        frames += [unexpected_destinations(dest, policy), unexpected_lookups(lookups, dest, policy)]
    if baseline is None and (baseline_conn is not None or baseline_dns is not None):
        baseline = baseline_tables(baseline_conn, baseline_dns)
    if baseline is not None:
        frames.append(baseline_drift(dest, lookups, *baseline))
    return concat_findings(frames), dest, lookups
