"""Notice when the capture programs stop running on an interface, so a recording never goes blind quietly.

An interface can be deleted (a job removing a veth or a bridge), and a root
process can detach a program. Either way TC no longer sees that interface's
packets while the recorder goes on. Checked once a second: each interface
and direction whose program of ours is gone is reported once; the live
recorder says so on stderr, in weird.log and in recorder.status, and the
recording is incomplete (a recorder failure, not the job's).

API: AttachmentWatch(interfaces, {"ingress": prog_fd, "egress": prog_fd}).check() -> list[str]
"""

from __future__ import annotations

from cicd_audit.errors import CicdAuditError
from cicd_audit.recorder.attach.attach import attached_program_ids
from cicd_audit.recorder.kernel import bpf_syscall


class AttachmentWatch:
    def __init__(self, interfaces, prog_fds: dict[str, int]):
        self._interfaces = list(interfaces)
        self._ids = {direction: bpf_syscall.prog_info(fd).id for direction, fd in prog_fds.items()}
        self._lost: set[tuple[str, str]] = set()

    def check(self) -> list[str]:
        """What stopped running since the last check: one line per interface, e.g.
        "eth1: the ingress and egress programs were detached (the interface is gone)"."""
        news = []
        for name in self._interfaces:
            try:
                attached = attached_program_ids(name)
                why = "detached"
            except CicdAuditError:
                attached = {}
                why = "detached (the interface is gone)"
            gone = [d for d, prog_id in self._ids.items()
                    if prog_id not in attached.get(d, ()) and (name, d) not in self._lost]
            if gone:
                self._lost.update((name, d) for d in gone)
                news.append(f"{name}: the {' and '.join(gone)} program{'s were' if len(gone) > 1 else ' was'} {why}; "
                            "its packets are no longer recorded")
        return news

    @property
    def lost(self) -> int:
        """Interface directions no longer recorded."""
        return len(self._lost)
