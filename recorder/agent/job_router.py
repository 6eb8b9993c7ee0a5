"""Which open job an event belongs to, when several runners on one host have a job open.

Each open job has a scope: a cgroup v2 directory, the runner's own (the cgroup
its job hook ran in: a runner service's systemd unit) or the job's cgroup its
worker was moved into (blocking). The kernel names the owner cgroup of every
event that belongs to a connection (its end, its DNS messages and weirds, a
refused attempt): the cgroup of the process that opened it. The event goes to
the job whose scope holds that cgroup, the deepest scope first, so a job's
cgroup inside its runner's wins over the runner's.

A cgroup is known by its id, the inode number of its directory. Scopes are
walked again when an unknown id shows up (a cgroup made after the last walk),
at most every RESCAN_INTERVAL_S, so a stream of foreign events costs one dict
lookup each.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs import events

RESCAN_INTERVAL_S = 0.5


def owner_cgroup(event) -> int:
    """The owner cgroup id an event names; 0 when it names none (a packet without a
    known connection or process, a fragment, a tunnel's discovery)."""
    if isinstance(event, abi.ConnEndEvent):
        return event.conn.proc.cgroup_id
    if isinstance(event, abi.BlockedEvent):
        return event.proc.cgroup_id
    if isinstance(event, abi.WeirdEvent):
        return event.owner_cgroup_id
    if type(event) is tuple and event and isinstance(event[0], events.DnsHead):
        return event[0].owner_cgroup_id
    return 0


class JobRouter:
    def __init__(self, clock=time.monotonic) -> None:
        self._scopes: dict[str, Path] = {}      # job key -> its cgroup directory
        self._by_cgroup: dict[int, str] = {}    # cgroup id -> job key, from the last walk
        self._clock = clock
        self._walked_at = float("-inf")

    def add(self, key: str, scope: Path) -> None:
        self._scopes[key] = scope
        self._walk()

    def remove(self, key: str) -> None:
        self._scopes.pop(key, None)
        self._by_cgroup = {cg: k for cg, k in self._by_cgroup.items() if k != key}

    def sharing(self, key: str) -> list[str]:
        """The other jobs whose scope is this job's: their events cannot be told apart."""
        scope = self._scopes.get(key)
        return sorted(k for k, s in self._scopes.items() if k != key and s == scope)

    def owned_cgroups(self) -> dict[int, str]:
        """Every cgroup id below the scopes now, with its job."""
        self._walk()
        return dict(self._by_cgroup)

    def job_of(self, cgroup_id: int) -> str | None:
        if not cgroup_id:
            return None
        key = self._by_cgroup.get(cgroup_id)
        if key is None and self._clock() - self._walked_at >= RESCAN_INTERVAL_S:
            self._walk()
            key = self._by_cgroup.get(cgroup_id)
        return key

    def _walk(self) -> None:
        """Every cgroup below each scope, deepest scope first: an id keeps the first job found."""
        by_cgroup: dict[int, str] = {}
        for key, scope in sorted(self._scopes.items(), key=lambda item: (-len(item[1].parts), item[0])):
            for directory, _, _ in os.walk(scope):
                try:
                    by_cgroup.setdefault(os.stat(directory).st_ino, key)
                except OSError:
                    continue                        # removed during the walk
        self._by_cgroup = by_cgroup
        self._walked_at = self._clock()
