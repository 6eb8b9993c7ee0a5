"""RDATA of each RR type, decoded as Zeek 9.1's DNS_Interpreter decodes it.

``parse(walk, cur, rr)`` finds the type's handler in ``HANDLERS`` (type ->
function) and runs it; any other type is Zeek's "unknown" path. A handler
fills ``rr.rdata`` (keys per type: docs/dns.md), sets ``rr.event`` through
``walk.event()`` and returns False where Zeek stops the walk (after
``walk.fail()``). ``walk`` is message.py's interpreter: it supplies
``name()``, ``wants()``, ``weird()``, ``fail()`` and the message bytes.

Zeek takes a different path for many types when no loaded script handles
their event: it skips the RDATA unread. ``_skipped_unless(event)`` is that
shared prologue, so each handler below holds only its own decoding.
"""

from __future__ import annotations

import socket
from typing import Callable

from .wire import (
    NETBIOS_PORT,
    T_A,
    T_A6,
    T_AAAA,
    T_BINDS,
    T_CAA,
    T_CNAME,
    T_DNSKEY,
    T_DS,
    T_EDNS,
    T_HINFO,
    T_HTTPS,
    T_LOC,
    T_MX,
    T_NAPTR,
    T_NBS,
    T_NS,
    T_NSEC,
    T_NSEC3,
    T_NSEC3PARAM,
    T_PTR,
    T_RRSIG,
    T_SOA,
    T_SPF,
    T_SRV,
    T_SSHFP,
    T_SVCB,
    T_TKEY,
    T_TSIG,
    T_TXT,
    T_WKS,
    TSIG_NAME_BUFFER,
    Cursor,
    ResourceRecord,
    wire_str,
    zeek_addr_str,
)

# DNSSEC algorithm numbers Zeek accepts silently (RFC 8624 / IANA registry);
# others raise a DNSSEC_*_ZoneSignAlgo weird.
_DNSSEC_ALGOS_OK = {2, 3, 4, 5, 6, 7, 8, 10, 12, 13, 14, 15, 16}
_DNSSEC_ALGO_WEIRD = {1: "NotRecommended", 252: "Indirect", 253: "PrivateDNS", 254: "PrivateOID"}

Handler = Callable[..., bool]     # (walk, cur, rr) -> False where Zeek stops the walk


def parse(walk, cur: Cursor, rr: ResourceRecord) -> bool:
    """Decode rr's RDATA at cur; False where Zeek stops parsing the message."""
    handler = HANDLERS.get(rr.rtype)
    if handler is not None:
        return handler(walk, cur, rr)
    # Any other type: Zeek reports it and skips the RDATA.
    if walk.wants("dns_unknown_reply"):
        rr.event = "dns_unknown_reply"
    walk.weird("DNS_RR_unknown_type", str(rr.rtype))
    rr.rdata["data"] = cur.stream(rr.rdlength)
    return True


def _skipped_unless(event: str) -> Callable[[Handler], Handler]:
    """Zeek skips the RDATA unread when no loaded script handles event."""
    def wrap(decode: Handler) -> Handler:
        def handler(walk, cur: Cursor, rr: ResourceRecord) -> bool:
            if not walk.wants(event):
                cur.skip(rr.rdlength)
                return True
            return decode(walk, cur, rr)
        handler.__name__ = decode.__name__
        return handler
    return wrap


def _length_check(walk, cur: Cursor, rr: ResourceRecord, start: int) -> None:
    # Zeek reports (and otherwise ignores) RDATA whose parse did not end at RDLENGTH.
    if cur.pos - start != rr.rdlength:
        walk.weird("DNS_RR_length_mismatch")


def char_string(walk, cur: Cursor, left: list) -> str | None:
    """A <character-string> (RFC 1035 3.3); ``left`` is the RDATA left, updated in place."""
    if left[0] <= 0:
        return None
    size = cur._at(cur.pos)
    left[0] -= 1
    cur.skip(1)
    if size > left[0]:
        walk.weird("DNS_TXT_char_str_past_rdlen")
        return None
    s = walk.data[cur.pos:cur.pos + size]
    left[0] -= size
    cur.skip(size)
    return wire_str(s)


# -- addresses and names (RFC 1035 3.3, 3.4; RFC 3596; RFC 2874) ------------

def _a(walk, cur, rr):
    if rr.rdlength != 4:
        return walk.fail("A_bad_length", "DNS_RR_bad_length", cur)
    rr.rdata["address"] = socket.inet_ntoa(cur.long().to_bytes(4, "big"))    # str(IPv4Address)'s text, no object
    return walk.event(rr, "dns_A_reply")


def _aaaa(walk, cur, rr):
    # Zeek reads 16 bytes whatever RDLENGTH says (A6 included), with zeros for
    # what is past the end of the message.
    words = [cur.long() for _ in range(4)]
    rr.rdata["address"] = zeek_addr_str(b"".join(w.to_bytes(4, "big") for w in words))
    return walk.event(rr, "dns_AAAA_reply" if rr.rtype == T_AAAA else "dns_A6_reply")


_TARGET_EVENTS = {T_NS: "dns_NS_reply", T_CNAME: "dns_CNAME_reply", T_PTR: "dns_PTR_reply"}


def _target(walk, cur, rr):
    start = cur.pos
    target = walk.name(cur)
    if target is None:
        return False
    _length_check(walk, cur, rr, start)
    rr.rdata["target"] = target
    return walk.event(rr, _TARGET_EVENTS[rr.rtype])


def _soa(walk, cur, rr):
    start = cur.pos
    mname = walk.name(cur)
    if mname is None:
        return False
    rname = walk.name(cur)
    if rname is None:
        return False
    if cur.left < 20:
        return walk.fail("SOA_too_short", None, cur)
    serial, refresh, retry, expire, minimum = (cur.long() for _ in range(5))
    _length_check(walk, cur, rr, start)
    rr.rdata.update(mname=mname, rname=rname, serial=serial, refresh=refresh,
                    retry=retry, expire=expire, minimum=minimum)
    return walk.event(rr, "dns_SOA_reply")


@_skipped_unless("dns_WKS_reply")
def _wks(walk, cur, rr):
    # Zeek raises the event but leaves the cursor on the RDATA.
    rr.event = "dns_WKS_reply"
    return True


@_skipped_unless("dns_HINFO_reply")
def _hinfo(walk, cur, rr):
    left = [rr.rdlength]
    cpu = char_string(walk, cur, left)
    os_ = char_string(walk, cur, left)
    rr.rdata.update(cpu=cpu, os=os_)
    rr.event = "dns_HINFO_reply"
    return left[0] == 0 or walk.fail("HINFO_length", None, cur)


def _mx(walk, cur, rr):
    start = cur.pos
    pref = cur.short()
    exchange = walk.name(cur)
    if exchange is None:
        return False
    _length_check(walk, cur, rr, start)
    rr.rdata.update(preference=pref, exchange=exchange)
    return walk.event(rr, "dns_MX_reply")


def _strings(walk, cur, rr, event):
    left = [rr.rdlength]
    strings = []
    while True:
        s = char_string(walk, cur, left)
        if s is None:
            break
        strings.append(s)
    rr.rdata["strings"] = strings
    rr.event = event
    return left[0] == 0 or walk.fail("char_string_past_rdlength", None, cur)


@_skipped_unless("dns_TXT_reply")
def _txt(walk, cur, rr):
    return _strings(walk, cur, rr, "dns_TXT_reply")


@_skipped_unless("dns_SPF_reply")
def _spf(walk, cur, rr):
    return _strings(walk, cur, rr, "dns_SPF_reply")


@_skipped_unless("dns_CAA_reply")
def _caa(walk, cur, rr):
    flags = cur.short()
    tag_len = flags & 0xFF
    left = rr.rdlength - 2
    if tag_len >= left:
        return walk.fail("CAA_tag_past_rdlength", "DNS_CAA_char_str_past_rdlen", cur)
    tag = cur.stream(tag_len)
    left -= tag_len
    value = cur.stream(left)
    left -= len(value)
    rr.rdata.update(flags=flags >> 8, tag=wire_str(tag), value=wire_str(value))
    rr.event = "dns_CAA_reply"
    return left == 0 or walk.fail("CAA_length", None, cur)


def _nbs(walk, cur, rr):
    cur.skip(rr.rdlength)
    return True


def _srv(walk, cur, rr):
    if walk.resp_port == NETBIOS_PORT:
        # NBSTAT (RFC 1002 4.2.18): Zeek neither parses nor skips it.
        return True
    start = cur.pos
    prio, weight, port = cur.short(), cur.short(), cur.short()
    target = walk.name(cur)
    if target is None:
        return False
    _length_check(walk, cur, rr, start)
    rr.rdata.update(priority=prio, weight=weight, port=port, target=target)
    return walk.event(rr, "dns_SRV_reply")


def _naptr(walk, cur, rr):
    order, pref = cur.short(), cur.short()
    left = [rr.rdlength - 4]
    if cur.left <= 0 or left[0] <= 0:
        walk.msg.violation = walk.msg.violation or "DNS_NAPTR_too_short"
        return walk.fail("NAPTR_too_short", None, cur)
    flags = char_string(walk, cur, left)
    service = char_string(walk, cur, left)
    regexp = char_string(walk, cur, left)
    # A failed char-string does not stop Zeek from reading the replacement.
    replacement = walk.name(cur, downcase=False)
    if flags is None or service is None or regexp is None or replacement is None:
        walk.msg.violation = walk.msg.violation or "DNS_NAPTR_RR_too_short"
        if walk.msg.error is None:
            return walk.fail("NAPTR_RR_too_short", None, cur)
        return False
    rr.rdata.update(order=order, preference=pref, flags=flags, service=service,
                    regexp=regexp, replacement=replacement)
    return walk.event(rr, "dns_NAPTR_reply")


# -- EDNS and transaction security (RFC 6891, RFC 2930, RFC 8945) ----------

def _edns(walk, cur, rr):
    # OPT pseudo-RR (RFC 6891 6.1.2): class = UDP payload size, TTL = ext-rcode/version/flags.
    rr.rdata.update(payload_size=rr.rclass, extended_rcode=(rr.ttl >> 24) & 0xFF,
                    version=(rr.ttl >> 16) & 0xFF, z=rr.ttl & 0xFFFF, options=[])
    remaining = rr.rdlength
    while remaining >= 4:
        code, olen = cur.short(), cur.short()
        remaining -= 4
        if olen > remaining:
            return walk.fail("EDNS_option_past_rdlength", "EDNS_truncated_option", cur)
        odata = walk.data[cur.pos:cur.pos + olen]
        rr.rdata["options"].append((code, odata))
        _edns_option_weirds(walk, code, odata)
        cur.skip(olen)
        remaining -= olen
    if remaining != 0:
        return walk.fail("EDNS_option_past_rdlength", "EDNS_truncated_option", cur)
    return True


def _edns_option_weirds(walk, code: int, odata: bytes) -> None:
    if code == 8:   # Client Subnet, RFC 7871 6
        if len(odata) <= 4:
            walk.weird("EDNS_ECS_invalid_option_len")
            return
        family = (odata[0] << 8) | odata[1]
        src = odata[2]
        have = (len(odata) - 4) * 8
        for fam, bits, tag in ((1, 32, "v4"), (2, 128, "v6")):
            if family == fam:
                if src > bits:
                    walk.weird(f"EDNS_ECS_invalid_addr_{tag}_prefix", f"{src} bits")
                elif src > have:
                    walk.weird(f"EDNS_ECS_invalid_addr_{tag}", f"need {src} bits, have {have} bits")
    elif code == 11:   # TCP keepalive, RFC 7828 3.2
        if len(odata) in (0, 2) and walk.transport == "udp":
            walk.weird("EDNS_TCP_Keepalive_In_UDP")


@_skipped_unless("dns_TKEY")
def _tkey(walk, cur, rr):
    if cur.left < 16:
        return walk.fail("TKEY_too_short", None, cur)
    alg = walk.name(cur)
    if alg is None:
        return False
    inception, expiration = cur.long(), cur.long()
    mode, error = cur.short(), cur.short()
    key = cur.octets()
    cur.octets()
    rr.rdata.update(algorithm=alg, inception=inception, expiration=expiration,
                    mode=mode, error=error, key=key)
    rr.event = "dns_TKEY"
    return True


def _tsig(walk, cur, rr):
    # Parsed whatever the handlers; Zeek does not check RDLENGTH here.
    alg = walk.name(cur, size=TSIG_NAME_BUFFER)
    if alg is None:
        return False
    time_s, time_ms, fudge = cur.long(), cur.short(), cur.short()
    mac = cur.octets()
    orig_id, error = cur.short(), cur.short()
    cur.octets()
    rr.rdata.update(algorithm=alg, time_signed=time_s, time_ms=time_ms, fudge=fudge,
                    mac=mac, orig_id=orig_id, error=error)
    return walk.event(rr, "dns_TSIG_addl")


# -- DNSSEC (RFC 4034, RFC 5155) and BIND's signing state ------------------

def _dnssec_algo_weird(walk, kind: str, algo: int) -> None:
    if algo in _DNSSEC_ALGOS_OK:
        return
    what = _DNSSEC_ALGO_WEIRD.get(algo, "unknown")
    walk.weird(f"DNSSEC_{kind}_{what}_ZoneSignAlgo", str(algo))


@_skipped_unless("dns_RRSIG")
def _rrsig(walk, cur, rr):
    if cur.left < 18:
        return walk.fail("RRSIG_too_short", None, cur)
    type_covered = cur.short()
    al = cur.short()
    orig_ttl, sig_exp, sig_incep = cur.long(), cur.long(), cur.long()
    key_tag = cur.short()
    start = cur.pos
    signer = walk.name(cur)
    if signer is None:
        return False
    sig = cur.stream(rr.rdlength - ((cur.pos - start) + 18))
    _dnssec_algo_weird(walk, "RRSIG", al >> 8)
    rr.rdata.update(type_covered=type_covered, algorithm=al >> 8, labels=al & 0xFF,
                    orig_ttl=orig_ttl, expiration=sig_exp, inception=sig_incep,
                    key_tag=key_tag, signer=signer, signature=sig)
    rr.event = "dns_RRSIG"
    return True


@_skipped_unless("dns_DNSKEY")
def _dnskey(walk, cur, rr):
    if cur.left < 4:
        return walk.fail("DNSKEY_too_short", None, cur)
    flags = cur.short()
    pa = cur.short()
    key = cur.stream(rr.rdlength - 4)
    if flags & 0xFE7E:
        walk.weird("DNSSEC_DNSKEY_Invalid_Flag", str(flags))
    if flags & 0x0181 == 0x0181:
        walk.weird("DNSSEC_DNSKEY_Revoked_KSK", str(flags))
    if pa >> 8 != 3:
        walk.weird("DNSSEC_DNSKEY_Invalid_Protocol", str(pa >> 8))
    _dnssec_algo_weird(walk, "DNSKEY", pa & 0xFF)
    rr.rdata.update(flags=flags, protocol=pa >> 8, algorithm=pa & 0xFF, public_key=key)
    rr.event = "dns_DNSKEY"
    return True


def _bitmaps(walk, cur: Cursor, left: int, kind: str) -> list:
    out = []
    while left > 0 and cur.left > 0:
        wb = cur.short()
        if wb & 0xFF == 0:
            walk.weird(f"DNSSEC_{kind}_bitmapLen0", str(wb >> 8))
            break
        out.append(cur.stream(wb & 0xFF))
        left -= 2 + (wb & 0xFF)
    return out


@_skipped_unless("dns_NSEC")
def _nsec(walk, cur, rr):
    start = cur.pos
    nxt = walk.name(cur)
    if nxt is None:
        return False
    rr.rdata.update(next_name=nxt, bitmaps=_bitmaps(walk, cur, rr.rdlength - (cur.pos - start), "NSEC"))
    rr.event = "dns_NSEC"
    return True


@_skipped_unless("dns_NSEC3")
def _nsec3(walk, cur, rr):
    if cur.left < 6:
        return walk.fail("NSEC3_too_short", None, cur)
    start = cur.pos
    af = cur.short()
    iterations = cur.short()
    salt = cur.stream(cur.byte()) if cur.left > 0 else b""
    nhash = cur.stream(cur.byte()) if cur.left > 0 else b""
    rr.rdata.update(hash_algorithm=af >> 8, flags=af & 0xFF, iterations=iterations,
                    salt=salt, next_hash=nhash,
                    bitmaps=_bitmaps(walk, cur, rr.rdlength - (cur.pos - start), "NSEC3"))
    rr.event = "dns_NSEC3"
    return True


@_skipped_unless("dns_NSEC3PARAM")
def _nsec3param(walk, cur, rr):
    if cur.left < 5:
        return walk.fail("NSEC3PARAM_too_short", None, cur)
    af = cur.short()
    iterations = cur.short()
    salt = cur.stream(cur.byte()) if cur.left > 0 else b""
    rr.rdata.update(hash_algorithm=af >> 8, flags=af & 0xFF, iterations=iterations, salt=salt)
    rr.event = "dns_NSEC3PARAM"
    return True


@_skipped_unless("dns_DS")
def _ds(walk, cur, rr):
    if cur.left < 4:
        return walk.fail("DS_too_short", None, cur)
    key_tag = cur.short()
    ad = cur.short()
    digest = cur.stream(rr.rdlength - 4)
    dtype = ad & 0xFF
    if dtype == 0:
        walk.weird("DNSSEC_DS_ReservedDigestType", str(dtype))
    elif dtype not in (1, 2, 3, 4):
        walk.weird("DNSSEC_DS_unknown_DigestType", str(dtype))
    rr.rdata.update(key_tag=key_tag, algorithm=ad >> 8, digest_type=dtype, digest=digest)
    rr.event = "dns_DS"
    return True


@_skipped_unless("dns_BINDS")
def _binds(walk, cur, rr):
    if cur.left < 5:
        return walk.fail("BINDS_too_short", None, cur)
    v = cur.long()
    complete = cur.byte()    # Zeek reads 5 bytes whatever RDLENGTH says
    rr.rdata.update(algorithm=v >> 24, key_id=(v >> 8) & 0xFFFF, removal_flag=v & 0xFF,
                    complete_flag=complete)
    rr.event = "dns_BINDS"
    return True


# -- others with their own Zeek path (RFC 4255, RFC 1876, RFC 9460) --------

@_skipped_unless("dns_SSHFP")
def _sshfp(walk, cur, rr):
    if cur.left < 2:
        return walk.fail("SSHFP_too_short", None, cur)
    af = cur.short()
    fp = cur.stream(rr.rdlength - 2)
    rr.rdata.update(algorithm=af >> 8, fp_type=af & 0xFF, fingerprint=fp)
    rr.event = "dns_SSHFP"
    return True


def _loc(walk, cur, rr):
    # The length is checked before Zeek looks at the handlers.
    if rr.rdlength != 16:
        return walk.fail("LOC_bad_length", "dns_invalid_loc_length", cur)
    if not walk.wants("dns_LOC"):
        cur.skip(16)
        return True
    vs, hv = cur.short(), cur.short()
    lat, lon, alt = cur.long(), cur.long(), cur.long()
    if vs >> 8 != 0:
        walk.weird("DNS_LOC_version_unrecognized", str(vs >> 8))
    rr.rdata.update(version=vs >> 8, size=vs & 0xFF, horiz_pre=hv >> 8, vert_pre=hv & 0xFF,
                    latitude=lat, longitude=lon, altitude=alt)
    rr.event = "dns_LOC"
    return True


def _svcb(walk, cur, rr):
    # RFC 9460 2.2; parsed whatever the handlers.
    if rr.rdlength < 3:
        return walk.fail("SVCB_too_short", "DNS_SVCB_wrong_length", cur)
    start = cur.pos
    prio = cur.short()
    target = walk.name(cur, downcase=False)
    if target is None:
        return False
    if target == "":
        target = "."
    params_len = rr.rdlength - (cur.pos - start)
    params = []
    if params_len > 0:
        if prio == 0:
            walk.weird("DNS_SVCB_aliasmode_with_params")
        params = _svc_params(walk, cur, params_len)
    rr.rdata.update(priority=prio, target=target, params=params)
    return walk.event(rr, "dns_SVCB" if rr.rtype == T_SVCB else "dns_HTTPS")


def _svc_params(walk, cur: Cursor, left: int) -> list:
    """SvcParams (RFC 9460 2.2): Zeek's weirds; every value consumes its length."""
    out = []
    while left >= 4:
        key, vlen = cur.short(), cur.short()
        left -= 4
        if vlen > left:
            walk.weird("DNS_SVCB_param_value_toobig", f"{vlen} capped to {left}")
            vlen = left
        else:
            value = walk.data[cur.pos:cur.pos + vlen]
            if key == 0 and (vlen == 0 or vlen % 2):
                walk.weird("DNS_SVCB_mandatory_length_invalid")
            elif key == 1 and not _alpn_ok(value):
                walk.weird("DNS_SVCB_alpn_length_invalid")
            elif key == 2 and vlen > 0:
                walk.weird("DNS_SVCB_nodefaultalpn_value")
            elif key == 3 and vlen != 2:
                walk.weird("DNS_SVCB_port_length_invalid")
            elif key in (4, 6) and vlen % (4 if key == 4 else 16):
                walk.weird("DNS_SVCB_hint_length_invalid")
            elif key > 6:
                walk.weird("DNS_SVCB_key_reserved_or_invalid")
        out.append((key, cur.stream(vlen)))
        left -= vlen
    return out


def _alpn_ok(value: bytes) -> bool:
    """Zeek's check of an alpn SvcParam: length-prefixed, non-empty IDs filling the value."""
    i = 0
    while i + 2 <= len(value):
        n = value[i]
        i += 1
        if n == 0 or n + i > len(value):
            return False
        i += n
    return i == len(value)


HANDLERS: dict[int, Handler] = {
    T_A: _a, T_AAAA: _aaaa, T_A6: _aaaa, T_NS: _target, T_CNAME: _target, T_PTR: _target,
    T_SOA: _soa, T_WKS: _wks, T_HINFO: _hinfo, T_MX: _mx, T_TXT: _txt, T_SPF: _spf, T_CAA: _caa,
    T_NBS: _nbs, T_SRV: _srv, T_NAPTR: _naptr, T_EDNS: _edns, T_TKEY: _tkey, T_TSIG: _tsig,
    T_RRSIG: _rrsig, T_DNSKEY: _dnskey, T_NSEC: _nsec, T_NSEC3: _nsec3, T_NSEC3PARAM: _nsec3param,
    T_DS: _ds, T_BINDS: _binds, T_SSHFP: _sshfp, T_LOC: _loc, T_SVCB: _svcb, T_HTTPS: _svcb,
}
