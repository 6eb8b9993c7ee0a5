"""`--redef NAME=VALUE`: the Zeek settings a recording can be matched to, as Zeek takes them on its command line.

Zeek's own btests run, for example, ``zeek -r trace.pcap dns_max_queries=3``
or redefine ``Tunnel::max_depth`` in their script. Two kinds are taken: the
DNS analyzer's (recorder/logs/dns/redefs.py), which the session's parser
reads, and ``Tunnel::max_depth``, which the kernel program reads (at most
the 4 layers it is built for, Zeek's default).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cicd_audit.recorder.kernel.zeek_defaults import TUNNEL_MAX_DEPTH
from cicd_audit.recorder.logs.dns import redefs as dns_redefs
from cicd_audit.recorder.logs.dns.redefs import RedefError
from cicd_audit.recorder.logs.dns.wire import ParseOptions

TUNNEL_MAX_DEPTH_NAME = "Tunnel::max_depth"
NAMES = (*dns_redefs.REDEFS, TUNNEL_MAX_DEPTH_NAME)

__all__ = ["NAMES", "RedefError", "Redefs", "parse_redefs"]


@dataclass(frozen=True)
class Redefs:
    dns: ParseOptions | None = None         # None: Zeek's defaults
    tunnel_max_depth: int | None = None     # None: Zeek's default (TUNNEL_MAX_DEPTH)


def parse_redefs(items: Iterable[str]) -> Redefs:
    """Each ``name=value`` applied in turn (a later one wins, as in Zeek)."""
    dns_items, depth = [], None
    for item in items:
        name, equals, value = (part.strip() for part in item.partition("="))
        if not equals or name not in NAMES:
            raise RedefError(f"{item!r} is not NAME=VALUE with NAME one of {', '.join(NAMES)}")
        if name != TUNNEL_MAX_DEPTH_NAME:
            dns_items.append(item)
        elif value.isdigit() and int(value) <= TUNNEL_MAX_DEPTH:
            depth = int(value)
        else:
            raise RedefError(f"{name}: {value!r} is not a count from 0 to {TUNNEL_MAX_DEPTH} "
                             f"(the recorder opens at most {TUNNEL_MAX_DEPTH} layers of tunnels)")
    return Redefs(dns_redefs.parse_redefs(dns_items) if dns_items else None, depth)
