"""uid._base62 writes the plain base-62 digits of a number, without leading zeros; the allocator
holds a uid only while its connection lives."""

import random

from cicd_audit.recorder.logs import uid


def _digit_by_digit(n: int) -> str:
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(uid._ALPHABET[r])
    return "".join(reversed(digits)) or "0"


def test_edges_of_one_and_two_digit_steps():
    for n in (0, 1, 61, 62, 63, 3843, 3844, 3845, 62**3 - 1, 62**3, 62**4, 2**32 - 1, 2**64 - 1):
        assert uid._base62(n) == _digit_by_digit(n), n


def test_random_64_and_32_bit_values():
    rng = random.Random(15)
    for bits in (32, 64):
        for _ in range(20000):
            n = rng.getrandbits(bits)
            assert uid._base62(n) == _digit_by_digit(n)


def test_uids_stay_unique_and_zeek_shaped():
    alloc = uid.UidAllocator()
    uids = {alloc.for_conn(i) for i in range(2000)}
    assert len(uids) == 2000
    assert all(u[0] == "C" and u[1:].isalnum() for u in uids)


def test_ended_connections_leave_nothing_behind():
    alloc = uid.UidAllocator()
    for i in range(5000):
        assert alloc.for_conn(i) == alloc.for_conn(i)
        alloc.forget(i)
    assert vars(alloc) == {"prefix": "C", "_by_conn": {}, "_ended_tunnels": {}}
