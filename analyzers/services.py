"""``known_service``: lookups of and connections to known exfiltration and out-of-band services.

Input: the lookup and destination tables (``destinations.lookup_table`` and
``destination_table``) and a ``ServiceList``. Output: one finding per
(registered domain of the service entry) with what was asked and sent.

The list is data (``data/exfil_services.yml``, versioned, offline); users add
their own entries with ``load_services(extra=[path])`` (``analyze --services``).
An entry matches its domain and every name under it.

Severity, by what the category means in a CI job:

* ``oast``: high on a lookup alone. An interaction server's only purpose is to
  confirm that injected code ran (and DNS-only callbacks carry data in the name).
* ``webhook``, ``paste``, ``tunnel``: medium for a lookup, high once the job
  connected (the data went out).
* ``dynamic_dns`` and user categories: medium; high with ``UPLOAD_HIGH_BYTES`` sent.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import resources

import yaml

from ..errors import InputError
from .findings import human_bytes, make_findings

ANALYZER = "known_service"

#: Categories whose mere lookup is high: nothing legitimate in a build asks for them.
LOOKUP_HIGH = frozenset({"oast"})
#: Categories that are high as soon as the job connected to them.
CONNECT_HIGH = frozenset({"webhook", "paste", "tunnel"})
#: Bytes sent to any listed service that make its finding high: more than a
#: handshake, enough for a token or an environment dump.
UPLOAD_HIGH_BYTES = 4096


class ServiceListError(InputError):
    """A services file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class ServiceList:
    version: str
    entries: dict  # domain -> category
    sources: tuple

    def match(self, name: str):
        """(entry, category) for ``name`` or one of its parents, else None."""
        n = name.rstrip(".").lower()
        while n:
            c = self.entries.get(n)
            if c is not None:
                return n, c
            dot = n.find(".")
            if dot < 0:
                return None
            n = n[dot + 1 :]
        return None


def _parse(text: str, source: str) -> tuple[str, dict]:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ServiceListError(f"{source}: not valid YAML ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("categories", {}), dict):
        raise ServiceListError(f"{source}: expected a mapping with 'categories: {{category: [domain, ...]}}'")
    unknown = set(doc) - {"version", "categories"}
    if unknown:
        raise ServiceListError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected version, categories")
    out = {}
    for cat, domains_ in (doc.get("categories") or {}).items():
        if not isinstance(domains_, list):
            raise ServiceListError(f"{source}: category {cat!r} must be a list of domains")
        for d in domains_:
            if not isinstance(d, str) or not d.strip() or " " in d.strip() or "/" in d:
                raise ServiceListError(f"{source}: category {cat!r}: {d!r} is not a domain name")
            out[d.strip().rstrip(".").lower().removeprefix("*.")] = str(cat)
    return str(doc.get("version", "")), out


@functools.lru_cache(maxsize=1)
def _packaged() -> tuple[str, dict]:
    """The packaged list, parsed once per process: the fleet path analyzes thousands of runs."""
    text = resources.files(__package__).joinpath("data/exfil_services.yml").read_text(encoding="utf-8")
    return _parse(text, "exfil_services.yml")


def load_services(extra=()) -> ServiceList:
    """The packaged list plus every file in ``extra`` (later files win on a repeated domain)."""
    version, packaged = _packaged()
    entries = dict(packaged)  # the cached list stays as packaged
    sources = [f"exfil_services.yml v{version}"]
    for path in extra:
        try:
            with open(path, encoding="utf-8") as f:
                t = f.read()
        except OSError as e:
            raise ServiceListError(f"{path}: cannot read ({e.strerror})") from None
        v, e2 = _parse(t, os.fspath(path))
        entries.update(e2)
        sources.append(os.fspath(path) + (f" v{v}" if v else ""))
    return ServiceList(version=version, entries=entries, sources=tuple(sources))


def known_services(lookups, dest, services: ServiceList):
    """Findings for lookups of / connections to listed services."""
    hits: dict = {}  # entry -> dict
    if lookups is not None and not lookups.empty:
        for s, name, q in zip(lookups["session"], lookups["name"], lookups["queries"]):
            m = services.match(name)
            if m:
                h = hits.setdefault(m[0], {"category": m[1], "names": set(), "queries": 0, "sessions": set(),
                                           "connections": 0, "orig_bytes": 0, "ports": set()})
                h["names"].add(name)
                h["queries"] += int(q)
                h["sessions"].add(s)
    if dest is not None and not dest.empty:
        for r in dest.itertuples(index=False):
            for name in r.names:
                m = services.match(name)
                if m:
                    h = hits.setdefault(m[0], {"category": m[1], "names": set(), "queries": 0, "sessions": set(),
                                               "connections": 0, "orig_bytes": 0, "ports": set()})
                    h["names"].add(name)
                    h["connections"] += int(r.connections)
                    h["orig_bytes"] += int(r.orig_bytes)
                    if r.port == r.port and r.port is not None:
                        h["ports"].add(int(r.port))
                    h["sessions"].add(r.session)
                    break
    recs = []
    for entry, h in sorted(hits.items()):
        cat = h["category"]
        high = cat in LOOKUP_HIGH or (cat in CONNECT_HIGH and h["connections"]) or h["orig_bytes"] >= UPLOAD_HIGH_BYTES
        what = (f"{h['connections']} connection{'s' if h['connections'] != 1 else ''} ({human_bytes(h['orig_bytes'])} sent)"
                if h["connections"] else f"{h['queries']} lookup{'s' if h['queries'] != 1 else ''}, no connection")
        names = sorted(h["names"])
        recs.append({
            "analyzer": ANALYZER,
            "severity": "high" if high else "medium",
            "indicator": entry,
            "summary": f"{cat.replace('_', ' ')} service {entry}: {what}; e.g. {names[0]}",
            "evidence": {"category": cat, "entry": entry, "names": names[:10], "queries": h["queries"],
                         "connections": h["connections"], "orig_bytes": h["orig_bytes"], "ports": sorted(h["ports"]),
                         "list": list(services.sources)},
            "sessions": sorted(x for x in h["sessions"] if x),
        })
    return make_findings(recs)
