"""uid._base62 writes the plain base-62 digits of a number, without leading zeros; the allocator
holds a uid only while its connection lives, and its random bits, drawn from the OS a few hundred
uids at a time, are never handed out twice: not across draws, allocators or a fork."""

import os
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
    assert (alloc._by_conn, alloc._ended_tunnels) == ({}, {})


def test_random_bits_are_never_handed_out_twice():
    first, second = uid.UidAllocator(), uid.UidAllocator()
    draws = 3 * uid.UIDS_PER_DRAW + 7                 # across several draws from the OS
    bits = [first._random_bits() for _ in range(draws)] + [second._random_bits() for _ in range(draws)]
    assert len(set(bits)) == len(bits)
    assert max(bits).bit_length() > 90               # all 96 bits are used


def test_a_forked_child_draws_its_own_bits():
    """A child holding its parent's undrawn bytes would repeat the parent's next uids."""
    alloc = uid.UidAllocator()
    alloc.for_conn(1)                       # the pool is filled before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, alloc.for_conn(2).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child != alloc.for_conn(2)
