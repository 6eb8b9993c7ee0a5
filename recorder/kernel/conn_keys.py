"""A replay's connection keys, followed from the kernel's events instead of listed from its tables.

Every second of packet time a replay sweeps: it sends ca_sweep the key of
every connection in the tables. Listing them walks each of conns4's 262,144
buckets, and conns6's once it has an entry, however few connections there
are: about 0.3 ms a sweep, a third of the replay of a long capture with few
connections. In pcap mode the kernel reports each connection it puts in a
table (CONN_START), and each one it takes out comes with its CONN_END;
followed as records leave the ring, in the ring's order (a reused key ends,
then starts again), they give the tables' keys without a walk.

A CONN_START also says when its connection can end at the earliest (its
first packet's time plus the shortest timer its protocol has: timers.h
ca_min_lifetime), and a sweep sends only the keys whose time has come: a
replay of DNS lookups, each over in 10 s, sent every key at each of its 10
sweeps. Sending a key early costs a lookup, never a row; sending it late
would only end its connection late (its end time is the kernel's all the
same), which a capture whose packet times run backwards can cause.

A CONN_START the ring had no room for would leave its connection out of the
sweeps: the kernel counts it (rb_drop_conn_start), and the caller lists the
tables from then on. A CONN_END lost leaves a key behind, which a sweep
sends in vain: the kernel finds no connection under it.

API::

    ConnKeys()
        .follow(records) -> records      # the ring's records without the CONN_STARTs
        .keys(due_by=None) -> (ipv4 keys, ipv6 keys)   # raw ConnKeys, oldest connection first
        .unknown(ipv4 keys, ipv6 keys) -> int   # how many listed keys were not followed
        .ordered(ipv4 keys, ipv6 keys) -> (ipv4 keys, ipv6 keys)   # listed keys, oldest connection first
"""

from __future__ import annotations

from cicd_audit.recorder.kernel import abi

_START = abi.EventType.CONN_START.value.to_bytes(4, "little")
_END = abi.EventType.CONN_END.value.to_bytes(4, "little")
# Both events carry the key right after their header.
_KEY_AT, _KEY_END = abi.ConnStartEvent.key.offset, abi.ConnStartEvent.key.offset + abi.ConnStartEvent.key.size
assert (abi.ConnEndEvent.key.offset, abi.ConnEndEvent.key.size) == (abi.ConnStartEvent.key.offset,
                                                                     abi.ConnStartEvent.key.size)
_DUE_AT, _DUE_END = abi.ConnStartEvent.due_ns.offset, abi.ConnStartEvent.due_ns.offset + abi.ConnStartEvent.due_ns.size
assert abi.EventHeader.type.offset == 0
_MAPPED = abi.V4_MAPPED_PREFIX
_ADDR1 = abi.ConnKey.addr.offset + 16      # the second address


class ConnKeys:
    """The keys of the connections in the kernel's tables, as their events tell."""

    def __init__(self) -> None:
        # raw ConnKey -> the packet time (ns) its connection can end at, at the earliest;
        # dicts keep creation order, so sweeps end connections in it
        self._v4: dict[bytes, int] = {}
        self._v6: dict[bytes, int] = {}

    def follow(self, records: list[bytes]) -> list[bytes]:
        """Records from the ring, oldest first: the keys their connection events name are
        noted or forgotten; the records come back without the CONN_STARTs, which say nothing else."""
        kept = []
        for record in records:
            kind = record[:4]
            if kind == _START:
                key = record[_KEY_AT:_KEY_END]
                self._table(key)[key] = int.from_bytes(record[_DUE_AT:_DUE_END], "little")
                continue
            if kind == _END:
                key = record[_KEY_AT:_KEY_END]
                self._table(key).pop(key, None)
            kept.append(record)
        return kept

    def _table(self, key: bytes) -> dict[bytes, int]:
        # conns4 holds the keys whose two addresses are IPv4-mapped (ca_conn_key4 in the kernel)
        if key[:12] == _MAPPED and key[_ADDR1:_ADDR1 + 12] == _MAPPED:
            return self._v4
        return self._v6

    def keys(self, due_by: int | None = None) -> tuple[list[bytes], list[bytes]]:
        """Every key, or with due_by (packet time, ns) those whose connection can have ended by then."""
        if due_by is None:
            return list(self._v4), list(self._v6)
        return ([key for key, due in self._v4.items() if due <= due_by],
                [key for key, due in self._v6.items() if due <= due_by])

    def ordered(self, v4_keys: list[bytes], v6_keys: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        """Keys listed from the tables in the order their connections were made, then any never
        followed, in byte order: a capture's final drain ends its connections, and writes their
        rows, in one order however the tables' hashing laid them out."""
        return self._in_order(self._v4, v4_keys), self._in_order(self._v6, v6_keys)

    @staticmethod
    def _in_order(followed: dict[bytes, int], listed: list[bytes]) -> list[bytes]:
        present = set(listed)
        return [key for key in followed if key in present] + sorted(present.difference(followed))

    def unknown(self, v4_keys: list[bytes], v6_keys: list[bytes]) -> int:
        """How many of the keys listed from the tables were never followed (0 unless a start was lost)."""
        return sum(key not in self._v4 for key in v4_keys) + sum(key not in self._v6 for key in v6_keys)
