"""Read a BPF verifier log: its last words, and the kernel feature a refusal points at.

API: last_lines(log, n) -> list[str]; explain(log, err) -> Explanation or None.

The verifier prints its verdict last (the refused instruction's message, then
"processed N insns ..." with BPF_LOG_STATS), so the end of a complete log is
what a person needs; the thousands of lines before it trace the states it
walked. explain() maps the messages of refusals that mean "this kernel is too
old" to the feature and the kernel version that brings it, and says what to do.
Nothing here talks to the kernel.
"""

from __future__ import annotations

import errno
import re
from typing import NamedTuple

LAST_LINES = 8


class Explanation(NamedTuple):
    feature: str        # what this kernel's verifier lacks
    action: str         # what the user can do


def last_lines(log: str, n: int = LAST_LINES) -> list[str]:
    """The last n non-blank lines of the log."""
    return [line for line in log.splitlines() if line.strip()][-n:]


# (pattern in the log, feature, action). The first match wins; patterns name the
# verifier message (kernel/bpf/verifier.c) they stand for.
_KNOWN = (
    (re.compile(r"BPF_STX uses reserved fields|unknown atomic opcode"),
     "atomic fetch instructions (BPF_ATOMIC with BPF_FETCH), added in kernel 5.12",
     "this build was compiled from sources that use them: rebuild from a release that supports "
     "kernels before 5.12, or run on kernel 5.12 or newer"),
    (re.compile(r"The sequence of \d+ jumps is too complex|BPF program is too large|"
                r"too many states|combined stack size"),
     "a verifier able to bound this program: this kernel's verifier gives up on it",
     "run without the option that needs this program (e.g. without --block), or on a newer "
     "kernel; please report the kernel release and these lines"),
    (re.compile(r"back-edge from insn|unreachable insn|infinite loop detected"),
     "bounded loops, added in kernel 5.3",
     "run on kernel 5.3 or newer"),
    (re.compile(r"(?:unknown|invalid) func (\w+)#(\d+)"),
     "the helper {0} (#{1}), which this kernel does not have",
     "run on a kernel that has {0} (bpf-helpers(7) names the version)"),
    (re.compile(r"program of this type cannot use helper (\w+)#(\d+)"),
     "the helper {0} for this program type",
     "run on a newer kernel, or without the option that loads this program"),
    (re.compile(r"unknown opcode ([0-9a-fx]+)"),
     "the instruction opcode {0}",
     "run on a newer kernel"),
    (re.compile(r"invalid bpf_context access"),
     "a context field this kernel does not offer to this program type",
     "run on a newer kernel, or without the option that loads this program"),
)


def explain(log: str, err: int = 0) -> Explanation | None:
    """The missing feature and what to do, when the log or errno shows one; None otherwise."""
    for pattern, feature, action in _KNOWN:
        match = pattern.search(log)
        if match:
            return Explanation(feature.format(*match.groups()), action.format(*match.groups()))
    if err == errno.EPERM:
        return Explanation("the privilege to load BPF programs",
                           "run as root (CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)")
    return None
