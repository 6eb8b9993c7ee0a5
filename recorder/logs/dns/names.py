"""Code-to-name tables for dns.log, spelled exactly as Zeek 9.1 spells them.

The names are the ones in Zeek's ``scripts/base/protocols/dns/consts.zeek``
(``query_types``, ``classes``, ``base_errors``, ``opcodes``,
``netbios_opcodes``) because dns.log is compared with Zeek's baselines byte for
byte; where Zeek's spelling differs from IANA's registry (``*`` for ANY,
``C_INTERNET`` for IN, ``NXRRSet``, ``WINS-R``) Zeek's wins. Each line names
the document that defines the code. Codes missing from a table get Zeek's
fallback name, e.g. ``query-300`` or ``qclass-32769``.
"""

from __future__ import annotations

# RR TYPE / QTYPE -> name (consts.zeek ``query_types``).
QUERY_TYPES: dict[int, str] = {
    1: "A",            # RFC 1035 3.2.2
    2: "NS",           # RFC 1035 3.2.2
    3: "MD",           # RFC 1035 3.2.2 (obsolete)
    4: "MF",           # RFC 1035 3.2.2 (obsolete)
    5: "CNAME",        # RFC 1035 3.2.2
    6: "SOA",          # RFC 1035 3.2.2
    7: "MB",           # RFC 1035 3.2.2 (experimental)
    8: "MG",           # RFC 1035 3.2.2 (experimental)
    9: "MR",           # RFC 1035 3.2.2 (experimental)
    10: "NULL",        # RFC 1035 3.2.2
    11: "WKS",         # RFC 1035 3.2.2
    12: "PTR",         # RFC 1035 3.2.2
    13: "HINFO",       # RFC 1035 3.2.2
    14: "MINFO",       # RFC 1035 3.2.2
    15: "MX",          # RFC 1035 3.2.2
    16: "TXT",         # RFC 1035 3.2.2
    17: "RP",          # RFC 1183 2.2
    18: "AFSDB",       # RFC 1183 1
    19: "X25",         # RFC 1183 3.1
    20: "ISDN",        # RFC 1183 3.2
    21: "RT",          # RFC 1183 3.3
    22: "NSAP",        # RFC 1706 5
    23: "NSAP-PTR",    # RFC 1706 6
    24: "SIG",         # RFC 2535 4
    25: "KEY",         # RFC 2535 3
    26: "PX",          # RFC 2163 4
    27: "GPOS",        # RFC 1712 3
    28: "AAAA",        # RFC 3596 2.1
    29: "LOC",         # RFC 1876 2
    30: "NXT",         # RFC 2535 5 (obsolete)
    31: "EID",         # IANA DNS parameters (Patton, Nimrod)
    32: "NIMLOC",      # IANA DNS parameters (Patton); NetBIOS NB in RFC 1002 4.2.1.3
    33: "SRV",         # RFC 2782; NetBIOS NBSTAT in RFC 1002 4.2.1.3
    34: "ATMA",        # IANA DNS parameters (ATM Forum af-dans-0152.000)
    35: "NAPTR",       # RFC 3403 4
    36: "KX",          # RFC 2230 3
    37: "CERT",        # RFC 4398 2
    38: "A6",          # RFC 2874 3 (historic, RFC 6563)
    39: "DNAME",       # RFC 6672 2.1
    40: "SINK",        # IANA DNS parameters (Eastlake draft)
    41: "OPT",         # RFC 6891 6.1.1
    42: "APL",         # RFC 3123 4
    43: "DS",          # RFC 4034 5
    44: "SSHFP",       # RFC 4255 3
    45: "IPSECKEY",    # RFC 4025 2
    46: "RRSIG",       # RFC 4034 3
    47: "NSEC",        # RFC 4034 4
    48: "DNSKEY",      # RFC 4034 2
    49: "DHCID",       # RFC 4701 3
    50: "NSEC3",       # RFC 5155 3
    51: "NSEC3PARAM",  # RFC 5155 4
    52: "TLSA",        # RFC 6698 2
    53: "SMIMEA",      # RFC 8162 2
    55: "HIP",         # RFC 8005 5
    56: "NINFO",       # IANA DNS parameters (Reid)
    57: "RKEY",        # IANA DNS parameters (Reid)
    58: "TALINK",      # IANA DNS parameters (Wijngaards)
    59: "CDS",         # RFC 7344 3.1
    60: "CDNSKEY",     # RFC 7344 3.2
    61: "OPENPGPKEY",  # RFC 7929 2
    62: "CSYNC",       # RFC 7477 2
    63: "ZONEMD",      # RFC 8976 2
    64: "SVCB",        # RFC 9460 2
    65: "HTTPS",       # RFC 9460 9
    99: "SPF",         # RFC 4408 3.1.1 (obsoleted by RFC 7208)
    100: "UINFO",      # IANA DNS parameters (reserved)
    101: "UID",        # IANA DNS parameters (reserved)
    102: "GID",        # IANA DNS parameters (reserved)
    103: "UNSPEC",     # IANA DNS parameters (reserved)
    104: "NID",        # RFC 6742 2.1
    105: "L32",        # RFC 6742 2.2
    106: "L64",        # RFC 6742 2.3
    107: "LP",         # RFC 6742 2.4
    108: "EUI48",      # RFC 7043 3
    109: "EUI64",      # RFC 7043 4
    249: "TKEY",       # RFC 2930 2
    250: "TSIG",       # RFC 8945 4.2
    251: "IXFR",       # RFC 1995 3
    252: "AXFR",       # RFC 1035 3.2.3; RFC 5936
    253: "MAILB",      # RFC 1035 3.2.3
    254: "MAILA",      # RFC 1035 3.2.3 (obsolete)
    255: "*",          # RFC 1035 3.2.3 (ANY); RFC 8482
    256: "URI",        # RFC 7553 4.5
    257: "CAA",        # RFC 8659 4
    32768: "TA",       # IANA DNS parameters (DNSSEC Trust Authorities)
    32769: "DLV",      # RFC 4431 2
    65281: "WINS",     # Microsoft [MS-DNSP] 2.2.2.2.4.18 (private use range)
    65282: "WINS-R",   # Microsoft [MS-DNSP] 2.2.2.2.4.19 (private use range)
    65422: "XPF",      # IANA DNS parameters (draft-bellis-dnsop-xpf)
    65521: "INTEGRITY",  # Google DNS integrity check (private use range)
}

# QCLASS -> name (consts.zeek ``classes``).
CLASSES: dict[int, str] = {
    1: "C_INTERNET",   # RFC 1035 3.2.4 (IN)
    2: "C_CSNET",      # RFC 1035 3.2.4 (CS, obsolete)
    3: "C_CHAOS",      # RFC 1035 3.2.4 (CH)
    4: "C_HESIOD",     # RFC 1035 3.2.4 (HS)
    254: "C_NONE",     # RFC 2136 1.3 (NONE)
    255: "C_ANY",      # RFC 1035 3.2.5 (*)
}

# RCODE -> name (consts.zeek ``base_errors``). dns.log only ever sees 0-15:
# the header holds four bits and Zeek does not fold in the EDNS extended RCODE.
RCODES: dict[int, str] = {
    0: "NOERROR",      # RFC 1035 4.1.1
    1: "FORMERR",      # RFC 1035 4.1.1
    2: "SERVFAIL",     # RFC 1035 4.1.1
    3: "NXDOMAIN",     # RFC 1035 4.1.1
    4: "NOTIMP",       # RFC 1035 4.1.1
    5: "REFUSED",      # RFC 1035 4.1.1
    6: "YXDOMAIN",     # RFC 2136 2.2
    7: "YXRRSET",      # RFC 2136 2.2
    8: "NXRRSet",      # RFC 2136 2.2 (Zeek's capitalisation)
    9: "NOTAUTH",      # RFC 2136 2.2; RFC 8945 5.3.2
    10: "NOTZONE",     # RFC 2136 2.2
    11: "unassigned-11",  # IANA DNS RCODEs (unassigned)
    12: "unassigned-12",  # IANA DNS RCODEs (unassigned)
    13: "unassigned-13",  # IANA DNS RCODEs (unassigned)
    14: "unassigned-14",  # IANA DNS RCODEs (unassigned)
    15: "unassigned-15",  # IANA DNS RCODEs (unassigned)
    16: "BADVERS",     # RFC 6891 9 (also BADSIG in RFC 8945)
    17: "BADKEY",      # RFC 8945 5.3.2
    18: "BADTIME",     # RFC 8945 5.3.2
    19: "BADMODE",     # RFC 2930 2.6
    20: "BADNAME",     # RFC 2930 2.6
    21: "BADALG",      # RFC 2930 2.6
    22: "BADTRUNC",    # RFC 8945 5.3.2
    23: "BADCOOKIE",   # RFC 7873 8
    3842: "BADSIG",    # Zeek's translation of TSIG error 16 (RFC 8945 5.3.2)
}

# OPCODE -> name for DNS (consts.zeek ``opcodes``).
OPCODES: dict[int, str] = {
    0: "query",            # RFC 1035 4.1.1 (QUERY)
    1: "iquery",           # RFC 1035 4.1.1 (IQUERY, obsoleted by RFC 3425)
    2: "server-status",    # RFC 1035 4.1.1 (STATUS)
    4: "notify",           # RFC 1996 3
    5: "dynamic-update",   # RFC 2136 1.3 (UPDATE)
    6: "dso",              # RFC 8490 5.4
}

# OPCODE -> name for NetBIOS Name Service (consts.zeek ``netbios_opcodes``).
NETBIOS_OPCODES: dict[int, str] = {
    0: "netbios-query",         # RFC 1002 4.2.1.1
    5: "netbios-registration",  # RFC 1002 4.2.1.1
    6: "netbios-release",       # RFC 1002 4.2.1.1
    7: "netbios-wack",          # RFC 1002 4.2.1.1
    8: "netbios-refresh",       # RFC 1002 4.2.1.1
}

# A few codes the logic below tests by name.
OPCODE_QUERY = 0            # RFC 1035 4.1.1
OPCODE_NOTIFY = 4           # RFC 1996 3
OPCODE_DYNAMIC_UPDATE = 5   # RFC 2136 1.3
CLASS_IN = 1                # RFC 1035 3.2.4
CLASS_NONE = 254            # RFC 2136 1.3
CLASS_ANY = 255             # RFC 1035 3.2.5
TYPE_ANY = 255              # RFC 1035 3.2.3


def qtype_name(code: int) -> str:
    """Zeek's ``query_types[code]``, with its ``query-N`` fallback."""
    return QUERY_TYPES.get(code, f"query-{code}")


def qclass_name(code: int) -> str:
    """Zeek's ``classes[code]``, with its ``qclass-N`` fallback."""
    return CLASSES.get(code, f"qclass-{code}")


def rcode_name(code: int) -> str:
    """Zeek's ``base_errors[code]``, with its ``rcode-N`` fallback."""
    return RCODES.get(code, f"rcode-{code}")


def opcode_name(code: int, is_netbios: bool = False) -> str:
    """Zeek's ``opcodes`` / ``netbios_opcodes`` name, with their fallbacks."""
    if is_netbios:
        return NETBIOS_OPCODES.get(code, f"netbios-opcode-{code}")
    return OPCODES.get(code, f"opcode-{code}")
