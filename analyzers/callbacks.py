"""``dns_callback``: one- to few-query lookups whose labels carry encoded host data.

Dependency-confusion and malicious-package install hooks report home in one
or two lookups: ``<hex of hostname:user:cwd>.<id>.attacker.example``. Too
few names for the tunnel detector; what gives them away is what the labels
decode to: readable text naming the host (paths, user names, addresses).

Input: the lookup table (``destinations.lookup_table``) and, optionally, the
baseline's: a domain the baseline already used is not a callback to a *new*
domain. Output: one finding per (session, registered domain).

Severity: ``high`` when the decoded text holds host data (``HOST_DATA``),
``medium`` when it is other readable text of at least ``MIN_PLAIN_TEXT_BYTES``.
"""

from __future__ import annotations

import re

from .findings import make_findings
from .payload_decode import decodings, joined_data, label_runs, printable_share

ANALYZER = "dns_callback"

#: A callback uses at most this many distinct names under its domain; more is
#: a channel (the tunnel detector's job) or an ordinary service.
CALLBACK_MAX_NAMES = 8

#: Decoded bytes that count as readable text: at least this long, at least
#: ``MIN_PRINTABLE`` printable and ``MIN_WORDY`` letters/digits/separators.
#: Random bytes of this length are all printable with probability < 1e-4.
MIN_TEXT_BYTES = 8
MIN_PRINTABLE = 0.95
MIN_WORDY = 0.7

#: Text without host data needs this many bytes. At 8, random cache keys
#: decode to "text" by chance often enough to matter at scale: 1 of 44,000
#: distinct names of 300 generated CI jobs (``bench/detection_figures.py``),
#: 8 random bytes decoding to '_ZK3*[Hc'. At 12 random bytes pass with
#: probability ~1e-7 per decoding.
MIN_PLAIN_TEXT_BYTES = 12

#: What host data looks like once decoded: home and workspace paths, CI
#: runner paths, user/host pairs, IPv4 addresses, id(1) output, env dumps.
HOST_DATA = re.compile(
    r"/home/|/root|/users/|/runner|/github/workspace|/builds/|/tmp/|c:\\\\|\\\\users\\\\|"
    r"\b\d{1,3}(?:\.\d{1,3}){3}\b|uid=\d|[a-z0-9_.-]+@[a-z0-9_.-]+|\b(?:hostname|whoami|user(?:name)?|pwd|home|path)[=:]",
    re.IGNORECASE,
)
_WORDY = re.compile(rb"[A-Za-z0-9 ._:/\\=@,;|-]")


def readable(b: bytes) -> bool:
    return (len(b) >= MIN_TEXT_BYTES and printable_share(b) >= MIN_PRINTABLE
            and len(_WORDY.findall(b)) >= MIN_WORDY * len(b))


def _texts(names: list[str], reg: str) -> list[str]:
    """Readable decodings of each name's payload, of each label, and of the payloads joined."""
    cands = []
    for n in names:
        cands += label_runs(n, reg)
    if len(names) > 1:
        cands.append(joined_data(names, reg))
    out = []
    for c in dict.fromkeys(cands):
        for b in decodings(c):
            if readable(b):
                out.append(b.decode("ascii", "replace"))
    return out


def dns_callbacks(lookups, baseline_lookups=None):
    if lookups is None or lookups.empty:
        return make_findings([])
    known = set(baseline_lookups["registered_domain"]) if baseline_lookups is not None and not baseline_lookups.empty else set()
    recs = []
    lk = lookups.sort_values("first_seen", kind="stable")
    small = lk.groupby(["session", "registered_domain"])["name"].transform("size") <= CALLBACK_MAX_NAMES
    for (sess, reg), grp in lk[small].groupby(["session", "registered_domain"], sort=True):
        if reg in known or not reg:
            continue
        names = list(grp["name"])
        texts = _texts(names, reg)
        if not texts:
            continue
        host = [t for t in texts if HOST_DATA.search(t)]
        texts = host or [t for t in texts if len(t) >= MIN_PLAIN_TEXT_BYTES]
        if not texts:
            continue
        shown = texts[0]
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        recs.append({
            "analyzer": ANALYZER,
            "severity": "high" if host else "medium",
            "indicator": reg,
            "summary": (f"{len(names)} name{'s' if len(names) != 1 else ''} under {reg} carry encoded "
                        f"{'host data' if host else 'text'}: {shown!r}"
                        + ("" if not known else ", a domain no baseline run used")),
            "evidence": {"names": names[:5], "queries": int(grp["queries"].sum()), "decoded": [t[:200] for t in texts[:3]],
                         "host_data": bool(host), "baseline_checked": bool(known)},
            "sessions": [sess] if sess else [],
        })
    return make_findings(recs)
