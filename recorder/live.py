"""Record live traffic at TC on this namespace's interfaces.

Attaches, then (optionally) starts the job's command, so its first packet is
seen; polls the ring buffer; sweeps timers once a second; and on the
command's exit, SIGINT or SIGTERM detaches, drains every connection and
closes the logs, so they are complete whenever the recorder exits.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from cicd_audit.errors import UsageError
from cicd_audit.recorder.attach import TcAttachment, default_interfaces
from cicd_audit.recorder.bpf_program import CaptureProgram, ProgramSettings, require_root
from cicd_audit.recorder.session import SessionLog
from cicd_audit.recorder.sweeper import Sweeper

POLL_MS = 100
SWEEP_INTERVAL_S = 1.0


@dataclass
class LiveResult:
    exit_status: int          # the command's exit status, or 0 without a command
    stats: dict


class _StopFlag:
    """SIGINT/SIGTERM set it; with a command running, they are passed on to it."""

    def __init__(self):
        self.stop = False
        self.child: Optional[subprocess.Popen] = None
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.child is not None and self.child.poll() is None:
            if signum == signal.SIGTERM:
                self.child.terminate()      # SIGINT already reached the foreground group
            return
        self.stop = True


def record_live(out_dir: Path, interfaces: Sequence[str] | None = None, command: Sequence[str] | None = None,
                fmt: str = "tsv", on_ready: Callable[[], None] | None = None,
                settings: ProgramSettings | None = None, likely_server_ports: frozenset | None = None,
                community_id: bool = False) -> LiveResult:
    require_root()                  # before any log file exists
    interfaces = list(interfaces or default_interfaces())
    if not interfaces:
        raise UsageError("no interface is up in this network namespace; name one with --iface")
    epoch_offset_ns = time.time_ns() - time.monotonic_ns()   # bpf_ktime_get_ns is CLOCK_MONOTONIC
    session = SessionLog(out_dir, fmt, to_epoch=lambda ns: (ns + epoch_offset_ns) / 1e9,
                         add_community_id=community_id)
    try:
        program = CaptureProgram(settings or ProgramSettings(pcap_mode=False), session.on_event)
    except BaseException:
        session.abort("the BPF program could not be loaded")
        raise
    if likely_server_ports is not None:
        program.set_likely_server_ports(likely_server_ports)
    flag = _StopFlag()
    started = time.monotonic()
    exit_status = 0
    try:
        sweeper = Sweeper(program, program.sweep_fn.fd)
        flag.install()
        with TcAttachment(interfaces, program.packet_fn.fd):
            if on_ready is not None:
                on_ready()
            if command:
                try:
                    flag.child = subprocess.Popen(list(command))
                except OSError as exc:
                    raise UsageError(f"cannot run {command[0]!r}: {exc.strerror}") from exc
            next_sweep = time.monotonic() + SWEEP_INTERVAL_S
            while not flag.stop:
                program.poll(POLL_MS)
                if flag.child is not None and flag.child.poll() is not None:
                    exit_status = _exit_status(flag.child.returncode)
                    break
                if time.monotonic() >= next_sweep:
                    sweeper.sweep(time.monotonic_ns())
                    session.flush()
                    next_sweep = time.monotonic() + SWEEP_INTERVAL_S
            # Let the kernel's last events (the command's final packets) arrive.
            program.poll(POLL_MS)
        sweeper.sweep(time.monotonic_ns(), drain=True)
        program.poll()
        stats = session.close(program.stats(), ",".join(interfaces), time.monotonic() - started)
        return LiveResult(exit_status, stats)
    finally:
        if not session.closed:
            session.abort("recording stopped by an error")
        flag.restore()
        if flag.child is not None and flag.child.poll() is None:
            flag.child.terminate()
        program.close()


def _exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode
