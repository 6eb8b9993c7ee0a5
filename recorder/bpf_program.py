"""Compile and load bpf/capture.bpf.c with bcc. The only module that imports bcc.

bcc's own failures are bare Exceptions with the detail on stderr; here they
become EnvironmentProblem errors whose message says what to install or do.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder import abi, kernel_headers, zeek_defaults

# Where Debian/Ubuntu's python3-bpfcc installs bcc, for interpreters that do
# not see the system site-packages (a plain venv, a pyenv Python).
STAGE_TCP = 2                   # CA_STAGE_TCP in capture.bpf.c

SYSTEM_BCC_PATHS = ("/usr/lib/python3/dist-packages",)

INSTALL_HINT = (
    "install the OS package: apt-get install python3-bpfcc "
    "(bcc on PyPI is an unrelated project), and kernel headers: "
    "apt-get install linux-headers-$(uname -r) (or linux-headers-amd64 when none match)"
)


@dataclass(frozen=True)
class ProgramSettings:
    """Everything that changes the compiled program."""

    pcap_mode: bool = False
    validate_checksums: bool = False
    max_conns: int = 262144
    ringbuf_bytes: int = 16 * 1024 * 1024
    weird_send_max: int = 1000
    timers: dict = field(default_factory=lambda: dict(zeek_defaults.TIMER_DEFINES))

    def cflags(self, include_dir: Path) -> list[str]:
        pages = max(1, self.ringbuf_bytes // 4096)
        if pages & (pages - 1):
            raise ValueError("ring buffer size must be a power-of-two number of pages")
        flags = [
            f"-I{include_dir}",
            "-fno-jump-tables",   # bcc cannot load switch lookup tables from .rodata
            f"-DCA_PCAP_MODE={int(self.pcap_mode)}",
            f"-DCA_VALIDATE_CHECKSUMS={int(self.validate_checksums)}",
            f"-DCA_MAX_CONNS={self.max_conns}",
            f"-DCA_RINGBUF_PAGES={pages}",
            f"-DCA_WEIRD_SEND_MAX={self.weird_send_max}",
        ]
        flags += [f"-D{name}={int(seconds * 1e9)}ULL" for name, seconds in self.timers.items()]
        return flags


def import_bcc():
    """Import bcc, looking in the system's dist-packages if this interpreter lacks it."""
    try:
        import bcc  # noqa: F401
    except ImportError:
        for path in SYSTEM_BCC_PATHS:
            if os.path.isdir(os.path.join(path, "bcc")) and path not in sys.path:
                sys.path.append(path)
        try:
            import bcc  # noqa: F401
        except ImportError as exc:
            raise EnvironmentProblem(f"bcc is not installed: {INSTALL_HINT}") from exc
    return sys.modules["bcc"]


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("loading BPF programs needs root: run with sudo (or as root in the CI job)")


def source_dir() -> Path:
    return Path(str(resources.files("cicd_audit.bpf")))


class CaptureProgram:
    """The loaded program: its two entry points, maps and ring buffer."""

    def __init__(self, settings: ProgramSettings, on_event: Callable[[int, ctypes.c_void_p, int], None]):
        require_root()
        bcc = import_bcc()
        headers = kernel_headers.choose_headers()
        if headers.source is not None:
            os.environ["BCC_KERNEL_SOURCE"] = str(headers.source)
        self.headers = headers
        src = source_dir()
        try:
            self.bpf = bcc.BPF(src_file=str(src / "capture.bpf.c").encode(), cflags=settings.cflags(src))
        except Exception as exc:  # bcc raises bare Exception; details went to stderr
            raise EnvironmentProblem(
                f"could not compile the BPF program ({exc}); kernel headers used: {headers.description}. "
                f"If headers are missing: {INSTALL_HINT}"
            ) from exc
        try:
            self.packet_fn = self.bpf.load_func(b"ca_packet", bcc.BPF.SCHED_CLS)
            self.sweep_fn = self.bpf.load_func(b"ca_sweep", bcc.BPF.SCHED_CLS)
            stages = self.bpf.get_table(b"stages")
            self.tcp_fn = self.bpf.load_func(b"ca_tcp", bcc.BPF.SCHED_CLS)
            stages[ctypes.c_int(STAGE_TCP)] = ctypes.c_int(self.tcp_fn.fd)
        except Exception as exc:
            raise EnvironmentProblem(f"the kernel refused the BPF program: {exc}") from exc
        self.conns = self.bpf.get_table(b"conns")
        self._libbcc = bcc.libbcc.lib
        self.stats_table = self.bpf.get_table(b"stats")
        self._fill_likely_server_ports()
        self._on_event = on_event
        self.bpf[b"events"].open_ring_buffer(self._callback)

    def _callback(self, ctx, data, size):
        self._on_event(data, size)
        return 0

    def _fill_likely_server_ports(self) -> None:
        table = self.bpf.get_table(b"likely_server_ports")
        for proto, ports in ((6, zeek_defaults.LIKELY_SERVER_PORTS_TCP), (17, zeek_defaults.LIKELY_SERVER_PORTS_UDP)):
            for port in ports:
                table[table.Key(port | proto << 16)] = table.Leaf(1)

    def poll(self, timeout_ms: int = 0) -> None:
        """Deliver pending ring-buffer events to on_event."""
        if timeout_ms:
            self.bpf.ring_buffer_poll(timeout_ms)
        else:
            self.bpf.ring_buffer_consume()

    def conn_keys(self) -> list[bytes]:
        """Keys of every live connection, as raw bytes of struct ca_conn_key.

        Walks the map with our own key type: bcc's generated type for a
        two-dimensional array member does not have the kernel's layout.
        """
        lib = self._libbcc
        fd = self.conns.map_fd
        keys, key, next_key = [], abi.ConnKey(), abi.ConnKey()
        previous = None
        while lib.bpf_get_next_key(fd, previous, ctypes.byref(next_key)) == 0:
            keys.append(bytes(next_key))
            ctypes.memmove(ctypes.byref(key), ctypes.byref(next_key), ctypes.sizeof(key))
            previous = ctypes.byref(key)
        return keys

    def stats(self) -> dict[str, int]:
        totals = {}
        for stat in abi.Stat:
            values = self.stats_table[self.stats_table.Key(stat.value)]
            totals[stat.name.lower()] = int(sum(values))
        return totals

    def close(self) -> None:
        self.bpf.cleanup()
