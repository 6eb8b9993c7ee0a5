"""Who did it: the processes behind each finding, from conn.log's ``proc.*`` columns.

The recorder (``--processes``; schema ``zeek_schemas/conn_process.tsv``) names
the process that opened each connection: ``proc.pid``, ``proc.name``,
``proc.exe``, ``proc.cgroup`` (which, on a shared runner, names the job's
container or service) and ``proc.step`` (the CI step and action that ran it,
where the platform says: GitHub's ``GITHUB_ACTION``). A DNS transaction's dns.log row shares its ``uid``
with the conn.log row of the DNS flow, so lookups are attributed through it.

``attach_processes(findings, conn, index)`` adds ``evidence["processes"]``
(up to ``MAX_PROCESSES`` of them, most bytes sent first) and ends the
summary with "by NAME (pid N)". A finding is tied to rows by its indicator:
DNS rows whose name is the indicator or under it, and conn rows to the
indicator address or to the addresses in its evidence. Logs without
``proc.*`` columns leave findings unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .dnsindex import DnsIndex, canon_ip, session_labels
from .findings import annotate_findings

PROC_COLUMNS = ("proc.pid", "proc.name", "proc.exe", "proc.cgroup", "proc.step")

#: Processes listed per finding: the culprits, not the whole process table.
MAX_PROCESSES = 5


def _proc_frame(conn: pd.DataFrame) -> pd.DataFrame | None:
    if conn is None or conn.empty or "proc.pid" not in conn.columns:
        return None
    n = len(conn)
    cols = {c.split(".", 1)[1]: (conn[c].to_numpy(dtype=object, na_value=None) if c in conn.columns else np.full(n, None))
            for c in PROC_COLUMNS}
    df = pd.DataFrame({
        "session": session_labels(conn),
        "uid": conn["uid"].to_numpy(dtype=object, na_value=None) if "uid" in conn.columns else np.full(n, None),
        "address": [canon_ip(a) or a for a in conn["id.resp_h"].to_numpy(dtype=object, na_value=None)],
        "orig_bytes": conn["orig_bytes"].to_numpy(dtype="float64", na_value=0) if "orig_bytes" in conn.columns else np.zeros(n),
        **cols,
    })
    return df[df["pid"].notna()]


def _by_uid(procs: pd.DataFrame) -> pd.DataFrame:
    """The process of each uid (its first row): what a DNS row's uid names."""
    return procs.dropna(subset=["uid"]).drop_duplicates("uid").set_index("uid")


def proc_uid_index(conn: pd.DataFrame) -> pd.Index | None:
    """The uids of conn.log's process table, in the order ``DnsIndex.proc_row`` counts them
    (``dnsindex.build_index(dns, proc_uid_index(conn))``); None without process columns."""
    procs = _proc_frame(conn)
    return None if procs is None or procs.empty else _by_uid(procs).index


def _describe(rows: pd.DataFrame) -> list[dict]:
    """Processes, the one that sent the most bytes first (an upload's sender before the tool that looked the name up)."""
    g = rows.fillna({"name": "", "exe": "", "cgroup": "", "step": ""}).groupby(
        ["pid", "name", "exe", "cgroup", "step"]).agg(n=("orig_bytes", "size"), sent=("orig_bytes", "sum"))
    g = g.sort_values(["sent", "n"], ascending=False, kind="stable").head(MAX_PROCESSES)
    out = []
    for (pid, name, exe, cg, step), k in zip(g.index, g["n"]):
        d = {"pid": int(pid), "name": name or None, "exe": exe or None, "connections": int(k)}
        if cg:
            d["cgroup"] = cg
        if step:
            d["step"] = step
        out.append(d)
    return out


def attach_processes(findings: pd.DataFrame, conn: pd.DataFrame, index: DnsIndex) -> pd.DataFrame:
    """``index``: built with ``proc_uid_index(conn)``, so that its rows point into this conn's processes."""
    procs = _proc_frame(conn)
    if procs is None or procs.empty or findings.empty:
        return findings
    by_uid = _by_uid(procs)
    names = pd.Series(index.names) if len(index) else pd.Series([], dtype=object)
    def add(r, ev: dict) -> str | None:
        ind = str(r.indicator).lower()
        sess = set(r.sessions or [])
        rows = []
        if len(names) and not ind.replace(".", "").replace(":", "").isdigit():
            hit = np.nonzero(((names == ind) | names.str.endswith("." + ind)).to_numpy())[0]
            if len(hit):
                m = np.isin(index.name_code, hit)
                if sess:
                    m &= np.isin(index.session.codes, np.nonzero(np.isin(index.session.values, list(sess)))[0])
                at = index.proc_row[m]
                rows.append(by_uid.iloc[pd.unique(at[at >= 0])])
        addrs = {canon_ip(ind) or ind} | {canon_ip(a) or a for a in (ev.get("addresses") or []) + [ev.get("address")] if a}
        pm = procs["address"].isin(addrs)
        if sess:
            pm &= procs["session"].isin(sess)
        rows.append(procs[pm])
        rows = [x for x in rows if not x.empty]
        if not rows:
            return None
        who = _describe(pd.concat(rows, ignore_index=True)[["pid", "name", "exe", "cgroup", "step", "orig_bytes"]])
        ev["processes"] = who
        first = who[0]
        more = f" and {len(who) - 1} more" if len(who) > 1 else ""
        step = f" in CI step {first['step']}" if first.get("step") else ""
        return f"by {first['name'] or first['exe'] or '?'} (pid {first['pid']}){step}{more}"

    return annotate_findings(findings, add)
