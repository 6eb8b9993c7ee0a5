"""The BPF links a recorder holds, and the pins that keep some of them attached.

A link's program stays attached while its fd is open, so closing the fds
detaches everything, also when the recorder is killed. A pinned link
(--fail-closed) stays until its pin is removed: on a clean stop by
`cleanup`, and at once when attaching failed half-way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.kernel import bpf_syscall


@dataclass
class HeldLinks:
    fds: list[int] = field(default_factory=list)
    pins: list[Path] = field(default_factory=list)

    def hold(self, link: int, pin: Path | None, what: str) -> None:
        """Keep link; with a pin path, pin it there too (what names it in errors)."""
        self.fds.append(link)
        if pin is None:
            return
        try:
            bpf_syscall.obj_pin(link, pin)
        except bpf_syscall.BpfError as exc:
            raise EnvironmentProblem(f"cannot pin the {what} link at {pin}: {exc.strerror}") from exc
        self.pins.append(pin)

    def release(self, failed: bool) -> None:
        """Close the links: detached, except those pinned (unless attaching failed)."""
        if failed:
            for pin in self.pins:
                pin.unlink(missing_ok=True)
        for link in self.fds:
            os.close(link)
        self.fds.clear()
        self.pins.clear()
