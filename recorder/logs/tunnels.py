"""tunnel.log: the tunnels the kernel decapsulated (bpf/tunnel.h), as Zeek's tunnels framework logs them.

A tunnel is discovered when a first connection is made inside it (a TUNNEL
event: Zeek's tunnels framework registers it on new_connection or
tunnel_changed, so one whose packets make no connection, ARP in VXLAN or
Teredo bubbles, gets no row) and, for a UDP tunnel, closed when its
connection ends. An IP tunnel (IP-in-IP,
GRE) is no connection: it is named by its address pair, with ports 0, and
only discovered. Zeek expires an IP tunnel after an hour in which no new
connection appears inside it; that row is not written here.
"""

from __future__ import annotations

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs.events import conn_id

TYPE_NAMES = {
    abi.TunnelType.IP: "Tunnel::IP",
    abi.TunnelType.GRE: "Tunnel::GRE",
    abi.TunnelType.VXLAN: "Tunnel::VXLAN",
    abi.TunnelType.GENEVE: "Tunnel::GENEVE",
    abi.TunnelType.GTPV1: "Tunnel::GTPv1",
    abi.TunnelType.AYIYA: "Tunnel::AYIYA",
    abi.TunnelType.TEREDO: "Tunnel::TEREDO",
}
ACTIVE_MAX = 65536       # tunnels remembered for their CLOSE row; beyond it the oldest gets none


class TunnelLog:
    """Rows of tunnel.log from TUNNEL events and connection ends. uid_of maps a
    tunnel id to its uid (the connection uids' allocator)."""

    def __init__(self, uid_of):
        self._uid_of = uid_of
        self._active: dict[int, dict] = {}      # UDP tunnels' connection ids -> their DISCOVER row
        self._discovered_pairs: set[int] = set()

    def discovered(self, ev: abi.TunnelEvent, ts: float) -> dict | None:
        """The DISCOVER row of a tunnel's first inner connection, or None if it was already logged."""
        try:
            kind = abi.TunnelType(ev.type)
        except ValueError:
            kind = None
        ip_tunnel = bool(ev.tunnel_id & abi.PAIR_TUNNEL_ID)    # every IP tunnel is its address pair's
        if ev.tunnel_id in self._active or ev.tunnel_id in self._discovered_pairs:
            return None
        cid = conn_id(ev.key, ev.orig_slot)
        row = {
            "ts": ts, "uid": self._uid_of(ev.tunnel_id),
            "id.orig_h": cid.orig_h, "id.orig_p": 0 if ip_tunnel else cid.orig_p,
            "id.resp_h": cid.resp_h, "id.resp_p": 0 if ip_tunnel else cid.resp_p,
            "tunnel_type": TYPE_NAMES.get(kind, f"cicd_audit_tunnel_{ev.type}"),
            "action": "Tunnel::DISCOVER",
        }
        if ip_tunnel:
            if len(self._discovered_pairs) >= ACTIVE_MAX:
                self._discovered_pairs.clear()
            self._discovered_pairs.add(ev.tunnel_id)
        else:
            if len(self._active) >= ACTIVE_MAX:
                self._active.pop(next(iter(self._active)))
            self._active[ev.tunnel_id] = row
        return row

    def closed(self, conn_id_: int, ts: float) -> dict | None:
        """The CLOSE row when a UDP tunnel's connection ends, or None."""
        row = self._active.pop(conn_id_, None)
        return None if row is None else {**row, "ts": ts, "action": "Tunnel::CLOSE"}
