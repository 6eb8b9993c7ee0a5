"""Attach the capture program to interfaces with TC clsact, and remove exactly that.

A context manager: on exit (normal, exception, or a signal turned into an
exception) it deletes the filters it added, and the clsact qdisc only where it
created it. Nothing it did not create is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cicd_audit.errors import EnvironmentProblem, UsageError

CLSACT_INGRESS = 0xFFFFFFF2
CLSACT_EGRESS = 0xFFFFFFF3
FILTER_PRIORITY = 0xCA00    # a priority of our own, so we delete only our filters
FILTER_NAME = "cicd_audit"
ETH_P_ALL = 0x0003          # every protocol (pyroute2 converts to network order)


def default_interfaces() -> list[str]:
    """Every interface that is up in this network namespace, except loopback."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        names = []
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            up = link["flags"] & 1
            if up and name != "lo" and not link["flags"] & 8:   # IFF_UP, not IFF_LOOPBACK
                names.append(name)
    return names


@dataclass
class TcAttachment:
    interfaces: list[str]
    prog_fd: int
    _created_qdisc: list = field(default_factory=list)
    _attached: list = field(default_factory=list)

    def __enter__(self) -> "TcAttachment":
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        self._ipr = IPRoute()
        try:
            for name in self.interfaces:
                self._attach(name, NetlinkError)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _attach(self, name: str, NetlinkError) -> None:
        links = self._ipr.link_lookup(ifname=name)
        if not links:
            raise UsageError(f"no interface named {name!r} in this network namespace")
        index = links[0]
        try:
            self._ipr.tc("add", "clsact", index)
            self._created_qdisc.append(index)
        except NetlinkError as exc:
            if exc.code != 17:      # EEXIST: someone else's clsact, share it
                raise EnvironmentProblem(f"cannot add a clsact qdisc to {name}: {exc}") from exc
        for parent in (CLSACT_INGRESS, CLSACT_EGRESS):
            try:
                self._ipr.tc("add-filter", "bpf", index, ":1", fd=self.prog_fd, name=FILTER_NAME,
                             parent=parent, classid=1, direct_action=True, prio=FILTER_PRIORITY,
                             protocol=ETH_P_ALL)
            except NetlinkError as exc:
                if exc.code == 17:  # EEXIST: our priority is taken
                    raise EnvironmentProblem(
                        f"a cicd-audit program is already attached to {name} (another recorder is running there, "
                        f"or one was killed): stop it, or remove it with "
                        f"`tc filter del dev {name} {'ingress' if parent == CLSACT_INGRESS else 'egress'} "
                        f"prio {FILTER_PRIORITY}`") from exc
                raise EnvironmentProblem(f"cannot attach the TC program to {name}: {exc}") from exc
            self._attached.append((index, parent))

    def __exit__(self, *exc_info) -> None:
        from pyroute2.netlink.exceptions import NetlinkError
        for index, parent in reversed(self._attached):
            if index in self._created_qdisc:
                continue            # deleting the qdisc removes its filters
            try:
                self._ipr.tc("del-filter", "bpf", index, ":1", parent=parent, prio=FILTER_PRIORITY,
                             protocol=ETH_P_ALL)
            except NetlinkError:
                pass                # the interface may be gone already
        for index in reversed(self._created_qdisc):
            try:
                self._ipr.tc("del", "clsact", index)
            except NetlinkError:
                pass
        self._attached.clear()
        self._created_qdisc.clear()
        self._ipr.close()
