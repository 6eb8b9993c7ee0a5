"""Group DNS names by registered domain, offline, using the Public Suffix List.

The registered domain of a name is its public suffix plus one label
(``files.pythonhosted.org`` -> ``pythonhosted.org``). We use tldextract with the
PSL snapshot bundled in the package and never fetch a list over the network, so
results are reproducible in CI and on air-gapped runners.

Private-section suffixes (``cloudfront.net``, ``s3.amazonaws.com``,
``blob.core.windows.net``, ``githubusercontent.com``, ``github.io``...) are
included on purpose: each CDN distribution or cloud tenant then forms its own
group, so thousands of unrelated tenant hashes never add up to one
"random-looking" domain, while a tunnel still groups under the name its
operator controls.

Fallbacks, for names the list does not cover:

* no public suffix (``pirate.sea``, ``host.local``, ``wpad``): the last two labels,
  or the name itself when it has a single label;
* the name is itself a public suffix (``ec2-1-2-3-4.compute-1.amazonaws.com``
  under the wildcard rule ``*.compute-1.amazonaws.com``): the name itself.

Speed: tldextract costs a few microseconds per call, too much for a million
distinct tunnel names. A name's registered domain equals its parent's whenever
the parent's registered domain is strictly shorter than the parent, except when
a PSL rule covers the longer name itself; the only PSL rules that can do that
are exact names and wildcards one label below the parent, which random tunnel
labels never hit. So we resolve names label by label from the right, calling
tldextract only on the distinct tails that are still undecided. For every name
that is not itself a PSL rule the answer equals tldextract's.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd

#: Names under these zones are reverse lookups (PTR for an address), never data
#: channels a CI job would use; the tunnel detector skips them.
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")

_MAX_PSL_DEPTH = 8  # longer than any PSL rule plus one label; deeper tails go through tldextract directly


@functools.lru_cache(maxsize=1)
def _extractor():
    import tldextract

    # suffix_list_urls=() and cache_dir=None: only the snapshot bundled with the
    # package is used; nothing is fetched and nothing is written to disk.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


def _extract(name: str):
    r = _extractor()(name)
    top = getattr(r, "top_domain_under_public_suffix", None)
    if top is None:  # tldextract < 5.3
        top = r.registered_domain
    return r.suffix, top


def normalize_name(name: str) -> str:
    """Lower-case, without the trailing dot."""
    return name.rstrip(".").lower()


def registered_domain(name: str) -> str:
    """The registered domain of one name (see the module docstring for fallbacks)."""
    name = normalize_name(name)
    if not name:
        return ""
    suffix, top = _extract(name)
    if top:
        return top
    if suffix:  # the name is itself a public suffix
        return name
    labels = name.split(".")
    return ".".join(labels[-2:])


def registered_domains(names) -> pd.Series:
    """Registered domain of each name, vectorised (see the module docstring).

    ``names`` is any sequence of strings (NA allowed -> ""). Names are
    lower-cased and trailing dots dropped first. Returns a Series aligned with
    the input (same index when a Series is given).
    """
    s = names if isinstance(names, pd.Series) else pd.Series(list(names), dtype=object)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    uniq = [normalize_name(str(u)) for u in uniques]
    out = _registered_unique(uniq)
    res = np.empty(len(codes), dtype=object)
    res[:] = ""
    ok = codes >= 0
    res[ok] = np.asarray(out, dtype=object)[codes[ok]]
    return pd.Series(res, index=s.index, dtype=object)


def _registered_unique(names: list[str]) -> list[str]:
    """Registered domains of distinct normalised names, resolving shared tails once."""
    n = len(names)
    result: list[str | None] = [None] * n
    labels = [nm.split(".") if nm else [] for nm in names]
    pending = [i for i in range(n)]
    depth = 1
    while pending and depth <= _MAX_PSL_DEPTH:
        # Tail of `depth` labels for every name still undecided.
        tails: dict[str, list[int]] = {}
        nxt = []
        for i in pending:
            lab = labels[i]
            if not lab:
                result[i] = ""
                continue
            if len(lab) <= depth:
                # The whole name: ask directly.
                tails.setdefault(".".join(lab), []).append(i)
                continue
            tails.setdefault(".".join(lab[-depth:]), []).append(i)
        for tail, idx in tails.items():
            reg = registered_domain(tail)
            tail_depth = tail.count(".") + 1
            decided = bool(reg) and reg.count(".") + 1 < tail_depth
            for i in idx:
                if len(labels[i]) <= depth:
                    result[i] = reg
                elif decided:
                    result[i] = reg
                else:
                    nxt.append(i)
        pending = nxt
        depth += 1
    for i in pending:
        result[i] = registered_domain(names[i])
    return result  # type: ignore[return-value]


_IPV4_REV = re.compile(r"^(?:\d{1,3}\.){1,4}in-addr\.arpa$")
_IPV6_REV = re.compile(r"^(?:[0-9a-f]\.){1,32}ip6\.arpa$")


def is_reverse_name(name: str) -> bool:
    """True for well-formed reverse-lookup names (``4.3.2.1.in-addr.arpa``, nibble ``ip6.arpa``)."""
    n = normalize_name(name)
    return bool(_IPV4_REV.match(n) or _IPV6_REV.match(n))


def subdomain_part(name: str, regdom: str) -> str:
    """The labels of ``name`` left of its registered domain, case preserved (may be '')."""
    name = name.rstrip(".")
    k = regdom.count(".") + 1 if regdom else 0
    labels = name.split(".")
    if k >= len(labels):
        return ""
    return ".".join(labels[: len(labels) - k])
