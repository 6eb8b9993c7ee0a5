"""IP fragment reassembly (recorder/logs/fragments.py) against Zeek's rules (src/Frag.cc, src/Reassem.cc).

Pure: fragments are crafted with scapy and handed over as the kernel's
FRAGMENT events would be. The weird sequences are the ones Zeek raises as
flow_weird events on the same shapes (its core.reassembly btest: overlaps,
inconsistent overlaps, small fragments, DF).
"""

from __future__ import annotations

import pytest
from frames import ether
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from cicd_audit.recorder.logs.events import ConnId, Fragment
from cicd_audit.recorder.logs.fragments import FRAG_TIMEOUT_NS, FragmentTable
from cicd_audit.recorder.logs.weird_policy import WeirdPolicy

SECOND = 1_000_000_000
PAYLOAD = bytes(range(256)) * 8            # 2048 bytes, every offset distinct


def v4(offset: int, data: bytes, more: bool, ident: int = 7, df: bool = False, proto: int = 17) -> bytes:
    flags = (1 if more else 0) | (2 if df else 0)
    return bytes(ether() / IP(src="192.0.2.1", dst="198.51.100.2", id=ident, flags=flags, frag=offset // 8,
                              proto=proto) / Raw(data))


def v6(offset: int, data: bytes, more: bool, ident: int = 7, nh: int = 17, ext: bool = False) -> bytes:
    ip = IPv6(src="2001:db8::1", dst="2001:db8::2")
    if ext:
        ip = ip / IPv6ExtHdrDestOpt()
    return bytes(ether() / ip / IPv6ExtHdrFragment(nh=nh, offset=offset // 8, m=int(more), id=ident) / Raw(data))


def frag(frame: bytes, t: float = 0.0, egress: bool = False) -> Fragment:
    return Fragment(int(t * SECOND), frame, 14, egress)


def feed(table: FragmentTable, frames, t: float = 0.0):
    done, names = [], []
    for frame in frames:
        datagram, weirds = table.add(frag(frame, t))
        names += [w.name for w in weirds]
        if datagram is not None:
            done.append(datagram)
    return done, names


@pytest.fixture
def udp_datagram() -> bytes:
    """A UDP datagram's IP payload (header and data), 8 + 2048 bytes."""
    return bytes(UDP(sport=5353, dport=53, chksum=0) / Raw(PAYLOAD))


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]])
def test_in_any_order_the_datagram_comes_back_whole(udp_datagram, order):
    pieces = [(0, udp_datagram[:1000], True), (1000, udp_datagram[1000:2000], True),
              (2000, udp_datagram[2000:], False)]
    done, names = feed(FragmentTable(), [v4(*pieces[i]) for i in order])
    assert names == []
    assert len(done) == 1
    packet = Ether(done[0].frame)
    assert packet[IP].flags == 0 and packet[IP].frag == 0 and packet[IP].len == 20 + len(udp_datagram)
    assert bytes(packet[IP].payload) == udp_datagram
    rebuilt = IP(bytes(packet[IP]))
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == packet[IP].chksum, "the header checksum is recomputed"
    assert (done[0].ip_len, done[0].fragments) == (20 + len(udp_datagram), 3)


def test_ipv6_with_a_header_before_the_fragment_header(udp_datagram):
    done, names = feed(FragmentTable(), [v6(1024, udp_datagram[1024:], False, ext=True),
                                        v6(0, udp_datagram[:1024], True, ext=True)])
    assert names == [] and len(done) == 1
    packet = Ether(done[0].frame)
    assert IPv6ExtHdrFragment not in packet
    assert packet[IPv6ExtHdrDestOpt].nh == 17, "the header that named the fragment header names UDP now"
    assert bytes(packet[IPv6ExtHdrDestOpt].payload) == udp_datagram
    assert packet[IPv6].plen == 8 + len(udp_datagram)


def test_overlaps_keep_the_first_bytes_and_say_whether_they_agree(udp_datagram):
    forged = udp_datagram[:600] + b"X" * 400
    table = FragmentTable()
    done, names = feed(table, [v4(0, udp_datagram[:1000], True), v4(400, udp_datagram[400:1000], True),
                               v4(0, forged, True), v4(1000, udp_datagram[1000:], False)])
    assert names == ["fragment_overlap", "fragment_inconsistency"]
    assert bytes(Ether(done[0].frame)[IP].payload) == udp_datagram, "bytes already held win"


def test_a_last_fragment_that_disagrees_on_the_size(udp_datagram):
    done, names = feed(FragmentTable(), [v4(1000, udp_datagram[1000:1200], False), v4(0, udp_datagram[:1000], True),
                                        v4(1200, udp_datagram[1200:1400], False)])
    # Whole up to 1200 when the first two arrive: that datagram runs; the third starts a new one.
    assert len(done) == 1 and len(Ether(done[0].frame)[IP].payload) == 1200
    assert names == []


@pytest.mark.parametrize("past", [0, 100])
def test_a_datagram_past_64k_wraps_its_length_as_zeek_writes_it(past):
    """Zeek writes a reassembled datagram's length in 16 bits: past 65,535 bytes it wraps. Wrapped
    below the header, its IP analyzer refuses the packet (invalid_IP_header_size, a flow weird); above
    it, the packet is read as far as the wrapped length. Here a destination options header (8 bytes)
    comes before the fragment header: 65,528 bytes of data wrap the payload length to 0."""
    chunk = bytes(1448)
    size = 65528 + past                        # the fragments' data
    pieces = [(off, chunk[:min(1448, size - off)], off + 1448 < size) for off in range(0, size, 1448)]
    table = FragmentTable()
    weirds, done = [], []
    for offset, data, more in pieces:
        datagram, raised = table.add(frag(v6(offset, data, more, ext=True)))
        weirds += raised
        done += [datagram] if datagram else []
    names = [(w.name, w.source) for w in weirds]
    assert names[0] == ("excessively_large_fragment", None)
    if past == 0:
        assert names[-1] == ("invalid_IP_header_size", "IP") and done == []
        assert weirds[-1].conn_id == ConnId("2001:db8::1", 0, "2001:db8::2", 0, 0)
        assert table.counts.lost == len(pieces)
    else:
        assert "invalid_IP_header_size" not in dict(names) and len(done) == 1
        assert Ether(done[0].frame)[IPv6].plen == past and done[0].ip_len == 40 + past
        assert len(done[0].frame) == 14 + 40 + past


def test_small_fragments_df_and_protocol_changes_are_weirds(udp_datagram):
    table = FragmentTable()
    _, names = feed(table, [v4(0, udp_datagram[:16], True, df=True), v4(16, udp_datagram[16:32], True, proto=6)])
    assert names == ["fragment_with_DF", "excessively_small_fragment", "fragment_protocol_inconsistency",
                     "excessively_small_fragment"]
    assert table.pending == 1


def test_once_per_originator_weirds_are_raised_each_time_and_logged_once():
    table, policy = FragmentTable(), WeirdPolicy()
    _, weirds = table.add(frag(v4(0, b"a" * 16, True, ident=1)))
    _, more = table.add(frag(v4(0, b"b" * 16, True, ident=2)))
    assert [w.name for w in weirds + more] == ["excessively_small_fragment"] * 2
    assert [policy.logs(w.ts_ns / 1e9, w.name, None, w.conn_id) for w in weirds + more] == [True, False]
    assert weirds[0].conn_id == ConnId("192.0.2.1", 0, "198.51.100.2", 0, 0)


def test_unfinished_datagrams_expire_after_zeeks_frag_timeout_and_are_counted(udp_datagram):
    table = FragmentTable()
    table.add(frag(v4(0, udp_datagram[:1000], True, ident=1), t=0))
    table.add(frag(v4(0, udp_datagram[:1000], True, ident=2), t=100))
    assert table.expire(FRAG_TIMEOUT_NS - 1) == 0
    assert table.expire(FRAG_TIMEOUT_NS) == 1 and table.pending == 1
    # The late tail of the expired datagram starts a new, unfinished one.
    done, _ = feed(table, [v4(1000, udp_datagram[1000:], False, ident=1)], t=301)
    assert done == []
    assert table.expire(0, everything=True) == 2
    assert table.counts.lost == 3 and table.counts.expired == 3


def test_a_fragment_not_captured_in_full_is_a_weird_and_lost(udp_datagram):
    frame = v4(0, udp_datagram[:1000], True)
    table = FragmentTable()
    datagram, weirds = table.add(Fragment(0, frame[:500], 14, False))
    assert datagram is None and [w.name for w in weirds] == ["incompletely_captured_fragment"]
    assert table.counts.lost == 1 and table.pending == 0


def test_memory_stays_under_the_cap_oldest_first(udp_datagram):
    table = FragmentTable(held_bytes_max=10_000)
    for ident in range(30):
        table.add(frag(v4(0, udp_datagram[:1000], True, ident=ident)))
    assert table.pending <= 10
    assert table.counts.evicted == 30 - table.pending
    assert table.counts.lost == table.counts.evicted
    assert table._held <= 10_000


def test_the_datagram_keeps_the_first_fragments_link_layer_and_direction(udp_datagram):
    vlan = bytes.fromhex("020000000001020000000002" "8100" "0064" "0800")
    first = vlan + v4(0, udp_datagram[:1000], True)[14:]
    last = vlan + v4(1000, udp_datagram[1000:], False)[14:]
    table = FragmentTable()
    table.add(Fragment(0, first, 18, True))
    datagram, _ = table.add(Fragment(SECOND, last, 18, True))
    assert datagram.frame[:18] == vlan and datagram.egress and datagram.ts_ns == SECOND


@pytest.mark.parametrize("frame", [b"\x45" + b"\x00" * 10, b"\x60" + b"\x00" * 39, b"\x10" * 40])
def test_an_unreadable_ip_header_is_counted_not_raised(frame):
    table = FragmentTable()
    whole = bytes(14) + frame
    assert table.add(Fragment(0, whole, 14, False)) == (None, [])
    assert table.counts.lost == 1


def test_a_datagram_of_too_many_fragments_is_given_up(udp_datagram):
    from cicd_audit.recorder.logs.fragments import FRAGMENTS_PER_DATAGRAM_MAX
    table = FragmentTable()
    names = []
    for i in range(FRAGMENTS_PER_DATAGRAM_MAX + 1):
        _, weirds = table.add(frag(v4(8 * (i % 4), udp_datagram[:8], True)))   # the same few bytes, again and again
        names += [w.name for w in weirds]
    assert names.count("cicd_audit_too_many_fragments") == 1
    assert table.pending == 0 and table.counts.lost == FRAGMENTS_PER_DATAGRAM_MAX + 1
