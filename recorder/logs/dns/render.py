"""What Zeek 9.1 writes in dns.log's ``answers`` and ``TTLs`` for each RR.

base/protocols/dns/main.zeek turns each handled RR event into one "reply"
string and appends it to ``answers`` (with the RR's TTL in ``TTLs``) unless
the string is empty. The formats are Zeek's, including its oddities (MX and
SRV show only the host, TXT strings carry their byte length, LOC has two
spaces after the colon, RRSIG shows the covered type as a number).
:func:`resolved_address` gives the address an A/AAAA answer resolved, from
the record itself, for what the text of ``answers`` cannot say reliably (a
CNAME target can read like an address).
"""

from __future__ import annotations

import ipaddress

from .message import ANSWER, PREREQUISITE, T_A, T_AAAA, UPDATE, ResourceRecord, wire_bytes, zeek_addr_str
from .names import CLASS_ANY, CLASS_NONE, OPCODE_DYNAMIC_UPDATE, TYPE_ANY, qtype_name

# Sections whose RRs can reach dns.log (main.zeek's do_reply filter).
LOGGED_SECTIONS = (ANSWER, PREREQUISITE, UPDATE)


def _char_strings(tag: str, strings: list) -> str:
    # One "<TAG> <byte length> <bytes>" per <character-string>, space-joined.
    return " ".join(f"{tag} {len(wire_bytes(s))} {s}" for s in strings)


def reply_string(rr: ResourceRecord, opcode: int, is_netbios: bool) -> str | None:
    """The reply string main.zeek builds for ``rr``'s event, or None when no reply hook runs.

    ``""`` means the hook runs (it can set ``rtt``, ``AA``, ``RA``, ``query``)
    but adds nothing to ``answers`` (WKS).
    """
    ev = rr.event
    d = rr.rdata
    update = opcode == OPCODE_DYNAMIC_UPDATE and not is_netbios
    if ev == "dns_A_reply":
        return f"A {rr.name} {d['address']}" if update else d["address"]
    if ev == "dns_AAAA_reply":
        return f"AAAA {rr.name} {d['address']}" if update else d["address"]
    if ev == "dns_A6_reply":
        return f"A6 {rr.name} {d['address']}" if update else d["address"]
    if ev in ("dns_NS_reply", "dns_CNAME_reply", "dns_PTR_reply"):
        return d["target"]
    if ev == "dns_MX_reply":
        return d["exchange"]
    if ev == "dns_SOA_reply":
        return d["mname"]
    if ev == "dns_WKS_reply":
        return ""
    if ev == "dns_SRV_reply":
        return d["target"]
    if ev == "dns_TXT_reply":
        return _char_strings("TXT", d["strings"])
    if ev == "dns_SPF_reply":
        return _char_strings("SPF", d["strings"])
    if ev == "dns_NAPTR_reply":
        tail = d["regexp"]
        if d["replacement"]:
            tail = f"{tail} {d['replacement']}" if tail else d["replacement"]
        return f"NAPTR {d['order']} {d['preference']} {d['flags']} {d['service']} {tail}"
    if ev == "dns_RRSIG":
        return f"RRSIG {d['type_covered']} {d['signer'] or '<Root>'}"
    if ev == "dns_DNSKEY":
        return f"DNSKEY {d['algorithm']}"
    if ev == "dns_NSEC":
        return f"NSEC {rr.name} {d['next_name']}"
    if ev == "dns_NSEC3":
        return "NSEC3"
    if ev == "dns_NSEC3PARAM":
        return "NSEC3PARAM"
    if ev == "dns_DS":
        return f"DS {d['algorithm']} {d['digest_type']}"
    if ev == "dns_BINDS":
        return "BIND9 signing signal"
    if ev == "dns_SSHFP":
        return "SSHFP: " + d["fingerprint"].hex()
    if ev == "dns_LOC":
        return f"LOC:  {d['size']} {d['horiz_pre']} {d['vert_pre']}"
    if ev == "dns_unknown_reply":
        return f"<unknown type={rr.rtype}>"
    if ev == "dns_dynamic_update_pre":
        return "pre: " + _prerequisite(rr)
    if ev == "dns_dynamic_update_del":
        return "del: " + _deletion(rr)
    return None     # no do_reply for this event in main.zeek (HINFO, CAA, SVCB, TKEY, ...)


def _prerequisite(rr: ResourceRecord) -> str:
    # RFC 2136 2.4.1-2.4.5
    if rr.rclass == CLASS_NONE and rr.rtype == TYPE_ANY:
        return f"NameNotInUse {rr.name}"
    if rr.rclass == CLASS_ANY and rr.rtype == TYPE_ANY:
        return f"NameInUse {rr.name}"
    if rr.rclass == CLASS_NONE:
        return f"NoRRSet {qtype_name(rr.rtype)} {rr.name}"
    return f"RRSetExists {qtype_name(rr.rtype)} {rr.name}"


def _deletion(rr: ResourceRecord) -> str:
    # RFC 2136 2.5.2-2.5.4 (only class ANY reaches this event in Zeek)
    if rr.rclass == CLASS_ANY and rr.rtype == TYPE_ANY:
        return f"RRSet * {rr.name}"
    if rr.rclass == CLASS_NONE:
        return f"RR {qtype_name(rr.rtype)} {rr.name}"
    return f"RRSet {qtype_name(rr.rtype)}"


def logged_answer(rr: ResourceRecord, opcode: int, reply: str | None) -> str | None:
    """The exact ``answers`` entry for ``rr`` (with the ``add: `` prefix of updates), given its
    :func:`reply_string` (the caller has it already: computed once per RR).

    None when the RR adds nothing to ``answers``.
    """
    if not reply:
        return None
    if opcode == OPCODE_DYNAMIC_UPDATE and rr.section == UPDATE and not reply.startswith("del:"):
        reply = "add: " + reply
    return reply


def ttl_seconds(rr: ResourceRecord) -> float:
    """The ``TTLs`` entry for ``rr``: the 32-bit TTL as an interval in seconds."""
    return float(rr.ttl)


# The events whose RDATA is an address (RFC 1035 3.4.1; RFC 3596; RFC 2874).
ADDRESS_EVENTS = frozenset(("dns_A_reply", "dns_AAAA_reply", "dns_A6_reply"))


def resolved_address(rr: ResourceRecord, opcode: int, is_netbios: bool) -> str | None:
    """The address ``rr`` resolved its name to, as events.address_text writes a connection's; else None.

    Only A, AAAA and A6 records count, and not in a dynamic update (it adds
    records, it resolves nothing). Notices look the text up by a refused
    connection's address, so it is Python's form, not Zeek's: the two differ
    only where Zeek writes an embedded IPv4 address (``::1.2.3.4``; IPv4-mapped
    addresses are plain IPv4 in both).
    """
    if rr.event not in ADDRESS_EVENTS or (opcode == OPCODE_DYNAMIC_UPDATE and not is_netbios):
        return None
    return _python_address(rr.rdata["address"])


def _python_address(zeek_text: str) -> str:
    """Python's text for an address Zeek wrote: they differ only for IPv4 embedded in IPv6."""
    if "." in zeek_text and ":" in zeek_text:
        return str(ipaddress.IPv6Address(zeek_text))
    return zeek_text


def plain_answer(rtype: int, value) -> tuple:
    """``(reply, address)`` for an answer of a plain message (message.read_plain: the A address's
    text, the AAAA address's 16 bytes, or the NS, CNAME or PTR target), in a standard query: its
    reply string as reply_string gives it, and the address as resolved_address does (None but for
    A and AAAA)."""
    if rtype == T_A:
        return value, value
    if rtype == T_AAAA:
        text = zeek_addr_str(value)
        return text, _python_address(text)
    return value, None
