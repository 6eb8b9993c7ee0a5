"""Connection uids in Zeek's form: "C" followed by base62 digits of 96 random bits."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from cicd_audit import compiled
from cicd_audit.recorder.kernel.abi import PAIR_TUNNEL_ID

# Uids of ended tunnels kept for the inner connections that end after them.
TUNNEL_UIDS_KEPT = 65536
# Uids' random bits drawn from the OS at a time: one getrandom call per this many uids. A call releases
# the GIL, which beside a replay's frame thread (bulk_replay.py) made it one of the dearest steps of a uid.
UIDS_PER_DRAW = 512
_UID_BYTES = 12

# Forks of this process so far: a child must not hand out the random bits its parent drew.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# Two digits per divmod: a uid's 96 bits take 9 steps instead of 17.
_DIGIT_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_PAIR_BASE = 62 * 62


def _base62(n: int) -> str:
    if n < 62:
        return _ALPHABET[n]
    pairs = []
    while n >= _PAIR_BASE:
        n, r = divmod(n, _PAIR_BASE)
        pairs.append(_DIGIT_PAIRS[r])
    pairs.append(_DIGIT_PAIRS[n] if n >= 62 else _ALPHABET[n])   # no leading zero
    return "".join(reversed(pairs))


def _uid_digits(random: bytes, at: int) -> str:
    """A uid's digits from the 12 random bytes at ``at``: Zeek's 64 + 32 bits, each in base62.
    The reference of _uid.c's uid_digits, which is used when it is built."""
    bits = int.from_bytes(random[at:at + _UID_BYTES], "big")
    return _base62(bits >> 32) + _base62(bits & 0xFFFFFFFF)


_compiled = compiled.load("cicd_audit.recorder.logs._uid", Path(__file__).with_name("_uid.c"))
uid_digits = _compiled.uid_digits if _compiled is not None else _uid_digits


class UidAllocator:
    """One uid per kernel connection id, held while the connection lives.

    As Zeek's, a uid is unique by its 96 random bits from the OS's generator:
    a repeat among a billion uids has a chance of about 1 in 10^11. No set of
    every uid issued is kept, so a job that makes connection after connection
    (a lookup from a new port each time) does not grow the recorder.
    """

    def __init__(self, prefix: str = "C"):
        self.prefix = prefix
        self._by_conn: dict[int, str] = {}
        self._ended_tunnels: OrderedDict[int, str] = OrderedDict()
        self._random = b""          # the OS's random bytes not handed out yet, from _random_at on
        self._random_at = 0
        self._random_forks = _forks

    def for_conn(self, conn_id: int) -> str:
        uid = self._by_conn.get(conn_id) or self._ended_tunnels.get(conn_id)
        if uid is None:
            uid = self.prefix + uid_digits(*self._next_random())
            if conn_id & PAIR_TUNNEL_ID:
                self._keep_tunnel(conn_id, uid)   # never ends: kept as long as there is room
            else:
                self._by_conn[conn_id] = uid
        return uid

    def _next_random(self) -> tuple[bytes, int]:
        """The next uid's 12 random bytes: where they are, and at what offset."""
        at = self._random_at
        if at >= len(self._random) or self._random_forks != _forks:
            self._random, at, self._random_forks = os.urandom(_UID_BYTES * UIDS_PER_DRAW), 0, _forks
        self._random_at = at + _UID_BYTES
        return self._random, at

    def _keep_tunnel(self, conn_id: int, uid: str) -> None:
        self._ended_tunnels[conn_id] = uid
        if len(self._ended_tunnels) > TUNNEL_UIDS_KEPT:
            self._ended_tunnels.popitem(last=False)

    def forget(self, conn_id: int, tunnel: bool = False) -> None:
        """The connection ended. A tunnel's uid is kept a while longer: the
        connections it carried may end after it and name it as their parent."""
        uid = self._by_conn.pop(conn_id, None)
        if tunnel and uid is not None:
            self._keep_tunnel(conn_id, uid)
