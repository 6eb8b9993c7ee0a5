"""One pass over dns.log that every analyzer shares: distinct names, their registered domains, resolutions.

String work (lower-casing, registered domains, address parsing) is done once
per *distinct* value, never per row, and rows are referred to by integer
codes, so a million-row log costs a few factorize calls.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from . import domains

#: Ports of link-local name services (mDNS, LLMNR, NetBIOS-NS): their queries
#: never leave the segment, so they are neither tunnels nor lookups to report.
LOCAL_NAME_PORTS = (5353, 5355, 137)


def session_labels(df: pd.DataFrame | None) -> np.ndarray:
    """The session of each row ('' when the frame has no session column)."""
    if df is None:
        return np.empty(0, dtype=object)
    if "session" not in df.columns:
        return np.full(len(df), "", dtype=object)
    return df["session"].astype(object).fillna("").astype(str).to_numpy(dtype=object)


def ts_ns(df: pd.DataFrame) -> np.ndarray:
    """``ts`` as int64 nanoseconds since the epoch (0 when absent), without going through Python objects."""
    if df is None or "ts" not in df.columns:
        return np.zeros(0 if df is None else len(df), dtype=np.int64)
    s = df["ts"]
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        arr = s.dt.as_unit("ns").array
        out = arr.asi8.copy()
        out[np.asarray(s.isna())] = 0
        return out
    return (pd.to_numeric(s, errors="coerce").fillna(0).to_numpy(dtype=float) * 1e9).astype(np.int64)


@lru_cache(maxsize=1 << 16)
def parse_ip(text):
    """An ip_address (IPv4-mapped IPv6 as IPv4), or None."""
    if not isinstance(text, str) or not text or (":" not in text and not text[0].isdigit()):
        return None
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a


def canon_ip(text):
    a = parse_ip(text)
    return str(a) if a is not None else None


def _col(df, name, dtype, na):
    if name not in df.columns:
        return np.full(len(df), na, dtype=dtype)
    return df[name].to_numpy(dtype=dtype, na_value=na)


@dataclass
class DnsIndex:
    rows: np.ndarray  # positions (iloc) of the analysed dns rows
    session: np.ndarray  # session of each analysed row
    name_code: np.ndarray  # each analysed row's index into ``names``
    names: np.ndarray  # distinct normalised names (lower case, no trailing dot)
    spelling: np.ndarray  # first spelling seen of each name (case kept, for features)
    registered: np.ndarray  # registered domain of each name
    ts: np.ndarray  # int64 ns of each analysed row
    resolutions: pd.DataFrame  # distinct (session, name_code, address) from A/AAAA answers

    def __len__(self):
        return len(self.rows)


def build_index(dns: pd.DataFrame | None) -> DnsIndex:
    """Index the rows that carry a query name and did not go to a link-local name service."""
    empty = DnsIndex(
        rows=np.empty(0, np.int64), session=np.empty(0, object), name_code=np.empty(0, np.int64),
        names=np.empty(0, object), spelling=np.empty(0, object), registered=np.empty(0, object),
        ts=np.empty(0, np.int64), resolutions=pd.DataFrame({"session": [], "name_code": [], "address": []}),
    )
    if dns is None or dns.empty or "query" not in dns.columns:
        return empty
    qcodes, quniq = pd.factorize(dns["query"].to_numpy(dtype=object, na_value=None), use_na_sentinel=True)
    quniq = np.asarray(quniq, dtype=object)
    valid_u = np.array([isinstance(u, str) and u not in ("", ".") for u in quniq], dtype=bool)
    keep = qcodes >= 0
    keep[keep] = valid_u[qcodes[keep]]
    rport = _col(dns, "id.resp_p", "float64", np.nan)
    keep &= ~np.isin(rport, LOCAL_NAME_PORTS)
    rows = np.nonzero(keep)[0]
    if not len(rows):
        return empty
    norm = np.array([u.rstrip(".").lower() if isinstance(u, str) else "" for u in quniq], dtype=object)
    ncodes, nuniq = pd.factorize(norm)
    nuniq = np.asarray(nuniq, dtype=object)
    spelling = np.empty(len(nuniq), dtype=object)
    spelling[ncodes[::-1]] = quniq[::-1]  # first spelling wins
    name_code = ncodes[qcodes[rows]]
    # only names that occur in kept rows need a registered domain
    used = np.zeros(len(nuniq), dtype=bool)
    used[name_code] = True
    registered = np.full(len(nuniq), "", dtype=object)
    idx = np.nonzero(used)[0]
    # the names are already distinct and normalised: no second factorize/normalise pass
    registered[idx] = np.asarray(domains._registered_unique(nuniq[idx].tolist()), dtype=object)
    sess_all = session_labels(dns)
    session = sess_all[rows]
    ts = ts_ns(dns)[rows]
    return DnsIndex(
        rows=rows, session=session, name_code=name_code, names=nuniq, spelling=spelling, registered=registered,
        ts=ts, resolutions=_resolutions(dns, rows, session, name_code),
    )


def _resolutions(dns, rows, session, name_code) -> pd.DataFrame:
    if "answers" not in dns.columns:
        return pd.DataFrame({"session": [], "name_code": [], "address": []})
    column = dns["answers"].array
    if isinstance(column.dtype, getattr(pd, "ArrowDtype", ())):
        r_idx, acodes, auniq = _arrow_answers(column, rows)
    else:
        r_idx, acodes, auniq = _list_answers(column, rows)
    if r_idx is None:
        return pd.DataFrame({"session": [], "name_code": [], "address": []})
    canon = np.array([canon_ip(a) for a in auniq], dtype=object)
    is_ip = np.array([c is not None for c in canon], dtype=bool)
    m = is_ip[acodes]
    r_idx, acodes = r_idx[m], acodes[m]
    scodes, suniq = pd.factorize(session)
    key = (scodes[r_idx].astype(np.int64) * (int(name_code.max()) + 1) + name_code[r_idx]) * (len(auniq) + 1) + acodes
    _, first = np.unique(key, return_index=True)
    r_idx, acodes = r_idx[first], acodes[first]
    return pd.DataFrame(
        {"session": np.asarray(suniq, dtype=object)[scodes[r_idx]], "name_code": name_code[r_idx], "address": canon[acodes]}
    )


def _arrow_answers(column, rows):
    """The loader's Arrow list column: (each answer's place in ``rows``, its
    code, the distinct answers), or Nones when there are none. Flattened and
    dictionary-encoded in Arrow: no Python object per row or per answer."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = pa.array(column).take(pa.array(rows))  # the column's chunks (pandas gives a ChunkedArray)
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    lens = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if not lens.any():
        return None, None, None
    r_idx = np.repeat(np.arange(len(rows)), lens)
    encoded = pc.dictionary_encode(pc.list_flatten(lists))
    codes = encoded.indices
    present = pc.is_valid(codes).to_numpy(zero_copy_only=False)  # an unset element inside a vector: no answer
    acodes = codes.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return r_idx[present], acodes[present], np.asarray(encoded.dictionary.to_pylist(), dtype=object)


def _list_answers(column, rows):
    """The same from an object column of Python lists (the loader without pyarrow)."""
    ans = np.asarray(column, dtype=object)[rows]
    # answers are lists (or NA); flatten them with plain Python, once, instead of Series.map + explode
    lens = np.zeros(len(ans), dtype=np.int64)
    present = ~pd.isna(ans)
    try:  # the loader gives a list or NA per row: len() through map() runs at C speed
        lens[present] = np.fromiter(map(len, ans[present]), dtype=np.int64, count=int(present.sum()))
    except TypeError:  # something else (a bare string?) slipped in: only lists and tuples are answers
        lens[:] = [len(a) if isinstance(a, (list, tuple)) else 0 for a in ans]
    if not lens.any():
        return None, None, None
    has = np.nonzero(lens)[0]
    sub = ans[has].tolist()
    if not all(type(a) is list or type(a) is tuple for a in sub):
        keep = [isinstance(a, (list, tuple)) for a in sub]
        lens[has[~np.asarray(keep, dtype=bool)]] = 0
        has = np.nonzero(lens)[0]
        sub = ans[has].tolist()
    flat = [x for a in sub for x in a]
    r_idx = np.repeat(has, lens[has])
    acodes, auniq = pd.factorize(np.asarray(flat, dtype=object))
    return r_idx, acodes, auniq
