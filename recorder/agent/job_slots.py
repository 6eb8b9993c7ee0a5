"""The kernel's job slots (bpf/job_scope.h): which blocked job holds which.

The kernel judges up to abi.JOB_SLOTS jobs at once, each by its own policy.
A slot given back is the last to be taken again: the kernel may still
remember a socket or connection of the ended job under its number (in
sock_owner, flow_owner or the connection table, until they expire), and
the longer the number stays free, the less of that can meet a later job's
policy.
"""

from __future__ import annotations

from collections import deque

from cicd_audit.recorder.kernel import abi


class JobSlots:
    def __init__(self, count: int = abi.JOB_SLOTS) -> None:
        self._free = deque(range(count))

    def take(self) -> int | None:
        """The free slot given back longest ago (never used ones first), or None if all are held."""
        return self._free.popleft() if self._free else None

    def give(self, slot: int) -> None:
        if slot in self._free:
            raise ValueError(f"job slot {slot} is free already")
        self._free.append(slot)

    @property
    def free(self) -> int:
        return len(self._free)
