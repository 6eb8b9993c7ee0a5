"""DNS-tunnel and DNS-exfiltration detector: which registered domains carry data in their query names?

Why one module of ~700 lines: the thresholds below, the features they read, the
score and the finding's wording change together; kept in one file, each
threshold's effect can be read from its definition to the sentence it produces.

Input: a dns.log DataFrame (and optionally conn.log), as ``load_logs`` returns
them. Output: one finding per (session, registered domain) that looks like a
tunnel, with the numbers that convinced us.

How it decides. Query names are grouped by registered domain (Public Suffix
List, offline; see ``domains``). A domain is only a candidate when a session
asks for at least ``MIN_UNIQUE_NAMES`` different names under it: a channel
needs varying names to move data. For candidates we compute per-name features
(``names``) and per-domain features, then score *signals*, each worth a few
points:

=====================  ==========================================================
signal                 meaning
=====================  ==========================================================
``encoded``            several distinct data labels look encoded (+2; +1 more at
                       ``MANY_ENCODED`` labels, +1 more at ``BULK_ENCODED``,
                       +1 when the domain carries nothing but data)
``unusual_qtypes``     most queries use record types data channels favour (TXT,
                       NULL, CNAME, MX, KEY, private types) (+2; +1 for NULL or
                       private types, which ordinary software never asks for)
``many_unique``        many names, almost never repeated (+1, +2 at
                       ``VERY_MANY_UNIQUE``)
``nxdomain``           most answers are NXDOMAIN (+1)
``never_connected``    A/AAAA answers the job never connected to (+1; needs conn.log)
``regular_timing``     queries at near-constant intervals, a polling loop (0
                       points: reported as corroboration only, see below)
``volume``             at least ``VOLUME_BYTES`` of encoded payload (+1)
=====================  ==========================================================

A domain is flagged when it scores at least ``FLAG_SCORE`` *and* one of the
content signals (``encoded``, ``unusual_qtypes``) holds; volume, timing or
NXDOMAIN alone never flag (search-domain floods and pollers are ordinary). Severity: ``critical`` at ``CRITICAL_BYTES`` of encoded payload,
``high`` at ``HIGH_SCORE`` points, else ``medium``.

Stable and monotone. A pipeline gates on the severity (``--fail-on``), so
it must not depend on noise: every point comes from a count of evidence
(distinct encoded labels, queries of a type, answered names, bytes) crossing
a fixed step, so replaying the same queries gives the same score, and adding
queries of the same channel never removes a point. Timing regularity is the
one feature that jitter moves (the same 30 queries measured coefficient of
variation 0.2-0.4 across runs), so it is worth no points: it is reported
in ``signals`` and the summary, never counted.

Not analysed: search-list expansions of another looked-up name
(``pypi.org.ci.svc.cluster.local`` when ``pypi.org`` was asked too), reverse lookups (``in-addr.arpa``/``ip6.arpa``), and link-local
name services (mDNS 5353, LLMNR 5355, NetBIOS 137) whose queries never leave
the segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import domains, label_pool, names
from .dnsindex import (  # noqa: F401
    LOCAL_NAME_PORTS,
    DnsIndex,
    build_index,
    canon_ip,
    factorize_keys,
    positions_in,
    session_labels,
)
from .findings import every, human_bytes, human_duration, make_findings

ANALYZER = "dns_tunnel"

# ---- thresholds (named, with the reason) -------------------------------------

#: A domain needs this many distinct names in a session to be a candidate: a
#: channel must vary its names to move data, and the shortest real handshakes
#: (dnscat2, iodine) already use 12.
MIN_UNIQUE_NAMES = 3

#: Distinct encoded-looking data labels needed for the ``encoded`` signal. Two
#: could be coincidence (two cache keys); three varying payloads are a pattern.
MIN_ENCODED_LABELS = 3

#: ...and at least this share of the domain's distinct names must be encoded
#: (unless there are ``MANY_ENCODED`` of them), so a few odd labels among a busy
#: domain's hundreds of names do not count. Handshakes mix short control names
#: with data names, hence well below half.
MIN_ENCODED_SHARE = 0.25

#: Extra point at this many distinct encoded labels: a slow drip at one query
#: a minute reaches it within a normal job; CDN cache keys do not.
MANY_ENCODED = 20

#: Another point at this many: bulk transfer.
BULK_ENCODED = 200

#: A point when at least ``DATA_ONLY_LABELS`` distinct encoded labels make up
#: at least ``DATA_ONLY_SHARE`` of the domain's names: the domain is used for
#: nothing but data. Services that embed IDs in names also answer ordinary
#: names (``www``, ``api``, ``cdn``) from the same job.
DATA_ONLY_LABELS = 10
DATA_ONLY_SHARE = 0.9

#: Query types data channels use because they carry large or arbitrary answers
#: (RFC 1035, RFC 2535, RFC 6895 for the private range 65280-65534).
UNUSUAL_QTYPES = {5: "CNAME", 10: "NULL", 15: "MX", 16: "TXT", 25: "KEY"}
PRIVATE_QTYPES = (65280, 65534)

#: Types no ordinary client software asks for: NULL and the private range.
RARE_QTYPES = {10}

#: Share of a domain's queries that must use unusual types for the signal.
MIN_UNUSUAL_SHARE = 0.5

#: ``many_unique``: this many distinct names with almost no repeats. Resolvers
#: and caches repeat ordinary names; tunnels never repeat a name.
MANY_UNIQUE = 50
VERY_MANY_UNIQUE = 300
MIN_UNIQUE_RATIO = 0.8

#: ``nxdomain``: share of answered queries that were NXDOMAIN, over at least
#: ``MIN_NX_QUERIES`` answered queries (exfiltration often never gets an answer).
MIN_NX_SHARE = 0.5
MIN_NX_QUERIES = 5

#: ``never_connected``: distinct names with address answers, none connected to.
MIN_ANSWERED_NAMES = 3

#: ``regular_timing``: coefficient of variation of the gaps between queries at or
#: below this, over at least ``MIN_GAPS`` gaps. Polling loops (dnscat2 asks
#: every second) sit far below; human or build-driven lookups far above. It
#: earns ``TIMING_POINTS`` (none): network jitter alone moves a slow drip across
#: the line, and a verdict that flips between runs cannot gate a pipeline.
MAX_TIMING_CV = 0.3
MIN_GAPS = 8
TIMING_POINTS = 0

#: ``volume``: encoded payload bytes worth a point.
VOLUME_BYTES = 1000

#: Score needed to flag, and for ``high``. ``high`` needs a content signal
#: plus two independent corroborations (e.g. 20+ encoded labels and answers
#: never connected to, or encoded names in TXT/MX queries): timing no longer
#: counts, so the step is one point lower than when it did.
FLAG_SCORE = 3
HIGH_SCORE = 4

#: Encoded payload that makes a finding ``critical``: data is clearly moving.
CRITICAL_BYTES = 10_000

#: When guessing which labels are fixed structure (``t1``, ``up.tun``, a search
#: domain's tenant label) we look at up to this many names per domain; a label
#: in at least ``STATIC_LABEL_SHARE`` of them is structure, not data.
STATIC_SAMPLE = 2000
STATIC_LABEL_SHARE = 0.5

#: Signals about what the names carry; at least one must hold to flag. Volume,
#: NXDOMAIN and timing only strengthen them: Kubernetes ``ndots:5`` search-domain
#: expansion alone produces hundreds of distinct NXDOMAIN names in a build.
CONTENT_SIGNALS = ("encoded", "unusual_qtypes")


@dataclass
class TunnelFeatures:
    """Features behind the verdicts, for notebooks and plots.

    ``names``: one row per distinct name of a candidate domain (``names.FEATURE_COLUMNS``).
    ``domains``: one row per (session, registered domain) with at least one query;
    detailed columns are filled for candidates only.
    """

    names: pd.DataFrame
    domains: pd.DataFrame


def _static_labels(reg_of_name: np.ndarray, norm_names: list[str], cand_regs: set) -> dict:
    """{registered domain: labels in at least STATIC_LABEL_SHARE of its sampled names}."""
    by_reg: dict[str, list[int]] = {}
    for i, r in enumerate(reg_of_name):
        if r in cand_regs:
            lst = by_reg.setdefault(r, [])
            if len(lst) < STATIC_SAMPLE:
                lst.append(i)
    out = {}
    for reg, idx in by_reg.items():
        counts: dict[str, int] = {}
        k = reg.count(".") + 1
        for i in idx:
            labs = norm_names[i].split(".")[:-k]
            for lab in set(labs):
                counts[lab] = counts.get(lab, 0) + 1
        need = max(MIN_UNIQUE_NAMES, STATIC_LABEL_SHARE * len(idx))
        st = {lab for lab, c in counts.items() if c >= need}
        if st:
            out[reg] = frozenset(st)
    return out


def tunnel_features(dns: pd.DataFrame, conn: pd.DataFrame | None = None, index: DnsIndex | None = None,
                    keep_names: bool = True) -> TunnelFeatures:
    """Compute per-name and per-domain features (see the module docstring).

    ``index``: a ``dnsindex.build_index(dns)`` to reuse (it is built when not given).
    ``keep_names``: False leaves ``names`` empty: the domains' features are the same, and a
    tunnel's million names do not keep a row of features each (``analyze`` for a report).
    """
    empty = TunnelFeatures(names=pd.DataFrame(columns=names.FEATURE_COLUMNS), domains=_empty_domains())
    ix = index if index is not None else build_index(dns)
    if not len(ix):
        return empty
    ix = _without_search_expansions(ix)
    sess = ix.session
    nuniq = ix.names
    orig_spelling = ix.spelling
    name_of_row = ix.name_code
    reg_of_name = ix.registered
    rcodes, runiq = pd.factorize(reg_of_name)
    reg_of_row = rcodes[name_of_row]
    scodes, suniq = sess.codes, sess.values  # groups come in order of first appearance whatever the codes
    n_reg = max(len(runiq), 1)
    gkey = scodes.astype(np.int64) * n_reg + reg_of_row
    del scodes, reg_of_row  # per-row arrays: each freed as soon as it is used up
    gcodes, guniq = factorize_keys(gkey, max(len(suniq), 1) * n_reg)
    del gkey
    gcodes = gcodes.astype(np.int32)
    n_groups = len(guniq)
    g_sess = np.asarray(suniq, dtype=object)[guniq // n_reg]
    g_reg_code = guniq % n_reg
    g_reg = np.asarray(runiq, dtype=object)[g_reg_code]

    # distinct names per group
    pair = gcodes.astype(np.int64)
    pair *= len(nuniq)
    pair += name_of_row
    pair = np.unique(pair)
    pair_g = pair // len(nuniq)
    pair_name = pair % len(nuniq)
    del pair
    uniq_names = np.bincount(pair_g, minlength=n_groups)
    queries = np.bincount(gcodes, minlength=n_groups)
    ts = ix.ts
    first = np.full(n_groups, np.iinfo(np.int64).max)
    last = np.full(n_groups, np.iinfo(np.int64).min)
    np.minimum.at(first, gcodes, ts)
    np.maximum.at(last, gcodes, ts)

    reverse_zone = np.array([r.endswith(domains.REVERSE_ZONES) or r in domains.REVERSE_ZONES for r in g_reg], dtype=bool)
    cand = (uniq_names >= MIN_UNIQUE_NAMES) & ~reverse_zone

    dom = pd.DataFrame(
        {
            "session": g_sess,
            "registered_domain": g_reg,
            "queries": queries,
            "unique_names": uniq_names,
            "unique_ratio": uniq_names / np.maximum(queries, 1),
            "first_seen": pd.to_datetime(first, utc=True),
            "last_seen": pd.to_datetime(last, utc=True),
            "duration_s": (last - first) / 1e9,
            "candidate": cand,
        }
    )
    for c, v in _DOMAIN_DEFAULTS.items():
        dom[c] = v
    if not cand.any():
        return TunnelFeatures(names=pd.DataFrame(columns=names.FEATURE_COLUMNS), domains=dom)

    # ---- per-name features for names of candidate domains
    cand_reg_codes = np.unique(g_reg_code[cand])
    name_is_cand = np.isin(rcodes, cand_reg_codes)
    cand_name_idx = np.nonzero(name_is_cand)[0]
    cand_regs = set(np.asarray(runiq, dtype=object)[cand_reg_codes].tolist())
    static = _static_labels(reg_of_name, nuniq, cand_regs)
    enc_of_name = np.zeros(len(nuniq), dtype=bool)
    bytes_of_name = np.zeros(len(nuniq))
    svc_of_name = np.zeros(len(nuniq), dtype=bool)
    alpha_of_name = np.full(len(nuniq), -1, dtype=np.int16)
    plen_of_name = np.zeros(len(nuniq), dtype=np.int32)
    mlen_of_name = np.zeros(len(nuniq), dtype=np.int32)
    # each data label as a 64-bit hash (telling distinct labels apart) and its place in the
    # pooled sample: a tunnel's million labels are never held as strings
    dlabel_hash = np.zeros(len(nuniq), dtype=np.uint64)
    dlabel_order = np.zeros(len(nuniq), dtype=np.uint32)
    kept = []
    # in batches: a tunnel's million names never have their features' frame at once
    for at in range(0, len(cand_name_idx), NAME_BATCH):
        part = cand_name_idx[at:at + NAME_BATCH]
        nf = names.name_features(orig_spelling[part], registered=reg_of_name[part], static_labels=static)
        enc_of_name[part] = nf["encoded"].to_numpy()
        bytes_of_name[part] = nf["encoded_bytes"].to_numpy()
        svc_of_name[part] = nf["service_name"].to_numpy()
        alpha_of_name[part] = nf["alphabet"].cat.codes.to_numpy()
        plen_of_name[part] = nf["payload_len"].to_numpy()
        labels_ = nf["data_label"].to_numpy(dtype=object)
        dlabel_hash[part] = pd.util.hash_array(labels_)
        dlabel_order[part] = [label_pool.sample_order(x)[0] for x in labels_]
        del labels_
        mlen_of_name[part] = nf["max_label_len"].to_numpy()
        if keep_names:
            kept.append(nf)
        del nf
    dl_codes_c, _ = pd.factorize(dlabel_hash[cand_name_idx])
    dl_of_name = np.full(len(nuniq), -1, dtype=np.int32)
    dl_of_name[cand_name_idx] = dl_codes_c
    del dl_codes_c

    def data_labels(name_idx: np.ndarray) -> list:
        """The data labels of these names, again (for the few a pooled sample reads)."""
        nf = names.name_features(orig_spelling[name_idx], registered=reg_of_name[name_idx], static_labels=static)
        return nf["data_label"].to_numpy(dtype=object).tolist()

    # per group over distinct names
    pc = cand[pair_g]
    pg, pn = pair_g[pc], pair_name[pc]
    del pc, pair_g, pair_name
    enc = enc_of_name[pn]
    dom["encoded_names"] = np.bincount(pg[enc], minlength=n_groups)
    enc_label_pairs = np.unique(pg[enc].astype(np.int64) * (len(cand_name_idx) + 1) + dl_of_name[pn[enc]])
    dom["encoded_labels"] = np.bincount(enc_label_pairs // (len(cand_name_idx) + 1), minlength=n_groups)
    dom["encoded_bytes"] = np.bincount(pg, weights=bytes_of_name[pn], minlength=n_groups)
    dom["max_payload_len"] = _group_max(pg, plen_of_name[pn], n_groups)
    # dominant encoding among encoded names
    if enc.any():
        ea = pd.DataFrame({"g": pg[enc], "a": alpha_of_name[pn[enc]]})
        mode = ea.groupby("g")["a"].agg(lambda s: s.value_counts().index[0])
        enc_alpha = np.full(n_groups, "", dtype=object)
        enc_alpha[mode.index.to_numpy()] = np.asarray(names.ALPHABET_ORDER, dtype=object)[mode.to_numpy()]
        dom["encoding"] = enc_alpha
    dom["encoded_share"] = dom["encoded_names"] / np.maximum(dom["unique_names"], 1)

    # ---- per-row features for candidate rows
    rc = cand[gcodes]
    rg = gcodes[rc]
    del gcodes
    rname = name_of_row[rc]
    qtype = ix.qtype[rc]
    unusual = np.isin(qtype, list(UNUSUAL_QTYPES)) | ((qtype >= PRIVATE_QTYPES[0]) & (qtype <= PRIVATE_QTYPES[1]))
    # TXT/SRV-style lookups of service names (_acme-challenge, _dmarc) are ordinary
    unusual &= ~(svc_of_name[rname] & (qtype == 16))
    rare = np.isin(qtype, list(RARE_QTYPES)) | ((qtype >= PRIVATE_QTYPES[0]) & (qtype <= PRIVATE_QTYPES[1]))
    dom["unusual_queries"] = np.bincount(rg[unusual], minlength=n_groups)
    dom["rare_queries"] = np.bincount(rg[rare], minlength=n_groups)
    del rname, unusual, rare  # per candidate row, as those below: each freed once used up
    dom["unusual_share"] = dom["unusual_queries"] / np.maximum(dom["queries"], 1)
    label_code, labels = _qtype_labels(ix.qtype_name.take(rc), qtype)
    # queries per (group, type), most first, ties in order of appearance (as pandas 3's value_counts)
    pair_code, type_pairs = pd.factorize(rg.astype(np.int64) * len(labels) + label_code)
    counts = np.bincount(pair_code, minlength=len(type_pairs))
    del pair_code, label_code, qtype
    qt_dict: dict[int, dict] = {}
    for k in np.argsort(-counts, kind="stable").tolist():
        g, t = divmod(int(type_pairs[k]), len(labels))
        qt_dict.setdefault(g, {})[labels[t]] = int(counts[k])
    dom["qtypes"] = pd.Series([qt_dict.get(i, {}) for i in range(n_groups)], dtype=object).to_numpy()

    rcode = ix.rcode[rc]
    answered = ~np.isnan(rcode)
    nx = rcode == 3
    dom["answered_queries"] = np.bincount(rg[answered], minlength=n_groups)
    dom["nxdomain_queries"] = np.bincount(rg[nx], minlength=n_groups)
    dom["nxdomain_share"] = dom["nxdomain_queries"] / np.maximum(dom["answered_queries"], 1)
    del rcode, answered, nx

    # clients and resolvers
    if ix.orig_h.present:
        dom["clients"] = _group_ncodes(rg, ix.orig_h.codes[rc], n_groups)
    if ix.resp_h.present:
        res = pd.DataFrame({"g": rg, "r": ix.resp_h.codes[rc]})
        res = res[res["r"] >= 0].drop_duplicates()
        res["r"] = ix.resp_h.values[res["r"].to_numpy()]
        rd = res.groupby("g")["r"].agg(lambda s: sorted(s)[:5])
        resolvers = np.empty(n_groups, dtype=object)
        resolvers[:] = [[] for _ in range(n_groups)]
        for g, lst in rd.items():
            resolvers[g] = lst
        dom["resolvers"] = resolvers

    # answers never connected to
    sessions_index = pd.Index(np.asarray(suniq, dtype=object))
    groups_index = pd.Index(guniq)

    def group_of(sessions: pd.Series, name_codes):
        """Candidate group of (session, name) pairs, -1 for none."""
        sc = positions_in(sessions_index, sessions)
        key = sc * n_reg
        key += rcodes[name_codes]
        g = groups_index.get_indexer(key)
        del key
        g[sc < 0] = -1
        del sc
        ok = g >= 0
        g[ok] = np.where(cand[g[ok]], g[ok], -1)
        return g

    _answer_features(dom, ix, group_of, conn=conn, n_groups=n_groups)
    _pool_features(dom, pg, pn, alpha_of_name, mlen_of_name, dlabel_hash, dlabel_order, data_labels)

    # timing regularity: the gaps between a group's queries in time order
    tsr = ts[rc]
    order = np.lexsort((tsr, rg))
    del rc
    t_sorted = tsr[order]
    del tsr
    g_sorted = rg[order]
    del order
    same = g_sorted[1:] == g_sorted[:-1]  # a gap within one group
    gg = g_sorted[1:][same]
    del g_sorted
    gv = (np.diff(t_sorted) / 1e9)[same]
    del t_sorted, same
    cnt = np.bincount(gg, minlength=n_groups)
    s1 = np.bincount(gg, weights=gv, minlength=n_groups)
    s2 = np.bincount(gg, weights=gv * gv, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / cnt
        var = np.maximum(s2 / cnt - mean * mean, 0.0)
        cv = np.sqrt(var) / mean
    dom["gaps"] = cnt
    dom["mean_gap_s"] = np.where(cnt > 0, mean, np.nan)
    dom["timing_cv"] = np.where((cnt > 0) & (mean > 0), cv, np.nan)

    # example names
    ex = pd.DataFrame({"g": pg, "n": pd.Series(orig_spelling[pn], dtype=object), "e": enc_of_name[pn]})  # no string copy
    ex = ex.sort_values(["g", "e"], ascending=[True, False], kind="stable").groupby("g").head(3)
    examples = np.empty(n_groups, dtype=object)
    examples[:] = [[] for _ in range(n_groups)]
    for g, sub in ex.groupby("g")["n"]:
        examples[g] = list(sub)
    dom["examples"] = examples

    _score(dom)
    if not kept:
        return TunnelFeatures(names=pd.DataFrame(columns=names.FEATURE_COLUMNS), domains=dom)
    return TunnelFeatures(names=pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0], domains=dom)


def search_expansions(names_: np.ndarray, registered: np.ndarray, used: np.ndarray) -> np.ndarray:
    """True for names that are another looked-up name plus a search-list suffix.

    A resolver configured with search domains (Kubernetes' ``ndots:5``,
    ``<region>.compute.internal``) first asks for ``pypi.org.ci.svc.cluster.local``
    and the like: the random labels of every bucket and tenant name the job
    uses then reappear under ``cluster.local`` and looked like data there. The
    original name is analysed under its own domain, so its expansions are not.
    """
    out = np.zeros(len(names_), dtype=bool)
    known = {n: r for n, r in zip(names_[used], registered[used])}
    for i in np.nonzero(used)[0]:
        n = names_[i]
        reg = registered[i]
        p = n.find(".")
        while p > 0:
            p = n.find(".", p + 1)  # prefixes of at least two labels
            if p < 0:
                break
            r = known.get(n[:p])
            if r is not None and r != reg:
                out[i] = True
                break
    return out


def _without_search_expansions(ix: DnsIndex) -> DnsIndex:
    used = np.zeros(len(ix.names), dtype=bool)
    used[ix.name_code] = True
    exp = search_expansions(ix.names, ix.registered, used)
    if not exp.any():
        return ix
    return ix.take(~exp[ix.name_code])


def _qtype_labels(qtype_name, qtype: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's query type as Zeek names it, else ``TYPE<n>``, else '-': (a code per row,
    the distinct labels)."""
    tcodes, types = pd.factorize(qtype)  # NaN (unset) -> -1
    width = len(types) + 1
    # one integer per (name, type) pair
    codes, uniq = pd.factorize((qtype_name.codes.astype(np.int64) + 1) * width + (tcodes + 1))
    labels = np.array([(qtype_name.values[k // width - 1] if k // width > 0
                        else ("-" if k % width == 0 else f"TYPE{int(types[k % width - 1])}"))
                       for k in uniq.tolist()], dtype=object)
    label_of_pair, distinct = pd.factorize(labels)  # a name and a number can read the same
    return label_of_pair[codes] if len(codes) else np.empty(0, dtype=np.int64), np.asarray(distinct, dtype=object)


def _group_ncodes(g: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Distinct codes (-1: unset, not counted) per group, on integers alone."""
    set_ = codes >= 0
    pairs = np.unique(g[set_].astype(np.int64) * (int(codes.max(initial=0)) + 1) + codes[set_])
    return np.bincount(pairs // (int(codes.max(initial=0)) + 1), minlength=n)


#: Distinct names whose features are computed at a time (a frame of 16 columns per batch).
NAME_BATCH = 100_000

_DOMAIN_DEFAULTS = {
    "encoded_names": 0,
    "encoded_labels": 0,
    "encoded_share": 0.0,
    "encoded_bytes": 0.0,
    "encoding": "",
    "max_payload_len": 0,
    "unusual_queries": 0,
    "rare_queries": 0,
    "unusual_share": 0.0,
    "qtypes": None,
    "answered_queries": 0,
    "nxdomain_queries": 0,
    "nxdomain_share": 0.0,
    "answer_addresses": 0,
    "answered_names": 0,
    "connected_addresses": np.nan,  # NaN: no conn.log to tell
    "clients": 0,
    "resolvers": None,
    "gaps": 0,
    "mean_gap_s": np.nan,
    "timing_cv": np.nan,
    "examples": None,
    "pool_labels": 0,
    "pool_chars": 0,
    "pool_alphabet": "",
    "pool_entropy_ratio": 0.0,
    "pool_switch_rate": 0.0,
    "pool_bytes": 0.0,
    "pool_random": False,
    "pool_decided": False,
    "score": 0,
    "signals": None,
    "flagged": False,
    "severity": "",
}


def _empty_domains() -> pd.DataFrame:
    cols = ["session", "registered_domain", "queries", "unique_names", "unique_ratio", "first_seen", "last_seen",
            "duration_s", "candidate"] + list(_DOMAIN_DEFAULTS)
    return pd.DataFrame(columns=cols)


def _group_max(g: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=v.dtype if len(v) else np.int64)
    if len(v):
        np.maximum.at(out, g, v)
    return out


# decimal too: random hex of 8 characters is all digits 2 % of the time
_POOL_ALPHABETS = tuple(names.ALPHABET_ORDER.index(a) for a in ("decimal", "hex", "base32"))


def _pool_features(dom, pg, pn, alpha_of_name, mlen_of_name, dlabel_hash, dlabel_order, data_labels) -> None:
    """Short-label channels (``label_pool``): a domain whose many short data labels pooled
    together are random data counts its pooled labels and bytes as encoded.

    Labels are told apart by ``dlabel_hash`` and sampled in ``dlabel_order``
    (``label_pool.sample_order``, ties by hash); only a sample's labels are made into strings
    again (``data_labels(name indices)``)."""
    m = np.isin(alpha_of_name[pn], _POOL_ALPHABETS) & (mlen_of_name[pn] >= label_pool.POOL_MIN_LABEL_LEN)
    if not m.any():
        return
    g, name = pg[m], pn[m]
    # distinct (group, label), in sample order within each group
    order = np.lexsort((dlabel_hash[name], dlabel_order[name], g))
    g, name = g[order], name[order]
    h = dlabel_hash[name]
    first = np.r_[True, (g[1:] != g[:-1]) | (h[1:] != h[:-1])]
    g, name = g[first], name[first]
    counts = np.bincount(g, minlength=len(dom))
    big = counts[g] >= label_pool.POOL_MIN_LABELS
    g, name = g[big], name[big]
    groups = {}
    if len(g):
        length = mlen_of_name[name].astype(np.int64)
        chars = np.bincount(g, weights=length, minlength=len(dom))
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        before = np.cumsum(length) - length  # characters ahead of each label in its group
        before -= np.repeat(before[starts], np.diff(np.r_[starts, len(g)]))
        sampled = np.flatnonzero(before < label_pool.POOL_SAMPLE_CHARS)  # up to the label that fills the sample
        text = data_labels(name[sampled])
        ends = np.r_[starts[1:], len(g)]
        cut = np.searchsorted(sampled, np.r_[starts, len(g)])  # each group's sampled labels: a run of ``text``
        for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            groups[int(g[a])] = label_pool.LabelPool(b - a, int(chars[g[a]]), text[cut[k]:cut[k + 1]])
    pool = label_pool.pool_features(groups, dom["unique_names"].to_numpy(),
                                    dom["connected_addresses"].to_numpy(dtype=float))
    for c, v in pool.items():
        dom[c] = v
    hit = pool["pool_random"]
    # named in the summary only where the pool, not the per-name verdict, found the channel
    dom["pool_decided"] = hit & (dom["encoded_labels"].to_numpy() < 0.5 * pool["pool_labels"])
    if hit.any():
        # the pooled labels are the channel's data: count them like per-name encoded labels
        dom.loc[hit, "encoded_labels"] = np.maximum(dom.loc[hit, "encoded_labels"], pool["pool_labels"][hit])
        dom.loc[hit, "encoded_bytes"] = np.maximum(dom.loc[hit, "encoded_bytes"], pool["pool_bytes"][hit])
        pooled_share = pool["pool_labels"][hit] / np.maximum(dom.loc[hit, "unique_names"], 1)
        dom.loc[hit, "encoded_share"] = np.maximum(dom.loc[hit, "encoded_share"], pooled_share)
        dom.loc[hit, "encoding"] = pool["pool_alphabet"][hit]


def _answer_features(dom, ix: DnsIndex, group_of, conn, n_groups) -> None:
    """answer_addresses / answered_names / connected_addresses per group, from the shared resolutions."""
    res = ix.resolutions
    if res.empty:
        return
    g = group_of(res["session"], res["name_code"].to_numpy())
    ok = g >= 0
    if not ok.any():
        return
    g = g[ok]
    # on codes (a resolution row is three codes): the address and session text only for the
    # distinct (group, address) pairs below
    address = res["address"].cat.codes.to_numpy()[ok]
    dom["answer_addresses"] = _group_ncodes(g, address, n_groups)
    dom["answered_names"] = _group_ncodes(g, res["name_code"].to_numpy()[ok], n_groups)
    if conn is None or conn.empty or "id.resp_h" not in conn.columns:
        return
    ad = pd.DataFrame({"g": g, "a": address, "s": res["session"].cat.codes.to_numpy()[ok]})
    del g, address, ok
    ad = ad.drop_duplicates(["g", "a"])  # the addresses are distinct categories: codes tell them apart
    ad["a"] = res["address"].cat.categories.to_numpy(dtype=object)[ad["a"].to_numpy()]
    ad["s"] = res["session"].cat.categories.to_numpy(dtype=object)[ad["s"].to_numpy()]
    csess = session_labels(conn)
    caddr = conn["id.resp_h"].to_numpy(dtype=object, na_value=None)
    cpairs = pd.DataFrame({"s": csess, "a": caddr}).drop_duplicates()
    pairs = {(s, canon_ip(a) or a) for s, a in cpairs.itertuples(index=False)}
    conn_sessions = set(cpairs["s"])
    ad["connected"] = [(s, a) in pairs for s, a in zip(ad["s"], ad["a"])]
    k = ad[ad["s"].isin(conn_sessions)]
    if k.empty:
        return
    connected = np.full(n_groups, np.nan)
    cnt = k.groupby("g")["connected"].sum()
    connected[cnt.index.to_numpy()] = cnt.to_numpy()
    dom["connected_addresses"] = connected


def _score(dom: pd.DataFrame) -> None:
    cand = dom["candidate"].to_numpy()
    encl = dom["encoded_labels"].to_numpy()
    share = dom["encoded_share"].to_numpy()
    uniq = dom["unique_names"].to_numpy()
    ratio = dom["unique_ratio"].to_numpy()
    scores = np.zeros(len(dom), dtype=np.int64)
    signals = [[] for _ in range(len(dom))]

    def add(mask, pts, name):
        mask = mask & cand
        for i in np.nonzero(mask)[0]:
            scores[i] += pts
            if name not in signals[i]:
                signals[i].append(name)

    enc = (encl >= MIN_ENCODED_LABELS) & ((share >= MIN_ENCODED_SHARE) | (encl >= MANY_ENCODED))
    add(enc, 2, "encoded")
    add(enc & (encl >= MANY_ENCODED), 1, "encoded")
    add(enc & (encl >= BULK_ENCODED), 1, "encoded")
    add(enc & (encl >= DATA_ONLY_LABELS) & (share >= DATA_ONLY_SHARE), 1, "encoded")
    add(dom["pool_decided"].to_numpy(dtype=bool), 0, "short_labels")
    unus = dom["unusual_share"].to_numpy() >= MIN_UNUSUAL_SHARE
    add(unus, 2, "unusual_qtypes")
    add(unus & (dom["rare_queries"].to_numpy() >= MIN_UNIQUE_NAMES), 1, "unusual_qtypes")
    many = (uniq >= MANY_UNIQUE) & (ratio >= MIN_UNIQUE_RATIO)
    add(many, 1, "many_unique")
    add(many & (uniq >= VERY_MANY_UNIQUE), 1, "many_unique")
    nx = (dom["nxdomain_share"].to_numpy() >= MIN_NX_SHARE) & (dom["answered_queries"].to_numpy() >= MIN_NX_QUERIES)
    add(nx, 1, "nxdomain")
    conn_known = ~np.isnan(dom["connected_addresses"].to_numpy(dtype=float))
    never = conn_known & (dom["answered_names"].to_numpy() >= MIN_ANSWERED_NAMES) & (
        np.nan_to_num(dom["connected_addresses"].to_numpy(dtype=float), nan=1) == 0
    )
    add(never, 1, "never_connected")
    cv = dom["timing_cv"].to_numpy(dtype=float)
    reg = (dom["gaps"].to_numpy() >= MIN_GAPS) & (np.nan_to_num(cv, nan=9) <= MAX_TIMING_CV) & (ratio >= 0.5)
    add(reg, TIMING_POINTS, "regular_timing")
    add(dom["encoded_bytes"].to_numpy() >= VOLUME_BYTES, 1, "volume")

    content = np.array([any(s in CONTENT_SIGNALS for s in sig) for sig in signals], dtype=bool)
    flagged = cand & (scores >= FLAG_SCORE) & content
    sev = np.where(
        dom["encoded_bytes"].to_numpy() >= CRITICAL_BYTES, "critical", np.where(scores >= HIGH_SCORE, "high", "medium")
    )
    dom["score"] = scores
    dom["signals"] = pd.Series(signals, index=dom.index, dtype=object)
    dom["flagged"] = flagged
    dom["severity"] = np.where(flagged, sev, "")


def _summary_sentence(r) -> str:
    parts = []
    enc = r.encoding or "random"
    if "short_labels" in r.signals:
        parts.append(f"{r.encoded_labels} unique short {enc} labels in {human_duration(r.duration_s)}, random as a whole")
        parts.append(f"{human_bytes(r.encoded_bytes)} encoded")
    elif "encoded" in r.signals:
        parts.append(f"{r.encoded_labels} unique {enc} subdomains in {human_duration(r.duration_s)}")
        parts.append(f"{human_bytes(r.encoded_bytes)} encoded")
    else:
        parts.append(f"{r.unique_names} unique subdomains in {human_duration(r.duration_s)}")
    if "unusual_qtypes" in r.signals:
        qt = r.qtypes or {}
        unusual = [t for t in sorted(qt, key=lambda t: -qt[t]) if t in UNUSUAL_QTYPES.values() or t.startswith("TYPE")]
        parts.append(f"{'/'.join(unusual[:3]) or 'unusual'} queries")
    if "nxdomain" in r.signals:
        parts.append(f"{r.nxdomain_share:.0%} NXDOMAIN")
    if "never_connected" in r.signals:
        parts.append("answers never connected to")
    if "regular_timing" in r.signals:
        parts.append(every(r.mean_gap_s, "query", "queries"))
    if "many_unique" in r.signals and "encoded" in r.signals:
        parts.append(f"{r.unique_names} distinct names")
    return ", ".join(parts)


def _evidence(r) -> dict:
    def num(x, nd=3):
        if x is None or (isinstance(x, float) and np.isnan(x)):
            return None
        return round(float(x), nd)

    return {
        "queries": int(r.queries),
        "unique_subdomains": int(r.unique_names),
        "unique_ratio": num(r.unique_ratio),
        "encoded_subdomains": int(r.encoded_labels),
        "encoded_share": num(r.encoded_share),
        "encoding": r.encoding or None,
        "encoded_bytes": int(round(r.encoded_bytes)),
        "encoded_bytes_per_s": num(r.encoded_bytes / max(r.duration_s, 1.0), 1),
        "max_payload_len": int(r.max_payload_len),
        "duration_s": num(r.duration_s),
        "first_seen": r.first_seen.isoformat(),
        "last_seen": r.last_seen.isoformat(),
        "qtypes": dict(r.qtypes or {}),
        "unusual_qtype_share": num(r.unusual_share),
        "nxdomain_share": num(r.nxdomain_share),
        "answer_addresses": int(r.answer_addresses),
        "connected_addresses": None if np.isnan(r.connected_addresses) else int(r.connected_addresses),
        "timing_cv": num(r.timing_cv),
        "mean_gap_s": num(r.mean_gap_s),
        "clients": int(r.clients),
        "resolvers": list(r.resolvers or []),
        "examples": list(r.examples or []),
        "pooled_labels": int(r.pool_labels),
        "pooled_entropy_ratio": num(r.pool_entropy_ratio),
        "pooled_switch_rate": num(r.pool_switch_rate),
        "score": int(r.score),
        "signals": list(r.signals),
    }


def findings_from_features(features: TunnelFeatures) -> pd.DataFrame:
    dom = features.domains
    if dom.empty or not dom["flagged"].any():
        return make_findings([])
    recs = []
    for r in dom[dom["flagged"]].itertuples(index=False):
        recs.append(
            {
                "analyzer": ANALYZER,
                "severity": r.severity,
                "indicator": r.registered_domain,
                "summary": _summary_sentence(r),
                "evidence": _evidence(r),
                "sessions": [r.session] if r.session else [],
            }
        )
    return make_findings(recs)


def detect_dns_tunnels(dns: pd.DataFrame, conn: pd.DataFrame | None = None) -> pd.DataFrame:
    """Findings (``findings.FINDING_COLUMNS``) for registered domains that look like DNS tunnels."""
    return findings_from_features(tunnel_features(dns, conn))
