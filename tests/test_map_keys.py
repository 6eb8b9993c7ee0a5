"""Listing a hash map's keys: the batched lookup returns exactly what a key-by-key walk does."""

from __future__ import annotations

import ctypes
import os

import pytest

from cicd_audit.recorder.kernel import abi, bpf_syscall

pytestmark = [pytest.mark.root]

KEY, VALUE = 16, 40


@pytest.fixture
def hash_map():
    fd = bpf_syscall.map_create(bpf_syscall.MAP_HASH, KEY, VALUE, 8192)
    yield fd
    os.close(fd)


def _fill(fd: int, count: int) -> set[bytes]:
    key, value = (ctypes.c_ubyte * KEY)(), (ctypes.c_ubyte * VALUE)()
    added = set()
    for i in range(count):
        raw = (i * 7919).to_bytes(KEY, "little")
        ctypes.memmove(key, raw, KEY)
        bpf_syscall.map_update(fd, key, value)
        added.add(raw)
    return added


def _walk(fd: int) -> list[bytes]:
    keys, prev, nxt, cur = [], None, (ctypes.c_ubyte * KEY)(), (ctypes.c_ubyte * KEY)()
    while bpf_syscall.map_get_next_key(fd, prev, nxt):
        keys.append(bytes(nxt))
        ctypes.memmove(cur, nxt, KEY)
        prev = cur
    return keys


@pytest.mark.parametrize("count", [0, 1, 1023, 1024, 5000])
def test_batched_keys_are_the_walked_keys(hash_map, count):
    added = _fill(hash_map, count)
    batched = bpf_syscall.map_keys_batched(hash_map, KEY, VALUE)
    assert batched is not None, "BPF_MAP_LOOKUP_BATCH exists since 5.6: on this kernel its absence is a failure"
    assert len(batched) == count and set(batched) == added == set(_walk(hash_map))


def test_a_batch_smaller_than_a_bucket_grows_instead_of_failing(hash_map):
    added = _fill(hash_map, 3000)
    assert set(bpf_syscall.map_keys_batched(hash_map, KEY, VALUE, per_call=1)) == added


def test_an_lpm_trie_lists_its_keys_in_batches_without_overrunning_the_token():
    """An LPM trie's batch token is a whole key (24 bytes here), not a bucket number: a token
    buffer sized for a hash map let the kernel write past it (the agent crashed clearing its
    allowed CIDRs between jobs)."""
    key_size, value_size = ctypes.sizeof(abi.CidrKey), ctypes.sizeof(abi.PortSet)
    fd = bpf_syscall.map_create(bpf_syscall.MAP_LPM_TRIE, key_size, value_size, 4096, flags=1)  # BPF_F_NO_PREALLOC
    try:
        key, value = (ctypes.c_ubyte * key_size)(), (ctypes.c_ubyte * value_size)()
        added = set()
        for i in range(300):
            raw = (8 + 128).to_bytes(4, "little") + bytes([1]) + i.to_bytes(16, "big") + bytes(3)
            ctypes.memmove(key, raw, key_size)
            bpf_syscall.map_update(fd, key, value)
            added.add(raw)
        batched = bpf_syscall.map_keys_batched(fd, key_size, value_size, per_call=7)
        assert batched is None or set(batched) == added, "batched or walked, every key once"
    finally:
        os.close(fd)
