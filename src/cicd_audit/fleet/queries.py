"""Fleet queries for an incident, over the whole store on Dask.

API (each returns a pandas DataFrame; ``since``/``until``: anything pd.Timestamp reads, UTC)::

    find_indicator(store_url, indicators, since=None, until=None, ...)
        # every job that looked up, got an answer pointing to, or connected to an indicator:
        # a domain suffix ("evil.com" matches evil.com and *.evil.com) or an IP/CIDR
        # columns: repository, workflow, session, indicator, kind (lookup|answer|connection),
        #          count, distinct (names or addresses), examples, first_seen, last_seen
    new_destinations(store_url, since=None, until=None, repository=None, workflow=None, ...)
        # registered domains each workflow looked up for the first time in its stored history,
        # columns: repository, workflow, week (Monday), destination, first_seen, session
    top_talkers(store_url, by="destination", n=20, since=None, until=None, ...)
        # bytes sent and received, connections: per destination address, session or workflow

Fast by reading little: only the columns a query needs, only the date
partitions of the time range (one listing of the ``date=`` directories; files
of other dates are never listed or opened), and ``ts``, repository/workflow
and ``session IN (...)`` filters pushed down to the Parquet reader (row-group
statistics). The indicator search matches inside Arrow (``indicator_scan``):
only matching rows become pandas. Aggregations are tree reductions, so no
worker and not the client ever holds more than one partition plus the (small)
partial results.
"""

from __future__ import annotations

import ipaddress
import re

import pandas as pd

from ..errors import UsageError
from .cluster import compute_kwargs, dask_client
from .indicator_scan import RESOLVED, arrow_dataset, hits_meta, scan_conn, scan_dns, suffix_expression
from .store import Store

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_*-]([a-z0-9_-]{0,62})?\.)*[a-z0-9_-]{1,63}$")


# ---- indicators ---------------------------------------------------------------


def parse_indicators(indicators) -> tuple[list, list]:
    """(domain suffixes, networks) from strings; a bad one is a UsageError naming it."""
    domains, nets = [], []
    for raw in indicators:
        s = str(raw).strip()
        try:
            nets.append(ipaddress.ip_network(s, strict=False))
            continue
        except ValueError:
            pass
        d = s.lower().rstrip(".").removeprefix("*.")
        if not _DOMAIN.match(d):
            raise UsageError(f"indicator {raw!r}: neither a domain name nor an IP address or CIDR")
        domains.append(d)
    if not domains and not nets:
        raise UsageError("give at least one indicator (a domain suffix, an IP address or a CIDR)")
    return domains, nets


def _in_range(df, since, until):
    keep = pd.Series(True, index=df.index)
    if since is not None:
        keep &= df["ts"] >= _utc(since)
    if until is not None:
        keep &= df["ts"] < _utc(until)
    return df[keep.fillna(False).to_numpy(dtype=bool)]


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _date_dirs(store: Store, log: str, since, until) -> list:
    """The log's date=... directories inside [since, until]: pruning by listing one level, before any file is opened."""
    try:
        entries = store.fs.ls(store.path(log), detail=False)
    except FileNotFoundError:
        return []
    lo = _utc(since).strftime("%Y-%m-%d") if since is not None else None
    hi = _utc(until).strftime("%Y-%m-%d") if until is not None else None
    out = []
    for e in entries:
        name = e.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith("date="):
            continue
        d = name[len("date="):]
        if (lo is None or d >= lo) and (hi is None or d <= hi):
            out.append(e.rstrip("/"))
    return sorted(out)


def _files(store: Store, log: str, since, until) -> list:
    """The log's Parquet files in the date directories of the range, in a stable order."""
    return [f for d in _date_dirs(store, log, since, until) for f in sorted(store.fs.find(d)) if f.endswith(".parquet")]


#: Files per Dask task: one session's file is small (tens of KB), so a task scans a batch of them in
#: one pyarrow dataset (C++ reads, filters and projects; Python sees only matching rows).
FILES_PER_TASK = 250


def _expression(filters):
    import pyarrow.dataset as ds

    expr = None
    for col, op, val in filters or []:
        f = ds.field(col)
        e = {"==": lambda: f == val, ">=": lambda: f >= val, "<": lambda: f < val, "<=": lambda: f <= val,
             "in": lambda: f.isin(list(val)), "suffix": lambda: suffix_expression(f, val)}[op]()
        expr = e if expr is None else expr & e
    return expr


def _scan_files(files, store_url, storage_options, base, columns, filters):
    """One task: a batch of files scanned by pyarrow with the filter pushed into the scan."""
    from .columns import to_frame

    store = Store.open(store_url, storage_options)
    table = arrow_dataset(files, store, base).to_table(columns=columns, filter=_expression(filters))
    frame = to_frame(table)
    for c in ("session", "repository", "workflow"):
        frame[c] = frame[c].astype(object)
    return frame


def _read(store: Store, log: str, columns: list, since=None, until=None, filters=None, meta=None):
    """A dask frame of one log: the columns asked for plus the job identity, from the dates of the range only.

    ``filters`` ((column, op, value): ==, >=, <, <=, in, suffix) and the time range are evaluated inside
    the Parquet scan (row groups skipped by their statistics, rows before they reach pandas).
    """
    import dask.dataframe as dd

    files = _files(store, log, since, until)
    if not files:
        return None
    cols = list(dict.fromkeys([*columns, "session", "repository", "workflow"]))
    filters = list(filters or [])
    if since is not None:
        filters.append(("ts", ">=", _utc(since)))
    if until is not None:
        filters.append(("ts", "<", _utc(until)))
    groups = [files[i:i + FILES_PER_TASK] for i in range(0, len(files), FILES_PER_TASK)]
    if meta is None:
        meta = _scan_files(groups[0][:1], store.url(), store.storage_options, store.path(log), cols, filters).iloc[:0]
    return dd.from_map(_scan_files, groups, store_url=store.url(), storage_options=store.storage_options,
                       base=store.path(log), columns=cols, filters=filters, meta=meta, enforce_metadata=False)


_HIT_COLUMNS = ["repository", "workflow", "session", "indicator", "kind", "count", "distinct", "examples",
                "first_seen", "last_seen"]

#: matching names or addresses shown per (session, indicator, kind): enough to recognise the pattern.
MAX_EXAMPLES = 3


def _summarise_hits(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (job, indicator, kind): how often, how many distinct names/addresses, a few of them, when."""
    if df.empty:
        return pd.DataFrame(columns=_HIT_COLUMNS)
    df = df.sort_values(["ts", "match"], kind="stable")
    g = df.groupby(["repository", "workflow", "session", "indicator", "kind"], sort=False, observed=True)
    out = g.agg(count=("ts", "size"), distinct=("match", "nunique"), first_seen=("ts", "min"), last_seen=("ts", "max"),
                examples=("match", lambda m: list(dict.fromkeys(m))[:MAX_EXAMPLES])).reset_index()
    return out[_HIT_COLUMNS]


def _identity_as_text(df):
    return df.astype({"repository": object, "workflow": object, "session": object})


def _scan(store: Store, log: str, task, since, until, **kwargs):
    """A dask frame of hits: ``task`` over the log's files of the range, FILES_PER_TASK at a time."""
    import dask.dataframe as dd

    files = _files(store, log, since, until)
    if not files:
        return None
    groups = [files[i:i + FILES_PER_TASK] for i in range(0, len(files), FILES_PER_TASK)]
    return dd.from_map(task, groups, store_url=store.url(), storage_options=store.storage_options,
                       base=store.path(log), since=since, until=until, meta=hits_meta(), enforce_metadata=False,
                       **kwargs)


def find_indicator(store_url, indicators, since=None, until=None, scheduler="sync", storage_options=None) -> pd.DataFrame:
    """Two passes over the range's files, each matched in Arrow (indicator_scan): dns.log (lookups, answers, and
    the addresses matching names resolved to), then conn.log (connections to indicator networks or to those
    addresses)."""
    import dask

    domains, nets = parse_indicators(indicators)
    store = Store.open(store_url, storage_options)
    since, until = (None if t is None else _utc(t) for t in (since, until))
    with dask.config.set({"dataframe.convert-string": False}), dask_client(scheduler) as client:
        kw = compute_kwargs(client)
        dns = _scan(store, "dns", scan_dns, since, until, domains=domains, nets=nets)
        found = dns.compute(**kw) if dns is not None else hits_meta()
        is_resolved = (found["kind"] == RESOLVED).to_numpy(dtype=bool)
        resolved = {(s, a): i for s, a, i in zip(found["session"][is_resolved], found["match"][is_resolved],
                                                 found["indicator"][is_resolved])}
        parts = [found[~is_resolved]]
        conn = _scan(store, "conn", scan_conn, since, until, nets=nets, resolved=resolved) if (nets or resolved) else None
        if conn is not None:
            parts.append(conn.compute(**kw))
    parts = [p for p in parts if not p.empty]
    hits = pd.concat(parts, ignore_index=True) if parts else hits_meta()
    out = _summarise_hits(hits)
    return out.sort_values(["first_seen", "session", "kind"], kind="stable").reset_index(drop=True)


# ---- new destinations per workflow per week --------------------------------------


_FIRST_COLUMNS = ["repository", "workflow", "destination", "first_seen", "session"]


def _first_domains(part: pd.DataFrame) -> pd.DataFrame:
    """Per partition: the first lookup of each (repository, workflow, registered domain)."""
    from ..analyzers import registered_domains

    part = _identity_as_text(part)
    part = part[part["query"].notna()]
    d = part.assign(destination=registered_domains(part["query"].astype(object)).to_numpy())
    d = d[d["destination"] != ""]
    return _earliest(d.rename(columns={"ts": "first_seen"})[_FIRST_COLUMNS])


def _earliest(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values(["first_seen", "session"], kind="stable")
    return df.drop_duplicates(["repository", "workflow", "destination"]).reset_index(drop=True)


def _first_meta():
    return pd.DataFrame({"repository": pd.Series(dtype=object), "workflow": pd.Series(dtype=object),
                         "destination": pd.Series(dtype=object), "first_seen": pd.Series(dtype="datetime64[ns, UTC]"),
                         "session": pd.Series(dtype=object)})


def new_destinations(store_url, since=None, until=None, repository=None, workflow=None, scheduler="sync",
                     storage_options=None) -> pd.DataFrame:
    """Registered domains a workflow looked up for the first time in [since, until), by ISO week.

    "First time" looks at the whole stored history before ``until``, so the
    scan reads every date up to it, but only the ts and query columns.
    """
    import dask

    store = Store.open(store_url, storage_options)
    filters = []
    if repository:
        filters.append(("repository", "==", repository))
    if workflow:
        filters.append(("workflow", "==", workflow))
    with dask.config.set({"dataframe.convert-string": False}), dask_client(scheduler) as client:
        dns = _read(store, "dns", ["ts", "query"], None, until, filters)
        if dns is None:
            return pd.DataFrame(columns=["repository", "workflow", "week", *_FIRST_COLUMNS[2:]])
        if until is not None:
            dns = dns[dns["ts"] < _utc(until)]
        first = dns.reduction(_first_domains, aggregate=_earliest, combine=_earliest, meta=_first_meta(),
                              split_every=8).compute(**compute_kwargs(client))
    if since is not None:
        first = first[first["first_seen"] >= _utc(since)]
    week = first["first_seen"].dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time.dt.strftime("%Y-%m-%d")
    out = first.assign(week=week.to_numpy())[["repository", "workflow", "week", "destination", "first_seen", "session"]]
    return out.sort_values(["repository", "workflow", "week", "first_seen", "destination"]).reset_index(drop=True)


# ---- top talkers --------------------------------------------------------------------

TALKER_KEYS = {"destination": ["id.resp_h"], "session": ["repository", "workflow", "session"],
               "workflow": ["repository", "workflow"]}


def _talker_part(part, by, since, until):
    part = _identity_as_text(_in_range(part, since, until))
    keys = TALKER_KEYS[by]
    part = part.assign(sent=part["orig_bytes"].astype("Float64").fillna(0).astype("float64"),
                       received=part["resp_bytes"].astype("Float64").fillna(0).astype("float64"),
                       connections=1.0)
    for k in keys:
        part[k] = part[k].astype(object)
    return part.groupby(keys, sort=False)[["sent", "received", "connections"]].sum().reset_index()


def _talker_combine(df, by):
    return df.groupby(TALKER_KEYS[by], sort=False)[["sent", "received", "connections"]].sum().reset_index()


def top_talkers(store_url, by="destination", n=20, since=None, until=None, scheduler="sync",
                storage_options=None) -> pd.DataFrame:
    """The ``n`` biggest senders by bytes sent (conn.log orig_bytes), with bytes received and connections."""
    import dask

    if by not in TALKER_KEYS:
        raise UsageError(f"--by {by}: expected one of {', '.join(TALKER_KEYS)}")
    keys = TALKER_KEYS[by]
    store = Store.open(store_url, storage_options)
    meta = pd.DataFrame({**{k: pd.Series(dtype=object) for k in keys},
                         **{c: pd.Series(dtype="float64") for c in ("sent", "received", "connections")}})
    with dask.config.set({"dataframe.convert-string": False}), dask_client(scheduler) as client:
        conn = _read(store, "conn", ["ts", "id.resp_h", "orig_bytes", "resp_bytes"], since, until)
        if conn is None:
            return meta
        tot = conn.reduction(_talker_part, aggregate=_talker_combine, combine=_talker_combine, meta=meta,
                             chunk_kwargs={"by": by, "since": since, "until": until},
                             aggregate_kwargs={"by": by}, combine_kwargs={"by": by},
                             split_every=8).compute(**compute_kwargs(client))
    tot = tot.sort_values(["sent", *keys], ascending=[False] + [True] * len(keys)).head(n).reset_index(drop=True)
    return tot.astype({"sent": "int64", "received": "int64", "connections": "int64"})
