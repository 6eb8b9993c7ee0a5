"""Attach the capture program to interfaces at TC, and remove exactly that.

Two mechanisms; the first attach in a process probes which one the kernel has:

- tcx (kernel 6.6+): one BPF link per interface and direction. A link lives
  as long as its fd, so the programs go away when the recorder exits, even on
  SIGKILL: nothing is left behind.
- TC clsact filters through netlink (older kernels): filters at our own
  priority, deleted on exit, with the clsact qdisc only where we created it.
  They survive a killed recorder; while it holds them, a recorder keeps a
  shared flock on a per-network-namespace lock file, so `cleanup.remove_stale`
  can tell a live recorder's filters from a killed one's.

A context manager: on exit (normal, exception, or a signal turned into an
exception) it removes what it added and nothing else. With `pin_dir`
(--fail-closed) the links are pinned there instead and stay attached after
the recorder exits, legacy filters are left in place, and `cleanup` removes
both later.

Only one recorder per interface: with tcx a second program would run after
the first, which ends the chain (TC_ACT_OK), and see nothing; so a program of
the same name already attached is refused, as the legacy priority clash is.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from cicd_audit.errors import EnvironmentProblem, UsageError
from cicd_audit.recorder.attach import cleanup
from cicd_audit.recorder.attach.held_links import HeldLinks
from cicd_audit.recorder.attach.legacy_tc import (
    CLSACT_PARENT,
    DIRECTIONS,
    ETH_P_ALL,
    FILTER_NAME,
    FILTER_PRIORITY,
    legacy_filters,
    open_legacy_lock,
)
from cicd_audit.recorder.kernel import bpf_syscall

TCX_ATTACH_TYPE = {"ingress": bpf_syscall.ATTACH_TCX_INGRESS, "egress": bpf_syscall.ATTACH_TCX_EGRESS}
NO_TCX_ERRNOS = frozenset({errno.EINVAL, errno.EOPNOTSUPP, bpf_syscall.ENOTSUPP, errno.ENOSYS})

_tcx_supported: bool | None = None     # the probe's answer, once a link was tried


def tcx_program_ids(index: int) -> dict[str, list[int]]:
    """Ids of every tcx program on an interface, per direction, in run order; empty without tcx."""
    found: dict[str, list[int]] = {}
    for direction in DIRECTIONS:
        try:
            found[direction] = bpf_syscall.prog_query(index, TCX_ATTACH_TYPE[direction])
        except bpf_syscall.BpfError as exc:
            if exc.errno not in NO_TCX_ERRNOS:
                raise
            found[direction] = []
    return found


def attached_program_ids(ifname: str) -> dict[str, list[int]]:
    """{"ingress": [...], "egress": [...]}: every tcx program, then our legacy filters' programs.

    For tests and cleanup; interface names are looked up in this process's network namespace.
    """
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        links = ipr.link_lookup(ifname=ifname)
        if not links:
            raise UsageError(f"no interface named {ifname!r} in this network namespace")
        tcx = tcx_program_ids(links[0])
        legacy = legacy_filters(ipr, links[0])
    return {d: tcx[d] + legacy[d] for d in DIRECTIONS}


def pin_name(ifname: str, direction: str) -> str:
    return f"tcx-{ifname.replace('.', '_')}-{direction}"    # bpffs reserves dots in names


@dataclass
class TcAttachment:
    """Attach prog_fd on ingress and egress_fd (default: prog_fd) on egress of each interface.

    mechanism: None to use tcx where the kernel has it and TC filters otherwise,
    or "tcx"/"tc" to insist on one; after __enter__ it names the one in use.
    """

    interfaces: list[str]
    prog_fd: int
    egress_fd: int | None = None
    pin_dir: Path | str | None = None
    mechanism: str | None = None
    _created_qdisc: list = field(default_factory=list)
    _attached: list = field(default_factory=list)       # legacy: (ifindex, parent)
    _links: HeldLinks = field(default_factory=HeldLinks)     # tcx
    _lock_fd: int | None = None

    def __post_init__(self) -> None:
        if self.egress_fd is None:
            self.egress_fd = self.prog_fd
        if self.mechanism not in (None, "tcx", "tc"):
            raise ValueError(f"mechanism must be None, 'tcx' or 'tc', not {self.mechanism!r}")
        self._probe = self.mechanism is None

    def __enter__(self) -> TcAttachment:
        from pyroute2 import IPRoute
        self._ipr = IPRoute()
        try:
            indexes = []
            for name in self.interfaces:
                links = self._ipr.link_lookup(ifname=name)
                if not links:
                    raise UsageError(f"no interface named {name!r} in this network namespace")
                indexes.append((name, links[0]))
            if self.pin_dir is not None:
                self.pin_dir = cleanup.make_pin_dir(self.pin_dir)
            if self.mechanism is None:
                self.mechanism = "tc" if _tcx_supported is False else "tcx"
            for name, index in indexes:
                if self.mechanism == "tcx":
                    self._attach_tcx(name, index)
                else:
                    self._attach_tc(name, index)
        except BaseException:
            self._release(failed=True)
            raise
        return self

    # -- tcx --------------------------------------------------------------------------------

    def _attach_tcx(self, name: str, index: int) -> None:
        global _tcx_supported
        self._refuse_if_attached(name, index)
        for direction, fd in (("ingress", self.prog_fd), ("egress", self.egress_fd)):
            try:
                link = bpf_syscall.link_create(fd, index, TCX_ATTACH_TYPE[direction])
            except bpf_syscall.BpfError as exc:
                if self._probe and _tcx_supported is None and exc.errno in NO_TCX_ERRNOS:
                    _tcx_supported = False     # an older kernel: TC filters from now on
                    self.mechanism = "tc"
                    self._attach_tc(name, index)
                    return
                if exc.errno == errno.EPERM:
                    raise EnvironmentProblem(f"cannot attach to {name}: needs root (CAP_NET_ADMIN and CAP_BPF)") \
                        from exc
                raise EnvironmentProblem(f"cannot attach the tcx {direction} program to {name}: "
                                         f"{exc.strerror}") from exc
            _tcx_supported = True
            pin = Path(self.pin_dir) / pin_name(name, direction) if self.pin_dir is not None else None
            self._links.hold(link, pin, f"{name} {direction}")

    def _refuse_if_attached(self, name: str, index: int) -> None:
        """A program of ours (same name) on this interface already, by tcx or a legacy filter: say what to do."""
        ours = {"ingress": bpf_syscall.prog_info(self.prog_fd).name,
                "egress": bpf_syscall.prog_info(self.egress_fd).name}
        for direction, ids in tcx_program_ids(index).items():
            for prog_id in ids:
                try:
                    attached = bpf_syscall.prog_info_by_id(prog_id).name
                except bpf_syscall.BpfError:
                    continue            # detached meanwhile
                if attached == ours[direction]:
                    raise EnvironmentProblem(
                        f"a cicd-audit program is already attached to {name} (another recorder is running there, "
                        f"or one left it pinned with --fail-closed): stop it, or remove what is pinned under "
                        f"{cleanup.PIN_ROOT} with `cicd-audit cleanup`")
        for direction, ids in legacy_filters(self._ipr, index).items():
            if ids:
                raise EnvironmentProblem(_legacy_clash(name, direction))

    # -- legacy TC filters ------------------------------------------------------------------

    def _attach_tc(self, name: str, index: int) -> None:
        from pyroute2.netlink.exceptions import NetlinkError
        if self._lock_fd is None:
            self._lock_fd = open_legacy_lock()
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)     # waits only while a cleanup is running
        try:
            self._ipr.tc("add", "clsact", index)
            self._created_qdisc.append(index)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:   # someone else's clsact: share it
                raise EnvironmentProblem(f"cannot add a clsact qdisc to {name}: {exc}") from exc
        for direction, fd in (("ingress", self.prog_fd), ("egress", self.egress_fd)):
            parent = CLSACT_PARENT[direction]
            try:
                self._ipr.tc("add-filter", "bpf", index, ":1", fd=fd, name=FILTER_NAME,
                             parent=parent, classid=1, direct_action=True, prio=FILTER_PRIORITY,
                             protocol=ETH_P_ALL)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:   # our priority is taken
                    raise EnvironmentProblem(_legacy_clash(name, direction)) from exc
                raise EnvironmentProblem(f"cannot attach the TC program to {name}: {exc}") from exc
            self._attached.append((index, parent))

    # -- removal ----------------------------------------------------------------------------

    def __exit__(self, *exc_info) -> None:
        self._release(failed=False)

    def _release(self, failed: bool) -> None:
        """Close the links (pinned ones stay attached, unless attaching failed) and delete our filters."""
        from pyroute2.netlink.exceptions import NetlinkError
        self._links.release(failed)
        keep_filters = self.pin_dir is not None and not failed
        for index, parent in reversed(self._attached):
            if keep_filters or index in self._created_qdisc:
                continue            # kept, or deleting the qdisc removes its filters
            try:
                self._ipr.tc("del-filter", "bpf", index, ":1", parent=parent, prio=FILTER_PRIORITY,
                             protocol=ETH_P_ALL)
            except NetlinkError:
                pass                # the interface may be gone already
        for index in reversed(self._created_qdisc):
            if keep_filters:
                break
            try:
                self._ipr.tc("del", "clsact", index)
            except NetlinkError:
                pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._attached.clear()
        self._created_qdisc.clear()
        self._ipr.close()


def _legacy_clash(name: str, direction: str) -> str:
    return (f"a cicd-audit program is already attached to {name} (another recorder is running there, "
            f"or one was killed): stop it, or remove it with "
            f"`tc filter del dev {name} {direction} prio {FILTER_PRIORITY}`")
