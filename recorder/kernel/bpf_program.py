"""Compile bpf/capture.bpf.c with bcc, cache the result, and load it. The only module that imports bcc.

bcc is the compiler only: after it compiles, the instructions and map
definitions go into a per-machine cache (program_cache), and the program is
always loaded from those with plain bpf() syscalls (bpf_syscall), its maps
read through them and its ring buffer through an mmap (ringbuf). With a warm
cache, bcc (and the clang/LLVM inside it) is not even imported: start-up is
~0.1 s of loading instead of 1.5-4 s of compiling, and the process stays small.

A cache entry that cannot be used (damaged, refused by the verifier) is
recompiled and replaced; the cache never makes a start fail.

bcc's own failures are bare Exceptions with the detail on stderr; here they
become EnvironmentProblem errors whose message says what to install or do.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import os
import platform
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.kernel import abi, bpf_syscall, kernel_headers, program_cache, zeek_defaults
from cicd_audit.recorder.kernel.backlog import TAKE_EVERY_S, EventBacklog
from cicd_audit.recorder.kernel.conn_keys import ConnKeys
from cicd_audit.recorder.kernel.program_cache import CacheError, CompiledProgram, FunctionSpec, MapSpec
from cicd_audit.recorder.kernel.ringbuf import RingBuffer

# Functions verified at once when the program loads (load_into_kernel).
LOAD_THREADS = 4

# Tail-call stages (enum ca_stage) and the function each one runs.
STAGES = {abi.Stage.PACKET: "ca_packet", abi.Stage.TCP: "ca_tcp", abi.Stage.EGRESS: "ca_egress",
          abi.Stage.DNS_POLICY: "ca_dns_policy", abi.Stage.DNS_NAME: "ca_dns_name",
          abi.Stage.DNS_LEARN: "ca_dns_learn", abi.Stage.DECAP: "ca_decap", abi.Stage.SWEEP: "ca_sweep"}
_IP_PROTO = {"tcp": 6, "udp": 17}
FUNCTIONS = ("ca_packet", "ca_sweep", "ca_tcp", "ca_decap")   # in every variant

# Each function's program type and, for cgroup hooks, the hook it is loaded for.
_SCHED_CLS = (bpf_syscall.PROG_SCHED_CLS, 0)
FUNCTION_TYPES = {
    "ca_packet": _SCHED_CLS, "ca_egress": _SCHED_CLS, "ca_tcp": _SCHED_CLS, "ca_decap": _SCHED_CLS,
    "ca_sweep": _SCHED_CLS,
    "ca_dns_policy": _SCHED_CLS, "ca_dns_name": _SCHED_CLS, "ca_dns_learn": _SCHED_CLS,
    "ca_connect4": (bpf_syscall.PROG_CGROUP_SOCK_ADDR, bpf_syscall.ATTACH_CGROUP_INET4_CONNECT),
    "ca_connect6": (bpf_syscall.PROG_CGROUP_SOCK_ADDR, bpf_syscall.ATTACH_CGROUP_INET6_CONNECT),
    "ca_sendmsg4": (bpf_syscall.PROG_CGROUP_SOCK_ADDR, bpf_syscall.ATTACH_CGROUP_UDP4_SENDMSG),
    "ca_sendmsg6": (bpf_syscall.PROG_CGROUP_SOCK_ADDR, bpf_syscall.ATTACH_CGROUP_UDP6_SENDMSG),
    "ca_recvmsg4": (bpf_syscall.PROG_CGROUP_SOCK_ADDR, bpf_syscall.ATTACH_CGROUP_UDP4_RECVMSG),
    "ca_recvmsg6": (bpf_syscall.PROG_CGROUP_SOCK_ADDR, bpf_syscall.ATTACH_CGROUP_UDP6_RECVMSG),
    "ca_sockops": (bpf_syscall.PROG_SOCK_OPS, bpf_syscall.ATTACH_CGROUP_SOCK_OPS),
    "ca_udp_egress": (bpf_syscall.PROG_CGROUP_SKB, bpf_syscall.ATTACH_CGROUP_INET_EGRESS),
    "ca_exec": (bpf_syscall.PROG_RAW_TRACEPOINT, 0),
    "ca_fork": (bpf_syscall.PROG_RAW_TRACEPOINT, 0),
    # Loaded when attached, once per traced function: the kernel needs that function at load time.
    "ca_udp_connect": (bpf_syscall.PROG_TRACING, bpf_syscall.ATTACH_TRACE_FENTRY),
}
CGROUP_HOOKS = ("ca_connect4", "ca_connect6", "ca_sendmsg4", "ca_sendmsg6", "ca_sockops", "ca_udp_egress",
                "ca_recvmsg4", "ca_recvmsg6")          # the last two: blocking mode only
# The exec hooks (bpf/exec_paths.h, with attribution) and the tracepoint each one is attached to.
EXEC_HOOKS = {"ca_exec": "sched_process_exec", "ca_fork": "sched_process_fork"}

EXEC_PATH_CUT_MARK = "...[truncated]"     # after an executable's path longer than the kernel keeps

# Where Debian/Ubuntu's python3-bpfcc installs bcc, for interpreters that do
# not see the system site-packages (a plain venv, a pyenv Python).
SYSTEM_BCC_PATHS = ("/usr/lib/python3/dist-packages",)

INSTALL_HINT = (
    "install the OS package: apt-get install python3-bpfcc "
    "(bcc on PyPI is an unrelated project), and kernel headers: "
    "apt-get install linux-headers-$(uname -r) (or linux-headers-amd64 when none match)"
)


@dataclass(frozen=True)
class ProgramSettings:
    """Everything that changes the compiled program."""

    pcap_mode: bool = False
    validate_checksums: bool = False
    attribution: bool = False     # cgroup socket hooks name each connection's process (live only)
    block: bool = False           # enforce the allowlist (live only)
    max_conns: int = 262144
    tcp_block_lists: int = 4096   # TCP directions holding data above several holes at once (bpf/tcp_blocks.h)
    ringbuf_bytes: int = 16 * 1024 * 1024
    weird_send_max: int = 1000
    timers: dict = field(default_factory=lambda: dict(zeek_defaults.TIMER_DEFINES))

    def cflags(self, include_dir: Path) -> list[str]:
        pages = max(1, self.ringbuf_bytes // 4096)
        if pages & (pages - 1):
            raise ValueError("ring buffer size must be a power-of-two number of pages")
        flags = [
            f"-I{include_dir}",
            "-fno-jump-tables",   # bcc cannot load switch lookup tables from .rodata
            f"-DCA_PCAP_MODE={int(self.pcap_mode)}",
            f"-DCA_VALIDATE_CHECKSUMS={int(self.validate_checksums)}",
            f"-DCA_ATTRIBUTION={int(self.attribution)}",
            f"-DCA_BLOCK={int(self.block)}",
            f"-DCA_MAX_CONNS={self.max_conns}",
            f"-DCA_TCP_BLOCK_LISTS={self.tcp_block_lists}",
            f"-DCA_RINGBUF_PAGES={pages}",
            f"-DCA_WEIRD_SEND_MAX={self.weird_send_max}",
        ]
        flags += [f"-D{name}={int(seconds * 1e9)}ULL" for name, seconds in self.timers.items()]
        return flags


# The variants `cicd-audit prepare` compiles ahead of time: live, and pcap with and without -C.
PREPARED_SETTINGS = {
    "live": ProgramSettings(pcap_mode=False, attribution=True),
    "live --block": ProgramSettings(pcap_mode=False, attribution=True, block=True),
    "pcap": ProgramSettings(pcap_mode=True, validate_checksums=True),
    "pcap -C": ProgramSettings(pcap_mode=True, validate_checksums=False),
}


def import_bcc():
    """Import bcc, looking in the system's dist-packages if this interpreter lacks it."""
    try:
        import bcc  # noqa: F401
    except ImportError:
        _add_system_bcc_path()
        try:
            import bcc  # noqa: F401
        except ImportError as exc:
            raise EnvironmentProblem(f"bcc is not installed: {INSTALL_HINT}") from exc
    return sys.modules["bcc"]


def _add_system_bcc_path() -> None:
    for path in SYSTEM_BCC_PATHS:
        if os.path.isdir(os.path.join(path, "bcc")) and path not in sys.path:
            sys.path.append(path)


def bcc_version() -> str:
    """bcc's version, read from its version.py without importing bcc (and loading LLVM)."""
    if "bcc" in sys.modules:
        return str(getattr(sys.modules["bcc"], "__version__", "unknown"))
    try:
        spec = importlib.util.find_spec("bcc")
    except (ImportError, ValueError):
        spec = None
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    dirs += [os.path.join(p, "bcc") for p in SYSTEM_BCC_PATHS]
    for d in dirs:
        try:
            text = Path(d, "version.py").read_text()
        except OSError:
            continue
        match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
        if match:
            return match.group(1)
    return "not-installed"


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("loading BPF programs needs root: run with sudo (or as root in the CI job)")


def source_dir() -> Path:
    return Path(str(resources.files("cicd_audit.bpf")))


def program_key(settings: ProgramSettings, headers: kernel_headers.HeaderChoice,
                src: Path | None = None) -> str:
    """The cache key of this machine's compile of these settings."""
    src = src or source_dir()
    return program_cache.cache_key(src, settings.cflags(src), platform.release(),
                                   f"{headers.source} {headers.description}", bcc_version())


# -- compiling (bcc) ---------------------------------------------------------------

def compile_program(settings: ProgramSettings, headers: kernel_headers.HeaderChoice,
                    src: Path | None = None) -> CompiledProgram:
    """Compile with bcc and return what loading needs, without loading anything.

    bcc creates the maps while compiling; their fds are how its instructions
    refer to them, so each BPF_LD_IMM64 of a map fd is recorded by map name.
    The bcc module (and its maps) is destroyed before returning.
    """
    bcc = import_bcc()
    src = src or source_dir()
    try:
        with _kernel_source(headers):
            module = bcc.BPF(src_file=str(src / "capture.bpf.c").encode(), cflags=settings.cflags(src))
    except Exception as exc:  # bcc raises bare Exception; details went to stderr
        raise EnvironmentProblem(
            f"could not compile the BPF program ({exc}); kernel headers used: {headers.description}. "
            f"If headers are missing: {INSTALL_HINT}"
        ) from exc
    try:
        return _extract(bcc, module)
    finally:
        module.cleanup()


@contextlib.contextmanager
def _kernel_source(headers: kernel_headers.HeaderChoice):
    """BCC_KERNEL_SOURCE for bcc's compile only: left set, it would reach every
    process started afterwards (a test run's recorders among them)."""
    previous = os.environ.get("BCC_KERNEL_SOURCE")
    if headers.source is not None:
        os.environ["BCC_KERNEL_SOURCE"] = str(headers.source)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("BCC_KERNEL_SOURCE", None)
        else:
            os.environ["BCC_KERNEL_SOURCE"] = previous


def _extract(bcc, module) -> CompiledProgram:
    lib = bcc.libbcc.lib
    for name, restype, argtypes in (
        ("bpf_num_tables", ctypes.c_ulonglong, [ctypes.c_void_p]),
        ("bpf_table_name", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_ulonglong]),
        ("bpf_table_key_size_id", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_ulonglong]),
        ("bpf_table_leaf_size_id", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_ulonglong]),
    ):
        getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
    mod = module.module
    maps, fd_to_map = [], {}
    for i in range(lib.bpf_num_tables(mod)):
        name = lib.bpf_table_name(mod, i)
        map_id = lib.bpf_table_id(mod, name)
        spec = MapSpec(name=name.decode(), type=lib.bpf_table_type_id(mod, map_id),
                       key_size=lib.bpf_table_key_size_id(mod, map_id),
                       value_size=lib.bpf_table_leaf_size_id(mod, map_id),
                       max_entries=lib.bpf_table_max_entries_id(mod, map_id),
                       flags=lib.bpf_table_flags_id(mod, map_id))
        maps.append(spec)
        fd_to_map[lib.bpf_table_fd(mod, name)] = spec.name
    functions = []
    for i in range(lib.bpf_num_functions(mod)):
        name = lib.bpf_function_name(mod, i)
        insns = module.dump_func(name)
        refs = []
        for index, fd in bpf_syscall.map_fd_references(insns):
            if fd not in fd_to_map:
                raise EnvironmentProblem(f"bcc compiled {name.decode()} with a reference to map fd {fd}, "
                                         "which is none of the program's maps")
            refs.append((index, fd_to_map[fd]))
        functions.append(FunctionSpec(name.decode(), insns, tuple(refs)))
    return CompiledProgram(tuple(maps), tuple(functions), lib.bpf_module_license(mod).decode(),
                           int(lib.bpf_module_kern_version(mod)), f"bcc {bcc_version()}")


# -- loading (bpf syscalls) -------------------------------------------------------

@dataclass
class LoadedFunction:
    name: str
    fd: int                     # -1 for a tracing program, loaded when it is attached
    insns: bytes = b""          # a tracing program's instructions, its maps filled in
    license: str = ""


class BpfMap:
    """One map by fd: enough of bcc's table interface for the recorder."""

    def __init__(self, spec: MapSpec, fd: int):
        self.spec = spec
        self.fd = self.map_fd = fd
        self.percpu = spec.type in bpf_syscall.PERCPU_MAP_TYPES
        self._value_bytes = (bpf_syscall.percpu_value_size(spec.value_size) if self.percpu
                             else spec.value_size)

    def _key(self, key) -> ctypes.Array:
        raw = key if isinstance(key, (bytes, bytearray)) else int(key).to_bytes(self.spec.key_size, "little")
        if len(raw) != self.spec.key_size:
            raise ValueError(f"{self.spec.name}: key of {len(raw)} bytes, expected {self.spec.key_size}")
        return (ctypes.c_ubyte * len(raw)).from_buffer_copy(raw)

    def lookup(self, key) -> bytes | None:
        """The value's bytes (per-CPU maps: every possible CPU's, each padded to 8 bytes), or None."""
        value = (ctypes.c_ubyte * self._value_bytes)()
        return bytes(value) if bpf_syscall.map_lookup(self.fd, self._key(key), value) else None

    def lookup_percpu_u64(self, key) -> list[int]:
        raw = self.lookup(key)
        if raw is None:
            return []
        step = (self.spec.value_size + 7) & ~7
        return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), step)]

    def update(self, key, value) -> None:
        raw = value if isinstance(value, (bytes, bytearray)) else int(value).to_bytes(self.spec.value_size, "little")
        if len(raw) != self._value_bytes:
            raise ValueError(f"{self.spec.name}: value of {len(raw)} bytes, expected {self._value_bytes}")
        bpf_syscall.map_update(self.fd, self._key(key), (ctypes.c_ubyte * len(raw)).from_buffer_copy(raw))

    def delete(self, key) -> bool:
        """Remove key (hash maps); False if it was absent."""
        return bpf_syscall.map_delete(self.fd, self._key(key))

    def keys(self, key_type=None) -> list[bytes]:
        """Every key, as raw bytes (key_type: a ctypes type of key_size bytes to walk with)."""
        if not self.percpu:
            batched = bpf_syscall.map_keys_batched(self.fd, self.spec.key_size, self.spec.value_size)
            if batched is not None:
                return batched
        key_type = key_type or (ctypes.c_ubyte * self.spec.key_size)
        keys, key, next_key = [], key_type(), key_type()
        previous = None
        while bpf_syscall.map_get_next_key(self.fd, previous, next_key):
            keys.append(bytes(next_key))
            ctypes.memmove(ctypes.byref(key), ctypes.byref(next_key), ctypes.sizeof(key))
            previous = key
        return keys

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = self.map_fd = -1


def load_into_kernel(program: CompiledProgram) -> tuple[dict[str, BpfMap], dict[str, LoadedFunction]]:
    """Create the maps, point the instructions at them, load every function.

    The verifier is a large part of a start (about 0.2 s for the pcap program
    here), and it checks each function on its own: as root the kernel
    verifies several loads at once, so the functions load on up to
    LOAD_THREADS threads.

    Raises bpf_syscall.BpfError (VerifierError with the log's tail) and closes
    whatever it created; never leaves a half-loaded program behind. Of several
    refusals, the one of the function listed first is raised.
    """
    maps: dict[str, BpfMap] = {}
    functions: dict[str, LoadedFunction] = {}
    try:
        for spec in program.maps:
            maps[spec.name] = BpfMap(spec, bpf_syscall.map_create(
                spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.flags, spec.name))
        to_load = []
        for f in program.functions:
            insns = bpf_syscall.patch_map_fds(f.insns, [(i, maps[name].fd) for i, name in f.map_refs])
            prog_type, attach_type = FUNCTION_TYPES.get(f.name, _SCHED_CLS)
            if prog_type == bpf_syscall.PROG_TRACING:
                functions[f.name] = LoadedFunction(f.name, -1, insns, program.license)
                continue
            to_load.append((f.name, insns, prog_type,
                            attach_type if prog_type != bpf_syscall.PROG_SOCK_OPS else 0))
        functions.update(_load_functions(to_load, program.license, program.kern_version))
        missing = [name for name in FUNCTIONS if name not in functions]
        if missing:
            raise bpf_syscall.BpfError(0, f"the program has no function {', '.join(missing)}")
    except BaseException:
        unload(maps, functions)
        raise
    return maps, functions


def _load_functions(to_load: list[tuple[str, bytes, int, int]], license: str,
                    kern_version: int) -> dict[str, LoadedFunction]:
    """BPF_PROG_LOAD each (name, insns, type, attach type) at once on a few threads;
    all loaded, or none (what did load is closed) and the first one's error raised."""
    def load(entry):
        name, insns, prog_type, attach_type = entry
        try:
            return bpf_syscall.prog_load(name, insns, prog_type, license, kern_version,
                                         expected_attach_type=attach_type)
        except Exception as exc:        # handed back: raised below, after the others finish
            return exc

    with ThreadPoolExecutor(max_workers=LOAD_THREADS) as pool:
        outcomes = list(pool.map(load, to_load))        # in to_load's order
    loaded = {name: LoadedFunction(name, fd) for (name, *_), fd in zip(to_load, outcomes) if isinstance(fd, int)}
    refused = [outcome for outcome in outcomes if not isinstance(outcome, int)]
    if refused:
        unload({}, loaded)
        raise refused[0]
    return loaded


def unload(maps: dict, functions: dict) -> None:
    """Close what load_into_kernel returned (each descriptor once)."""
    for fn in functions.values():
        if fn.fd >= 0:
            os.close(fn.fd)
            fn.fd = -1
    for m in maps.values():
        m.close()


@dataclass
class LoadReport:
    """How the program got loaded (for --verbose output, prepare and tests)."""

    key: str
    source: str                  # "prebuilt", "cache" or "compiled"
    seconds: float
    cache_problem: str | None = None     # why a cache entry was not used
    cache_path: Path | None = None       # where the compile was stored (None: not stored)


def _oldest_first(table, raw_keys: list[bytes]) -> list[bytes]:
    """A table's keys by their connection's first packet, then by key: one lookup each, so only for
    a drain (a connection gone meanwhile goes last; the drain does not find it)."""
    def made(raw: bytes) -> tuple[int, bytes]:
        value = table.lookup(raw)
        return (abi.Conn.from_buffer_copy(value).first_ns if value is not None else 2**64, raw)
    return sorted(raw_keys, key=made)


class CaptureProgram:
    """The loaded program: its two entry points, maps and ring buffer."""

    def __init__(self, settings: ProgramSettings, on_event: Callable[[int, int], None], *, use_cache: bool = True):
        require_root()
        started = time.monotonic()
        self.settings = settings
        prebuilt_problem = None
        loaded = None
        if use_cache:
            loaded, prebuilt_problem = _load_prebuilt(settings)
        if loaded is None:
            headers = kernel_headers.choose_headers()
            try:
                loaded = _load(settings, headers, program_key(settings, headers), use_cache)
            except EnvironmentProblem as exc:
                if prebuilt_problem:
                    raise EnvironmentProblem(f"{exc} (the prebuilt program: {prebuilt_problem})") from exc
                raise
        self.maps, functions, self.load_report = loaded
        self.load_report.seconds = time.monotonic() - started
        self._functions = functions
        try:
            self.packet_fn = functions["ca_packet"]
            self.sweep_fn = functions["ca_sweep"]
            self.tcp_fn = functions["ca_tcp"]
            # pcap input has no direction: ca_packet serves both there
            self.egress_fn = functions.get("ca_egress", self.packet_fn)
            for stage, name in STAGES.items():
                if name in functions:
                    self.maps["stages"].update(stage, functions[name].fd)
            # cgroup hook attach type -> program fd (attribution and blocking)
            self.cgroup_programs = {FUNCTION_TYPES[name][1]: functions[name].fd
                                    for name in CGROUP_HOOKS if name in functions}
            # tracepoint name -> program fd (attribution)
            self.exec_programs = {EXEC_HOOKS[name]: functions[name].fd for name in EXEC_HOOKS if name in functions}
            # connected UDP's per-connect hook, loaded by attach/udp_connect_hooks.py (attribution)
            self.udp_connect_fn = functions.get("ca_udp_connect")
            self.conns4, self.conns6 = self.maps["conns4"], self.maps["conns6"]
            self.stats_table = self.maps["stats"]
            self._saw_ipv6_conn = False
            self._fill_likely_server_ports()
            events = self.maps["events"]
            self._on_event = on_event
            self.backlog = EventBacklog(on_event)
            # A replay's sweeps take their keys from the ring's connection events (conn_keys.py).
            self.followed_keys = ConnKeys() if settings.pcap_mode else None
            self._take, self._handle_now = self.backlog.take, self.backlog.handle_now
            if self.followed_keys is not None:
                follow = self.followed_keys.follow
                self._take = lambda records: self.backlog.take(follow(records))
                self._handle_now = lambda records: self.backlog.handle_now(follow(records))
            self.untracked_conns = 0
            self.ring = RingBuffer(events.fd, events.spec.max_entries, self._take)
        except (KeyError, OSError) as exc:
            self.close()
            raise EnvironmentProblem(f"the kernel refused the BPF program's set-up: {exc}") from exc

    def _fill_likely_server_ports(self) -> None:
        self.set_likely_server_ports(zeek_defaults.DEFAULT_LIKELY_SERVER_PORTS)

    def set_likely_server_ports(self, ports) -> None:
        """Replace Zeek's likely_server_ports set: (port, "tcp"|"udp") pairs."""
        table = self.maps["likely_server_ports"]
        for raw_key in table.keys():
            table.delete(raw_key)
        for port, transport in ports:
            table.update(port | _IP_PROTO[transport] << 16, 1)

    def set_tunnel_max_depth(self, depth: int) -> None:
        """Zeek's Tunnel::max_depth, 0 to zeek_defaults.TUNNEL_MAX_DEPTH. 0 opens the outermost tunnel as
        1 does: Zeek checks the depth of a packet's tunnels, which the outermost packet has none of."""
        if not 0 <= depth <= zeek_defaults.TUNNEL_MAX_DEPTH:
            raise ValueError(f"Tunnel::max_depth {depth}: the program opens 0 to {zeek_defaults.TUNNEL_MAX_DEPTH}")
        self.maps["tunnel_max_depth"].update(0, max(depth, 1))

    def wake_on(self, fd: int) -> None:
        """poll() also returns when fd becomes readable."""
        self.ring.wake_on(fd)

    def poll(self, timeout_ms: int = 0, budget_s: float | None = None) -> None:
        """Hand on_event what the ring buffer holds (waiting up to timeout_ms for it when nothing is
        pending): all of it, or, with budget_s, what the handlers get through in about that time,
        after taking everything into the backlog so that the ring is free either way."""
        if budget_s is None:
            # What waited goes first; then the ring's records are handled as taken, pass after pass,
            # since handling can add events (a reassembled datagram runs through the program).
            self.backlog.handle_all()
            if timeout_ms:
                self.ring.poll(timeout_ms, self._handle_now)
            while self.ring.consume(self._handle_now):
                pass
            return
        if timeout_ms and not self.backlog.events:
            self.ring.poll(timeout_ms)
        else:
            self.ring.consume()
        # In slices, taking what arrived in between, so the ring never waits on the handlers.
        deadline = time.monotonic() + budget_s
        while not self.backlog.handle_for(min(TAKE_EVERY_S, budget_s)) and time.monotonic() < deadline:
            self.ring.consume()

    def take_events(self) -> None:
        """Empty the ring buffer into the backlog without handling anything (between sweep batches)."""
        self.ring.consume()

    def conn_keys(self, listed: bool = False, due_by: int | None = None) -> tuple[list[bytes], list[bytes]]:
        """Keys of every live connection, as raw bytes of struct ca_conn_key: the IPv4 ones and the
        IPv6 ones. A replay takes them from the connection events (no walk of the tables) unless a
        start was lost, or `listed` asks for the tables themselves (the final drain: then any key the
        events did not give is counted in untracked_conns, a recorder bug). Listed keys come in the
        order their connections were made, so a drain writes its rows in one order: a replay's as
        its events gave them, as the sweeps' do; a live recording's by each connection's first
        packet. due_by (packet time, ns): a replay's followed keys leave out the connections that
        cannot have ended by then."""
        followed = self.followed_keys is not None and not self._conn_starts_lost()
        if followed and not listed:
            self.take_events()          # the starts of the connections made since the last look
            return self.followed_keys.keys(due_by)
        v4_raw = self.conns4.keys(abi.ConnKey4)
        v6_keys = self.conns6.keys(abi.ConnKey) if self._any_ipv6_conn() else []
        if listed and not followed:
            v4_raw, v6_keys = _oldest_first(self.conns4, v4_raw), _oldest_first(self.conns6, v6_keys)
        keys = ([abi.conn_key_from_v4(raw) for raw in v4_raw], v6_keys)
        if followed:
            self.take_events()
            self.untracked_conns += self.followed_keys.unknown(*keys)
            keys = self.followed_keys.ordered(*keys)
        return keys

    def _conn_starts_lost(self) -> bool:
        return sum(self.stats_table.lookup_percpu_u64(abi.Stat.RB_DROP_CONN_START.value)) > 0

    def _any_ipv6_conn(self) -> bool:
        """Whether an IPv6 connection was ever created. Listing a map walks all its buckets (about
        0.2 ms for conns6, empty or not); one counter read (5 us) spares that walk while there is none."""
        if not self._saw_ipv6_conn:
            self._saw_ipv6_conn = sum(self.stats_table.lookup_percpu_u64(abi.Stat.CONNS6_CREATED.value)) > 0
        return self._saw_ipv6_conn

    def conn_keys_where(self, keep: Callable[[abi.Conn], bool]) -> tuple[list[bytes], list[bytes]]:
        """conn_keys() of the connections whose state keep() accepts (one lookup each)."""
        def kept(table, raw: bytes) -> bool:
            value = table.lookup(raw)
            return value is not None and keep(abi.Conn.from_buffer_copy(value))
        return ([abi.conn_key_from_v4(raw) for raw in self.conns4.keys(abi.ConnKey4) if kept(self.conns4, raw)],
                [raw for raw in self.conns6.keys(abi.ConnKey) if kept(self.conns6, raw)])

    def exec_path(self, tgid: int) -> str | None:
        """The binary the exec hooks saw ``tgid`` run, also after it exited (None: not seen)."""
        raw = self.maps["exec_paths"].lookup(tgid)
        if raw is None:
            return None
        entry = abi.ExecPath.from_buffer_copy(raw)
        # surrogateescape keeps non-UTF-8 bytes exact; the log writer escapes them as \xHH.
        path = entry.path[:entry.len].decode("utf-8", "surrogateescape")
        return path + EXEC_PATH_CUT_MARK if entry.flags & abi.EXEC_PATH_CUT else path

    def stats(self) -> dict[str, int]:
        totals = {}
        for stat in abi.Stat:
            totals[abi.stat_key(stat)] = sum(self.stats_table.lookup_percpu_u64(stat.value))
        return totals

    def close(self) -> None:
        ring = getattr(self, "ring", None)
        if ring is not None:
            ring.close()
        unload(getattr(self, "maps", {}), getattr(self, "_functions", {}))


def _load_prebuilt(settings: ProgramSettings, directories: list[Path] | None = None):
    """((maps, functions, report), None) from a prebuilt program for these settings, or (None, why not)
    when there is none or this kernel refuses it (the caller compiles then). Needs neither bcc nor headers."""
    src = source_dir()
    key = program_cache.portable_key(src, settings.cflags(src))
    problem = None
    for directory in directories or program_cache.prebuilt_dirs():
        try:
            compiled = program_cache.load(key, directory)
            if compiled is None:
                continue
            maps, functions = load_into_kernel(compiled)
        except (CacheError, bpf_syscall.BpfError) as exc:
            problem = f"{program_cache.entry_path(key, directory)}: {exc}"
            continue
        return (maps, functions, LoadReport(key, "prebuilt", 0.0, cache_path=program_cache.entry_path(key, directory))
                ), None
    return None, problem


def _load(settings: ProgramSettings, headers: kernel_headers.HeaderChoice, key: str, use_cache: bool):
    """(maps, functions, report): from the cache if it has a loadable entry, else compiled and cached."""
    problem = None
    if use_cache:
        try:
            cached = program_cache.load(key)
            if cached is not None:
                maps, functions = load_into_kernel(cached)
                return maps, functions, LoadReport(key, "cache", 0.0)
        except CacheError as exc:
            problem = str(exc)
            program_cache.remove(key)
        except bpf_syscall.BpfError as exc:     # e.g. refused by this kernel: the compile replaces it
            problem = str(exc)
    compiled = compile_program(settings, headers)
    try:
        maps, functions = load_into_kernel(compiled)
    except bpf_syscall.BpfError as exc:
        raise EnvironmentProblem(refusal_message(settings, exc)) from exc
    path = None
    try:
        if program_key(settings, headers) == key:   # else the sources changed while bcc read them
            path = program_cache.store(key, compiled)
    except OSError as exc:   # a read-only /var/cache costs start-up time, nothing else
        problem = (problem + "; " if problem else "") + f"could not store the compiled program: {exc}"
    return maps, functions, LoadReport(key, "compiled", 0.0, problem, path)


def variant_label(settings: ProgramSettings) -> str:
    """The program variant in the words of the command line, for messages."""
    return ("record --pcap" if settings.pcap_mode else "record") + (" --block" if settings.block else "")


def refusal_message(settings: ProgramSettings, exc: bpf_syscall.BpfError) -> str:
    """One message for a program the kernel refused: which variant, the first errno, the
    verifier's last lines, the missing feature and what to do (VerifierError carries those)."""
    text = f"the kernel ({platform.release()}) refused the BPF program of `{variant_label(settings)}`: {exc}"
    if exc.errno == errno.EPERM and not isinstance(exc, bpf_syscall.VerifierError):
        text += " (needs root with CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)"
    return text


def prepare(variants: dict | None = None, force: bool = False,
            prebuilt: Path | None = None) -> list[tuple[str, LoadReport]]:
    """Compile (unless cached) and test-load each variant: `cicd-audit prepare`, run at install time.

    prebuilt: also write each variant's bytecode there under its portable key
    (program_cache.portable_key): when the package or image is built, for
    runners without clang or kernel headers."""
    require_root()
    results = []
    for label, settings in (variants or PREPARED_SETTINGS).items():
        if force:
            program_cache.remove(program_key(settings, kernel_headers.choose_headers()))
        if prebuilt is not None:
            src = source_dir()
            program_cache.store(program_cache.portable_key(src, settings.cflags(src)),
                                compile_program(settings, kernel_headers.choose_headers()), prebuilt)
            started = time.monotonic()
            loaded, problem = _load_prebuilt(settings, [prebuilt])      # it loads from there
            if loaded is None:
                raise EnvironmentProblem(f"{label}: the prebuilt program does not load: {problem}")
            maps, functions, report = loaded
            report.seconds = time.monotonic() - started
            unload(maps, functions)
            results.append((label, report))
            continue
        program = CaptureProgram(settings, lambda data, size: None)
        try:
            results.append((label, program.load_report))
        finally:
            program.close()
    return results

