"""The one channel for what library code tells the person running cicd-audit.

Warnings, errors the recorder recovers from, and progress lines go through
`say(line)`; library code never prints. The command line owns where they go
(`set_sink`); by default each line goes to stderr at once, so it is seen
before the recorder blocks on a job. Errors that end a command are raised
instead, and the CLI prints them (errors.py).

A line can carry what a job chose (a session's name, a path, a capture's
text): every sink gets it with control and bidi characters shown as escapes
(safe_text.for_terminal), so no line can drive the reader's terminal.

API::

    say(line)                   # one line, without its newline
    set_sink(sink) -> previous  # sink(line) receives every line; None: back to stderr
"""

from __future__ import annotations

import sys
from typing import Callable

from cicd_audit.safe_text import for_terminal


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)     # sys.stderr at call time: the CLI or a test may swap it


_sink: Callable[[str], None] = _to_stderr


def say(line: str) -> None:
    _sink(for_terminal(line))


def set_sink(sink: Callable[[str], None] | None) -> Callable[[str], None]:
    global _sink
    previous, _sink = _sink, sink or _to_stderr
    return previous
