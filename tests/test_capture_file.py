"""recorder/drivers/capture_file.py: pcap and pcapng read as libpcap reads them, every problem said.

Files are built byte by byte here, so each case is exactly the layout it names.
"""

from __future__ import annotations

import logging
import struct

import pytest
from capture_builders import block, epb, idb, opb, option, pcap, shb, spb
from shared_data import shared

from cicd_audit.errors import InputError
from cicd_audit.recorder.drivers.capture_file import MAX_RECORD_BYTES, CaptureFile

FRAME = bytes(range(60))


def read(tmp_path, content: bytes):
    path = tmp_path / "c"
    path.write_bytes(content)
    with CaptureFile(path) as capture:
        frames = list(capture)
    return frames, capture.problem


# -- classic pcap ----------------------------------------------------------------

@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_in_either_byte_order_and_resolution(tmp_path, endian, nano):
    frac = 123_456_789 if nano else 123_456
    frames, problem = read(tmp_path, pcap([(1_700_000_000, frac, FRAME), (1_700_000_001, 0, FRAME[:20])],
                                          endian, nano, linktype=101))
    assert problem is None
    assert [(f.number, f.ts_ns, f.linktype, f.data) for f in frames] == [
        (1, 1_700_000_000_000_000_000 + (frac if nano else frac * 1000), 101, FRAME),
        (2, 1_700_000_001_000_000_000, 101, FRAME[:20])]
    assert {f.big_endian for f in frames} == {endian == ">"}       # NFLOG's TLVs are in it


def test_the_link_type_field_keeps_only_its_link_type(tmp_path):
    # The upper bits of the field describe an FCS (pcap-savefile(5)), not another link type.
    frames, _ = read(tmp_path, pcap([(1, 0, FRAME)], linktype=(1 << 28) | (1 << 26) | 1))
    assert frames[0].linktype == 1


@pytest.mark.parametrize("cut, expected", [
    (8, "file ends inside the header of packet record 2"),
    (16 + 30, "file ends inside packet record 2 (30 of 60 bytes)"),
])
def test_a_cut_record_ends_the_read_and_is_named(tmp_path, cut, expected):
    full = pcap([(1, 0, FRAME), (2, 0, FRAME)])
    frames, problem = read(tmp_path, full[:24 + 16 + 60 + cut])
    assert [f.number for f in frames] == [1]
    assert problem.endswith(expected)


def test_an_impossible_record_length_is_damage_not_a_huge_read(tmp_path):
    data = pcap([(1, 0, FRAME)]) + struct.pack("<IIII", 2, 0, MAX_RECORD_BYTES + 1, 70) + FRAME
    frames, problem = read(tmp_path, data)
    assert len(frames) == 1 and "packet record 2 claims" in problem and "damaged" in problem


@pytest.mark.parametrize("content", [b"", b"hello", b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_not_a_capture_is_an_input_error(tmp_path, content):
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(InputError, match=str(path)):
        CaptureFile(path)


def test_missing_file_and_directory_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        CaptureFile(tmp_path / "absent.pcap")
    with pytest.raises(InputError, match="is a directory"):
        CaptureFile(tmp_path)


# -- pcapng ----------------------------------------------------------------------

@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_interfaces_keep_their_own_link_type_resolution_and_offset(tmp_path, endian):
    content = (shb(endian) + idb(1, endian=endian)                        # microseconds
               + idb(101, tsresol=9, tsoffset=100, endian=endian)          # nanoseconds, +100 s
               + idb(1, tsresol=0x80 | 10, endian=endian)                  # 2^-10 s
               + epb(0, 1_500_000, FRAME, endian)
               + epb(1, 2_000_000_001, FRAME[:30], endian)
               + epb(2, 3 * 1024 + 512, FRAME[:40], endian))
    frames, problem = read(tmp_path, content)
    assert problem is None
    assert [(f.number, f.ts_ns, f.linktype, len(f.data)) for f in frames] == [
        (1, 1_500_000_000, 1, 60), (2, 102_000_000_001, 101, 30), (3, 3_500_000_000, 1, 40)]


def test_simple_packet_blocks_are_packets_at_time_zero_cut_to_the_snaplen(tmp_path):
    content = shb() + idb(1, snaplen=50) + spb(FRAME) + epb(0, 7_000_000, FRAME)
    frames, problem = read(tmp_path, content)
    assert problem is None
    assert [(f.ts_ns, f.data, f.wire_len) for f in frames] == [(0, FRAME[:50], 60), (7_000_000_000, FRAME, 60)]


def test_obsolete_packet_blocks_and_non_packet_blocks(tmp_path):
    nrb = block(4, option(0, b""))
    isb = block(5, struct.pack("<III", 0, 0, 0))
    custom = block(0x00000BAD, b"pen!")
    content = shb() + idb(1) + nrb + opb(0, 5_000_000, FRAME) + isb + custom + epb(0, 6_000_000, FRAME)
    frames, problem = read(tmp_path, content)
    assert problem is None and [(f.number, f.ts_ns) for f in frames] == [(1, 5_000_000_000), (2, 6_000_000_000)]


def test_a_second_section_starts_over_with_its_own_byte_order_and_interfaces(tmp_path):
    content = (shb("<") + idb(1, endian="<") + epb(0, 1_000_000, FRAME, "<")
               + shb(">") + idb(101, tsresol=9, endian=">") + epb(0, 5, FRAME[:20], ">"))
    frames, problem = read(tmp_path, content)
    assert problem is None
    assert [(f.ts_ns, f.linktype, len(f.data), f.big_endian) for f in frames] == [
        (1_000_000_000, 1, 60, False), (5, 101, 20, True)]


@pytest.mark.parametrize("damage, expected", [
    (lambda good: good[:-10], "file ends inside a block (before packet record 2"),
    (lambda good: good[:-4] + struct.pack("<I", 999), "two different lengths"),
    (lambda good: good[:-len(epb(0, 2, FRAME))] + struct.pack("<II", 6, 13) + b"\0" * 40, "impossible length (13)"),
    (lambda good: good + b"\x06\x00", "file ends inside a block header (before packet record 3)"),
])
def test_damaged_pcapng_ends_the_read_and_says_where(tmp_path, damage, expected):
    good = shb() + idb(1) + epb(0, 1, FRAME) + epb(0, 2, FRAME)
    frames, problem = read(tmp_path, damage(good))
    assert problem is not None and expected in problem, problem
    assert frames and frames[0].number == 1


def test_a_packet_of_an_undescribed_interface_is_damage(tmp_path):
    frames, problem = read(tmp_path, shb() + idb(1) + epb(1, 1, FRAME))
    assert frames == [] and "interface 1, which was never described" in problem


def test_a_pcapng_without_byte_order_magic_is_an_input_error(tmp_path):
    path = tmp_path / "x.pcapng"
    path.write_bytes(block(0x0A0D0D0A, struct.pack("<IHHq", 0x12345678, 1, 0, -1)))
    with pytest.raises(InputError, match="byte-order magic"):
        CaptureFile(path)


# -- the shared captures, against scapy's reader ----------------------------------

def test_every_shared_capture_reads_as_scapy_reads_it():
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.utils import RawPcapReader
    captures = sorted(shared().glob("**/*.pcap*"))
    assert len(captures) > 40
    for path in captures:
        with CaptureFile(path) as capture:
            ours = [f.data for f in capture]
        assert capture.problem is None, capture.problem
        assert ours == [bytes(frame) for frame, _meta in RawPcapReader(str(path))], path
