"""Zeek's DNS settings, given as Zeek takes them on its command line (``name=value``).

A recording made to match a Zeek run needs the settings that run had: Zeek's
own btests run, for example, ``zeek -r trace.pcap dns_max_queries=3``.
`record --redef NAME=VALUE` and `agent --redef` take the ones that change what
the DNS analyzer logs; each fills a field of ParseOptions, whose defaults are
init-bare.zeek's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from cicd_audit.recorder.logs.dns.wire import ParseOptions


class RedefError(ValueError):
    pass


def _count(text: str) -> int:
    if not text.isdigit():
        raise ValueError("a count (0, 1, 2, ...)")
    return int(text)


def _bool(text: str) -> bool:
    if text not in ("T", "F"):
        raise ValueError("T or F")
    return text == "T"


# Zeek's name: (the ParseOptions field it sets, how its value reads).
REDEFS = {
    "dns_max_queries": ("max_queries", _count),
    "dns_max_compression_chain_depth": ("max_compression_depth", _count),
    "dns_skip_all_auth": ("skip_all_auth", _bool),
    "dns_skip_all_addl": ("skip_all_addl", _bool),
}


def parse_redefs(items: Iterable[str]) -> ParseOptions:
    """ParseOptions with each ``name=value`` applied in turn (a later one wins, as in Zeek)."""
    changes = {}
    for item in items:
        name, equals, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or name not in REDEFS:
            raise RedefError(f"{item!r} is not NAME=VALUE with NAME one of {', '.join(REDEFS)}")
        field, read = REDEFS[name]
        try:
            changes[field] = read(value)
        except ValueError as exc:
            raise RedefError(f"{name}: {value!r} is not {exc}") from None
    return dataclasses.replace(ParseOptions(), **changes)
