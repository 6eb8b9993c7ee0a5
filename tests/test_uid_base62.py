"""uid._base62 writes the plain base-62 digits of a number, without leading zeros, and _uid.c's
uid_digits writes a uid's as the reference does; the allocator holds a uid only while its
connection lives, and its random bits, drawn from the OS a few hundred uids at a time, are never
handed out twice: not across draws, allocators or a fork."""

import os
import random

import pytest

from cicd_audit.recorder.logs import uid

EDGES = (0, 1, 61, 62, 63, 3843, 3844, 3845, 62**3 - 1, 62**3, 62**4, 2**32 - 1, 2**64 - 1)


def _digit_by_digit(n: int) -> str:
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(uid._ALPHABET[r])
    return "".join(reversed(digits)) or "0"


def test_edges_of_one_and_two_digit_steps():
    for n in EDGES:
        assert uid._base62(n) == _digit_by_digit(n), n


def test_random_64_and_32_bit_values():
    rng = random.Random(15)
    for bits in (32, 64):
        for _ in range(20000):
            n = rng.getrandbits(bits)
            assert uid._base62(n) == _digit_by_digit(n)


def test_the_compiled_digits_are_the_ones_in_use_here():
    assert uid._compiled is not None and uid.uid_digits is uid._compiled.uid_digits


def test_the_compiled_digits_are_the_references():
    """Each half at the edges of its digit counts, and random uids, at offsets in a longer buffer."""
    values = [hi << 32 | lo for hi in EDGES for lo in EDGES if lo < 2**32]
    rng = random.Random(7)
    values += [rng.getrandbits(96) for _ in range(20000)]
    pool = b"".join(v.to_bytes(12, "big") for v in values)
    for i in range(len(values)):
        assert uid._compiled.uid_digits(pool, 12 * i) == uid._uid_digits(pool, 12 * i), values[i]
    assert uid._compiled.uid_digits(b"\0" * 13, 1) == "00"


@pytest.mark.parametrize("size, at", [(12, -1), (12, 1), (24, 13)])
def test_the_compiled_digits_refuse_an_offset_past_the_bytes(size, at):
    with pytest.raises(ValueError, match="fewer than 12 random bytes"):
        uid._compiled.uid_digits(bytes(size), at)


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


def _bits(alloc: uid.UidAllocator) -> int:
    random_bytes, at = alloc._next_random()
    return int.from_bytes(random_bytes[at:at + 12], "big")


def test_random_bits_are_never_handed_out_twice():
    first, second = uid.UidAllocator(), uid.UidAllocator()
    draws = 3 * uid.UIDS_PER_DRAW + 7                 # across several draws from the OS
    bits = [_bits(first) for _ in range(draws)] + [_bits(second) for _ in range(draws)]
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
