"""Turn a connection's final kernel state into its conn.log row.

This is the part Zeek does in script land (base/protocols/conn/main.zeek):
conn_state from the endpoint states, which fields are set, and the payload
size of a TCP endpoint from its sequence numbers. Also cicd-audit's own
pieces of a row: the proc.* and blocked columns, and the row of a connect()
that blocking mode refused before any packet existed.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from pathlib import Path

from cicd_audit import compiled
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs import sites
from cicd_audit.recorder.logs.events import ConnId, conn_id

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")
S = abi.TcpState


def _no_data_acked(ep: abi.Endpoint) -> bool:
    ack = (ep.ack_wraps << 32) + ep.ack_seq
    return ack in (ep.start_seq, ep.start_seq + 1)


def tcp_size(ep: abi.Endpoint, peer: abi.Endpoint) -> int:
    """Zeek's TCP_Endpoint::Size: the sequence space from the first sequence
    number to the higher of the last one sent and the last one acknowledged,
    less the SYN and FIN octets (unsigned 64-bit arithmetic, as in Zeek)."""
    if not ep.flags & abi.EP_SEQ_VALID:
        return 0
    if ep.prev_state == S.SYN_SENT and ep.state == S.RESET and peer.state == S.INACTIVE \
            and not _no_data_acked(ep):
        return 0        # a half-open connection found and aborted
    last = (ep.seq_wraps << 32) + ep.last_seq
    ack = (ep.ack_wraps << 32) + ep.ack_seq
    size = (max(last, ack) - ep.start_seq) % (1 << 64)
    if size:
        size -= 1       # the SYN (or the SYN a partial connection is numbered as if it had)
    if ep.flags & abi.EP_SAW_FIN and size:
        size -= 1
    return size


def tcp_conn_state(orig: abi.Endpoint, resp: abi.Endpoint, history: str, orig_size: int, resp_size: int) -> str:
    """Zeek's conn_state for TCP (base/protocols/conn/main.zeek)."""
    os_, rs = orig.state, resp.state
    o_inactive = os_ in (S.INACTIVE, S.PARTIAL)
    r_inactive = rs in (S.INACTIVE, S.PARTIAL)
    if rs == S.RESET:
        if os_ in (S.SYN_SENT, S.SYN_ACK_SENT) or (os_ == S.RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == S.RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
        return "RSTO"
    if rs == S.CLOSED and os_ == S.CLOSED:
        return "SF"
    if os_ == S.CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == S.CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == S.SYN_SENT and rs == S.INACTIVE:
        return "S0"
    if os_ == S.ESTABLISHED and rs == S.ESTABLISHED:
        return "S1"
    return "OTH"


def proto_name(ip_proto: int) -> str:
    """Zeek's transport_proto for an IP protocol number."""
    return _PROTO_NAMES.get(ip_proto, "unknown_transport")


def udp_conn_state(orig: abi.Endpoint, resp: abi.Endpoint) -> str:
    if orig.state == abi.UDP_ACTIVE:
        return "SF" if resp.state == abi.UDP_ACTIVE else "S0"
    return "SHR" if resp.state == abi.UDP_ACTIVE else "OTH"


def _conn_values(event: abi.ConnEndEvent) -> tuple:
    """What conn.log's row takes from a connection's final state: (history, orig_bytes, resp_bytes,
    conn_state, missed_bytes, orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, first_ns, last_ns).
    The reference of _conn_rows.c's conn_values, which is used when it is built."""
    c = event.conn
    orig, resp = c.ep[0], c.ep[1]
    history = c.history[: c.history_len].decode("ascii", "replace")
    proto = event.key.ip_proto
    if proto == 6:
        orig_size, resp_size = tcp_size(orig, resp), tcp_size(resp, orig)
        state = tcp_conn_state(orig, resp, history, orig_size, resp_size)
    elif proto in _PROTO_NAMES:
        orig_size, resp_size = orig.payload_bytes, resp.payload_bytes
        state = udp_conn_state(orig, resp) if proto == 17 else "OTH"
    else:
        orig_size = resp_size = 0      # Zeek's unknown-protocol adapter tracks no payload size
        state = "OTH"
    return (history, orig_size, resp_size, state, orig.gap_bytes + resp.gap_bytes, orig.pkts, orig.ip_bytes,
            resp.pkts, resp.ip_bytes, c.first_ns, c.last_ns)


def _conn_end_head(event: abi.ConnEndEvent) -> tuple:
    """What a connection's end hands the session besides its row: (conn_id, key (bytes), orig_slot,
    flags, ts_ns, first_parent, latest_parent, packets, ip_bytes), packets and IP bytes of both
    endpoints together, then the end's reason. The reference of _conn_rows.c's conn_end_head."""
    c = event.conn
    orig, resp = c.ep[0], c.ep[1]
    first_parent, latest_parent = c.tunnel_parents
    return (c.id, bytes(event.key), c.orig_slot, c.flags, event.hdr.ts_ns, first_parent, latest_parent,
            orig.pkts + resp.pkts, orig.ip_bytes + resp.ip_bytes, event.reason)


_compiled = compiled.load("cicd_audit.recorder.logs._conn_rows", Path(__file__).with_name("_conn_rows.c"),
                          Path(__file__).resolve().parents[2] / "bpf" / "cicd_audit.h")
conn_values = _compiled.conn_values if _compiled is not None else _conn_values
conn_end_head = _compiled.conn_end_head if _compiled is not None else _conn_end_head


def conn_row(event: abi.ConnEndEvent, uid: str, to_epoch, services: list[str] | None = None,
             tunnel_parents: list[str] | None = None, cid: ConnId | None = None) -> dict:
    """The conn.log record for one ended connection. to_epoch maps packet ns to epoch seconds;
    tunnel_parents are the uids of the tunnels that carried it; cid, its conn_id when the caller
    has it already."""
    (history, orig_size, resp_size, state, missed, orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes,
     first_ns, last_ns) = conn_values(event)
    if cid is None:
        cid = conn_id(event.key, event.conn.orig_slot)
    proto = cid.ip_proto
    duration = (last_ns - first_ns) / 1e9
    row = {
        "ts": to_epoch(first_ns),
        "uid": uid,
        "id.orig_h": cid.orig_h,
        "id.orig_p": cid.orig_p,
        "id.resp_h": cid.resp_h,
        "id.resp_p": cid.resp_p,
        "proto": proto_name(proto),
        "service": ",".join(sorted(services)) if services else None,   # a string column, comma-separated
        "duration": duration if duration > 0 else None,
        "orig_bytes": orig_size if duration > 0 else None,
        "resp_bytes": resp_size if duration > 0 else None,
        "conn_state": state,
        "local_orig": sites.is_local(cid.orig_h),
        "local_resp": sites.is_local(cid.resp_h),
        "missed_bytes": missed,
        "history": history or None,
        "orig_pkts": orig_pkts,
        "orig_ip_bytes": orig_ip_bytes,
        "resp_pkts": resp_pkts,
        "resp_ip_bytes": resp_ip_bytes,
        "tunnel_parents": tunnel_parents or None,
        "ip_proto": proto,
    }
    return row


def with_limit_reached(history: str | None, at: int) -> str:
    """history with Zeek's 'X' (an analyzer reached a limit: CheckHistory, once per connection) where
    the connection's history stood when it happened; as it was if the kernel wrote an 'X' already."""
    history = history or ""
    if "X" in history:
        return history
    return history[:at] + "X" + history[at:]


def refused_connect_row(event: abi.BlockedEvent, uid: str, ts: float) -> dict:
    """The conn.log record for a connect() a cgroup hook refused: no packet was
    ever sent, so the kernel has no connection to end and this is all there is.
    The key holds the local address and port as far as they were bound (zero if not)."""
    cid = conn_id(event.key, event.src_slot)
    return {
        "ts": ts,
        "uid": uid,
        "id.orig_h": cid.orig_h,
        "id.orig_p": cid.orig_p,
        "id.resp_h": cid.resp_h,
        "id.resp_p": cid.resp_p,
        "proto": proto_name(cid.ip_proto),
        "service": None,
        "duration": None,
        "orig_bytes": None,       # Zeek sets the byte counts only with a duration
        "resp_bytes": None,
        "conn_state": "OTH",
        "local_orig": sites.is_local(cid.orig_h),
        "local_resp": sites.is_local(cid.resp_h),
        "missed_bytes": 0,
        "history": None,
        "orig_pkts": 0,
        "orig_ip_bytes": 0,
        "resp_pkts": 0,
        "resp_ip_bytes": 0,
        "tunnel_parents": None,
        "ip_proto": cid.ip_proto,
    }


PROCESS_COLUMNS = ("proc.pid", "proc.name", "proc.exe", "proc.cmdline", "proc.cgroup", "proc.step")


def process_columns(info) -> dict:
    """The proc.* columns (zeek_schemas/conn_process.tsv) for a ProcessInfo, all unset for None."""
    if info is None:
        return dict.fromkeys(PROCESS_COLUMNS)
    return {"proc.pid": info.pid, "proc.name": info.name, "proc.exe": info.exe,
            "proc.cmdline": info.cmdline, "proc.cgroup": info.cgroup, "proc.step": info.step}


def is_blocked(conn: abi.Conn) -> bool:
    """conn.log's blocked column: blocking mode dropped a packet of it (address or DNS name)."""
    return bool(conn.flags & (abi.CONN_BLOCKED | abi.CONN_DNS_BLOCKED))


# ICMP types that have a counterpart (request/reply): Zeek's ICMP4_counterpart
# and ICMP6_counterpart. Every other type is "one-way".
_ICMP4_TWO_WAY = frozenset({8, 0, 13, 14, 15, 16, 10, 9, 17, 18})
_ICMP6_TWO_WAY = frozenset({128, 129, 133, 134, 135, 136, 130, 131, 139, 140, 144, 145})


def community_id(orig_h: str, orig_p: int, resp_h: str, resp_p: int, ip_proto: int, seed: int = 0) -> str:
    """Community ID v1 (https://github.com/corelight/community-id-spec) of a
    conn.log 5-tuple, as Zeek's community_id_v1(c$id) computes it: both
    endpoints in canonical order (address, then port) unless the ICMP type is
    one-way; ports are hashed for TCP, UDP, ICMP, ICMPv6 and SCTP only."""
    src, dst = ipaddress.ip_address(orig_h), ipaddress.ip_address(resp_h)
    sport, dport = orig_p, resp_p
    one_way = False
    if ip_proto == 1:
        one_way = orig_p not in _ICMP4_TWO_WAY
    elif ip_proto == 58:
        one_way = orig_p not in _ICMP6_TWO_WAY
    if not one_way and (int(dst), dport) < (int(src), sport):
        src, dst, sport, dport = dst, src, dport, sport
    data = seed.to_bytes(2, "big") + src.packed + dst.packed + bytes([ip_proto, 0])
    if ip_proto in (1, 6, 17, 58, 132):
        data += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
