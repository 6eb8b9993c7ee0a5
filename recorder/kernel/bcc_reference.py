"""bcc's own loader, tables and ring buffer for the capture program: the reference.

Not used by the recorder, which loads the program with plain bpf() syscalls
(bpf_program.CaptureProgram). The tests run the same capture through both
and compare the logs, which tells a loader bug from a program bug.
"""

from __future__ import annotations

import ctypes
from typing import Callable

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.kernel import abi, kernel_headers, zeek_defaults
from cicd_audit.recorder.kernel.bpf_program import (
    ProgramSettings,
    _kernel_source,
    import_bcc,
    require_root,
    source_dir,
)


class BccLoadedProgram:
    """The program compiled *and run* by bcc: bcc's loader, tables and ring buffer.

    Not used by the recorder. It is the reference the syscall loader is
    tested against (same logs from the same capture), and a way to tell a
    loader bug from a program bug. Same interface as CaptureProgram.
    """

    def __init__(self, settings: ProgramSettings, on_event: Callable[[int, int], None]):
        require_root()
        bcc = import_bcc()
        self.headers = headers = kernel_headers.choose_headers()
        src = source_dir()
        try:
            with _kernel_source(headers):
                self.bpf = bcc.BPF(src_file=str(src / "capture.bpf.c").encode(), cflags=settings.cflags(src))
        except Exception as exc:
            raise EnvironmentProblem(f"could not compile the BPF program ({exc})") from exc
        try:
            self.packet_fn = self.bpf.load_func(b"ca_packet", bcc.BPF.SCHED_CLS)
            self.sweep_fn = self.bpf.load_func(b"ca_sweep", bcc.BPF.SCHED_CLS)
            self.tcp_fn = self.bpf.load_func(b"ca_tcp", bcc.BPF.SCHED_CLS)
            self.decap_fn = self.bpf.load_func(b"ca_decap", bcc.BPF.SCHED_CLS)
            for stage, fn in ((abi.Stage.TCP, self.tcp_fn), (abi.Stage.PACKET, self.packet_fn),
                              (abi.Stage.DECAP, self.decap_fn)):
                self.bpf.get_table(b"stages")[ctypes.c_int(stage)] = ctypes.c_int(fn.fd)
        except Exception as exc:
            raise EnvironmentProblem(f"the kernel refused the BPF program: {exc}") from exc
        self._libbcc = bcc.libbcc.lib
        self.untracked_conns = 0            # its sweeps list the tables: no key can be missed
        self.conns4, self.conns6 = self.bpf.get_table(b"conns4"), self.bpf.get_table(b"conns6")
        self.stats_table = self.bpf.get_table(b"stats")
        ports = self.bpf.get_table(b"likely_server_ports")
        for proto, numbers in ((6, zeek_defaults.LIKELY_SERVER_PORTS_TCP), (17, zeek_defaults.LIKELY_SERVER_PORTS_UDP)):
            for port in numbers:
                ports[ports.Key(port | proto << 16)] = ports.Leaf(1)
        self._on_event = on_event
        self.bpf[b"events"].open_ring_buffer(self._callback)

    def _callback(self, ctx, data, size):
        # A replay's connection starts serve CaptureProgram's sweeps; this reference lists the tables.
        if size < 4 or ctypes.c_uint32.from_address(data).value != abi.EventType.CONN_START:
            self._on_event(data, size)
        return 0

    def poll(self, timeout_ms: int = 0, budget_s: float | None = None) -> None:
        """As CaptureProgram.poll, without its backlog: every event is handled as it is taken."""
        if timeout_ms:
            self.bpf.ring_buffer_poll(timeout_ms)
        else:
            self.bpf.ring_buffer_consume()

    def take_events(self) -> None:
        self.poll()

    def conn_keys(self, listed: bool = True, due_by: int | None = None) -> tuple[list[bytes], list[bytes]]:
        """Every key, listed from the tables (due_by, which a replay's followed keys honour, is moot)."""
        return ([abi.conn_key_from_v4(raw) for raw in self._keys(self.conns4, abi.ConnKey4)],
                self._keys(self.conns6, abi.ConnKey))

    def _keys(self, table, key_type) -> list[bytes]:
        keys, key, next_key, previous = [], key_type(), key_type(), None
        while self._libbcc.bpf_get_next_key(table.map_fd, previous, ctypes.byref(next_key)) == 0:
            keys.append(bytes(next_key))
            ctypes.memmove(ctypes.byref(key), ctypes.byref(next_key), ctypes.sizeof(key))
            previous = ctypes.byref(key)
        return keys

    def stats(self) -> dict[str, int]:
        return {stat.name.lower(): int(sum(self.stats_table[self.stats_table.Key(stat.value)])) for stat in abi.Stat}

    def close(self) -> None:
        self.bpf.cleanup()
