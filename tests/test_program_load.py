"""bpf_program._load_functions: the program's functions verified at once, all or none.

Real BPF_PROG_LOADs of two-instruction TC programs (and one the verifier
refuses: it exits without setting r0). Needs root, not bcc.
"""

from __future__ import annotations

import os
import struct
import threading

import pytest

from cicd_audit.recorder.kernel import bpf_program, bpf_syscall

pytestmark = pytest.mark.root

MOV_R0_0 = struct.pack("<BBhi", 0xB7, 0, 0, 0)
MOV_R1_0 = struct.pack("<BBhi", 0xB7, 1, 0, 0)
EXIT = struct.pack("<BBhi", 0x95, 0, 0, 0)


def _returning_0(moves: int = 1) -> bytes:
    """r0 = 0, `moves` times (a larger program), then exit."""
    return MOV_R0_0 * moves + EXIT


def _refused(moves: int = 0) -> bytes:
    """r1 = 0, `moves` times, then exit with r0 never set: the verifier refuses it."""
    return MOV_R1_0 * moves + EXIT


def _entry(name: str, insns: bytes | None = None):
    return (name, insns or _returning_0(), bpf_syscall.PROG_SCHED_CLS, 0)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_every_function_loads_and_gets_its_own_fd():
    loaded = bpf_program._load_functions([_entry(f"ca_t{i}") for i in range(6)], "GPL", 0)
    try:
        assert sorted(loaded) == [f"ca_t{i}" for i in range(6)]
        assert len({f.fd for f in loaded.values()}) == 6 and all(f.fd >= 0 for f in loaded.values())
    finally:
        bpf_program.unload({}, loaded)


def test_functions_are_verified_at_the_same_time(monkeypatch):
    """The first two loads wait for each other: loaded one after the other, the barrier breaks."""
    barrier = threading.Barrier(2, timeout=10)
    real_load = bpf_syscall.prog_load

    def load_together(name, *args, **kwargs):
        if name in ("ca_big", "ca_bigger"):
            barrier.wait()
        return real_load(name, *args, **kwargs)

    monkeypatch.setattr(bpf_syscall, "prog_load", load_together)
    entries = [_entry("ca_small"), _entry("ca_big", _returning_0(40)), _entry("ca_bigger", _returning_0(50))]
    loaded = bpf_program._load_functions(entries, "GPL", 0)
    bpf_program.unload({}, loaded)
    assert sorted(loaded) == ["ca_big", "ca_bigger", "ca_small"]


def test_a_refusal_closes_what_loaded_and_names_the_first_refused_function():
    before = _open_fds()
    entries = [_entry("ca_ok1"), _entry("ca_bad1", _refused()), _entry("ca_ok2", _returning_0(30)),
               _entry("ca_bad2", _refused(50)), _entry("ca_ok3")]
    with pytest.raises(bpf_syscall.VerifierError) as refused:
        bpf_program._load_functions(entries, "GPL", 0)
    assert refused.value.program == "ca_bad1"      # listed first, whichever the kernel refused first
    assert _open_fds() == before
