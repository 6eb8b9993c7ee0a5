"""Blocking mode: turn a policy file into the kernel's allow-map entries.

The kernel decides with two maps that user space fills when a job starts
(bpf/cicd_audit.h); every entry names its job (the job's slot in job_scope
+ 1), so several jobs are judged at once, each by its own policy:

* ``allow_names`` (hash): NameKey(name_hash(name), job) -> NameRule, the ports
  allowed for the name itself (``exact``) and for names under it (``under``);
* ``allow_cidrs`` (LPM trie): CidrKey(job, network) -> PortSet, IPv4 as
  IPv4-mapped IPv6.

A third, ``allow_addrs``, the kernel fills itself from the DNS answers to a
job's allowed queries; ``clear_job`` empties all three of one job's entries.

``PolicyTables.allows`` and ``allows_query`` decide from these same entries
in pure Python, as the kernel does, so tests can cross-check the kernel.

API::

    name_hash(name) -> int
    name_key(name_or_hash, job) -> abi.NameKey      cidr_key(network, job) -> abi.CidrKey
    clear_job(maps, job) -> int                      # entries removed
    detect_resolvers(resolv_conf=Path("/etc/resolv.conf")) -> list[ip_address]
    PolicyTables.build(policy, resolvers=()) -> PolicyTables
        .names: dict[int, abi.NameRule]      .cidrs: list[(IPv6Network, abi.PortSet)]
        .fill(maps, job)                      # maps["allow_names"], maps["allow_cidrs"]
        .allows(address, port) -> bool        # the CIDR decision (learnt addresses aside)
        .allows_query(name) -> bool
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from cicd_audit.policy import Policy, PolicyError
from cicd_audit.recorder.kernel import abi

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1

DNS_PORT = abi.DNS_PORT
# systemd-resolved's stub listeners; the servers it forwards to are listed in
# RESOLVED_UPSTREAM_CONF, and those need allowing too.
RESOLVED_STUBS = frozenset({ipaddress.ip_address("127.0.0.53"), ipaddress.ip_address("127.0.0.54")})
RESOLVED_UPSTREAM_CONF = Path("/run/systemd/resolve/resolv.conf")

_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
# Ports as a set while building: None = every port, frozenset() = none.
Ports = Optional[frozenset]
_NONE: Ports = frozenset()


def name_hash(name: str | bytes) -> int:
    """The kernel's key for a name in allow_names: FNV-1a 64-bit over the bytes
    of the dotted lower-case name (no trailing dot), taken from its last byte
    to its first.

    The kernel walks a query's wire-format labels from the right, mixing a
    '.' between labels, so it can hash every suffix in one pass. Thus
    ``name_hash("example.com")`` is FNV-1a of ``b"moc.elpmaxe"``.
    """
    raw = name.encode("ascii") if isinstance(name, str) else bytes(name)
    raw = raw.rstrip(b".").lower()
    h = FNV64_OFFSET
    for byte in reversed(raw):
        h = ((h ^ byte) * FNV64_PRIME) & _U64
    return h


def _merge(a: Ports, b: Ports) -> Ports:
    if a is None or b is None:
        return None
    return a | b


def _rule_ports(port: int | None) -> Ports:
    return None if port is None else frozenset({port})


def port_set(ports: Ports, entry: str, source: str = "<policy>") -> abi.PortSet:
    """The kernel's PortSet for ``ports``; PolicyError when it cannot hold them."""
    ps = abi.PortSet()
    if ports is None:
        ps.any = 1
        return ps
    if len(ports) > abi.POLICY_PORTS_MAX:
        listed = ", ".join(str(p) for p in sorted(ports))
        raise PolicyError(source, None, (
            f"{entry!r}: {len(ports)} different ports ({listed}); blocking mode holds at most "
            f"{abi.POLICY_PORTS_MAX} per entry. Allow fewer ports, or every port (no ':PORT')"))
    ps.count = len(ports)
    for i, p in enumerate(sorted(ports)):
        ps.ports[i] = p
    return ps


def port_allowed(ps: abi.PortSet, port: int) -> bool:
    """The kernel's test of one port against a PortSet."""
    return bool(ps.any) or port in list(ps.ports)[: ps.count]


def _nonempty(ps: abi.PortSet) -> bool:
    return bool(ps.any or ps.count)


def _as_v6(network) -> ipaddress.IPv6Network:
    """IPv4 networks as their IPv4-mapped IPv6 form, as the kernel keys them."""
    if network.version == 4:
        mapped = int(_V4_MAPPED.network_address) | int(network.network_address)
        return ipaddress.IPv6Network((mapped, network.prefixlen + 96))
    return network


def _as_v6_address(address) -> ipaddress.IPv6Address:
    addr = ipaddress.ip_address(address) if not isinstance(address, (ipaddress.IPv4Address,
                                                                      ipaddress.IPv6Address)) else address
    if addr.version == 4:
        return ipaddress.IPv6Address(int(_V4_MAPPED.network_address) | int(addr))
    return addr


# allow_cidrs' prefix lengths count the job's byte before the address.
_JOB_BITS = 8


def cidr_key(network: ipaddress.IPv6Network, job: int) -> abi.CidrKey:
    """The kernel's allow_cidrs key for a network of a job's policy."""
    key = abi.CidrKey(prefixlen=_JOB_BITS + network.prefixlen, job=job)
    key.addr[:] = network.network_address.packed
    return key


def name_key(name_or_hash: str | bytes | int, job: int) -> abi.NameKey:
    """The kernel's allow_names key for a name (or its name_hash) of a job's policy."""
    h = name_or_hash if isinstance(name_or_hash, int) else name_hash(name_or_hash)
    return abi.NameKey(hash=h, job=job)


def clear_job(maps, job: int) -> int:
    """Remove a job's entries from the three allow maps (its policy, and what its
    DNS answers taught); returns how many went. Other jobs' entries stay."""
    removed = 0
    for name, key_type in (("allow_names", abi.NameKey), ("allow_cidrs", abi.CidrKey),
                           ("allow_addrs", abi.LearntKey)):
        bpf_map = maps[name]
        for raw in list(bpf_map.keys()):
            if key_type.from_buffer_copy(bytes(raw)).job == job:
                bpf_map.delete(raw)
                removed += 1
    return removed


@dataclass
class PolicyTables:
    """The allow-map entries for one policy (see the module docstring)."""

    names: dict = field(default_factory=dict)     # name_hash -> abi.NameRule
    cidrs: list = field(default_factory=list)     # (IPv6Network, abi.PortSet), shortest prefix first
    source: str = "<policy>"

    @classmethod
    def build(cls, policy: Policy, resolvers: Iterable[IPAddress] = ()) -> PolicyTables:
        """Entries for ``policy``, plus each resolver allowed on port 53 only."""
        return cls(names=_name_entries(policy), cidrs=_cidr_entries(policy, resolvers), source=policy.source)

    def fill(self, maps, job: int) -> None:
        """Write every entry into maps["allow_names"] and maps["allow_cidrs"], as job's
        (its job_scope slot + 1). The tables' capacity is shared by every job."""
        names_map, cidrs_map = maps["allow_names"], maps["allow_cidrs"]
        for what, bpf_map, count in (("names", names_map, len(self.names)),
                                     ("CIDRs", cidrs_map, len(self.cidrs))):
            capacity = getattr(getattr(bpf_map, "spec", None), "max_entries", None)
            if capacity is not None and count > capacity:
                raise PolicyError(self.source, None, (
                    f"{count} allowed {what}, but the kernel's table holds {capacity}; shorten the policy"))
        for h, rule in self.names.items():
            names_map.update(bytes(name_key(h, job)), bytes(rule))
        for net, ports in self.cidrs:
            cidrs_map.update(bytes(cidr_key(net, job)), bytes(ports))

    # -- the kernel's decisions, in Python ------------------------------------------
    def allows(self, address, port: int) -> bool:
        """What allow_cidrs decides: the longest matching prefix, then its ports.
        (Addresses learnt from DNS answers live in another map, not here.)"""
        addr = _as_v6_address(address)
        best = None
        for net, ports in self.cidrs:
            if addr in net and (best is None or net.prefixlen > best[0].prefixlen):
                best = (net, ports)
        return best is not None and port_allowed(best[1], int(port))

    def allows_query(self, name: str | bytes) -> bool:
        """What allow_names decides for a DNS query: the full name against
        ``exact``, each proper suffix against ``under``; any port will do."""
        raw = name.encode("ascii") if isinstance(name, str) else bytes(name)
        raw = raw.rstrip(b".").lower()
        if not raw:
            return False
        rule = self._rule(raw)
        if rule is not None and _nonempty(rule.exact):
            return True
        labels = raw.split(b".")
        for i in range(1, len(labels)):
            rule = self._rule(b".".join(labels[i:]))
            if rule is not None and _nonempty(rule.under):
                return True
        return False

    def _rule(self, raw: bytes) -> abi.NameRule | None:
        rule = self.names.get(name_hash(raw))
        # The kernel compares the stored name after the hash: a collision allows nothing.
        if rule is None or bytes(rule.name)[: rule.len] != raw:
            return None
        return rule


NAME_HASH_SPAN = 128    # CA_NAME_HASH_SPAN in bpf/dns_policy.h: bytes hashed from a name's end


def _name_entries(policy: Policy) -> dict:
    ports: dict = {}       # name -> [exact ports, under ports]
    texts: dict = {}       # name -> the rule texts, for error messages
    for rule in policy.domains:
        slot = ports.setdefault(rule.pattern, [_NONE, _NONE])
        i = 1 if rule.wildcard else 0
        slot[i] = _merge(slot[i], _rule_ports(rule.port))
        texts.setdefault(rule.pattern, []).append(str(rule))
    # The kernel stops at the most specific entry that matches a name, so each
    # entry carries the ports of every "*." rule above it as well.
    for name, slot in ports.items():
        labels = name.split(".")
        for i in range(1, len(labels)):
            parent = ports.get(".".join(labels[i:]))
            if parent is not None:
                slot[0] = _merge(slot[0], parent[1])
                slot[1] = _merge(slot[1], parent[1])
    entries: dict = {}
    for name, (exact, under) in ports.items():
        raw = name.encode("ascii")
        if len(raw) > NAME_HASH_SPAN - 1:
            raise PolicyError(policy.source, None, f"{name!r}: longer than {NAME_HASH_SPAN - 1} bytes, "
                              "the longest name blocking mode matches")
        entry = ", ".join(texts[name])
        rule = abi.NameRule()
        rule.exact = port_set(exact, entry, policy.source)
        rule.under = port_set(under, entry, policy.source)
        rule.len = len(raw)
        rule.name = raw
        h = name_hash(raw)
        other = entries.get(h)
        if other is not None:
            clash = bytes(other.name)[: other.len].decode("ascii")
            raise PolicyError(policy.source, None, (
                f"{name!r} and {clash!r} have the same name hash {h:#018x}; "
                "the kernel cannot tell them apart, so remove one of them"))
        entries[h] = rule
    return entries


def _cidr_entries(policy: Policy, resolvers: Iterable[IPAddress]) -> list:
    merged: dict = {}      # IPv6Network -> ports
    texts: dict = {}
    rules = [(_as_v6(r.network), r.port, str(r)) for r in policy.cidrs]
    for addr in resolvers:
        addr = ipaddress.ip_address(addr)
        rules.append((_as_v6(ipaddress.ip_network(addr)), DNS_PORT, f"resolver {addr}:{DNS_PORT}"))
    for net, port, text in rules:
        merged[net] = _merge(merged.get(net, _NONE), _rule_ports(port))
        texts.setdefault(net, []).append(text)
    # The trie answers with the longest matching prefix only, so each entry
    # carries the ports of every rule whose network contains it.
    entries = []
    for net in sorted(merged, key=lambda n: (n.prefixlen, n.network_address)):
        ports, entry = _NONE, []
        for outer, outer_ports in merged.items():
            if net.subnet_of(outer):
                ports = _merge(ports, outer_ports)
                entry.extend(texts[outer])
        entries.append((net, port_set(ports, ", ".join(entry), policy.source)))
    return entries


def _nameservers(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                # a link-local server may carry its zone ("fe80::1%eth0"); the kernel sees the address only
                found.append(ipaddress.ip_address(parts[1].split("%", 1)[0]))
            except ValueError:
                continue
    return found


def system_nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list:
    """resolv.conf's nameserver lines: what the job's resolver library asks."""
    return _nameservers(Path(resolv_conf))


def detect_resolvers(resolv_conf: Path = Path("/etc/resolv.conf"),
                     resolved_conf: Path = RESOLVED_UPSTREAM_CONF) -> list:
    """The DNS servers this host's processes use: resolv.conf's nameserver
    lines and, behind systemd-resolved's stub, the servers it forwards to."""
    servers = _nameservers(Path(resolv_conf))
    if any(s in RESOLVED_STUBS for s in servers):
        servers += _nameservers(Path(resolved_conf))
    return list(dict.fromkeys(servers))
