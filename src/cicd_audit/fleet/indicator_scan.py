"""One task of the indicator search: a batch of a log's Parquet files matched against the indicators in Arrow.

API::

    scan_dns(files, store_url, storage_options, base, domains, nets, since, until) -> DataFrame (HIT_COLUMNS)
    scan_conn(files, store_url, storage_options, base, nets, resolved, since, until) -> DataFrame (HIT_COLUMNS)
    hits_meta() -> the empty DataFrame both return
    arrow_dataset(files, store, base) -> pyarrow.dataset.Dataset   # the store's Hive partitions as strings

A hit row is (repository, workflow, session, indicator, kind, match, ts) with
kind ``lookup`` (a name under a domain indicator), ``answer`` (a DNS answer in
an indicator network), ``connection``, or ``resolved``: an address that a
matching name resolved to in that session, which the caller turns into the
``resolved`` map of ``scan_conn`` and never shows.

Why it is fast: pyarrow reads only the columns needed, with the time range
(and, for a search without networks, the name suffixes) pushed into the scan;
names are matched by Arrow's UTF-8 kernels and addresses by looking each
distinct value up once (``ipaddress``) and then ``index_in`` over the column.
Only matching rows ever become pandas objects.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .store import SESSION_COLUMN, Store

HIT_COLUMNS = ["repository", "workflow", "session", "indicator", "kind", "match", "ts"]
IDENTITY = ["repository", "workflow", SESSION_COLUMN]
RESOLVED = "resolved"

#: The store's directory partitions, typed: inferring them would read "workflow=2024" as a number.
PARTITIONING = ds.partitioning(pa.schema([("date", pa.string()), ("repository", pa.string()),
                                          ("workflow", pa.string())]), flavor="hive")


def arrow_dataset(files: list, store: Store, base: str) -> ds.Dataset:
    """The files as one dataset; a local store is read by pyarrow's own filesystem, not through Python."""
    fs = store.fs
    if store.protocol in ("file", "local"):
        from pyarrow.fs import LocalFileSystem

        fs = LocalFileSystem()
    return ds.dataset(files, filesystem=fs, format="parquet", partitioning=PARTITIONING, partition_base_dir=base)


def hits_meta() -> pd.DataFrame:
    return pd.DataFrame({**{c: pd.Series(dtype=object) for c in HIT_COLUMNS[:-1]},
                         "ts": pd.Series(dtype="datetime64[ns, UTC]")})


def name_key(query):
    """How a name is compared with the indicators: lower-cased (RFC 4343; tunnels may randomise case,
    0x20 encoding) and without a trailing dot. Works on Arrow arrays and on dataset expressions."""
    return pc.utf8_rtrim(pc.utf8_lower(query), characters=".")


def suffix_expression(field, domains: list):
    """True where the name is a domain indicator or under it (whole labels: "evil.com" is not under "devil.com")."""
    key = name_key(field)
    expr = None
    for d in domains:
        e = (key == d) | pc.ends_with(key, "." + d)
        expr = e if expr is None else expr | e
    return expr


def suffix_indicator(names: pa.Array, domains: list) -> pa.Array:
    """The domain indicator each name falls under (null for none); the first listed wins."""
    key = name_key(names)
    out = pa.nulls(len(names), pa.string())
    for d in reversed(domains):
        hit = pc.or_(pc.equal(key, d), pc.ends_with(key, "." + d))
        out = pc.if_else(pc.fill_null(hit, False), pa.scalar(d, pa.string()), out)
    return out


def _network_of(value: str, nets: list) -> str | None:
    try:
        a = ipaddress.ip_address(value)
    except ValueError:
        return None
    for n in nets:
        if a.version == n.version and a in n:
            return str(n)
    return None


def _lookup(values: pa.Array, table: dict) -> pa.Array:
    """values mapped through ``table`` ({value: text}), null where absent: one hash lookup per row, in C++."""
    if not table:
        return pa.nulls(len(values), pa.string())
    idx = pc.index_in(values, value_set=pa.array(list(table), pa.string()))
    return pc.take(pa.array(list(table.values()), pa.string()), idx)


def network_indicator(addrs: pa.Array, nets: list) -> pa.Array:
    """The indicator network each address falls in (null for none); each distinct address parsed once."""
    distinct = pc.unique(addrs).drop_null().to_pylist()
    found = {a: n for a in distinct if (n := _network_of(a, nets)) is not None}
    return _lookup(addrs, found)


def _text(values) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False).astype(object)


def _hits(rows: pa.Table, indicator: pa.Array, kind: str, match: pa.Array) -> pd.DataFrame:
    ts = rows.column("ts").to_pandas().astype("datetime64[ns, UTC]").reset_index(drop=True)
    return pd.DataFrame({**{c: _text(rows.column(c)) for c in IDENTITY}, "indicator": _text(indicator),
                         "kind": kind, "match": _text(match), "ts": ts}, columns=HIT_COLUMNS)


def _time_filter(since, until):
    expr = None
    for op, t in ((">=", since), ("<", until)):
        if t is not None:
            e = ds.field("ts") >= t if op == ">=" else ds.field("ts") < t
            expr = e if expr is None else expr & e
    return expr


def _and(a, b):
    return b if a is None else a if b is None else a & b


def _read(files, store_url, storage_options, base, columns, filter_) -> pa.Table:
    store = Store.open(store_url, storage_options)
    table = arrow_dataset(files, store, base).to_table(columns=columns, filter=filter_)
    return table.combine_chunks()


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _flat_answers(rows: pa.Table):
    """(each answer, the row it belongs to) of a table's ``answers`` lists."""
    answers = rows.column("answers").combine_chunks() if rows.num_rows else pa.array([], pa.list_(pa.string()))
    return pc.list_flatten(answers), pc.list_parent_indices(answers)


def scan_dns(files, store_url, storage_options, base, domains, nets, since, until) -> pd.DataFrame:
    """Lookups of indicator names, answers in indicator networks, and what the matching names resolved to."""
    # without networks to look for in answers, only matching names ever leave the Parquet scan
    filter_ = _and(_time_filter(since, until), None if nets else suffix_expression(ds.field("query"), domains))
    table = _read(files, store_url, storage_options, base, ["ts", "query", "answers", *IDENTITY], filter_)
    pieces = []
    if domains and table.num_rows:
        ind = suffix_indicator(table.column("query"), domains)
        keep = pc.is_valid(ind)
        looked, ind = table.filter(keep), ind.filter(keep)
        pieces.append(_hits(looked, ind, "lookup", looked.column("query")))
        # the addresses these names resolved to: a connection to one is contact through the indicator
        flat, parent = _flat_answers(looked)
        distinct = pc.unique(flat).drop_null().to_pylist()
        ips = pa.array([a for a in distinct if _is_ip(a)], pa.string())
        keep = pc.fill_null(pc.is_in(flat, value_set=ips), False)
        rows = looked.take(parent.filter(keep))
        resolved = _hits(rows, pc.take(ind, parent.filter(keep)), RESOLVED, flat.filter(keep))
        pieces.append(resolved.drop_duplicates(["session", "match", "indicator"]))
    if nets and table.num_rows:
        flat, parent = _flat_answers(table)
        ind = network_indicator(flat, nets)
        keep = pc.is_valid(ind)
        pieces.append(_hits(table.take(parent.filter(keep)), ind.filter(keep), "answer", flat.filter(keep)))
    pieces = [p for p in pieces if len(p)]
    return pd.concat(pieces, ignore_index=True) if pieces else hits_meta()


def scan_conn(files, store_url, storage_options, base, nets, resolved, since, until) -> pd.DataFrame:
    """Connections to an indicator network, or to an address a matching name resolved to in that session.

    ``resolved``: {(session, address): indicator}. A network match wins over a resolved name.
    """
    filter_ = _time_filter(since, until)
    if not nets:  # only sessions that looked a matching name up can have connected through it
        filter_ = _and(filter_, ds.field(SESSION_COLUMN).isin(sorted({s for s, _ in resolved})))
    table = _read(files, store_url, storage_options, base, ["ts", "id.resp_h", *IDENTITY], filter_)
    if not table.num_rows:
        return hits_meta()
    addrs = table.column("id.resp_h")
    ind = network_indicator(addrs, nets) if nets else pa.nulls(table.num_rows, pa.string())
    if resolved:
        key = pc.binary_join_element_wise(table.column(SESSION_COLUMN), addrs, "\x00")
        via = _lookup(key, {f"{s}\x00{a}": i for (s, a), i in resolved.items()})
        ind = pc.coalesce(ind, via)
    keep = pc.is_valid(ind)
    hits = _hits(table.filter(keep), ind.filter(keep), "connection", addrs.filter(keep))
    return hits if len(hits) else hits_meta()
