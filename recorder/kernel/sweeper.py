"""Ask the kernel which connections have timed out, or end them all.

The expiry rules live in the BPF program (timers.h); user space only lists
the connection keys and runs the ca_sweep entry point over them in batches,
one address family per batch.
"""

from __future__ import annotations

from typing import Callable

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.packet_runner import PacketRunner

_DUMMY_ETHERNET = bytes(14)
_KEYS_AT = abi.SweepRequest.keys.offset


class Sweeper:
    def __init__(self, program, sweep_fd: int):
        self.program = program
        self.runner = PacketRunner(sweep_fd)

    def sweep(self, now_ns: int, drain: bool = False, only: Callable[[abi.Conn], bool] | None = None) -> None:
        """only: sweep just the connections it accepts (an agent ending one of several jobs).

        The events of the connections it ends are taken out of the ring buffer, not handled:
        the caller's next program.poll() handles them, after what was taken before."""
        # A drain lists the tables themselves: nothing may stay behind. A timer sweep of a replay
        # sends only the connections that can have ended by now (conn_keys.py).
        if only is not None:
            v4_keys, v6_keys = self.program.conn_keys_where(only)
        else:
            v4_keys, v6_keys = self.program.conn_keys(listed=drain, due_by=None if drain else now_ns)
        for keys, v4 in ((v4_keys, True), (v6_keys, False)):
            for start in range(0, len(keys), abi.SWEEP_KEYS_MAX):
                self._sweep_batch(keys[start:start + abi.SWEEP_KEYS_MAX], v4, now_ns, drain)

    def _sweep_batch(self, batch: list[bytes], v4: bool, now_ns: int, drain: bool) -> None:
        head = bytes(abi.SweepRequest(count=len(batch), drain=int(drain), v4=int(v4)))[:_KEYS_AT]
        # The raw ConnKeys back to back after the head: ca_sweep reads the `count` it is told, no more.
        verdict = self.runner.run(_DUMMY_ETHERNET + head + b"".join(batch), now_ns)
        self.program.take_events()      # the ring is free for the next batch; the caller handles them
        if verdict == abi.SWEEP_UNFINISHED and len(batch) > 1:
            # ca_sweep takes a key a run, tail-calling itself for the next; should a kernel allow
            # fewer tail calls than a batch needs, halves need fewer (a key it ended is not found again).
            half = len(batch) // 2
            self._sweep_batch(batch[:half], v4, now_ns, drain)
            self._sweep_batch(batch[half:], v4, now_ns, drain)
