"""Byte offsets of members of the running kernel's structures, and ids of its functions,
read from its BTF.

The exec hooks (bpf/exec_paths.h) and the connected-UDP connect hook
(bpf/process.h) read a few fields of kernel-internal structures
(linux_binprm, task_struct, sock, inet_sock) whose layout changes between
builds. The kernel headers bcc compiles against may be another version's
(install.sh borrows the newest installed ones), so the offsets come from the
running kernel's own type information, /sys/kernel/btf/vmlinux (Debian and
Ubuntu kernels since 5.4 carry it), and reach the program through a map. A
tracing program names the function it attaches to by its id in the same
type information.

Walking the ~125,000 types takes ~0.06 s, so each answer is kept per boot in
CACHE_DIR (the kernel, and with it its BTF, cannot change without a reboot).

API::

    member_offsets(wanted, btf=VMLINUX_BTF) -> {(struct, member): byte offset}
    function_ids(names, btf=VMLINUX_BTF) -> {function: BTF type id}
    cached_member_offsets(wanted), cached_function_ids(names) -> the same, remembered for this boot
    cached_field_offsets({field: (struct, member)}) -> {field: byte offset}, for a hook's layout
    BtfUnavailable: no BTF, an unreadable one, or a wanted member or function missing
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path

from cicd_audit.recorder.kernel.bpf_syscall import BTF_MAGIC
from cicd_audit.recorder.kernel.kernel_headers import CACHE_DIR

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CACHE_FILE = "kernel-offsets.json"

_HEADER = struct.Struct("<HBBIIIII")    # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("<III")           # name_off, info, size/type
_MEMBER = struct.Struct("<III")         # name_off, type, offset
_KIND_STRUCT = 4
_KIND_FUNC = 12
# Bytes that follow a type's 12-byte record, by kind (include/uapi/linux/btf.h):
# a fixed size, or a size per member (vlen).
_FIXED_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}          # INT, ARRAY, VAR, DECL_TAG
_PER_MEMBER_EXTRA = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}   # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64


class BtfUnavailable(Exception):
    """The offsets cannot be known on this kernel; str() says why, in a few words."""


def member_offsets(wanted: dict[str, tuple[str, ...]], btf: Path | None = None) -> dict[tuple[str, str], int]:
    """{struct name: member names} -> {(struct, member): byte offset} for every one wanted, from
    ``btf`` (default: the running kernel's)."""
    types, strings = _sections(btf or VMLINUX_BTF)
    found = _scan_members(types, strings, wanted)
    missing = [f"{s}.{m}" for s, members in wanted.items() for m in members if (s, m) not in found]
    if missing:
        raise BtfUnavailable(f"the kernel's type information has no {', '.join(missing)}")
    return found


def function_ids(wanted: tuple[str, ...], btf: Path | None = None) -> dict[str, int]:
    """{kernel function name: its BTF type id} for every one wanted: what a tracing
    program names as the function it attaches to."""
    types, strings = _sections(btf or VMLINUX_BTF)
    names = {name.encode() + b"\0": name for name in wanted}
    found: dict[str, int] = {}
    for type_id, kind, name_off, _info, _pos in _walk(types):
        if kind == _KIND_FUNC:
            name = next((n for raw, n in names.items() if strings.startswith(raw, name_off)), None)
            if name:
                found.setdefault(name, type_id)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise BtfUnavailable(f"the kernel's type information has no function {', '.join(missing)}")
    return found


def _sections(btf: Path) -> tuple[memoryview, bytes]:
    """The type and string sections of a BTF file."""
    try:
        data = btf.read_bytes()
    except OSError as exc:
        raise BtfUnavailable(f"the kernel's type information ({btf}) cannot be read: "
                             f"{exc.strerror or exc}") from None
    try:
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
    except struct.error:
        raise BtfUnavailable(f"{btf} is too short to be BTF") from None
    if magic != BTF_MAGIC:
        raise BtfUnavailable(f"{btf} is not BTF (magic {magic:#x})")
    if max(hdr_len + type_off + type_len, hdr_len + str_off + str_len) > len(data):
        raise BtfUnavailable("the kernel's type information is malformed (cut short)")
    types = memoryview(data)[hdr_len + type_off: hdr_len + type_off + type_len]
    return types, data[hdr_len + str_off: hdr_len + str_off + str_len]


def _walk(types: memoryview):
    """(type id, kind, name offset, info, offset of what follows its record) for each type;
    ids count from 1 (0 is void)."""
    pos, end, type_id = 0, len(types), 0
    try:
        while pos < end:
            name_off, info, _size = _TYPE.unpack_from(types, pos)
            pos += _TYPE.size
            type_id += 1
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            yield type_id, kind, name_off, info, pos
            pos += _FIXED_EXTRA.get(kind, 0) + _PER_MEMBER_EXTRA.get(kind, 0) * vlen
    except struct.error:
        raise BtfUnavailable("the kernel's type information is malformed") from None


def _scan_members(types: memoryview, strings: bytes,
                  wanted: dict[str, tuple[str, ...]]) -> dict[tuple[str, str], int]:
    names = {name: name.encode() + b"\0" for name in wanted}
    found: dict[tuple[str, str], int] = {}
    try:
        for _type_id, kind, name_off, info, pos in _walk(types):
            struct_name = kind == _KIND_STRUCT and next(
                (name for name, raw in names.items() if strings.startswith(raw, name_off)), None)
            if struct_name:
                bitfields = bool(info >> 31)      # kind_flag: offsets carry a bitfield size in the top byte
                for i in range(info & 0xFFFF):
                    member_name_off, _type, offset = _MEMBER.unpack_from(types, pos + i * _MEMBER.size)
                    member = strings[member_name_off: strings.index(b"\0", member_name_off)].decode()
                    if member in wanted[struct_name]:
                        bits = offset & 0xFFFFFF if bitfields else offset
                        found.setdefault((struct_name, member), bits // 8)
    except (struct.error, ValueError, UnicodeDecodeError):
        raise BtfUnavailable("the kernel's type information is malformed") from None
    return found


def cached_member_offsets(wanted: dict[str, tuple[str, ...]], cache_dir: Path | None = None,
                          btf: Path | None = None) -> dict[tuple[str, str], int]:
    """member_offsets, remembered in cache_dir (default: CACHE_DIR) for this boot (a stale or
    foreign file is ignored)."""
    key = ",".join(f"{s}.{m}" for s in sorted(wanted) for m in sorted(wanted[s]))
    found = _cached(cache_dir, key, lambda: {f"{s}.{m}": v for (s, m), v in member_offsets(wanted, btf).items()})
    return {tuple(k.split(".", 1)): v for k, v in found.items()}


def cached_field_offsets(fields: dict[str, tuple[str, str]]) -> dict[str, int]:
    """{field name: (struct, member)} -> {field name: byte offset}, remembered for this boot:
    a hook's layout, named as its struct in bpf/cicd_audit.h names them."""
    wanted: dict[str, tuple[str, ...]] = {}
    for struct_name, member in fields.values():
        wanted[struct_name] = wanted.get(struct_name, ()) + (member,)
    offsets = cached_member_offsets(wanted)
    return {name: offsets[key] for name, key in fields.items()}


def cached_function_ids(wanted: tuple[str, ...], cache_dir: Path | None = None,
                        btf: Path | None = None) -> dict[str, int]:
    """function_ids, remembered as cached_member_offsets remembers offsets."""
    return _cached(cache_dir, "functions " + ",".join(sorted(wanted)), lambda: function_ids(wanted, btf))


def _cached(cache_dir: Path | None, what: str, compute) -> dict[str, int]:
    """compute()'s {name: number}, kept in one file with this boot's other answers."""
    boot = _boot_key()
    path = (cache_dir or CACHE_DIR) / CACHE_FILE
    answers = _answers(path, boot)
    if what not in answers:
        answers[what] = compute()
        _store(path, {"boot": boot, "answers": answers})
    return answers[what]


def _answers(path: Path, boot: str) -> dict[str, dict[str, int]]:
    """What the file holds for this boot ({} if it is missing, stale, foreign or unreadable)."""
    try:
        st = path.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return {}
        entry = json.loads(path.read_text())
        if entry.get("boot") != boot:
            return {}
        return {str(what): {str(k): int(v) for k, v in found.items()} for what, found in entry["answers"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _boot_key() -> str:
    try:
        boot = BOOT_ID.read_text().strip()
    except OSError:
        boot = ""
    return f"{boot} {os.uname().release}"


def _store(path: Path, entries: dict) -> None:
    """Written atomically; a cache that cannot be written costs only the next start 0.06 s."""
    body = json.dumps(entries)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".offsets-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
