"""``upload_volume``: a destination the job always uses, receiving far more than ever before.

The quiet exfiltration: secrets or source posted to a host the job talks to
every run (an artifact store, a registry, a telemetry endpoint). No policy
objects to the destination; the volume does. Per destination (registered
domain, or address when no name explains it), the bytes a session sent are
compared with what each baseline session sent there.

Input: the destination tables of the session and of the baseline
(``destinations.destination_table``). Output: one finding per (session,
destination). Destinations absent from the baseline are ``new_destination``'s.
"""

from __future__ import annotations

import numpy as np

from .destinations import _dest_identity
from .findings import human_bytes, make_findings

ANALYZER = "upload_volume"

#: Sent bytes this many times the baseline's largest run are unusual: build
#: uploads vary by a factor of 2-3 between runs (caches, test reports), not 10.
UPLOAD_RATIO = 10.0

#: ...and at least this many bytes more than the baseline's largest run, so
#: small destinations (a 2 KB telemetry ping growing to 30 KB) do not count.
UPLOAD_MIN_EXTRA = 256_000

#: Ratio at which the finding is high rather than medium: a hundredfold.
UPLOAD_HIGH_RATIO = 100.0


def _per_identity(dest):
    d = dest[~dest["resolver"] & ~dest["local"]]
    if d.empty:
        return d.assign(identity=[])
    return d.assign(identity=_dest_identity(d))


def upload_volume(dest, base_dest):
    if dest is None or dest.empty or base_dest is None or base_dest.empty:
        return make_findings([])
    cur = _per_identity(dest)
    base = _per_identity(base_dest)
    if cur.empty or base.empty:
        return make_findings([])
    bsum = base.groupby(["session", "identity"])["orig_bytes"].sum().groupby(level="identity")
    bmax, bmed, bruns = bsum.max(), bsum.median(), bsum.size()
    recs = []
    for (sess, ident), g in cur.groupby(["session", "identity"], sort=True):
        if ident not in bmax.index:
            continue
        sent = float(g["orig_bytes"].sum())
        top = float(bmax[ident])
        ratio = sent / max(top, 1.0)
        if ratio < UPLOAD_RATIO or sent - top < UPLOAD_MIN_EXTRA:
            continue
        recs.append({
            "analyzer": ANALYZER,
            "severity": "high" if ratio >= UPLOAD_HIGH_RATIO else "medium",
            "indicator": ident,
            "summary": (f"{human_bytes(sent)} sent to {ident}, {ratio:.0f}x the most any of {int(bruns[ident])} "
                        f"baseline run{'s' if bruns[ident] != 1 else ''} sent ({human_bytes(top)}; median {human_bytes(bmed[ident])})"),
            "evidence": {"orig_bytes": int(sent), "baseline_max": int(top), "baseline_median": float(np.round(bmed[ident], 1)),
                         "baseline_runs": int(bruns[ident]), "ratio": round(ratio, 1),
                         "addresses": sorted(set(g["address"]))[:5], "ports": sorted({int(p) for p in g["port"].dropna()})},
            "sessions": [sess] if sess else [],
        })
    return make_findings(recs)
