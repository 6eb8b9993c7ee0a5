"""Python's cycle collector paced for event handling: seldom, and never over the start-up's objects.

Handling an event allocates a few dozen short-lived objects (the decoded
event, the parsed message, a row), almost none of them in a reference
cycle, so reference counting frees them. At Python's default thresholds the
collector still runs every 700 net allocations, every few events, and each
run of an older generation walks every object those generations hold: the
imported modules, the loaded program's tables, every open connection's
state. On a DNS replay of 40,000 messages the collector took about a tenth
of the time (docs/benchmarks.md, "The cycle collector").

So when a recording starts, everything alive then (modules, program,
session), which lives as long as the process, is moved out of the
collector's sight (gc.freeze), once per process; and the youngest
generation is collected every GEN0_THRESHOLD net allocations instead of
700. Cycles are still collected, later: at most a few thousand short-lived
objects wait a little longer.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000      # net allocations between collections of the youngest generation
OLDER_THRESHOLD = 10         # collections of a generation before the next one is collected

_frozen = False


def pace_for_events() -> None:
    """Called when a recording's program is loaded and its events are about to flow."""
    global _frozen
    if not _frozen:
        # Once: a process that records again (the test suite) would otherwise freeze, for good, the
        # objects of recordings that have ended but are not yet collected.
        gc.freeze()
        _frozen = True
    gc.set_threshold(GEN0_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
