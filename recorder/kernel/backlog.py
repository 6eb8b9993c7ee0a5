"""Events taken out of the ring buffer before they are handled: an elastic buffer in user memory.

Handling an event (a DNS message parsed and paired, a row written) costs
~100x taking it out of the ring (a copy). Under a burst of DNS faster than
the handlers, the kernel's fixed-size ring would fill and drop; instead each
poll copies everything the ring holds into this backlog, which grows only
while the burst lasts, and then handles events for a bounded time, so the
ring is emptied again within one poll interval however far behind the
handlers are. Order is kept: events are handled in the ring's order.

Two exceptions to "later":
- PROCESS events are handled when taken: they say a process was seen, and
  /proc must be read while it still runs (processes.py).
- At ``limit_bytes`` the backlog stops growing: each event taken first has
  the oldest one handled, so taking becomes as slow as handling, the ring
  fills, and the kernel counts what it cannot hand over (ringbuf_drops).
  Nothing is lost without being counted.

API::

    EventBacklog(handle, limit_bytes=DEFAULT_LIMIT_BYTES)
        .take(records)                # the ring buffer's callback
        .handle_now(records)          # when nothing waits: no queueing at all
        .handle_for(budget_s) -> bool # True when nothing is left
        .handle_all()
        .events, .bytes, .peak_events
"""

from __future__ import annotations

import collections
import time
from typing import Callable

from cicd_audit.recorder.kernel import abi

DEFAULT_LIMIT_BYTES = 256 * 2**20
# What a recorder's loop handles per turn at most, in seconds: behind a burst the rest waits here
# while the loop empties the ring again, answers its control socket, watches its command and sweeps.
HANDLE_BUDGET_S = 0.05
# While handling, the ring is emptied again this often (seconds).
TAKE_EVERY_S = 0.005
# A record's bytes object and its deque slot, beyond the record's own bytes.
OVERHEAD_BYTES = 41
# Events handled between two looks at the clock when the time is bounded.
CLOCK_EVERY = 32

# The event header's type field (u32, little-endian) of the events handled when taken.
_PROMPT_TYPES = frozenset({abi.EventType.PROCESS.value.to_bytes(4, "little")})


class EventBacklog:
    def __init__(self, handle: Callable[[bytes, int], object], limit_bytes: int = DEFAULT_LIMIT_BYTES):
        self._handle = handle
        self._queue: collections.deque[bytes] = collections.deque()
        self.limit_bytes = limit_bytes
        self.events = 0
        self.bytes = 0
        self.peak_events = 0

    def take(self, records: list[bytes]) -> None:
        """Records from the ring buffer, oldest first (RingBuffer's callback)."""
        waiting = []
        for record in records:
            if record[:4] in _PROMPT_TYPES:
                self._handle(record, len(record))
            else:
                waiting.append(record)
        cost = sum(map(len, waiting)) + OVERHEAD_BYTES * len(waiting)
        while self._queue and self.bytes + cost > self.limit_bytes:
            self._handle_oldest()
        self._queue.extend(waiting)
        self.events += len(waiting)
        self.bytes += cost
        self.peak_events = max(self.peak_events, self.events)

    def handle_now(self, records: list[bytes]) -> None:
        """Handle records at once, in order: only when nothing waits (else they would pass it)."""
        assert not self._queue, "records handled at once would pass those waiting"
        handle = self._handle
        for record in records:
            handle(record, len(record))

    def handle_for(self, budget_s: float) -> bool:
        """Handle events, oldest first, for about budget_s; True when the backlog is empty."""
        deadline = time.monotonic() + budget_s
        while self._queue:
            for _ in range(CLOCK_EVERY):
                if not self._queue:
                    return True
                self._handle_oldest()
            if time.monotonic() >= deadline:
                return not self._queue
        return True

    def handle_all(self) -> None:
        # _handle_oldest's steps in one loop: a frame less for each of a replay's many events.
        queue, handle = self._queue, self._handle
        while queue:
            record = queue.popleft()
            size = len(record)
            self.events -= 1
            self.bytes -= size + OVERHEAD_BYTES
            handle(record, size)

    def _handle_oldest(self) -> None:
        record = self._queue.popleft()
        self.events -= 1
        self.bytes -= len(record) + OVERHEAD_BYTES
        self._handle(record, len(record))
