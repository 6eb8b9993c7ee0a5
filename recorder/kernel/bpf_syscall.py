"""The few bpf(2) commands the recorder needs, through ctypes: no bcc, no libbpf.

Creating maps (with the minimal BTF socket storage needs), loading programs,
the map element commands, and attaching:
BPF links (tcx on an interface, cgroup hooks), pinning them in a bpffs, and
querying what is attached. Attribute layouts follow union bpf_attr in
include/uapi/linux/bpf.h; each command is passed only the bytes it uses, so
the kernel zero-fills the rest.

Values newer than the distribution's header (tcx, kernel 6.6) were checked
against the running kernel's BTF (enum bpf_attach_type in /sys/kernel/btf/vmlinux).

Errors are BpfError (an OSError with the command's name), and a program the
verifier refuses is a VerifierError carrying the first errno, the verifier's
last lines and, where the log shows one, the kernel feature that is missing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import sys
from functools import lru_cache
from typing import NamedTuple

from cicd_audit.recorder.kernel import verifier_log

SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351}.get(os.uname().machine, 321)

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_BTF_LOAD = 18
BPF_LINK_CREATE = 28
BPF_LINK_DETACH = 34
BPF_MAP_LOOKUP_BATCH = 24           # kernel 5.6

# enum bpf_map_type (only those the program declares)
MAP_HASH = 1
MAP_ARRAY = 2
MAP_PROG_ARRAY = 3
MAP_PERCPU_HASH = 5
MAP_PERCPU_ARRAY = 6
MAP_LRU_HASH = 9
MAP_LPM_TRIE = 11
MAP_SK_STORAGE = 24
MAP_RINGBUF = 27
PERCPU_MAP_TYPES = frozenset({MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, 10})   # 10: LRU_PERCPU_HASH

# enum bpf_prog_type
PROG_SCHED_CLS = 3
PROG_CGROUP_SKB = 8
PROG_SOCK_OPS = 13
PROG_RAW_TRACEPOINT = 17
PROG_CGROUP_SOCK_ADDR = 18
PROG_TRACING = 26

# enum bpf_attach_type
ATTACH_CGROUP_INET_EGRESS = 1
ATTACH_CGROUP_SOCK_OPS = 3
ATTACH_CGROUP_INET4_CONNECT = 10
ATTACH_CGROUP_INET6_CONNECT = 11
ATTACH_CGROUP_UDP4_SENDMSG = 14
ATTACH_CGROUP_UDP6_SENDMSG = 15
ATTACH_CGROUP_UDP4_RECVMSG = 19
ATTACH_CGROUP_UDP6_RECVMSG = 20
ATTACH_TRACE_FENTRY = 24
ATTACH_TCX_INGRESS = 46             # kernel 6.6
ATTACH_TCX_EGRESS = 47

# instruction encoding
BPF_LD_IMM64 = 0x18             # BPF_LD | BPF_DW | BPF_IMM
BPF_PSEUDO_MAP_FD = 1
INSN_SIZE = 8

ENOTSUPP = 524                  # the kernel-internal "not supported" some bpf() paths return

OBJ_NAME_LEN = 16
# Verifier log levels (include/linux/bpf_verifier.h): LEVEL1 traces every state
# it walks; STATS alone prints only the verdict's messages and the counts.
BPF_LOG_LEVEL1 = 1
BPF_LOG_STATS = 4
VERIFIER_LOG_BYTES = 4 << 20
STATS_LOG_BYTES = 64 << 10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf() command failed; str() names the command and the reason."""


class VerifierError(BpfError):
    """BPF_PROG_LOAD refused the program.

    errno is the first load's (the log-less one: the log retries can only add
    ENOSPC for a log that did not fit); .log is the verifier's complete log,
    or its messages and counts alone where the full trace did not fit;
    .explanation the missing kernel feature and what to do, when known.
    """

    def __init__(self, err: int, name: str, log: str):
        self.program = name
        self.log = log
        self.last_lines = verifier_log.last_lines(log)
        self.explanation = verifier_log.explain(log, err)
        text = f"the verifier refused {name}: {errno.errorcode.get(err, err)} ({os.strerror(err)})"
        if self.last_lines:
            text += "; its last lines:\n" + "\n".join(f"    {line}" for line in self.last_lines)
        if self.explanation:
            text += (f"\n  this kernel ({os.uname().release}) lacks {self.explanation.feature}"
                     f"\n  what to do: {self.explanation.action}")
        super().__init__(err, text)


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * OBJ_NAME_LEN),
                ("map_ifindex", ctypes.c_uint32), ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32)]


class _BtfLoadAttr(ctypes.Structure):
    _fields_ = [("btf", ctypes.c_uint64), ("btf_log_buf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32),
                ("btf_log_size", ctypes.c_uint32), ("btf_log_level", ctypes.c_uint32)]


class _MapElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _BatchAttr(ctypes.Structure):        # BPF_MAP_LOOKUP_BATCH
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64), ("keys", ctypes.c_uint64),
                ("values", ctypes.c_uint64), ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * OBJ_NAME_LEN), ("prog_ifindex", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32), ("prog_btf_fd", ctypes.c_uint32),
                ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64),
                ("func_info_cnt", ctypes.c_uint32), ("line_info_rec_size", ctypes.c_uint32),
                ("line_info", ctypes.c_uint64), ("line_info_cnt", ctypes.c_uint32),
                ("attach_btf_id", ctypes.c_uint32)]      # a tracing program's target (5.5+)


class _ObjAttr(ctypes.Structure):          # BPF_OBJ_PIN, BPF_OBJ_GET
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


class _LinkCreateAttr(ctypes.Structure):   # target is a cgroup fd or, for tcx, an ifindex
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("flags", ctypes.c_uint32)]


class _RawTracepointAttr(ctypes.Structure):   # BPF_RAW_TRACEPOINT_OPEN
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32)]


class _ProgQueryAttr(ctypes.Structure):    # target as for BPF_LINK_CREATE
    # The whole query layout, revision included: for tcx (bpf_mprog_query) the kernel
    # writes revision back, 56 bytes in, whatever size it was given; a shorter struct
    # lets it write past the end of this one.
    _fields_ = [("target", ctypes.c_uint32), ("attach_type", ctypes.c_uint32), ("query_flags", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32), ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("prog_attach_flags", ctypes.c_uint64), ("link_ids", ctypes.c_uint64),
                ("link_attach_flags", ctypes.c_uint64), ("revision", ctypes.c_uint64)]


class _IdAttr(ctypes.Structure):           # BPF_PROG_GET_FD_BY_ID; BPF_LINK_DETACH uses only the first field
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):         # BPF_OBJ_GET_INFO_BY_FD
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _ProgInfo(ctypes.Structure):         # the head of struct bpf_prog_info, up to its name
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
                ("name", ctypes.c_char * OBJ_NAME_LEN)]


class ProgInfo(NamedTuple):
    id: int
    type: int
    name: str


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    return _libc.syscall(SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))


def _bpf_checked(cmd: int, attr: ctypes.Structure, what: str) -> int:
    """Run a command; on EPERM from a memlock limit (kernels before 5.11), lift it once and retry."""
    rc = _bpf(cmd, attr)
    if rc < 0 and ctypes.get_errno() == errno.EPERM and _raise_memlock_limit():
        rc = _bpf(cmd, attr)
    if rc < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"{what}: {os.strerror(err)}")
    return rc


@lru_cache(maxsize=1)
def _raise_memlock_limit() -> bool:
    """What bcc and libbpf do too: before memcg accounting, BPF memory counted against RLIMIT_MEMLOCK."""
    try:
        if resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] == resource.RLIM_INFINITY:
            return False
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        return True
    except (ValueError, OSError):
        return False


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0,
               name: str = "") -> int:
    """A new map; returns its fd (the caller closes it). Socket storage gets the BTF it requires."""
    attr = _MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                          max_entries=max_entries, map_flags=flags,
                          map_name=name.encode()[:OBJ_NAME_LEN - 1])
    if map_type != MAP_SK_STORAGE:
        return _bpf_checked(BPF_MAP_CREATE, attr, f"creating map {name or map_type}")
    attr.btf_fd = btf_load(storage_btf(value_size))
    attr.btf_key_type_id, attr.btf_value_type_id = STORAGE_BTF_KEY_ID, STORAGE_BTF_VALUE_ID
    try:
        return _bpf_checked(BPF_MAP_CREATE, attr, f"creating map {name or map_type}")
    finally:
        os.close(attr.btf_fd)           # the map keeps its own reference


# BTF (include/uapi/linux/btf.h, in the host's byte order), just enough for a socket
# storage map: the kernel requires its key to be described as a 32-bit int and its
# value as a type of value_size bytes (here: unsigned char[value_size]).
BTF_MAGIC = 0xEB9F
BTF_KIND_INT, BTF_KIND_ARRAY = 1, 3
BTF_INT_SIGNED = 1
STORAGE_BTF_KEY_ID, STORAGE_BTF_BYTE_ID, STORAGE_BTF_VALUE_ID = 1, 2, 3


def storage_btf(value_size: int) -> bytes:
    """A BTF blob with [1] int, [2] unsigned char, [3] unsigned char[value_size]."""
    strings = b"\0int\0unsigned char\0"
    types = b"".join([
        _btf_type(1, BTF_KIND_INT, 4) + _u32(BTF_INT_SIGNED << 24 | 32),
        _btf_type(5, BTF_KIND_INT, 1) + _u32(8),
        _btf_type(0, BTF_KIND_ARRAY, 0) + _u32(STORAGE_BTF_BYTE_ID) + _u32(STORAGE_BTF_KEY_ID) + _u32(value_size),
    ])
    header_len = 24
    header = (BTF_MAGIC.to_bytes(2, sys.byteorder) + bytes([1, 0]) + _u32(header_len)
              + _u32(0) + _u32(len(types)) + _u32(len(types)) + _u32(len(strings)))
    return header + types + strings


def _btf_type(name_off: int, kind: int, size: int) -> bytes:
    return _u32(name_off) + _u32(kind << 24) + _u32(size)


def _u32(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder)


def btf_load(blob: bytes) -> int:
    """Load BTF type information; returns its fd."""
    buf = ctypes.create_string_buffer(blob, len(blob))
    return _bpf_checked(BPF_BTF_LOAD, _BtfLoadAttr(btf=ctypes.addressof(buf), btf_size=len(blob)), "loading BTF")


def prog_load(name: str, insns: bytes, prog_type: int = PROG_SCHED_CLS, license: str = "GPL",
              kern_version: int = 0, expected_attach_type: int = 0, attach_btf_id: int = 0) -> int:
    """Load a program; returns its fd. Without a log first (fast); if refused, again with one.

    expected_attach_type is required by some types: a CGROUP_SOCK_ADDR program
    must name its hook (e.g. ATTACH_CGROUP_INET4_CONNECT) at load time, a
    TRACING one its kind (ATTACH_TRACE_FENTRY) and, as attach_btf_id, the
    kernel function it traces (its type id in the kernel's BTF).
    """
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // INSN_SIZE, insns=ctypes.addressof(code),
                         license=ctypes.addressof(lic), kern_version=kern_version,
                         prog_name=name.encode()[:OBJ_NAME_LEN - 1], expected_attach_type=expected_attach_type,
                         attach_btf_id=attach_btf_id)
    try:
        return _bpf_checked(BPF_PROG_LOAD, attr, f"loading {name}")
    except BpfError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES, errno.E2BIG, errno.ENOSPC, errno.EFAULT):
            raise
        first_errno = exc.errno
    fd, err, log = _load_with_log(attr, BPF_LOG_LEVEL1 | BPF_LOG_STATS, VERIFIER_LOG_BYTES)
    if fd < 0 and err == errno.ENOSPC and first_errno != errno.ENOSPC:
        # Before 6.4 a log that does not fit keeps its head and fails with ENOSPC
        # (6.4 keeps the tail instead): the trace can run to 20-80 MB. The
        # verdict's messages and counts alone fit in a few lines.
        fd, err, log = _load_with_log(attr, BPF_LOG_STATS, STATS_LOG_BYTES)
    if fd >= 0:                         # refused once, accepted with a log: take it
        return fd
    raise VerifierError(first_errno, name, log)


def _load_with_log(attr: _ProgLoadAttr, level: int, size: int) -> tuple[int, int, str]:
    """BPF_PROG_LOAD with a verifier log: (fd or -1, errno, the log's text)."""
    log = ctypes.create_string_buffer(size)
    attr.log_level, attr.log_size, attr.log_buf = level, size, ctypes.addressof(log)
    fd = _bpf(BPF_PROG_LOAD, attr)
    err = ctypes.get_errno() if fd < 0 else 0
    return fd, err, log.value.decode(errors="replace")


def verifier_stats(name: str, insns: bytes, prog_type: int = PROG_SCHED_CLS, license: str = "GPL",
                   expected_attach_type: int = 0, attach_btf_id: int = 0) -> str:
    """Load once with BPF_LOG_STATS and return its "processed N insns ..." line ("" if none).

    For measuring what the verifier walks (the benchmarks and the kernel matrix);
    the program is closed again. Raises VerifierError as prog_load does.
    """
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // INSN_SIZE, insns=ctypes.addressof(code),
                         license=ctypes.addressof(lic), prog_name=name.encode()[:OBJ_NAME_LEN - 1],
                         expected_attach_type=expected_attach_type, attach_btf_id=attach_btf_id)
    fd, err, log = _load_with_log(attr, BPF_LOG_STATS, STATS_LOG_BYTES)
    if fd < 0:
        raise VerifierError(err, name, log)
    os.close(fd)
    return next((line for line in log.splitlines() if line.startswith("processed ")), "")


def link_create(prog_fd: int, target: int, attach_type: int, flags: int = 0) -> int:
    """Attach a program through a BPF link; returns the link's fd.

    target is a cgroup directory's fd for the cgroup hooks, an interface index
    for tcx. The attachment lasts as long as the link: until its last fd is
    closed (also when the process is killed), unless it is pinned.
    """
    attr = _LinkCreateAttr(prog_fd=prog_fd, target=target, attach_type=attach_type, flags=flags)
    return _bpf_checked(BPF_LINK_CREATE, attr, f"creating a BPF link (attach type {attach_type})")


def raw_tracepoint_open(name: str | None, prog_fd: int) -> int:
    """Attach a RAW_TRACEPOINT program to the tracepoint called name (kernel 4.17+, no
    tracefs needed), or with name None a TRACING program to the function it was loaded
    for (5.5+); returns the fd that holds the attachment until it is closed."""
    tracepoint = ctypes.create_string_buffer(name.encode()) if name is not None else None
    attr = _RawTracepointAttr(name=ctypes.addressof(tracepoint) if tracepoint else 0, prog_fd=prog_fd)
    what = f"attaching to the tracepoint {name}" if name is not None else "attaching a tracing program"
    return _bpf_checked(BPF_RAW_TRACEPOINT_OPEN, attr, what)


def link_detach(link_fd: int) -> None:
    """Detach a link now, whoever else holds it or pins it; the link object stays, defunct."""
    _bpf_checked(BPF_LINK_DETACH, _IdAttr(id=link_fd), "detaching a BPF link")


def obj_pin(fd: int, path: str | os.PathLike) -> None:
    """Pin a map, program or link at path, in a bpffs: it then outlives every fd."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    _bpf_checked(BPF_OBJ_PIN, _ObjAttr(pathname=ctypes.addressof(name), bpf_fd=fd), f"pinning at {path}")


def obj_get(path: str | os.PathLike) -> int:
    """A new fd for the object pinned at path."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    return _bpf_checked(BPF_OBJ_GET, _ObjAttr(pathname=ctypes.addressof(name)), f"opening the pinned {path}")


def prog_query(target: int, attach_type: int) -> list[int]:
    """Ids of the programs attached at a hook, in the order they run.

    target as for link_create: a cgroup directory's fd, or an ifindex for tcx.
    Only programs attached to that cgroup itself, not those it inherits.
    """
    count = 16
    while True:
        ids = (ctypes.c_uint32 * count)()
        attr = _ProgQueryAttr(target=target, attach_type=attach_type, prog_ids=ctypes.addressof(ids),
                              prog_cnt=count)
        if _bpf(BPF_PROG_QUERY, attr) == 0:
            return list(ids[:attr.prog_cnt])
        err = ctypes.get_errno()
        if err != errno.ENOSPC:     # ENOSPC: more than count; prog_cnt says how many
            raise BpfError(err, f"querying attach type {attach_type} of {target}: {os.strerror(err)}")
        count = max(attr.prog_cnt, count * 2)


def prog_get_fd_by_id(prog_id: int) -> int:
    """A new fd for a loaded program, from its id (as prog_query gives)."""
    return _bpf_checked(BPF_PROG_GET_FD_BY_ID, _IdAttr(id=prog_id), f"opening program id {prog_id}")


def prog_info(prog_fd: int) -> ProgInfo:
    """The id, type and name of a loaded program."""
    info = _ProgInfo()
    _bpf_checked(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=prog_fd, info_len=ctypes.sizeof(info),
                                                   info=ctypes.addressof(info)), "reading program info")
    return ProgInfo(info.id, info.type, info.name.decode(errors="replace"))


def prog_info_by_id(prog_id: int) -> ProgInfo:
    fd = prog_get_fd_by_id(prog_id)
    try:
        return prog_info(fd)
    finally:
        os.close(fd)


def patch_map_fds(insns: bytes, refs: list[tuple[int, int]]) -> bytes:
    """Set the imm of each (instruction index, map fd) pair; each must be a BPF_LD_IMM64 of a map fd."""
    code = bytearray(insns)
    for index, fd in refs:
        at = index * INSN_SIZE
        if at + 2 * INSN_SIZE > len(code) or code[at] != BPF_LD_IMM64 or code[at + 1] >> 4 != BPF_PSEUDO_MAP_FD:
            raise ValueError(f"instruction {index} is not a map reference")
        code[at + 4:at + 8] = fd.to_bytes(4, "little", signed=True)
    return bytes(code)


def map_fd_references(insns: bytes) -> list[tuple[int, int]]:
    """(instruction index, map fd) of every BPF_LD_IMM64 that loads a map by fd."""
    refs, index, count = [], 0, len(insns) // INSN_SIZE
    while index < count:
        at = index * INSN_SIZE
        if insns[at] == BPF_LD_IMM64:
            if insns[at + 1] >> 4 == BPF_PSEUDO_MAP_FD:
                refs.append((index, int.from_bytes(insns[at + 4:at + 8], "little", signed=True)))
            index += 2                  # the second half of a 16-byte instruction
        else:
            index += 1
    return refs


def _elem(map_fd: int, key, value, flags: int = 0) -> _MapElemAttr:
    return _MapElemAttr(map_fd=map_fd, key=0 if key is None else ctypes.addressof(key),
                        value=0 if value is None else ctypes.addressof(value), flags=flags)


def _found(cmd: int, attr, what: str) -> bool:
    """Run a map command: True if it succeeded, False for ENOENT (no such key), BpfError otherwise."""
    if _bpf(cmd, attr) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.ENOENT:
        return False
    raise BpfError(err, f"{what}: {os.strerror(err)}")


def map_lookup(map_fd: int, key: ctypes.Array | ctypes.Structure, value: ctypes.Array | ctypes.Structure) -> bool:
    """Fill value for key; False if the key is absent."""
    return _found(BPF_MAP_LOOKUP_ELEM, _elem(map_fd, key, value), "map lookup")


def map_update(map_fd: int, key, value, flags: int = 0) -> None:
    _bpf_checked(BPF_MAP_UPDATE_ELEM, _elem(map_fd, key, value, flags), "map update")


def map_delete(map_fd: int, key) -> bool:
    """Remove key; False if it was absent."""
    return _found(BPF_MAP_DELETE_ELEM, _elem(map_fd, key, None), "map delete")


def map_get_next_key(map_fd: int, key, next_key) -> bool:
    """Write the key after key (the first one when key is None) into next_key; False at the end."""
    return _found(BPF_MAP_GET_NEXT_KEY, _elem(map_fd, key, next_key), "map get_next_key")


def map_keys_batched(map_fd: int, key_size: int, value_size: int, per_call: int = 1024) -> list[bytes] | None:
    """Every key of a hash map through BPF_MAP_LOOKUP_BATCH: one syscall per per_call entries instead of
    one per key. None where the kernel (before 5.6) or the map type has no batch lookup: walk the keys
    with map_get_next_key instead. Keys added or removed meanwhile may or may not be listed, as with a
    walk."""
    # A hash map's token is its bucket (u32); other maps' generic batch uses a key as its token:
    # room for either, or the kernel writes past the buffer.
    token_size = max(8, key_size)
    token_in, token_out = ctypes.create_string_buffer(token_size), ctypes.create_string_buffer(token_size)
    keys, count = [], per_call
    first = True
    while True:
        key_buf = ctypes.create_string_buffer(key_size * count)
        value_buf = ctypes.create_string_buffer(value_size * count)
        attr = _BatchAttr(in_batch=0 if first else ctypes.addressof(token_in), out_batch=ctypes.addressof(token_out),
                          keys=ctypes.addressof(key_buf), values=ctypes.addressof(value_buf), count=count,
                          map_fd=map_fd)
        rc = _bpf(BPF_MAP_LOOKUP_BATCH, attr)
        err = 0 if rc == 0 else ctypes.get_errno()
        if err in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP) and first and not keys:
            return None
        if err == errno.ENOSPC and attr.count == 0:
            count *= 2                  # one bucket holds more entries than fit: ask for more at once
            continue
        if err not in (0, errno.ENOENT):
            raise BpfError(err, f"map lookup batch: {os.strerror(err)}")
        raw = key_buf.raw
        keys += [raw[i * key_size:(i + 1) * key_size] for i in range(attr.count)]
        if err == errno.ENOENT:         # the last batch
            return keys
        ctypes.memmove(token_in, token_out, token_size)
        first = False


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """How many values a per-CPU map holds per key: the kernel's possible CPUs (e.g. "0-1" or "0,2-3")."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def percpu_value_size(value_size: int) -> int:
    """Bytes one per-CPU lookup returns: every possible CPU's value, each rounded up to 8 bytes."""
    return ((value_size + 7) & ~7) * possible_cpus()
