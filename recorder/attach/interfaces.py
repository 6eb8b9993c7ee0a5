"""Which interfaces a recorder attaches to.

Recording watches every interface that is up (except loopback) unless told
otherwise. Blocking judges packets by the direction they cross an interface:
a query leaving is judged, an answer arriving is learnt, a connection is
judged by its remote end. That holds on an uplink, and is reversed on a
bridge and its ports, where a container's packets arrive and the answers for
it leave. So blocking attaches, by default, only to the interfaces that
carry a default route (where none does, as in an isolated namespace, all
but bridges and their ports), and refuses a bridge or bridge port named with
--iface.
"""

from __future__ import annotations

from collections.abc import Sequence

from cicd_audit.errors import UsageError

IFF_UP, IFF_LOOPBACK = 0x1, 0x8


def up_interfaces() -> list[str]:
    """Every interface that is up in this network namespace, except loopback."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                if link["flags"] & IFF_UP and not link["flags"] & IFF_LOOPBACK]


def default_route_interfaces() -> set[str]:
    """Interfaces holding an IPv4 or IPv6 default route (multipath next hops included)."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        found = set()
        for family in (2, 10):               # AF_INET, AF_INET6
            for route in ipr.get_default_routes(family=family):
                oif = route.get_attr("RTA_OIF")
                hops = [hop.get("oif") for hop in route.get_attr("RTA_MULTIPATH") or []]
                found.update(names[i] for i in [oif, *hops] if i in names)
        return found


def bridge_roles() -> dict[str, str]:
    """{name: "bridge" | "bridge port"} for the bridges (e.g. docker0) and their ports (a
    container's veth) in this namespace, from netlink (sysfs may show another namespace)."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        links = ipr.get_links()
    kind = {}
    for link in links:
        info = link.get_attr("IFLA_LINKINFO")
        kind[link["index"]] = info.get_attr("IFLA_INFO_KIND") if info else None
    roles = {}
    for link in links:
        name = link.get_attr("IFLA_IFNAME")
        if kind[link["index"]] == "bridge":
            roles[name] = "bridge"
        elif kind.get(link.get_attr("IFLA_MASTER")) == "bridge":
            roles[name] = "bridge port"
    return roles


def choose_interfaces(requested: Sequence[str], blocking: bool) -> list[str]:
    """The interfaces to attach to: those requested, else the defaults for the mode."""
    if requested:
        if blocking:
            roles = bridge_roles()
            for name in requested:
                role = roles.get(name)
                if role:
                    raise UsageError(
                        f"--block cannot enforce on {name}, a {role}: containers' queries arrive there and their "
                        f"answers leave, the reverse of an uplink. Block on the uplink (the interface with the "
                        f"default route) and record {name} in a recorder without --block")
        return list(requested)
    names = up_interfaces()
    if blocking:
        uplinks = default_route_interfaces()
        roles = bridge_roles()
        names = [n for n in names if n in uplinks] if uplinks else [n for n in names if n not in roles]
    if not names:
        raise UsageError("no interface is up in this network namespace; name one with --iface")
    return names
