"""notice.log rows for what blocking refused, as Zeek's notice framework writes them.

Pure: an event and what the session knows about it in, a row out. The
session keeps which names DNS answers resolved each address from
(AnswerNames), so a refused connection's notice can say which name the
job had looked up for it.
"""

from __future__ import annotations

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs import events
from cicd_audit.recorder.logs.conn_rows import process_columns, proto_name
from cicd_audit.recorder.logs.processes import ProcessInfo

NOTE_BLOCKED_CONNECTION = "CicdAudit::Blocked_Connection"
NOTE_BLOCKED_DNS = "CicdAudit::Blocked_DNS_Query"
# Every refused attempt gets its row: nothing is suppressed, so the
# suppression interval Zeek would write (1 hour by default) would mislead.
NOTICE_SUPPRESS_FOR = 0.0


class AnswerNames:
    """Which names a session's DNS answers resolved each address from, in the order seen."""

    def __init__(self) -> None:
        self._by_addr: dict[str, dict] = {}

    def remember(self, query: str | None, addresses) -> None:
        """A dns.log row's query and the addresses its A/AAAA answers resolved (DnsOutput.resolved)."""
        if not query:
            return
        for address in addresses:
            self._by_addr.setdefault(address, {})[query] = None

    def names_for(self, address: str) -> list[str]:
        return list(self._by_addr.get(address, ()))


def notice_row(ev: abi.BlockedEvent, ts: float, uid: str | None, info: ProcessInfo | None,
               answer_names: AnswerNames, with_process: bool) -> dict:
    cid = events.conn_id(ev.key, ev.src_slot)      # the side that tried to send is the originator
    proto = proto_name(cid.ip_proto)
    who = _who(ev.proc, info)
    if ev.reason == abi.BlockReason.DNS_NAME:
        name = events.blocked_name(ev)
        note, msg, sub = NOTE_BLOCKED_DNS, f"{who} queried {name}: name not in the policy", name
    else:
        verb = "connect to" if proto == "tcp" else "send to"
        names = answer_names.names_for(cid.resp_h)
        note = NOTE_BLOCKED_CONNECTION
        msg = f"{who} tried to {verb} {_endpoint(cid, proto)}: not allowed by the policy"
        sub = ",".join(sorted(names)) if names else None
    row = {
        "ts": ts, "uid": uid,
        "id.orig_h": cid.orig_h, "id.orig_p": cid.orig_p, "id.resp_h": cid.resp_h, "id.resp_p": cid.resp_p,
        "proto": proto, "note": note, "msg": msg, "sub": sub,
        "src": cid.orig_h, "dst": cid.resp_h, "p": cid.resp_p,      # as Zeek fills them from id
        "actions": ["Notice::ACTION_LOG"], "email_dest": [], "suppress_for": NOTICE_SUPPRESS_FOR,
    }
    if with_process:
        row.update(process_columns(info))
    return row


def _who(proc: abi.Process, info: ProcessInfo | None) -> str:
    """The process in a notice's message: "curl (pid 4242)"."""
    if not proc.tgid:
        return "unknown process"
    name = info.name if info is not None else proc.comm.decode("utf-8", "backslashreplace")
    return f"{name} (pid {proc.tgid})" if name else f"pid {proc.tgid}"


def _endpoint(cid: events.ConnId, proto: str) -> str:
    """203.0.113.9:443/tcp, [2001:db8::1]:443/tcp; ICMP and others have no port."""
    host = f"[{cid.resp_h}]" if ":" in cid.resp_h else cid.resp_h
    if proto in ("tcp", "udp"):
        return f"{host}:{cid.resp_p}/{proto}"
    return f"{cid.resp_h} ({proto})"
