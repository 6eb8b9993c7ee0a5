"""recorder/kernel/block_tables.py: a policy as the kernel's allow-map entries. Pure: no root."""

from __future__ import annotations

import ctypes
import ipaddress
import random
from types import SimpleNamespace

import pytest

from cicd_audit.policy import PolicyError, parse_policy
from cicd_audit.recorder.kernel import abi, block_tables
from cicd_audit.recorder.kernel.block_tables import PolicyTables, cidr_key, detect_resolvers, name_hash


def policy(domains=(), cidrs=()):
    text = "allowed:\n  domains: [{}]\n  cidrs: [{}]\n".format(
        ", ".join(f'"{d}"' for d in domains), ", ".join(f'"{c}"' for c in cidrs))
    return parse_policy(text, source="test.yaml")


def ports(ps: abi.PortSet):
    """None for every port, else the set listed."""
    return None if ps.any else set(list(ps.ports)[: ps.count])


def cidr_table(tables):
    out = {}
    for net, ps in tables.cidrs:
        out[net] = ports(ps)
    return out


def v4(net):
    """A v4 network as the kernel keys it: IPv4-mapped, prefix + 96."""
    n = ipaddress.IPv4Network(net)
    return ipaddress.IPv6Network("::ffff:%s/%d" % (n.network_address, n.prefixlen + 96))


# -- the name hash --------------------------------------------------------------------

def fnv1a_64(data: bytes) -> int:
    """Written from the FNV spec (draft-eastlake-fnv), independently of the module."""
    h = 14695981039346656037
    for octet in data:
        h ^= octet
        h = (h * 1099511628211) % 2**64
    return h


def test_fnv_reference_matches_published_vectors():
    # Test vectors from the FNV reference (fnv-1a 64-bit).
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_name_hash_reads_the_name_backwards():
    assert name_hash("example.com") == fnv1a_64(b"moc.elpmaxe")
    assert name_hash("raboof") == 0x85944171F73967E8       # = FNV-1a("foobar")
    assert name_hash("a") == 0xAF63DC4C8601EC8C


def test_name_hash_normalises_case_and_trailing_dot():
    assert name_hash("Example.COM.") == name_hash("example.com") == name_hash(b"example.com")


# -- allow_names ------------------------------------------------------------------------

def test_exact_and_wildcard_rules_share_one_entry():
    t = PolicyTables.build(policy(["pypi.org", "*.pypi.org:443"]))
    rule = t.names[name_hash("pypi.org")]
    assert bytes(rule.name)[: rule.len] == b"pypi.org" and rule.len == 8
    assert ports(rule.exact) is None            # no port: every port
    assert ports(rule.under) == {443}
    assert len(t.names) == 1


def test_ports_merge_and_a_portless_rule_means_any():
    t = PolicyTables.build(policy(["a.example:443", "a.example:80", "*.b.example:443", "*.b.example", "c.example"]))
    a = t.names[name_hash("a.example")]
    assert ports(a.exact) == {80, 443} and list(a.exact.ports)[:2] == [80, 443]
    assert a.under.any == 0 and a.under.count == 0             # none: nothing under it
    b = t.names[name_hash("b.example")]
    assert ports(b.under) is None and ports(b.exact) == set()
    assert ports(t.names[name_hash("c.example")].exact) is None


def test_a_narrower_entry_carries_the_ports_of_the_wildcards_above_it():
    """The kernel stops at the most specific entry matching a name, so api.github.com's
    entry must also allow what "*.github.com" allows, or port 443 there would be refused."""
    t = PolicyTables.build(policy(["api.github.com:22", "*.github.com:443", "*.api.github.com:8443"]))
    api = t.names[name_hash("api.github.com")]
    assert ports(api.exact) == {22, 443}
    assert ports(api.under) == {443, 8443}
    top = t.names[name_hash("github.com")]
    assert ports(top.exact) == set() and ports(top.under) == {443}


def test_a_name_longer_than_the_kernel_hashes_is_refused():
    with pytest.raises(PolicyError, match="longer than 127 bytes"):
        PolicyTables.build(policy([".".join(["a" * 60, "b" * 60, "example.com"])]))


def test_too_many_ports_names_the_entry_and_the_limit():
    rules = ["api.example:%d" % p for p in range(8000, 8000 + abi.POLICY_PORTS_MAX + 1)]
    with pytest.raises(PolicyError) as err:
        PolicyTables.build(policy(rules))
    msg = str(err.value)
    assert "test.yaml" in msg and "api.example:8000" in msg and "at most %d" % abi.POLICY_PORTS_MAX in msg
    # exactly the limit is fine
    PolicyTables.build(policy(rules[:-1]))


def test_a_hash_collision_is_an_error(monkeypatch):
    monkeypatch.setattr(block_tables, "name_hash", lambda name: 42)
    with pytest.raises(PolicyError, match="same name hash"):
        PolicyTables.build(policy(["one.example", "two.example"]))


def test_allows_query_follows_exact_and_under():
    p = policy(["pypi.org", "*.pythonhosted.org:443", "*.corp.example", "corp.example:22"])
    t = PolicyTables.build(p)
    cases = ["pypi.org", "PyPI.org.", "x.pypi.org", "files.pythonhosted.org", "a.b.pythonhosted.org",
             "pythonhosted.org", "corp.example", "git.corp.example", "example", "org", "evilpypi.org",
             "pythonhosted.org.evil.example", ""]
    for name in cases:
        assert t.allows_query(name) == (bool(name) and p.allows_name(name)), name


def test_allows_query_ignores_an_entry_whose_name_differs(monkeypatch):
    t = PolicyTables.build(policy(["good.example"]))
    rule = t.names.pop(name_hash("good.example"))
    t.names[name_hash("evil.example")] = rule        # as if the hashes collided in the kernel map
    assert not t.allows_query("evil.example")


# -- allow_cidrs ------------------------------------------------------------------------

def test_ipv4_is_keyed_ipv4_mapped():
    t = PolicyTables.build(policy(cidrs=["192.0.2.0/24:53", "2001:db8::/32"]))
    keys = {(k.prefixlen, k.job, bytes(k.addr)) for k in (cidr_key(net, 3) for net, _ in t.cidrs)}
    assert keys == {(8 + 120, 3, bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 0])),
                    (8 + 32, 3, ipaddress.IPv6Address("2001:db8::").packed)}


def test_an_entry_carries_the_ports_of_every_network_containing_it():
    t = PolicyTables.build(policy(cidrs=[
        "10.0.0.0/8:443", "10.1.0.0/16:53", "10.1.0.0/16:80", "10.1.2.0/24:22",
        "192.0.2.0/24", "192.0.2.128/25:53", "198.51.100.0/24:53"]))
    assert cidr_table(t) == {
        v4("10.0.0.0/8"): {443},
        v4("10.1.0.0/16"): {443, 53, 80},          # the two /16 rules merged, plus the /8's
        v4("10.1.2.0/24"): {443, 53, 80, 22},
        v4("192.0.2.0/24"): None,
        v4("192.0.2.128/25"): None,                # any dominates
        v4("198.51.100.0/24"): {53},
    }


def test_lpm_union_can_exceed_the_port_limit():
    nets = ["10.0.0.0/%d:%d" % (8 + i, 1000 + i) for i in range(abi.POLICY_PORTS_MAX + 1)]
    with pytest.raises(PolicyError, match="at most %d" % abi.POLICY_PORTS_MAX):
        PolicyTables.build(policy(cidrs=nets))


def test_allows_agrees_with_the_policy_everywhere():
    p = policy(cidrs=["10.0.0.0/8:443", "10.1.0.0/16:53", "10.1.2.0/24", "192.0.2.7:22",
                      "fd00::/8:443", "fd00:1::/32", "2001:db8::1/128:53"])
    t = PolicyTables.build(p)
    rng = random.Random(4)
    probes = ["10.1.2.3", "10.1.3.3", "10.2.0.1", "11.0.0.1", "192.0.2.7", "192.0.2.8",
              "fd00::1", "fd00:1::5", "fe80::1", "2001:db8::1", "2001:db8::2", "::ffff:10.1.2.3"]
    probes += [str(ipaddress.IPv4Address(rng.getrandbits(32) & 0x0AFFFFFF | 0x0A000000)) for _ in range(200)]
    for address in probes:
        for port in (22, 53, 80, 443):
            assert t.allows(address, port) == p.allows_address(address, port), (address, port)


# -- resolvers --------------------------------------------------------------------------

def test_detect_resolvers_reads_nameserver_lines(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nsearch corp.example\nnameserver 10.0.0.2\nnameserver  fe80::1%eth0\n"
                    "nameserver not-an-address\noptions edns0\nnameserver 10.0.0.2\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 9.9.9.9\n")
    assert detect_resolvers(conf, upstream) == [ipaddress.ip_address("10.0.0.2"), ipaddress.ip_address("fe80::1")]


def test_detect_resolvers_follows_systemd_resolved(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 192.0.2.1\nnameserver 2001:db8::53\n")
    assert detect_resolvers(conf, upstream) == [ipaddress.ip_address(a) for a in
                                                ("127.0.0.53", "192.0.2.1", "2001:db8::53")]


def test_detect_resolvers_missing_files(tmp_path):
    assert detect_resolvers(tmp_path / "none") == []
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\n")
    assert detect_resolvers(conf, tmp_path / "none") == [ipaddress.ip_address("127.0.0.53")]


def test_resolvers_are_allowed_on_port_53_only_and_merge():
    resolvers = [ipaddress.ip_address("10.9.9.9"), ipaddress.ip_address("2001:db8::53")]
    t = PolicyTables.build(policy(cidrs=["10.9.9.9/32:853", "10.0.0.0/8:443"]), resolvers)
    assert cidr_table(t) == {v4("10.0.0.0/8"): {443}, v4("10.9.9.9/32"): {53, 853, 443},
                             ipaddress.IPv6Network("2001:db8::53/128"): {53}}
    assert t.allows("2001:db8::53", 53) and not t.allows("2001:db8::53", 443)


# -- into the maps ----------------------------------------------------------------------

class FakeMap:
    def __init__(self, key_size, value_size, max_entries=1024):
        self.spec = SimpleNamespace(key_size=key_size, value_size=value_size, max_entries=max_entries)
        self.entries = {}

    def update(self, key, value):
        assert isinstance(key, bytes) and isinstance(value, bytes)
        assert (len(key), len(value)) == (self.spec.key_size, self.spec.value_size)
        self.entries[key] = value


def test_fill_writes_every_entry_as_the_kernel_structs():
    t = PolicyTables.build(policy(["pypi.org:443"], ["10.0.0.0/8"]))
    maps = {"allow_names": FakeMap(ctypes.sizeof(abi.NameKey), ctypes.sizeof(abi.NameRule)),
            "allow_cidrs": FakeMap(ctypes.sizeof(abi.CidrKey), ctypes.sizeof(abi.PortSet))}
    t.fill(maps, 2)
    (key, value), = maps["allow_names"].entries.items()
    assert int.from_bytes(key[:8], "little") == name_hash("pypi.org")   # host order (x86, arm64: little)
    assert abi.NameKey.from_buffer_copy(key).job == 2
    rule = abi.NameRule.from_buffer_copy(value)
    assert rule.name == b"pypi.org" and ports(rule.exact) == {443}
    (key, value), = maps["allow_cidrs"].entries.items()
    k = abi.CidrKey.from_buffer_copy(key)
    assert (k.prefixlen, k.job) == (8 + 104, 2) and ports(abi.PortSet.from_buffer_copy(value)) is None


def test_fill_refuses_more_entries_than_the_map_holds():
    t = PolicyTables.build(policy(cidrs=["10.%d.0.0/16" % i for i in range(5)]))
    maps = {"allow_names": FakeMap(ctypes.sizeof(abi.NameKey), ctypes.sizeof(abi.NameRule)),
            "allow_cidrs": FakeMap(ctypes.sizeof(abi.CidrKey), ctypes.sizeof(abi.PortSet), max_entries=4)}
    with pytest.raises(PolicyError, match="5 allowed CIDRs, but the kernel's table holds 4"):
        t.fill(maps, 1)


class ListedMap(FakeMap):
    def keys(self):
        return list(self.entries)

    def delete(self, key):
        del self.entries[key]


def test_clear_job_removes_that_jobs_entries_and_no_other():
    maps = {"allow_names": ListedMap(ctypes.sizeof(abi.NameKey), ctypes.sizeof(abi.NameRule)),
            "allow_cidrs": ListedMap(ctypes.sizeof(abi.CidrKey), ctypes.sizeof(abi.PortSet)),
            "allow_addrs": ListedMap(ctypes.sizeof(abi.LearntKey), ctypes.sizeof(abi.LearntAddr))}
    t = PolicyTables.build(policy(["pypi.org:443"], ["10.0.0.0/8"]))
    t.fill(maps, 1)
    t.fill(maps, 2)
    for job in (1, 2):
        maps["allow_addrs"].update(bytes(abi.LearntKey(port=443, job=job)), bytes(abi.LearntAddr()))
    assert block_tables.clear_job(maps, 2) == 3
    for name, key_type in (("allow_names", abi.NameKey), ("allow_cidrs", abi.CidrKey),
                           ("allow_addrs", abi.LearntKey)):
        assert [key_type.from_buffer_copy(k).job for k in maps[name].keys()] == [1], name
