"""TC clsact filters, the attachment of kernels without tcx (before 6.6): ours, found and removed.

Our filters sit at a priority of our own (FILTER_PRIORITY), so only they are
ever deleted. They survive a killed recorder; while a recorder holds filters
in a network namespace it keeps a shared flock on that namespace's lock file
(`legacy_lock_path()`), so `remove_legacy_filters(only_unheld=True)` removes
only what a killed recorder left. Attaching is attach.TcAttachment's job;
finding and removing is here, shared by it and by cleanup.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from pathlib import Path

CLSACT_INGRESS = 0xFFFFFFF2
CLSACT_EGRESS = 0xFFFFFFF3
FILTER_PRIORITY = 0xCA00    # a priority of our own, so we delete only our filters
FILTER_NAME = "cicd_audit"
ETH_P_ALL = 0x0003          # every protocol (pyroute2 converts to network order)
TCA_BPF_ID = 11             # linux/pkt_cls.h; pyroute2 0.9 does not decode it

DIRECTIONS = ("ingress", "egress")
CLSACT_PARENT = {"ingress": CLSACT_INGRESS, "egress": CLSACT_EGRESS}
LOCK_DIR = Path("/run/cicd-audit")


def legacy_lock_path() -> Path:
    """The lock a recorder holds (shared) while it has legacy filters in this network namespace."""
    return LOCK_DIR / f"tc-{os.stat('/proc/self/ns/net').st_ino}.lock"


def open_legacy_lock() -> int:
    LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(legacy_lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def legacy_filters(ipr, index: int) -> dict[str, list[int]]:
    """Program ids of the bpf filters at our priority on an interface, per direction."""
    found: dict[str, list[int]] = {d: [] for d in DIRECTIONS}
    for direction in DIRECTIONS:
        for msg in ipr.get_filters(index=index, parent=CLSACT_PARENT[direction]):
            options = msg.get_attr("TCA_OPTIONS")
            if msg["info"] >> 16 == FILTER_PRIORITY and msg.get_attr("TCA_KIND") == "bpf" and options:
                found[direction].append(_filter_prog_id(options))
    return found


def _filter_prog_id(options) -> int:
    """TCA_BPF_ID of a bpf filter's options (0 if absent), decoded or, for pyroute2 0.9, from the raw nla."""
    for name, value in options["attrs"]:
        if name == "TCA_BPF_ID":
            return int(value)
        if name == "UNKNOWN" and value["header"]["type"] == TCA_BPF_ID:
            raw = value.data[value.offset + 4:value.offset + 8]
            return int.from_bytes(raw, sys.byteorder)
    return 0


def remove_legacy_filters(only_unheld: bool) -> list[str]:
    """Our legacy filters on every interface of this network namespace; with only_unheld, only when
    no live recorder holds the namespace's lock."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    with IPRoute() as ipr:
        found = []
        for link in ipr.get_links():
            index, name = link["index"], link.get_attr("IFLA_IFNAME")
            try:
                filters = legacy_filters(ipr, index)
            except NetlinkError:
                continue                # gone meanwhile, or no TC on this kind of device
            for direction, ids in filters.items():
                if ids:
                    found.append((index, name, direction, ids))
        if not found:
            return []
        lock_fd = open_legacy_lock()
        try:
            if only_unheld:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return []           # a live recorder holds filters in this namespace
            lines = []
            for index, name, direction, ids in found:
                try:
                    ipr.tc("del-filter", "bpf", index, ":1", parent=CLSACT_PARENT[direction],
                           prio=FILTER_PRIORITY, protocol=ETH_P_ALL)
                except NetlinkError as exc:
                    if exc.code in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                        continue        # gone meanwhile
                    raise
                lines.append(f"removed the TC filter at priority {FILTER_PRIORITY} from {name} {direction} "
                             f"(program id {', '.join(map(str, ids))})")
            return lines
        finally:
            os.close(lock_fd)
