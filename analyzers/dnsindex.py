"""What every analyzer reads of dns.log, made in one pass: distinct names, their registered
domains, resolutions, and per query a few bytes of codes and numbers (``DnsIndex``).

``IndexBuilder`` takes the log piece by piece (``loading.load_for_analysis`` feeds it
16 MiB chunks, so dns.log is never a frame), ``build_index`` a whole frame as one
piece; both give the same index. String work (lower-casing, registered domains,
address parsing) is done once per *distinct* value, never per row, and rows are
referred to by integer codes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from . import domains

#: Ports of link-local name services (mDNS, LLMNR, NetBIOS-NS): their queries
#: never leave the segment, so they are neither tunnels nor lookups to report.
LOCAL_NAME_PORTS = (5353, 5355, 137)

#: The dns.log columns ``IndexBuilder`` reads (a reader may parse only these).
INDEX_COLUMNS = frozenset({"ts", "uid", "id.orig_h", "id.resp_h", "id.resp_p", "query", "qtype", "qtype_name",
                           "rcode", "answers", "session"})


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
class Coded:
    """A per-row text column as codes into its distinct values (-1: unset): one
    value object per distinct text, one to four bytes a row."""

    codes: np.ndarray  # int8, int16 or int32: the narrowest the values need
    values: np.ndarray  # object
    present: bool = True  # whether the log has the column at all

    def take(self, keep) -> Coded:
        return Coded(self.codes[keep], self.values, self.present)

    def decoded(self, na=None) -> np.ndarray:
        """The values per row (``na`` where unset), sharing the distinct value objects."""
        out = np.empty(len(self.codes), dtype=object)
        out[:] = na
        ok = self.codes >= 0
        out[ok] = self.values[self.codes[ok]]
        return out


@dataclass
class DnsIndex:
    """What the analyzers read of dns.log: the rows that carry a query name and did not go to a
    link-local name service, as codes and numbers, and a few facts about every row.

    Per indexed row: ``session`` (``Coded``), ``name_code`` (into ``names``), ``ts`` (int64 ns), ``qtype``
    and ``rcode`` (float, NaN unset), ``qtype_name``, ``orig_h`` and ``resp_h`` (``Coded``) and
    ``proc_row`` (the row of conn.log's process table with the row's uid, -1 for none)."""

    session: Coded  # session of each analysed row
    name_code: np.ndarray  # each analysed row's index into ``names`` (int32)
    names: np.ndarray  # distinct normalised names (lower case, no trailing dot)
    spelling: np.ndarray  # first spelling seen of each name (case kept, for features)
    registered: np.ndarray  # registered domain of each name ('' for names no analysed row uses)
    ts: np.ndarray  # int64 ns of each analysed row
    qtype: np.ndarray  # float32
    rcode: np.ndarray  # float32
    qtype_name: Coded
    orig_h: Coded
    resp_h: Coded
    proc_row: np.ndarray
    resolutions: pd.DataFrame  # distinct (session, name_code, address) from A/AAAA answers (categorical, int32)
    # of every row, indexed or not
    total_rows: int = 0
    ts_min: pd.Timestamp | None = None
    ts_max: pd.Timestamp | None = None
    resolvers: frozenset = frozenset()  # (session, address) of every server a query went to
    sessions: tuple = ()  # the log's session labels, as ``analysis.session_names`` reads a frame's

    def __len__(self):
        return len(self.name_code)

    def take(self, keep: np.ndarray) -> DnsIndex:
        """The same index with only the analysed rows ``keep`` selects."""
        return replace(
            self, session=self.session.take(keep), name_code=self.name_code[keep], ts=self.ts[keep],
            qtype=self.qtype[keep], rcode=self.rcode[keep], qtype_name=self.qtype_name.take(keep),
            orig_h=self.orig_h.take(keep), resp_h=self.resp_h.take(keep), proc_row=self.proc_row[keep],
        )


def build_index(dns: pd.DataFrame | None, proc_uids: pd.Index | None = None) -> DnsIndex:
    """The index of a whole dns.log frame: ``IndexBuilder`` given it as one piece.
    ``proc_uids``: ``processes.proc_uid_index(conn)``, the uids ``proc_row`` points into."""
    builder = IndexBuilder(proc_uids)
    if dns is not None:
        builder.add(dns)
        builder.sessions_of(dns)
    return builder.finish()


class _Interner:
    """Distinct values in order of first appearance, each with its code."""

    def __init__(self):
        self.code: dict = {}
        self.values: list = []
        self.present = False  # for a column's values: whether any piece had the column

    def codes_of(self, uniques) -> np.ndarray:
        """Codes of a piece's distinct values (new ones appended in the order given)."""
        out = np.empty(len(uniques), dtype=np.int64)
        code, values = self.code, self.values
        for i, v in enumerate(uniques):
            c = code.get(v)
            if c is None:
                c = code[v] = len(values)
                values.append(v)
            out[i] = c
        return out

    def encode(self, values) -> np.ndarray:
        """Each of a piece's values as its code (-1: unset), through one factorize of the piece."""
        codes, uniq = pd.factorize(values, use_na_sentinel=True)
        glob = np.append(self.codes_of(list(uniq)), -1)  # code -1 (unset) reads the last: -1
        return glob[codes]

    def array(self) -> np.ndarray:
        out = np.empty(len(self.values), dtype=object)
        out[:] = self.values
        return out


class IndexBuilder:
    """Builds a ``DnsIndex`` piece by piece (a log read chunk by chunk, session by session),
    holding only the index: never the log's text or its frame. The result does not depend on
    how the log was cut: every code is given in order of first appearance in the whole log,
    as factorizing the whole frame would, and ``build_index`` of a frame is this with one piece.

        builder = IndexBuilder(proc_uids)
        for piece, label in pieces:     # in the log's order
            builder.add(piece, session=label)
        index = builder.finish()
    """

    def __init__(self, proc_uids: pd.Index | None = None):
        self._proc_uids = proc_uids
        self._names = _Interner()  # normalised names of every row's query, as whole-frame factorize orders them
        self._spelling: list = []
        self._sessions = _Interner()  # sessions of analysed rows
        self._sessions.present = True
        self._answers = _Interner()  # answers that are addresses, by their text
        self._answer_canon: list = []
        self._qtype_names, self._orig_h, self._resp_h = _Interner(), _Interner(), _Interner()
        self._cols: dict[str, list] = {k: [] for k in
                                       ("session", "name_code", "ts", "qtype", "rcode", "qtype_name", "orig_h",
                                        "resp_h", "proc_row")}
        self._triples: list[np.ndarray] = []  # (session code, name code, answer code) per distinct resolution
        self._resolvers: set = set()
        self._labels: list = []
        self.total_rows = 0
        self._ts_min = self._ts_max = None

    def add(self, dns: pd.DataFrame, session: str | None = None) -> None:
        """One piece of dns.log, after the pieces before it. ``session``: its rows' session
        (default: the frame's ``session`` column, or '' without one)."""
        n = len(dns)
        if not n:
            return
        self.total_rows += n
        sess_all = None if session is not None else session_labels(dns)
        self._note_times(dns)
        self._note_resolvers(dns, session, sess_all)
        if "query" not in dns.columns:
            return
        # on the column itself: Arrow encodes it without a Python string per row
        qcodes, quniq = pd.factorize(dns["query"].array, use_na_sentinel=True)
        quniq = np.asarray(quniq, dtype=object)
        valid_u = np.array([isinstance(u, str) and u not in ("", ".") for u in quniq], dtype=bool)
        norm = [u.rstrip(".").lower() if isinstance(u, str) else "" for u in quniq]
        known = len(self._names.values)
        name_of_u = self._names.codes_of(norm)
        fresh = name_of_u >= known  # first seen here: in quniq's order, first wins
        first_u = {}
        for u, c in zip(np.nonzero(fresh)[0].tolist(), name_of_u[fresh].tolist()):
            first_u.setdefault(c, u)
        names = self._names.values
        for c in range(known, len(names)):
            raw = quniq[first_u[c]]
            self._spelling.append(names[c] if raw == names[c] else raw)  # one object when they are the same
        keep = qcodes >= 0
        keep[keep] = valid_u[qcodes[keep]]
        rport = _col(dns, "id.resp_p", "float64", np.nan)
        keep &= ~np.isin(rport, LOCAL_NAME_PORTS)
        rows = np.nonzero(keep)[0]
        if not len(rows):
            return
        if sess_all is None:  # one session for the whole piece: one code
            session_code = np.full(len(rows), self._sessions.codes_of([session])[0])
        else:  # codes of the analysed rows' sessions, in order of first appearance among them
            session_code = self._sessions.encode(sess_all[rows])
        name_code = name_of_u[qcodes[rows]]
        cols = self._cols
        cols["session"].append(_narrowed(session_code, self._sessions))
        cols["name_code"].append(name_code.astype(np.int32))
        cols["ts"].append(ts_ns(dns)[rows])
        cols["qtype"].append(_col(dns, "qtype", "float64", np.nan)[rows].astype(np.float32))  # exact: counts < 2**24
        cols["rcode"].append(_col(dns, "rcode", "float64", np.nan)[rows].astype(np.float32))
        cols["qtype_name"].append(_coded(dns, "qtype_name", rows, self._qtype_names))
        cols["orig_h"].append(_coded(dns, "id.orig_h", rows, self._orig_h))
        cols["resp_h"].append(_coded(dns, "id.resp_h", rows, self._resp_h))
        if self._proc_uids is not None and len(self._proc_uids):
            cols["proc_row"].append(self._proc_rows(dns, rows))
        self._note_resolutions(dns, rows, session_code, name_code)

    def sessions_of(self, dns: pd.DataFrame) -> None:
        """The session labels of a whole frame, as ``analysis.session_names`` reads them."""
        if "session" in dns.columns:
            s = dns["session"]
            cats = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else sorted(set(s.dropna().astype(str)))
            self._labels = [str(c) for c in cats]

    def session_labels(self, labels) -> None:
        """The session labels of logs read session by session (several directories)."""
        self._labels = [str(c) for c in labels]

    def finish(self) -> DnsIndex:
        cols = {k: _joined(self._cols.pop(k)) for k in list(self._cols)}  # each piece list freed once joined
        name_code = cols["name_code"] if len(cols["name_code"]) else np.empty(0, np.int32)
        if len(name_code):
            names = self._names.array()
            spelling = np.empty(len(names), dtype=object)
            spelling[:] = self._spelling
        else:  # nothing analysed: no names either, whatever the unanalysed rows asked
            names = spelling = np.empty(0, dtype=object)
        self._names = None  # its dict: the biggest thing the builder holds
        registered = np.full(len(names), "", dtype=object)
        used = np.zeros(len(names), dtype=bool)
        used[name_code] = True
        idx = np.nonzero(used)[0]
        for at in range(0, len(idx), REGISTERED_BATCH):  # the names are already distinct and normalised
            part = idx[at:at + REGISTERED_BATCH]
            registered[part] = np.asarray(domains._registered_unique(names[part].tolist()), dtype=object)
        return DnsIndex(
            session=_coded_column(cols["session"], self._sessions),
            name_code=name_code, names=names, spelling=spelling, registered=registered,
            ts=cols["ts"] if len(name_code) else np.empty(0, np.int64),
            qtype=cols["qtype"] if len(name_code) else np.empty(0, np.float32),
            rcode=cols["rcode"] if len(name_code) else np.empty(0, np.float32),
            qtype_name=_coded_column(cols["qtype_name"], self._qtype_names),
            orig_h=_coded_column(cols["orig_h"], self._orig_h),
            resp_h=_coded_column(cols["resp_h"], self._resp_h),
            # no processes to point at (Zeek's logs, a replayed capture): one -1 standing for every row
            proc_row=_codes(cols["proc_row"]) if len(cols["proc_row"]) else np.broadcast_to(np.int32(-1), name_code.shape),
            resolutions=self._resolutions(len(names)),
            total_rows=self.total_rows, ts_min=self._ts_min, ts_max=self._ts_max,
            resolvers=frozenset(self._resolvers), sessions=tuple(self._labels),
        )

    def _note_times(self, dns) -> None:
        if "ts" not in dns.columns:
            return
        lo, hi = dns["ts"].min(), dns["ts"].max()
        if pd.notna(lo) and (self._ts_min is None or lo < self._ts_min):
            self._ts_min = lo
        if pd.notna(hi) and (self._ts_max is None or hi > self._ts_max):
            self._ts_max = hi

    def _note_resolvers(self, dns, session, sess_all) -> None:
        """(session, server) of every row: ``session`` for all, else each row's in ``sess_all``."""
        if "id.resp_h" not in dns.columns:
            return
        codes, servers = pd.factorize(dns["id.resp_h"].array, use_na_sentinel=True)
        servers = np.asarray(servers, dtype=object)
        if session is not None:
            pairs = [(session, a) for a in servers]
        else:
            scodes, sessions = pd.factorize(sess_all)
            key = np.unique(scodes[codes >= 0].astype(np.int64) * len(servers) + codes[codes >= 0])
            pairs = zip(np.asarray(sessions, dtype=object)[key // len(servers)], servers[key % len(servers)])
        self._resolvers.update((s, canon_ip(a) or a) for s, a in pairs)

    def _proc_rows(self, dns, rows) -> np.ndarray:
        if "uid" not in dns.columns:
            return np.full(len(rows), -1, dtype=np.int32)
        uid = dns["uid"].to_numpy(dtype=object, na_value=None)[rows]
        return self._proc_uids.get_indexer(uid).astype(np.int32)

    def _note_resolutions(self, dns, rows, session_code, name_code) -> None:
        if "answers" not in dns.columns:
            return
        column = dns["answers"].array
        if isinstance(column.dtype, getattr(pd, "ArrowDtype", ())):
            r_idx, acodes, auniq = _arrow_answers(column, rows)
        else:
            r_idx, acodes, auniq = _list_answers(column, rows)
        if r_idx is None:
            return
        canon = [canon_ip(a) for a in auniq]
        is_ip = np.array([c is not None for c in canon], dtype=bool)
        m = is_ip[acodes]
        r_idx, acodes = r_idx[m], acodes[m]
        if not len(r_idx):
            return
        ip_u = pd.unique(acodes)  # the addresses answered, in order of first appearance: their global codes
        known = len(self._answers.values)
        glob = np.full(len(auniq), -1, dtype=np.int64)
        glob[ip_u] = self._answers.codes_of(auniq[ip_u].tolist())
        self._answer_canon += [canon[u] for u, g in zip(ip_u.tolist(), glob[ip_u].tolist()) if g >= known]
        t = np.stack([session_code[r_idx], name_code[r_idx], glob[acodes]])
        self._triples.append(np.unique(t, axis=1).astype(np.int32))

    def _resolutions(self, n_names: int) -> pd.DataFrame:
        if not self._triples:
            return pd.DataFrame({"session": [], "name_code": [], "address": []})
        t = np.concatenate(self._triples, axis=1)
        self._triples.clear()
        # one int64 key per triple (sorting it sorts by session, name, answer): a fraction of
        # the memory of a unique over the triples' columns; worked in place, each part taken off
        # as int32 as soon as it is known (the peak of reading a big log is here)
        n_answers = len(self._answer_canon)
        key = t[0].astype(np.int64)
        key *= n_names
        key += t[1]
        key *= n_answers
        key += t[2]
        del t
        key = np.unique(key)
        answer = (key % n_answers).astype(np.int32)
        key //= n_answers
        name = (key % n_names).astype(np.int32)
        key //= n_names
        t = (key.astype(np.int32), name, answer)
        del key, name, answer
        canon = np.empty(len(self._answer_canon), dtype=object)
        canon[:] = self._answer_canon
        canon_code, canon_uniq = pd.factorize(canon)  # two spellings of an address: one category
        # categories of Python strings: a row costs its codes, and reading a column back shares the strings
        return pd.DataFrame({
            "session": pd.Categorical.from_codes(t[0], categories=pd.Index(self._sessions.array(), dtype=object)),
            "name_code": t[1],
            "address": pd.Categorical.from_codes(canon_code.astype(np.int32)[t[2]],
                                                 categories=pd.Index(canon_uniq, dtype=object)),
        })


#: Distinct names given to the Public Suffix grouping at a time (its working lists are per name).
REGISTERED_BATCH = 100_000


def _coded(dns, column, rows, interner: _Interner) -> np.ndarray:
    if column not in dns.columns:
        return np.full(len(rows), -1, dtype=np.int8)
    interner.present = True
    return _narrowed(interner.encode(dns[column].array.take(rows)), interner)


def _narrow_type(count: int):
    """The narrowest signed integer for codes below count and -1 (unset)."""
    return np.int8 if count < 1 << 7 else np.int16 if count < 1 << 15 else np.int32


def _narrowed(codes, interner: _Interner) -> np.ndarray:
    """A piece's codes in the narrowest integers the values so far need: joining the pieces
    widens them to the widest piece's, so the held pieces cost a byte a row for most columns."""
    return codes.astype(_narrow_type(len(interner.values)))


def _coded_column(codes, interner: _Interner) -> Coded:
    """A column's codes in the narrowest integers its distinct values need (most have a handful)."""
    values = interner.array()
    if not len(codes):
        codes = np.empty(0, dtype=np.int8)
    return Coded(codes.astype(_narrow_type(len(values)), copy=False), values, interner.present)


def _joined(parts: list) -> np.ndarray:
    if not parts:
        return np.empty(0)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _codes(a) -> np.ndarray:
    return a.astype(np.int32, copy=False) if len(a) else np.empty(0, dtype=np.int32)


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


def positions_in(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Each value of a categorical column's position in ``index`` (-1: not in it), looked up
    once per category."""
    at = index.get_indexer(values.cat.categories)
    codes = values.cat.codes.to_numpy()
    return np.where(codes >= 0, at[codes], -1).astype(np.int64)


def factorize_keys(key: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of integer keys in [0, ``space``): a code per key in order of first
    appearance, and the distinct keys. When ``space`` is no larger than the keys, through an
    array of ``space`` first positions instead of a hash table sized for every key (a tenth
    of the memory for ten million queries of a few million names)."""
    n = len(key)
    if space > n:
        codes, uniq = pd.factorize(key)
        return codes, np.asarray(uniq)
    first = np.full(space, n, dtype=np.int64)
    for at in range(0, n, 1 << 20):  # positions a block at a time: no array of every position
        np.minimum.at(first, key[at:at + (1 << 20)], np.arange(at, min(n, at + (1 << 20))))
    uniq = np.flatnonzero(first < n)
    uniq = uniq[np.argsort(first[uniq], kind="stable")]
    del first
    code_of = np.empty(space, dtype=np.int64)
    code_of[uniq] = np.arange(len(uniq))
    return code_of[key], uniq
