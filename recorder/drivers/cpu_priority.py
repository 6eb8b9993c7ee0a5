"""The recorder gives way to the job it records when both want the CPU.

Handling events can fall behind a burst without loss (kernel/backlog.py), but
a job slowed down by its own recorder is a cost every job pays. So once the
job runs, the recorder raises its own nice value: on a busy machine the
job's processes are scheduled first, and the recorder catches up from its
backlog when a CPU is free. Taking events out of the ring is cheap, so even
a small share keeps the kernel from dropping them; what it could not take is
counted (ringbuf_drops), never lost silently.
"""

from __future__ import annotations

import os

DEFAULT_NICE_INCREMENT = 10
NICE_MAX = 19


def yield_to_job(increment: int = DEFAULT_NICE_INCREMENT) -> None:
    """Raise the nice value of every thread of this process by increment (Linux's nice is per
    thread; threads started later inherit it)."""
    if increment > 0:
        for tid in os.listdir("/proc/self/task"):
            try:
                current = os.getpriority(os.PRIO_PROCESS, int(tid))
                os.setpriority(os.PRIO_PROCESS, int(tid), min(NICE_MAX, current + increment))
            except ProcessLookupError:      # the thread has just ended
                continue
