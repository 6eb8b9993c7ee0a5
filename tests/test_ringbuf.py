"""recorder/kernel/ringbuf.py: the mmap ring-buffer reader, without bcc.

1. A hand-assembled TC program (below) reserves one record per run, with its
   skb->mark in it, and submits or discards it by the mark's low bit; with a
   one-page ring it wraps around hundreds of times. Every submitted record
   must arrive once, in order, with its size; every discarded one must be
   skipped (and counted).
2. The compiled reader (_ringtake.c) against the reference (_take_in_python) on
   rings built in memory: records of every size, discarded ones, one still
   being written, runs that wrap past the data area's end.
3. The real program on a DNS-heavy capture (dns2tcp, 9070 DNS messages,
   checksums not validated), with a 64 KB ring so it wraps ~90 times: the
   syscall loader and ring reader give the same dns.log as bcc's own loader
   and ring buffer.
"""

from __future__ import annotations

import ctypes
import os
import random
import struct

import pytest
from shared_data import shared

from cicd_audit.recorder.kernel import bpf_syscall, ringbuf
from cicd_audit.recorder.kernel.packet_runner import PacketRunner
from cicd_audit.recorder.kernel.ringbuf import RingBuffer

DNS2TCP = shared("dns-tunnel-data", "pcaps", "dns2tcp_netrack", "dns2tcp_2018-03-23.pcap")
PAGE = os.sysconf("SC_PAGE_SIZE")

SMALL, LARGE = 16, 36      # record sizes: 36 is not a multiple of 8 (the reader must round up)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


def _ld_map_fd(dst: int, fd: int) -> bytes:
    return _insn(0x18, dst, bpf_syscall.BPF_PSEUDO_MAP_FD, 0, fd) + _insn(0)


def ringbuf_test_program(map_fd: int) -> bytes:
    """mark = skb->mark; reserve SMALL or LARGE bytes (mark bit 1); write mark at 0 and at size-8;
    submit, or discard when mark bit 0 is set. Returns TC_ACT_OK."""
    def reserve_fill_release(size: int) -> list[bytes]:
        return [
            _ld_map_fd(1, map_fd),
            _insn(0xB7, 2, imm=size),            # r2 = size
            _insn(0xB7, 3, imm=0),               # r3 = 0
            _insn(0x85, imm=131),                # call bpf_ringbuf_reserve
            _insn(0x15, 0, off=8, imm=0),        # if r0 == 0 goto out (+8)
            _insn(0x7B, 0, 7, off=0),            # *(u64 *)(r0 + 0) = r7
            _insn(0x7B, 0, 7, off=size - 8 - size % 8),  # *(u64 *)(r0 + last aligned word) = r7
            _insn(0xBF, 1, 0),                   # r1 = r0
            _insn(0xB7, 2, imm=0),               # r2 = 0 (flags)
            _insn(0x55, 8, off=2, imm=0),        # if r8 != 0 goto discard (+2)
            _insn(0x85, imm=132),                # call bpf_ringbuf_submit
            _insn(0x05, off=1),                  # goto out (+1)
            _insn(0x85, imm=133),                # discard: call bpf_ringbuf_discard
        ]
    body = [
        _insn(0x61, 7, 1, off=8),                # r7 = *(u32 *)(r1 + 8): skb->mark
        _insn(0xBF, 8, 7),                       # r8 = r7
        _insn(0x57, 8, imm=1),                   # r8 &= 1: discard?
        _insn(0xBF, 9, 7),                       # r9 = r7
        _insn(0x57, 9, imm=2),                   # r9 &= 2: large?
    ]
    small, large = reserve_fill_release(SMALL), reserve_fill_release(LARGE)
    large_len = sum(len(i) for i in large) // 8
    small_len = sum(len(i) for i in small) // 8
    body += [_insn(0x55, 9, off=small_len + 1, imm=0)]   # if r9 != 0 goto large
    body += small + [_insn(0x05, off=large_len)]         # goto out
    body += large
    body += [_insn(0xB7, 0, imm=0), _insn(0x95)]         # out: r0 = TC_ACT_OK; exit
    return b"".join(body)


@pytest.fixture
def ring_program():
    if os.geteuid() != 0:
        pytest.skip("needs root: loads a BPF program")
    map_fd = bpf_syscall.map_create(bpf_syscall.MAP_RINGBUF, 0, 0, PAGE, name="test_ring")
    try:
        prog_fd = bpf_syscall.prog_load("ringbuf_test", ringbuf_test_program(map_fd))
    except BaseException:
        os.close(map_fd)
        raise
    try:
        yield map_fd, PacketRunner(prog_fd)
    finally:
        os.close(prog_fd)
        os.close(map_fd)


def test_wrap_around_and_discarded_records(ring_program):
    map_fd, runner = ring_program
    got = []

    def on_records(records: list[bytes]) -> None:
        for raw in records:
            size = len(raw)
            mark = int.from_bytes(raw[:8], "little")
            assert raw[size - 8 - size % 8:][:8] == raw[:8], "the record's last word was not the producer's"
            got.append((mark, size))

    frame = bytes(14)
    total = 6000
    with RingBuffer(map_fd, PAGE, on_records) as ring:
        for mark in range(total):
            runner.run(frame, 0, mark=mark)
            if mark % 13 == 12:          # let records pile up (13 x 48 B < one page), then read
                ring.consume()
        ring.poll(0)
        ring.consume()
        expected = [(m, LARGE if m & 2 else SMALL) for m in range(total) if not m & 1]
        assert got == expected
        assert ring.records == len(expected)
        assert ring.discarded == total - len(expected)
        written = sum((size + 8 + 7) & ~7 for size in (LARGE if m & 2 else SMALL for m in range(total)))
        assert written > 50 * PAGE, "the test must wrap around the ring many times"


def test_a_full_ring_drops_and_the_reader_recovers(ring_program):
    """More records than fit: the program's reserves fail (dropped), reading resumes cleanly."""
    map_fd, runner = ring_program
    got = []
    fits = PAGE // 24                    # SMALL records take 24 bytes with their header

    def on_records(records):
        got.extend(int.from_bytes(raw[:8], "little") for raw in records)

    with RingBuffer(map_fd, PAGE, on_records) as ring:
        marks = [4 * i for i in range(2 * fits)]         # bits 0 and 1 clear: submitted, SMALL
        for mark in marks:
            runner.run(bytes(14), 0, mark=mark)
        ring.consume()
        assert got == marks[:fits]
        runner.run(bytes(14), 0, mark=100000)
        ring.consume()
        assert got[-1] == 100000 and len(got) == fits + 1


def test_poll_waits_for_data_and_times_out(ring_program):
    import time
    map_fd, runner = ring_program
    got = []
    with RingBuffer(map_fd, PAGE, got.extend) as ring:
        t = time.monotonic()
        assert ring.poll(50) == 0
        assert time.monotonic() - t >= 0.04
        runner.run(bytes(14), 0, mark=0)
        t = time.monotonic()
        assert ring.poll(5000) == 1
        assert time.monotonic() - t < 1


@pytest.mark.root
@pytest.mark.slow
def test_dns_heavy_capture_same_dns_log_as_bcc(tmp_path, monkeypatch):
    from cicd_audit.recorder.drivers import pcap_replay, recording
    from cicd_audit.recorder.kernel import bcc_reference, bpf_program
    from cicd_audit.zeeklog.reader import read_log
    settings = bpf_program.ProgramSettings(pcap_mode=True, validate_checksums=False, ringbuf_bytes=64 * 1024)
    results = {}
    for name, loader in (("bcc", bcc_reference.BccLoadedProgram), ("syscalls", bpf_program.CaptureProgram)):
        monkeypatch.setattr(recording, "CaptureProgram", loader)
        out = tmp_path / name
        stats = pcap_replay.record_pcap(DNS2TCP, out, validate_checksums=False, progress=False, settings=settings)
        rows = [{k: v for k, v in r.items() if k != "uid"} for r in read_log(out / "dns.log")[1]]
        results[name] = (stats, rows)
    (bcc_stats, bcc_rows), (our_stats, our_rows) = results["bcc"], results["syscalls"]
    assert our_stats["dns_messages"] == bcc_stats["dns_messages"] == 9070
    assert our_stats["ringbuf_drops"] == bcc_stats["ringbuf_drops"] == 0
    assert len(our_rows) == len(bcc_rows) and our_rows == bcc_rows


def test_map_elements_through_syscalls():
    """The element commands the recorder uses, on a small hash map and a per-CPU array."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates BPF maps")
    from cicd_audit.recorder.kernel.bpf_program import BpfMap
    from cicd_audit.recorder.kernel.program_cache import MapSpec
    table = BpfMap(MapSpec("t", bpf_syscall.MAP_HASH, 4, 1, 64), bpf_syscall.map_create(bpf_syscall.MAP_HASH, 4, 1, 64))
    percpu = BpfMap(MapSpec("p", bpf_syscall.MAP_PERCPU_ARRAY, 4, 8, 4),
                    bpf_syscall.map_create(bpf_syscall.MAP_PERCPU_ARRAY, 4, 8, 4))
    try:
        for port in (53, 80, 443):
            table.update(port, 1)
        assert sorted(int.from_bytes(k, "little") for k in table.keys()) == [53, 80, 443]
        assert table.lookup(80) == b"\x01" and table.lookup(81) is None
        assert table.delete(80) and not table.delete(80)
        assert sorted(int.from_bytes(k, "little") for k in table.keys()) == [53, 443]
        values = percpu.lookup_percpu_u64(2)
        assert values == [0] * bpf_syscall.possible_cpus()
        percpu.update(2, b"".join((i + 1).to_bytes(8, "little") for i in range(len(values))))
        assert sum(percpu.lookup_percpu_u64(2)) == sum(range(1, len(values) + 1))
    finally:
        table.close()
        percpu.close()


def ring_in_memory(size: int, start: int, records: list[tuple[bytes, int]]) -> ctypes.Array:
    """consumer_pos, producer_pos, then the data area twice: records (payload, header flag bits)
    laid out from position `start` as the kernel lays them out."""
    area = bytearray(size)
    pos = start
    for payload, flags in records:
        at = pos % size
        record = struct.pack("<II", len(payload) | flags, 0) + payload
        for i, byte in enumerate(record):
            area[(at + i) % size] = byte
        pos += (len(payload) + ringbuf.HEADER_SIZE + 7) & ~7
    return ctypes.create_string_buffer(struct.pack("<QQ", start, pos) + bytes(area) * 2, 16 + 2 * size)


def taken(memory: ctypes.Array, size: int, in_python: bool) -> tuple[list[bytes], int, int]:
    reader = object.__new__(RingBuffer)
    base = ctypes.addressof(memory)
    reader._consumer, reader._producer, reader._data, reader._mask = base, base + 8, base + 16, size - 1
    reader._headers = memoryview((ctypes.c_char * (2 * size)).from_address(base + 16)).cast("B").cast("I") \
        if ringbuf._TSO else None
    reader.discarded = 0
    records = reader._take_in_python() if in_python else reader._take()
    return records, reader.discarded, struct.unpack_from("<Q", memory)[0]


def test_the_compiled_reader_takes_what_the_reference_takes():
    assert ringbuf._compiled is not None
    rng = random.Random(20261208)
    size = 4096
    for _ in range(400):
        records = []
        room = size
        while True:
            payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 7, 8, 36, rng.randrange(600)))))
            need = (len(payload) + ringbuf.HEADER_SIZE + 7) & ~7
            if need > room:
                break
            room -= need
            records.append((payload, rng.choice((0, 0, 0, ringbuf.DISCARD_BIT, ringbuf.BUSY_BIT))))
        start = rng.choice((0, size - 8, rng.randrange(0, 2**40, 8), 2**63 - 8 * rng.randrange(1, 600)))
        reference = taken(ring_in_memory(size, start, records), size, in_python=True)
        assert taken(ring_in_memory(size, start, records), size, in_python=False) == reference
        kept = [p for p, flags in records[:next((i for i, (_, f) in enumerate(records) if f & ringbuf.BUSY_BIT),
                                               len(records))] if not flags]
        assert reference[0] == kept
    with pytest.raises(ValueError):
        ringbuf._compiled.take(1, 2, 3, 4095 + 1)
