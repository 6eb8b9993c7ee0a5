"""recorder/kernel/abi.py against bpf/cicd_audit.h, as the C compiler lays it out.

A probe is generated from the ctypes mirror (every member of every struct in
MIRRORED_STRUCTS, every member of every mirrored enum), compiled with gcc
against the header and run; its sizeof/offsetof/enum values must equal the
mirror's. A field renamed, resized or moved on one side fails here, and so
does a member the mirror names but the header lacks (the probe won't compile).
Needs gcc; no root.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_audit.recorder.kernel import abi

REPO = Path(__file__).resolve().parents[1]
HEADER = REPO / "bpf" / "cicd_audit.h"

# Python enum -> the C prefix of its enumerators
ENUMS = {
    abi.EventType: "CA_EVENT_",
    abi.EndReason: "CA_END_",
    abi.Stat: "CA_STAT_",
    abi.WeirdCode: "CA_WEIRD_",
    abi.TcpState: "CA_TCP_",
    abi.BlockReason: "CA_BLOCKED_",
    abi.BlockWhere: "CA_BLOCK_AT_",
    abi.TunnelType: "CA_TUNNEL_",
    abi.Stage: "CA_STAGE_",
    abi.ScopeMode: "CA_SCOPE_",
}
CONSTANTS = {
    "CA_HISTORY_MAX": abi.HISTORY_MAX,
    "CA_DNS_PAYLOAD_MAX": abi.DNS_PAYLOAD_MAX,
    "CA_FRAGMENT_MAX": abi.FRAGMENT_MAX,
    "CA_MARK_PADDED": abi.MARK_PADDED,
    "CA_SWEEP_KEYS_MAX": abi.SWEEP_KEYS_MAX,
    "CA_SWEEP_UNFINISHED": abi.SWEEP_UNFINISHED,
    "CA_PAIR_TUNNEL_ID": abi.PAIR_TUNNEL_ID,
    "CA_WEIRD_MAX": abi.WEIRD_MAX,
    "CA_STAT_MAX": abi.STAT_MAX,
    "CA_STAGE_MAX": abi.STAGE_MAX,
    "CA_UDP_ACTIVE": abi.UDP_ACTIVE,
    "CA_EP_SEQ_VALID": abi.EP_SEQ_VALID,
    "CA_EP_DID_CLOSE": abi.EP_DID_CLOSE,
    "CA_CONN_DNS": abi.CONN_DNS,
    "CA_CONN_FLIPPED": abi.CONN_FLIPPED,
    "CA_CONN_BLOCKED": abi.CONN_BLOCKED,
    "CA_CONN_DNS_BLOCKED": abi.CONN_DNS_BLOCKED,
    "CA_CONN_IN_JOB": abi.CONN_IN_JOB,
    "CA_CONN_TUNNEL": abi.CONN_TUNNEL,
    "CA_CONN_IP_TUNNEL": abi.CONN_IP_TUNNEL,
    "CA_CONN_UDP_TUNNEL": abi.CONN_UDP_TUNNEL,
    "CA_CONN_TEREDO": abi.CONN_TEREDO,
    "CA_CONN_AYIYA": abi.CONN_AYIYA,
    "CA_JOB_SLOTS": abi.JOB_SLOTS,
    "CA_DNS_PORT": abi.DNS_PORT,
    "CA_COMM_LEN": abi.COMM_LEN,
    "CA_EXEC_PATH_MAX": abi.EXEC_PATH_MAX,
    "CA_EXEC_PATH_CUT": abi.EXEC_PATH_CUT,
    "CA_NAME_MAX": abi.NAME_MAX,
    "CA_POLICY_PORTS_MAX": abi.POLICY_PORTS_MAX,
}


def _probe_source() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", f'#include "{HEADER}"', "int main(void) {"]
    for cname, cls in abi.MIRRORED_STRUCTS.items():
        lines.append(f'printf("size {cname} %zu\\n", sizeof(struct {cname}));')
        for field, *_ in cls._fields_:
            lines.append(f'printf("offset {cname}.{field} %zu\\n", offsetof(struct {cname}, {field}));')
            lines.append(f'printf("fsize {cname}.{field} %zu\\n", sizeof(((struct {cname} *)0)->{field}));')
    for enum, prefix in ENUMS.items():
        for member in enum:
            lines.append(f'printf("value {prefix}{member.name} %lld\\n", (long long){prefix}{member.name});')
    for name in CONSTANTS:
        lines.append(f'printf("value {name} %llu\\n", (unsigned long long)({name}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory) -> dict[str, int]:
    gcc = shutil.which("gcc")
    assert gcc, "gcc is required for the ABI layout test (apt-get install gcc)"
    d = tmp_path_factory.mktemp("abi")
    (d / "probe.c").write_text(_probe_source())
    cc = subprocess.run([gcc, "-Wall", "-Werror", "-o", str(d / "probe"), str(d / "probe.c")],
                        capture_output=True, text=True)
    assert cc.returncode == 0, f"probe does not compile against {HEADER}:\n{cc.stderr}"
    out = subprocess.run([str(d / "probe")], capture_output=True, text=True, check=True).stdout
    layout = {}
    for line in out.splitlines():
        kind, name, value = line.split()
        layout[f"{kind} {name}"] = int(value)
    return layout


@pytest.mark.parametrize("cname", sorted(abi.MIRRORED_STRUCTS))
def test_struct_layout(c_layout, cname):
    cls = abi.MIRRORED_STRUCTS[cname]
    problems = []
    if c_layout[f"size {cname}"] != ctypes.sizeof(cls):
        problems.append(f"sizeof: C {c_layout[f'size {cname}']} vs ctypes {ctypes.sizeof(cls)}")
    for field, *_ in cls._fields_:
        desc = getattr(cls, field)
        c_off, c_size = c_layout[f"offset {cname}.{field}"], c_layout[f"fsize {cname}.{field}"]
        if (c_off, c_size) != (desc.offset, desc.size):
            problems.append(f"{field}: C offset {c_off} size {c_size} vs ctypes offset {desc.offset} size {desc.size}")
    assert not problems, f"struct {cname} drifted:\n" + "\n".join(problems)


def test_structs_cover_the_whole_size(c_layout):
    """No implicit padding: the last member ends where the struct ends (padding is explicit)."""
    for cname, cls in abi.MIRRORED_STRUCTS.items():
        last, *_ = cls._fields_[-1]
        desc = getattr(cls, last)
        assert desc.offset + desc.size == ctypes.sizeof(cls), f"struct {cname} has trailing implicit padding"


def test_every_header_struct_is_mirrored():
    declared = set(re.findall(r"^struct (ca_\w+) \{", HEADER.read_text(), re.M))
    assert declared == set(abi.MIRRORED_STRUCTS)


@pytest.mark.parametrize("enum", list(ENUMS), ids=lambda e: e.__name__)
def test_enum_values(c_layout, enum):
    prefix = ENUMS[enum]
    got = {m.name: c_layout[f"value {prefix}{m.name}"] for m in enum}
    assert got == {m.name: int(m) for m in enum}


def test_enums_cover_the_header():
    """Every C enumerator with a mirrored prefix exists in the Python enum (bounds like *_MAX aside)."""
    text = HEADER.read_text()
    for enum, prefix in ENUMS.items():
        c_names = {n for n in re.findall(rf"^\s*{prefix}(\w+)\s*=", text, re.M) if n != "MAX"}
        assert c_names == {m.name for m in enum}, f"{enum.__name__} vs {prefix}*"


def test_constants(c_layout):
    assert {n: c_layout[f"value {n}"] for n in CONSTANTS} == CONSTANTS


def test_an_ipv4_table_key_becomes_the_ipv4_mapped_conn_key():
    k4 = abi.ConnKey4()
    k4.addr[0] = int.from_bytes(bytes([192, 0, 2, 1]), sys.byteorder)      # network-order bytes, as stored
    k4.addr[1] = int.from_bytes(bytes([198, 51, 100, 7]), sys.byteorder)
    k4.port[:] = [40000, 443]
    k4.ip_proto = 6
    key = abi.ConnKey.from_buffer_copy(abi.conn_key_from_v4(bytes(k4)))
    assert bytes(key.addr[0]) == bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
    assert bytes(key.addr[1]) == bytes(10) + b"\xff\xff" + bytes([198, 51, 100, 7])
    assert (list(key.port), key.ip_proto) == ([40000, 443], 6)


def test_every_stage_has_its_program():
    from cicd_audit.recorder.kernel.bpf_program import STAGES
    assert set(STAGES) == set(abi.Stage) and max(abi.Stage) < abi.STAGE_MAX


def test_a_dns_events_head_reads_as_the_mirror_lays_it_out():
    """events.DnsHead is read with a struct format derived from the mirror: each field must come
    from where abi.DnsEventHead (checked against the header above) has it."""
    from cicd_audit.recorder.logs import events

    fields = [f for f in events.DnsHead._fields if f != "key"]
    head = abi.DnsEventHead()
    head.hdr.type, head.hdr.size, head.pad = abi.EventType.DNS, 0xBBBBBBBB, 0xCC
    for i, name in enumerate(fields):
        width = getattr(abi.DnsEventHead, name).size if name != "ts_ns" else 8
        setattr(head.hdr if name == "ts_ns" else head, name, (0x1F + 0x11 * i) % 2 ** (8 * width))
    key = bytes(range(1, ctypes.sizeof(abi.ConnKey) + 1))
    ctypes.memmove(ctypes.addressof(head) + abi.DnsEventHead.key.offset, key, len(key))
    payload = b"\x12\x34payload"
    head.captured_len = len(payload)
    read, rest = events.decode(bytes(head) + payload, ctypes.sizeof(head) + len(payload))
    assert read.key == key and rest == payload
    for name in fields:
        expected = head.hdr.ts_ns if name == "ts_ns" else getattr(head, name)
        assert getattr(read, name) == expected, name
