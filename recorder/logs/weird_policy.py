"""Which weirds weird.log gets, as Zeek's Weird framework decides
(base/frameworks/notice/weird.zeek).

Zeek raises a weird each time a packet or a message is odd; its script layer
logs a share of them:

- `Weird::actions` logs some names once per originator address; any other
  name the recorder raises is logged (ACTION_LOG, the table's default);
- a (name, identifier) pair just logged is not logged again for ten minutes
  (`weird_ignore`, &create_expire=10min);
- a name logged once per originator is logged once a day per originator
  (`did_log`, &create_expire=1day). Zeek exempts the checksum names from
  weird_ignore (`weird_do_not_ignore_repeats`), which changes nothing while
  they are logged once a day per originator.

The identifier is the connection's "orig_h:orig_p > resp_h:resp_p" for a
weird about a connection, "src -> dst" for one about a flow (ports 0), and ""
for one about neither. Time is the packets' time (Zeek's network time), so a
replay decides as a live recording does.

Every weird raised is still counted (capture_stats.log's `weirds`); this only
decides which get a row. Memory is bounded: past MEMORY_MAX pairs in either
table, the oldest is forgotten, which can only log a repeat, never lose a first.
"""

from __future__ import annotations

from cicd_audit.recorder.logs.events import ConnId

IGNORE_REPEATS_FOR = 600.0          # weird_ignore's &create_expire
LOGGED_ONCE_FOR = 86400.0           # did_log's &create_expire
MEMORY_MAX = 65536                  # pairs remembered per table

# Weird::actions entries other than ACTION_LOG, for the names the recorder raises.
LOG_PER_ORIG = frozenset({
    "bad_IP_checksum", "bad_ICMP_checksum", "bad_TCP_checksum", "bad_UDP_checksum",
    "DNS_label_forward_compress_offset", "DNS_label_len_gt_name_len", "DNS_label_len_gt_pkt",
    "DNS_label_too_long",
    "excessively_small_fragment", "fragment_inconsistency", "fragment_overlap", "fragment_size_inconsistency",
})


def identifier(uid: str | None, conn_id: ConnId | None) -> str:
    """Zeek's identifier of a weird: id_string() of its connection, flow_id_string() of its flow, or ""."""
    if conn_id is None:
        return ""
    if uid is not None:
        return f"{conn_id.orig_h}:{conn_id.orig_p} > {conn_id.resp_h}:{conn_id.resp_p}"
    return f"{conn_id.orig_h} -> {conn_id.resp_h}"


class _ExpiringSet:
    """Keys kept for `lifetime` seconds after they were added (Zeek's &create_expire), at most MEMORY_MAX."""

    def __init__(self, lifetime: float):
        self.lifetime = lifetime
        self._expires: dict = {}        # key -> expiry time, in the order added

    def __contains__(self, key) -> bool:
        return key in self._expires

    def __len__(self) -> int:
        return len(self._expires)

    def expire(self, now: float) -> None:
        expires = self._expires
        while expires:
            key, when = next(iter(expires.items()))
            if when > now:
                return
            del expires[key]

    def add(self, key, now: float) -> None:
        if len(self._expires) >= MEMORY_MAX:
            del self._expires[next(iter(self._expires))]
        self._expires[key] = now + self.lifetime


class WeirdPolicy:
    """Zeek's do_weird(), without notices (no name the recorder raises has a notice action)."""

    def __init__(self) -> None:
        self._ignored = _ExpiringSet(IGNORE_REPEATS_FOR)
        self._logged_once = _ExpiringSet(LOGGED_ONCE_FOR)
        self.repeats = 0                # weirds raised and not logged

    def logs(self, ts: float, name: str, uid: str | None = None, conn_id: ConnId | None = None) -> bool:
        """Whether weird.log gets this weird; remembers it if so."""
        self._ignored.expire(ts)
        self._logged_once.expire(ts)
        ident = identifier(uid, conn_id)
        if (name, ident) in self._ignored:
            self.repeats += 1
            return False
        if name in LOG_PER_ORIG:
            once = (name, conn_id.orig_h if conn_id is not None else ident)
            if once in self._logged_once:
                self.repeats += 1
                return False
            self._logged_once.add(once, ts)
        self._ignored.add((name, ident), ts)
        return True
