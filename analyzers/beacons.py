"""``beaconing``: connections at near-constant intervals and sizes, the way implants call home.

Scored as RITA (Active Countermeasures) describes its beacon analysis: for
the intervals between connections and for the bytes sent per connection, a
*skew* score (1 - |Bowley skewness|: symmetric, as jitter around a fixed
period is) and a *dispersion* score (1 - median absolute deviation / median:
tight); the beacon score is their mean. This is a reimplementation of the
idea, not RITA's code, and without its connection-count component: a CI job
is minutes long, not a day.

Input: conn.log and the destination table (for names and policy verdicts).
Output: one finding per (session, client, destination, port) scoring at
least ``BEACON_SCORE`` over at least ``BEACON_MIN_CONNECTIONS`` connections
spread over at least ``BEACON_MIN_SPAN_S``.
Severity: ``low`` (CI jobs poll: runners long-poll their broker, tests wait
for services), ``medium`` when the destination is also unexplained by DNS,
outside the policy, or absent from the baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .dnsindex import canon_ip, session_labels, ts_ns
from .findings import every, make_findings

ANALYZER = "beaconing"

#: Fewest connections worth scoring: with fewer intervals, quartiles are noise.
BEACON_MIN_CONNECTIONS = 12

#: Shortest time the series must cover: a burst of parallel downloads (20
#: CDN fetches in 10 s) is regular but is not a program calling home; an
#: implant's period is tens of seconds, so a few minutes hold enough calls.
BEACON_MIN_SPAN_S = 120.0

#: Score at which a series counts as a beacon; RITA reports above 0.7 and
#: treats 0.8+ as strong. Random (Poisson) arrivals score ~0.5.
BEACON_SCORE = 0.8


def _bowley(x: np.ndarray) -> float:
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    return 0.0 if q3 == q1 else float((q3 + q1 - 2 * q2) / (q3 - q1))


def _dispersion(x: np.ndarray) -> float:
    med = float(np.median(x))
    if med <= 0:
        return 0.0
    return max(0.0, 1.0 - float(np.median(np.abs(x - med))) / med)


def beacon_score(ts_s: np.ndarray, sizes: np.ndarray) -> dict:
    """RITA-style score of one series (timestamps in seconds, bytes sent per connection)."""
    ts_s = np.sort(ts_s)
    gaps = np.diff(ts_s)
    parts = {
        "interval_skew": 1 - abs(_bowley(gaps)),
        "interval_dispersion": _dispersion(gaps),
        "size_skew": 1 - abs(_bowley(sizes)),
        "size_dispersion": _dispersion(sizes) if np.median(sizes) > 0 else 1.0,
    }
    parts["score"] = float(np.mean(list(parts.values())))
    parts["median_interval_s"] = float(np.median(gaps)) if len(gaps) else 0.0
    return {k: round(v, 3) for k, v in parts.items()}


def beaconing(conn, dest, baseline_dest=None):
    if conn is None or conn.empty or "id.resp_h" not in conn.columns or "ts" not in conn.columns:
        return make_findings([])
    n = len(conn)
    df = pd.DataFrame({
        "session": session_labels(conn),
        "client": conn["id.orig_h"].to_numpy(dtype=object, na_value="") if "id.orig_h" in conn else np.full(n, "", dtype=object),
        "address": [canon_ip(a) or a for a in conn["id.resp_h"].to_numpy(dtype=object, na_value=None)],
        "port": conn["id.resp_p"].to_numpy(dtype="float64", na_value=-1) if "id.resp_p" in conn else np.full(n, -1.0),
        "ts": ts_ns(conn) / 1e9,
        "ob": conn["orig_bytes"].to_numpy(dtype="float64", na_value=0) if "orig_bytes" in conn else np.zeros(n),
    })
    counts = df.groupby(["session", "client", "address", "port"])["ts"].transform("size")
    df = df[counts >= BEACON_MIN_CONNECTIONS]
    if df.empty:
        return make_findings([])
    info = {}
    if dest is not None and not dest.empty:
        for r in dest.itertuples(index=False):
            info[(r.session, r.address, float(r.port) if r.port == r.port and r.port is not None else -1.0)] = r
    seen = set()
    if baseline_dest is not None and not baseline_dest.empty:
        seen = {a for a in baseline_dest["address"]} | {d for lst in baseline_dest["registered_domains"] for d in lst}
    recs = []
    for (sess, client, addr, port), g in df.groupby(["session", "client", "address", "port"], sort=True):
        r = info.get((sess, addr, port))
        if r is not None and (r.resolver or r.local):
            continue
        ts = g["ts"].to_numpy()
        if float(ts.max() - ts.min()) < BEACON_MIN_SPAN_S:
            continue
        sc = beacon_score(ts, g["ob"].to_numpy())
        if sc["score"] < BEACON_SCORE:
            continue
        names = list(r.names) if r is not None else []
        regs = list(r.registered_domains) if r is not None else []
        ident = regs[0] if regs else addr
        reasons = []
        if not names:
            reasons.append("no DNS answer explains it")
        if r is not None and r.allowed is not None and r.allowed is not pd.NA and not bool(r.allowed):
            reasons.append("outside the policy")
        if baseline_dest is not None and ident not in seen:
            reasons.append("never contacted in the baseline")
        recs.append({
            "analyzer": ANALYZER,
            "severity": "medium" if reasons else "low",
            "indicator": ident,
            "summary": (f"{len(g)} connections from {client} to {ident} (port {int(port)}), "
                        f"{every(sc['median_interval_s'], 'connection')}, beacon score {sc['score']:.2f}"
                        + (f"; {', '.join(reasons)}" if reasons else "")),
            "evidence": {"client": client, "address": addr, "port": int(port), "names": names[:5], "connections": int(len(g)),
                         **sc, "reasons": reasons},
            "sessions": [sess] if sess else [],
        })
    return make_findings(recs)
