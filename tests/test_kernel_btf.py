"""recorder/kernel/kernel_btf.py: member offsets and function ids from BTF, on built blobs and on this kernel's.

The blobs are made here, type by type, after include/uapi/linux/btf.h, so the
walk is checked over every kind whose record has trailing data; that the
offsets found in the running kernel's BTF are the real ones is checked live by
tests/test_exec_hooks.py (the hooks read the right fields or find nothing).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from cicd_audit.recorder.attach import udp_connect_hooks
from cicd_audit.recorder.kernel import kernel_btf

WANTED = {"linux_binprm": ("interp",), "task_struct": ("pid", "tgid")}


class BtfBlob:
    """A BTF blob built one type at a time."""

    def __init__(self):
        self.strings = bytearray(b"\0")
        self.types = bytearray()

    def name(self, text: str) -> int:
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind: int, name: str = "", vlen: int = 0, size: int = 0, extra: bytes = b"",
            kind_flag: bool = False) -> None:
        info = kind << 24 | vlen | (1 << 31 if kind_flag else 0)
        self.types += struct.pack("<III", self.name(name) if name else 0, info, size) + extra

    def struct(self, name: str, members: list[tuple[str, int]], kind_flag: bool = False, kind: int = 4) -> None:
        extra = b"".join(struct.pack("<III", self.name(m), 1, offset) for m, offset in members)
        self.add(kind, name, len(members), 64, extra, kind_flag)

    def bytes(self) -> bytes:
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return header + bytes(self.types) + bytes(self.strings)


def kernel_like_blob() -> BtfBlob:
    """Every kind with trailing data before the wanted structs, and decoys of the same names."""
    blob = BtfBlob()
    blob.add(1, "int", size=4, extra=b"\0" * 4)                     # INT
    blob.add(2)                                                     # PTR
    blob.add(3, extra=b"\0" * 12)                                   # ARRAY
    blob.add(6, "e", vlen=2, extra=b"\0" * 16)                      # ENUM
    blob.add(13, vlen=3, extra=b"\0" * 24)                          # FUNC_PROTO
    blob.add(14, "v", extra=b"\0" * 4)                              # VAR
    blob.add(15, ".data", vlen=1, extra=b"\0" * 12)                 # DATASEC
    blob.add(17, "tag", extra=b"\0" * 4)                            # DECL_TAG
    blob.add(19, "e64", vlen=1, extra=b"\0" * 12)                   # ENUM64
    blob.struct("task_struct", [("pid", 0)], kind=5)                # a UNION of that name: not it
    blob.struct("linux_binprm", [("filename", 768), ("interp", 832)])
    # kind_flag: the top byte of each offset is a bitfield size
    blob.struct("task_struct", [("flags", 3 << 24 | 64), ("pid", 10112), ("tgid", 10144)], kind_flag=True)
    blob.add(12, "ip4_datagram_connect", size=5)                    # FUNC (no trailing data): type id 13
    blob.add(12, "ip6_datagram_connect_v6_only", size=5)            # a longer name sharing the prefix
    blob.add(12, "ip6_datagram_connect", size=5)                    # 15
    blob.struct("ip4_datagram_connect", [])                         # a STRUCT of that name: not it
    return blob


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "vmlinux"
    path.write_bytes(data)
    return path


def test_offsets_are_found_past_every_kind(tmp_path):
    found = kernel_btf.member_offsets(WANTED, write(tmp_path, kernel_like_blob().bytes()))
    assert found == {("linux_binprm", "interp"): 104, ("task_struct", "pid"): 1264,
                     ("task_struct", "tgid"): 1268}


def test_a_missing_member_is_named(tmp_path):
    blob = BtfBlob()
    blob.struct("linux_binprm", [("filename", 768)])
    with pytest.raises(kernel_btf.BtfUnavailable, match=r"has no linux_binprm\.interp, task_struct\.pid"):
        kernel_btf.member_offsets(WANTED, write(tmp_path, blob.bytes()))


@pytest.mark.parametrize("mangle, message", [
    (lambda data: b"", "too short"),
    (lambda data: b"\x00\x00" + data[2:], "not BTF"),
    (lambda data: data[:24 + 100], "malformed"),                 # cut inside the type section
])
def test_bad_btf_is_a_clear_error(tmp_path, mangle, message):
    data = kernel_like_blob().bytes()
    with pytest.raises(kernel_btf.BtfUnavailable, match=message):
        kernel_btf.member_offsets(WANTED, write(tmp_path, mangle(data)))


def test_no_btf_file_says_which(tmp_path):
    with pytest.raises(kernel_btf.BtfUnavailable, match="vmlinux.*cannot be read"):
        kernel_btf.member_offsets(WANTED, tmp_path / "vmlinux")


def test_function_ids_count_every_type_from_one(tmp_path):
    found = kernel_btf.function_ids(("ip6_datagram_connect", "ip4_datagram_connect"),
                                    write(tmp_path, kernel_like_blob().bytes()))
    assert found == {"ip4_datagram_connect": 13, "ip6_datagram_connect": 15}


def test_a_missing_function_is_named(tmp_path):
    with pytest.raises(kernel_btf.BtfUnavailable, match="has no function udp_connect"):
        kernel_btf.function_ids(("ip4_datagram_connect", "udp_connect"), write(tmp_path, kernel_like_blob().bytes()))


def test_offsets_and_function_ids_share_one_cache(tmp_path):
    btf = write(tmp_path, kernel_like_blob().bytes())
    offsets = kernel_btf.cached_member_offsets(WANTED, tmp_path, btf)
    ids = kernel_btf.cached_function_ids(("ip4_datagram_connect",), tmp_path, btf)
    btf.unlink()
    assert kernel_btf.cached_member_offsets(WANTED, tmp_path, btf) == offsets
    assert kernel_btf.cached_function_ids(("ip4_datagram_connect",), tmp_path, btf) == ids == {"ip4_datagram_connect": 13}


def test_the_cache_answers_for_this_boot_only(tmp_path, monkeypatch):
    btf = write(tmp_path, kernel_like_blob().bytes())
    first = kernel_btf.cached_member_offsets(WANTED, tmp_path, btf)
    btf.unlink()                                        # from now on only the cache can answer
    assert kernel_btf.cached_member_offsets(WANTED, tmp_path, btf) == first
    entry = json.loads((tmp_path / kernel_btf.CACHE_FILE).read_text())
    entry["boot"] = "another boot"
    (tmp_path / kernel_btf.CACHE_FILE).write_text(json.dumps(entry))
    with pytest.raises(kernel_btf.BtfUnavailable):
        kernel_btf.cached_member_offsets(WANTED, tmp_path, btf)


def test_a_cache_others_could_write_is_ignored(tmp_path):
    btf = write(tmp_path, kernel_like_blob().bytes())
    kernel_btf.cached_member_offsets(WANTED, tmp_path, btf)
    os.chmod(tmp_path / kernel_btf.CACHE_FILE, 0o666)
    btf.unlink()
    with pytest.raises(kernel_btf.BtfUnavailable):
        kernel_btf.cached_member_offsets(WANTED, tmp_path, btf)


class ProgramWithoutBtf:
    """What attach_exec_hooks needs of a CaptureProgram, on a kernel whose BTF cannot be read."""

    exec_programs = {"sched_process_exec": 3, "sched_process_fork": 4}

    def __init__(self):
        self.maps = {"exec_layout": self}
        self.updates = []

    def update(self, key, value):
        self.updates.append((key, value))

    def exec_path(self, tgid):
        raise AssertionError("never asked: the hooks are not attached")


def test_without_btf_the_recording_goes_on_and_says_why_in_one_line(tmp_path, monkeypatch, capsys):
    import contextlib

    from cicd_audit.recorder.attach import exec_hooks
    from cicd_audit.recorder.logs.processes import ProcessTable

    monkeypatch.setattr(kernel_btf, "VMLINUX_BTF", tmp_path / "vmlinux")
    monkeypatch.setattr(kernel_btf, "CACHE_DIR", tmp_path)
    program, table = ProgramWithoutBtf(), ProcessTable(proc_root=tmp_path)
    with contextlib.ExitStack() as stack:
        exec_hooks.attach_exec_hooks(stack, program, table, "cicd-audit")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cicd-audit: a process that exits before /proc/<pid> is read")
    assert "vmlinux" in err and "cannot be read" in err
    assert table.exec_paths is None and program.updates == []


@pytest.mark.skipif(not kernel_btf.VMLINUX_BTF.exists(), reason="this kernel has no BTF")
def test_this_kernels_btf_names_the_datagram_connects():
    """Their ids are what /proc/kallsyms cannot give: checked live by the fentry hook filing flows
    (the kernel matrix's udp check); here, that both are found and are FUNCs, not the same one."""
    found = kernel_btf.function_ids(udp_connect_hooks.TRACED)
    assert len(set(found.values())) == 2 and min(found.values()) > 0


@pytest.mark.skipif(not kernel_btf.VMLINUX_BTF.exists(), reason="this kernel has no BTF")
def test_this_kernels_btf_has_the_fields():
    found = kernel_btf.member_offsets(WANTED)
    assert found[("task_struct", "tgid")] == found[("task_struct", "pid")] + 4    # pid_t pid; pid_t tgid;
    assert 0 < found[("linux_binprm", "interp")] < 4096
