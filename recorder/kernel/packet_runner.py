"""Run a loaded TC program on one packet with BPF_PROG_TEST_RUN.

This is how pcap input goes through the very same kernel code as live
capture: each packet becomes an skb whose tstamp is its capture time.
"""

from __future__ import annotations

import ctypes
import errno
import os

from cicd_audit.recorder.kernel import abi

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
BPF_PROG_TEST_RUN = 10

# struct __sk_buff offsets used as test-run context (include/uapi/linux/bpf.h).
SKB_CTX_SIZE = 192
SKB_MARK = 8
SKB_TSTAMP = 152
SKB_WIRE_LEN = 160
SKB_GSO_SEGS = 164
# The largest wire_len a test run takes (GSO_MAX_SIZE): the program reads it as "this long or longer".
WIRE_LEN_UNKNOWN = 65536

# The kernel builds the test skb in one page: headroom and skb_shared_info
# leave about 3.7 KB for packet data (net/bpf/packet_runner.c).
DEFAULT_MAX_DATA = 3712

# What BPF_PROG_TEST_RUN refuses to build an skb from: less than an Ethernet
# header, or an IPv4 or IPv6 EtherType with less than that IP header after it.
# Such a frame (Zeek reads it and raises truncated_IP or truncated_ethernet_frame)
# runs padded with zeros, its captured length in the mark with abi.MARK_PADDED set,
# and the program cuts it back to that length (bpf/capture.bpf.c, ca_entry).
MIN_DATA = 14
_MIN_DATA_BY_ETHERTYPE = {b"\x08\x00": 14 + 20, b"\x86\xdd": 14 + 40}


def runnable(frame: bytes) -> tuple[bytes, int | None]:
    """The frame as the kernel takes it, and the mark that says it was padded (None: as it was)."""
    need = _MIN_DATA_BY_ETHERTYPE.get(frame[12:14], MIN_DATA) if len(frame) >= MIN_DATA else MIN_DATA
    if len(frame) >= need:
        return frame, None
    return frame + bytes(need - len(frame)), len(frame) | abi.MARK_PADDED


class FrameRejected(ValueError):
    """The kernel would not build an skb from this frame (e.g. too short)."""


class _TestAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32), ("pad", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class PacketRunner:
    """Feeds packets to one program fd; reuses its buffers between calls."""

    def __init__(self, prog_fd: int):
        self.prog_fd = prog_fd
        self.max_data = DEFAULT_MAX_DATA
        # One context, one data buffer and one attr for every call: per packet only the
        # mark, the timestamp, the frame bytes and their length change.
        self._ctx = ctypes.create_string_buffer(SKB_CTX_SIZE)
        self._mark = ctypes.c_uint32.from_buffer(self._ctx, SKB_MARK)
        self._tstamp = ctypes.c_uint64.from_buffer(self._ctx, SKB_TSTAMP)
        self._wire_len = ctypes.c_uint32.from_buffer(self._ctx, SKB_WIRE_LEN)
        self._data = ctypes.create_string_buffer(DEFAULT_MAX_DATA)
        self._attr = _TestAttr(prog_fd=prog_fd, data_in=ctypes.addressof(self._data), repeat=1,
                               ctx_size_in=SKB_CTX_SIZE, ctx_in=ctypes.addressof(self._ctx))
        self._attr_ref, self._attr_size = ctypes.byref(self._attr), ctypes.sizeof(self._attr)

    def run(self, frame: bytes, ts_ns: int, mark: int = 0, wire_len: int | None = None) -> int:
        """Run the program on one Ethernet frame; returns the program's verdict.

        Frames longer than the kernel accepts are cut: the program takes
        lengths from the IP header, so only payload bytes are lost.
        wire_len: the packet's length on the wire (a capture record's; None:
        the frame's own), against which the program checks the IP length.
        """
        wire = len(frame) if wire_len is None else max(wire_len, len(frame))
        if len(frame) > self.max_data:
            frame = frame[: self.max_data]
        frame, padded = runnable(frame)
        self._mark.value = mark if padded is None else padded
        self._wire_len.value = min(max(wire, len(frame)), WIRE_LEN_UNKNOWN)
        self._tstamp.value = ts_ns
        ctypes.memmove(self._data, frame, len(frame))
        attr = self._attr
        attr.data_size_in = len(frame)
        attr.data_size_out = 0      # the kernel writes it back; left non-zero, it would cap the next run (ENOSPC)
        rc = _libc.syscall(SYS_BPF, BPF_PROG_TEST_RUN, self._attr_ref, self._attr_size)
        if rc != 0:
            err = ctypes.get_errno()
            if err == errno.EINVAL and len(frame) > 1024 and self.max_data > 1024:
                self.max_data = len(frame) - 256   # this kernel allows less: shrink and retry
                return self.run(frame, ts_ns, mark, wire)
            if err == errno.EINVAL:
                raise FrameRejected(f"the kernel refused a {len(frame)}-byte frame")
            raise OSError(err, f"BPF_PROG_TEST_RUN failed: {os.strerror(err)}")
        return attr.retval


class DatagramRunner:
    """Runs a datagram reassembled in user space (recorder/logs/fragments.py) through
    the program its fragments came through: ingress (and pcap input) or egress.

    owner_maps (live capture with attribution): the sock_owner and flow_owner
    maps. A datagram runs without a socket, so TC finds its owner by flow: the
    owner of the socket its fragments left from is filed under its flow first.
    """

    def __init__(self, ingress_fd: int, egress_fd: int | None = None, owner_maps=None):
        self._ingress = PacketRunner(ingress_fd)
        self._egress = PacketRunner(egress_fd) if egress_fd is not None else self._ingress
        self._owner_maps = owner_maps

    @classmethod
    def for_program(cls, program) -> DatagramRunner:
        """For a loaded CaptureProgram: its ingress and egress programs, and its owner maps if it attributes."""
        maps = getattr(program, "maps", {})      # bcc's reference loader (tests) runs pcaps only
        owners = (maps["sock_owner"], maps["flow_owner"]) if "sock_owner" in maps and "flow_owner" in maps else None
        return cls(program.packet_fn.fd, getattr(program, "egress_fn", program.packet_fn).fd, owners)

    def __call__(self, datagram) -> bool:
        runner = self._egress if datagram.egress else self._ingress
        if datagram.sock_cookie and self._owner_maps is not None:
            self._file_owner(datagram)
        try:
            # The mark carries the length: a datagram longer than a test-run skb is
            # cut, and the program counts it whole (as for a long pcap frame).
            runner.run(datagram.frame, datagram.ts_ns, mark=len(datagram.frame))
        except FrameRejected:
            return False
        return True

    def _file_owner(self, datagram) -> None:
        sock_owner, flow_owner = self._owner_maps
        owner = sock_owner.lookup(datagram.sock_cookie)
        if owner is not None and datagram.flow is not None:
            daddr, dport, sport, proto = datagram.flow
            key = abi.FlowKey(dport=dport, sport=sport, ip_proto=proto)
            key.daddr[:] = daddr
            flow_owner.update(bytes(key), owner)
