"""Link types PPP (9), IEEE 802.11 (105), radiotap (127) and NFLOG (239) in
recorder/drivers/linktypes.py: crafted frames (scapy) dissected offline, and one
capture of each recorded through the kernel program, which must give the
conn.log of the same packets over Ethernet."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import LLC, SNAP
from scapy.layers.ppp import HDLC, PPP
from test_link_layers import MACS, _exchange, record, write_pcap

from cicd_audit.recorder.drivers import linktypes
from cicd_audit.recorder.drivers.linktypes import LinkLayerWeird, to_ethernet, to_ethernet_frames
from cicd_audit.zeeklog.reader import read_log

IP4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53) / b"hello")
IP6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1000, dport=53) / b"hello")


def eth(ip: bytes) -> bytes:
    return MACS + (b"\x08\x00" if ip[0] >> 4 == 4 else b"\x86\xdd") + ip


def data_frame(ip: bytes, **kw) -> bytes:
    ethertype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    return bytes(Dot11(type=2, subtype=0, addr1="02:00:00:00:00:02", addr2="02:00:00:00:00:01",
                       addr3="02:00:00:00:00:03", **kw)
                 / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=ethertype)) + ip


# --- PPP (RFC 1661/1662, Zeek's PPP analyzer) ---------------------------------

@pytest.mark.parametrize("ip", [IP4, IP6])
def test_fddi_skips_its_header_and_llc_snap(ip):
    fddi = b"\x50" + bytes(range(12)) + b"\xaa\xaa\x03\x00\x00\x00" + (b"\x08\x00" if ip is IP4 else b"\x86\xdd")
    assert to_ethernet(linktypes.LINKTYPE_FDDI, fddi + ip) == eth(ip)
    assert to_ethernet(linktypes.LINKTYPE_FDDI, fddi) is None


@pytest.mark.parametrize("ip", [IP4, IP6])
def test_ppp_without_framing(ip):
    proto = b"\x00\x21" if ip is IP4 else b"\x00\x57"
    assert to_ethernet(linktypes.LINKTYPE_PPP, proto + ip) == eth(ip)


def test_ppp_in_hdlc_framing():
    assert to_ethernet(linktypes.LINKTYPE_PPP, b"\xff\x03\x00\x21" + IP4) == eth(IP4)
    assert to_ethernet(linktypes.LINKTYPE_PPP, bytes(HDLC() / PPP(proto=0x0021)) + IP4) == eth(IP4)


def test_ppp_mpls_goes_to_the_mpls_parser():
    label = struct.pack("!I", 16 << 12 | 1 << 8 | 64)
    assert to_ethernet(linktypes.LINKTYPE_PPP, b"\x02\x81" + label + IP4) == MACS + b"\x88\x47" + label + IP4


@pytest.mark.parametrize("frame", [b"\xc0\x21\x01\x01\x00\x04", b"\x00", b"\xff\x03\x00", b""])
def test_ppp_control_protocols_and_short_frames_carry_no_ip(frame):
    assert to_ethernet(linktypes.LINKTYPE_PPP, frame) is None


# --- IEEE 802.11 (Zeek's IEEE802_11 analyzer) ---------------------------------

@pytest.mark.parametrize("ip", [IP4, IP6])
def test_80211_data_frame(ip):
    assert to_ethernet(linktypes.LINKTYPE_IEEE802_11, data_frame(ip)) == eth(ip)


def test_80211_four_address_frame():
    frame = bytes(Dot11(type=2, subtype=0, FCfield=3, addr4="02:00:00:00:00:04")
                  / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800)) + IP4
    assert to_ethernet(linktypes.LINKTYPE_IEEE802_11, frame) == eth(IP4)


def test_80211_qos_data_frame():
    frame = bytes(Dot11(type=2, subtype=8) / Dot11QoS() / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
                  / SNAP(OUI=0, code=0x0800)) + IP4
    assert to_ethernet(linktypes.LINKTYPE_IEEE802_11, frame) == eth(IP4)


def test_80211_protected_qos_frame_is_not_read():
    frame = bytes(Dot11(type=2, subtype=8, FCfield="protected") / Dot11QoS() / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
                  / SNAP(OUI=0, code=0x0800)) + IP4
    assert to_ethernet(linktypes.LINKTYPE_IEEE802_11, frame) is None


def test_80211_amsdu_gives_every_subframe():
    def sub(ip: bytes, last: bool = False) -> bytes:
        # Zeek skips (subframe length % 4) bytes of padding after every subframe but the last.
        body = b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip
        return MACS + struct.pack("!H", len(body)) + body + (b"" if last else b"\x00" * (len(body) % 4))
    ip2 = bytes(IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=7, dport=9) / b"x")
    qos_amsdu = b"\x80\x00"          # QoS control with the A-MSDU present bit
    hdr = bytes(Dot11(type=2, subtype=8, addr1="02:00:00:00:00:02", addr2="02:00:00:00:00:01",
                      addr3="02:00:00:00:00:03"))
    assert (len(IP4) + 8) % 4 != 0                      # the first subframe is padded
    frame = hdr + qos_amsdu + sub(IP4) + sub(ip2, last=True)
    assert to_ethernet_frames(linktypes.LINKTYPE_IEEE802_11, frame) == [eth(IP4), eth(ip2)]


@pytest.mark.parametrize("frame", [
    bytes(Dot11(type=0, subtype=8)) + b"\x00" * 40,                      # beacon (management)
    bytes(Dot11(type=1, subtype=13)) + b"\x00" * 40,                     # ack (control)
    bytes(Dot11(type=2, subtype=4)) + b"\x00" * 40,                      # null data
    bytes(Dot11(type=2, subtype=0) / LLC(dsap=0x42, ssap=0x42, ctrl=3)) + b"\x00" * 40,   # STP, not SNAP
    bytes(Dot11(type=2, subtype=0) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0806)) + b"\x00" * 28,
    b"\x08\x00" + b"\x00" * 10,                                         # shorter than a data header
])
def test_80211_frames_without_ip(frame):
    assert to_ethernet(linktypes.LINKTYPE_IEEE802_11, frame) is None


# --- radiotap (Zeek's IEEE802_11_RADIO analyzer) ------------------------------

def test_radiotap_header_is_skipped_by_its_length():
    frame = bytes(RadioTap(present="Flags+Rate+Channel", Flags=0, Rate=2, ChannelFrequency=2437)) + data_frame(IP4)
    assert struct.unpack("<H", frame[2:4])[0] > 8
    assert to_ethernet(linktypes.LINKTYPE_IEEE802_11_RADIOTAP, frame) == eth(IP4)


@pytest.mark.parametrize("frame", [b"\x00\x00\x08", b"\x00\x00\x40\x00" + b"\x00" * 20])
def test_radiotap_cut_short(frame):
    assert to_ethernet(linktypes.LINKTYPE_IEEE802_11_RADIOTAP, frame) is None


# --- NFLOG (Linux netfilter's log; Zeek's NFLog analyzer) -------------------------

def tlv(kind: int, value: bytes, order: str = "<") -> bytes:
    """One NFLOG TLV: its length counts the 4-byte header, not the padding to 4 bytes."""
    return struct.pack(order + "HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)


def nflog(ip: bytes, order: str = "<", family: int | None = None) -> bytes:
    family = family if family is not None else (2 if ip[0] >> 4 == 4 else 10)
    # NFULA_PREFIX, then NFULA_PACKET_HDR (6 bytes: padded to 8), then the payload TLV.
    return bytes([family, 0]) + b"\x00\x01" + tlv(10, b"job\x00", order) \
        + tlv(1, b"\x08\x00\x01\x00\x00\x00", order) + struct.pack(order + "HH", 4 + len(ip), 9) + ip


@pytest.mark.parametrize("ip", [IP4, IP6])
@pytest.mark.parametrize("order", ["<", ">"])
def test_nflog_tlvs_are_walked_to_the_packet(ip, order):
    assert to_ethernet(linktypes.LINKTYPE_NFLOG, nflog(ip, order), order == ">") == eth(ip)


def test_nflog_of_another_family_carries_no_ip():
    assert to_ethernet(linktypes.LINKTYPE_NFLOG, nflog(IP4, family=7)) is None


@pytest.mark.parametrize("frame, name, addl", [
    (b"\x02\x00\x00\x00", "truncated_nflog_header", None),
    (b"\x02\x01\x00\x00" + tlv(9, IP4), "unknown_nflog_version", None),
    (b"\x02\x00\x00\x00" + tlv(10, b"abcd"), "nflog_no_pcap_payload", None),
    (b"\x02\x00\x00\x00" + struct.pack("<HH", 2, 10) + bytes(8), "nflog_bad_tlv_len", None),
    # Zeek's own trace (core.nflog-bad-tlv-len): a 256-byte TLV in 8 bytes.
    (bytes.fromhex("02000000" "00010100" "00000000"), "nflog_bad_tlv_len", "(256 > 8)"),
])
def test_nflog_frames_zeek_refuses_are_its_weirds(frame, name, addl):
    with pytest.raises(LinkLayerWeird) as refused:
        to_ethernet(linktypes.LINKTYPE_NFLOG, frame)
    assert (refused.value.name, refused.value.addl, refused.value.source) == (name, addl, "NFLOG")


@pytest.mark.root
def test_a_refused_nflog_frame_is_a_weird_about_no_flow(tmp_path):
    not_dns = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=9999) / b"hello")
    frames = [nflog(not_dns), bytes.fromhex("02000000" "00010100" "00000000")]
    out = tmp_path / "out"
    rows = record(write_pcap(tmp_path / "nflog.pcap", frames, linktypes.LINKTYPE_NFLOG), out)
    assert [(r["id.orig_h"], r["id.resp_p"]) for r in rows] == [("10.0.0.1", 9999)]
    assert [(w["uid"], w["id.orig_h"], w["name"], w["addl"], w["source"]) for w in read_log(out / "weird.log")[1]] \
        == [(None, None, "nflog_bad_tlv_len", "(256 > 8)", "NFLOG")]


def test_other_link_types_still_refused():
    with pytest.raises(linktypes.UnsupportedLinkType):
        to_ethernet(147, b"\x00" * 40)


# --- through the kernel program -----------------------------------------------

WRAP = {
    linktypes.LINKTYPE_PPP: lambda ip: (b"\xff\x03" if ip[0] >> 4 == 4 else b"")
    + (b"\x00\x21" if ip[0] >> 4 == 4 else b"\x00\x57") + ip,
    linktypes.LINKTYPE_IEEE802_11: data_frame,
    linktypes.LINKTYPE_IEEE802_11_RADIOTAP: lambda ip: bytes(RadioTap(present="Flags", Flags=0)) + data_frame(ip),
    linktypes.LINKTYPE_NFLOG: nflog,
}


@pytest.mark.root
@pytest.mark.parametrize("linktype", sorted(WRAP))
def test_recorded_like_ethernet(tmp_path, linktype):
    ips = _exchange()
    ref = record(write_pcap(tmp_path / "eth.pcap", [eth(ip) for ip in ips]), tmp_path / "eth")
    got = record(write_pcap(tmp_path / "lt.pcap", [WRAP[linktype](ip) for ip in ips], linktype), tmp_path / "lt")
    assert len(ref) == 3 and got == ref
