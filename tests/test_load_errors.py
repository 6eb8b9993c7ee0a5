"""A program the verifier refuses: the message names it, gives the first errno, the
verifier's last lines, the missing kernel feature and what to do.

The root tests load small hand-made programs the verifier refuses, on the
running kernel; one shrinks the log buffer so the full trace does not fit
(ENOSPC, as a 20-80 MB trace does on kernels before 6.4) and checks that the
verdict still comes through and ENOSPC does not replace the first errno.
"""

from __future__ import annotations

import errno
import struct

import pytest

from cicd_audit.recorder.kernel import bpf_program, bpf_syscall, verifier_log


# A few instructions (include/uapi/linux/bpf.h encoding: opcode, dst|src<<4, off, imm).
def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


MOV_R0_0 = insn(0xB7)                      # r0 = 0
EXIT = insn(0x95)
CALL_UNKNOWN_HELPER = insn(0x85, imm=99999)
LDX_R0_CTX_0 = insn(0x79, dst=0, src=1)    # r0 = *(u64 *)(r1 + 0): __sk_buff's first field is 4 bytes


LOG_5_10_ATOMIC = """func#0 @0
0: R1=ctx(id=0,off=0,imm=0) R10=fp0
; if (!sent || __sync_fetch_and_add(sent, 1) >= CA_WEIRD_SEND_MAX) {
812: (db) r1 = atomic64_fetch_add((u64 *)(r2 +0), r1)
BPF_STX uses reserved fields
processed 1045 insns (limit 1000000) max_states_per_insn 2 total_states 60 peak_states 60 mark_read 12
"""

LOG_6_1_JUMPS = "\n".join([f"{i}: (07) r7 += -91" for i in range(50)] + [
    "The sequence of 8193 jumps is too complex.",
    "verification time 3020129 usec",
    "stack depth 112",
    "processed 311891 insns (limit 1000000) max_states_per_insn 31 total_states 17322 peak_states 8193 mark_read 6",
])


def test_last_lines_are_the_verdict_not_the_trace():
    lines = verifier_log.last_lines(LOG_6_1_JUMPS, 4)
    assert lines[0] == "The sequence of 8193 jumps is too complex."
    assert lines[-1].startswith("processed 311891 insns")


@pytest.mark.parametrize("log,err,feature", [
    (LOG_5_10_ATOMIC, errno.EINVAL, "atomic fetch"),
    (LOG_6_1_JUMPS, errno.E2BIG, "verifier able to bound"),
    ("0: (85) call unknown#99999\ninvalid func unknown#99999\n", errno.EINVAL, "helper unknown (#99999)"),
    ("", errno.EPERM, "privilege"),
])
def test_explain_names_the_missing_feature(log, err, feature):
    explanation = verifier_log.explain(log, err)
    assert explanation is not None and feature in explanation.feature
    assert explanation.action


def test_an_unexplained_refusal_gets_no_guess():
    assert verifier_log.explain("R2 !read_ok\nprocessed 3 insns\n", errno.EACCES) is None


def test_refusal_message_names_variant_errno_lines_and_action():
    exc = bpf_syscall.VerifierError(errno.E2BIG, "ca_dns_name", LOG_6_1_JUMPS)
    text = bpf_program.refusal_message(bpf_program.ProgramSettings(block=True), exc)
    assert "`record --block`" in text and "ca_dns_name" in text and "E2BIG" in text
    assert "The sequence of 8193 jumps is too complex." in text
    assert "what to do: run without the option" in text
    shown = text.split("its last lines:\n")[1].split("\n  this kernel")[0].splitlines()
    assert len(shown) == verifier_log.LAST_LINES and "0: (07) r7 += -91" not in text   # the end, not 50 lines


@pytest.mark.root
def test_unknown_helper_is_refused_with_its_name():
    with pytest.raises(bpf_syscall.VerifierError) as info:
        bpf_syscall.prog_load("ca_test_helper", CALL_UNKNOWN_HELPER + MOV_R0_0 + EXIT)
    exc = info.value
    assert exc.errno == errno.EINVAL and exc.program == "ca_test_helper"
    assert any("99999" in line for line in exc.last_lines)
    assert exc.explanation is not None and "#99999" in exc.explanation.feature


@pytest.mark.root
def test_a_log_too_big_for_the_buffer_still_gives_the_verdict(monkeypatch):
    # 3000 instructions traced at log level 1 (~60 KB) into a 4 KB buffer: ENOSPC on the retry.
    program = MOV_R0_0 * 3000 + LDX_R0_CTX_0 + EXIT
    monkeypatch.setattr(bpf_syscall, "VERIFIER_LOG_BYTES", 4096)
    with pytest.raises(bpf_syscall.VerifierError) as info:
        bpf_syscall.prog_load("ca_test_bigl", program)
    exc = info.value
    assert exc.errno == errno.EACCES, "the first load's errno, not the log retry's ENOSPC"
    assert any("invalid bpf_context access" in line for line in exc.last_lines), exc.last_lines
    assert exc.last_lines[-1].startswith("processed "), exc.last_lines
    assert "No space left" not in str(exc)


@pytest.mark.root
def test_verifier_stats_counts_what_it_walked():
    line = bpf_syscall.verifier_stats("ca_test_ok", MOV_R0_0 * 10 + EXIT)
    assert line.startswith("processed 11 insns")
