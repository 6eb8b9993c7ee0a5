"""SIGINT and SIGTERM as a flag the recording loop checks, so a stop never lands mid-step.

Live recording and pcap replay both install one before they create anything:
the current step (loading, attaching, one packet) finishes, the loop sees
`stop`, and the logs are closed complete. With a recorded command running,
SIGTERM is passed on to it and the recording ends when it does.
"""

from __future__ import annotations

import signal
import subprocess


class StopFlag:
    """SIGINT/SIGTERM set it; with a command running, they are passed on to it."""

    def __init__(self):
        self.stop = False
        self.signum = 0                 # the signal that stopped the recording
        self.child: subprocess.Popen | None = None
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __enter__(self) -> StopFlag:
        self.install()
        return self

    def __exit__(self, *exc_info) -> None:
        self.restore()

    def _handle(self, signum, frame) -> None:
        if self.child is not None and self.child.poll() is None:
            if signum == signal.SIGTERM:
                self.child.terminate()      # SIGINT already reached the foreground group
            return
        self.stop = True
        self.signum = signum
