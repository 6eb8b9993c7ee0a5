"""A cache of compiled BPF programs, so the recorder starts without running clang.

bcc compiles bpf/capture.bpf.c in 1.5-4 s; loading the result takes ~0.1 s.
After a compile we keep what the kernel needs to load it again: each
function's instructions, every map's definition, and which instructions load
which map (BPF_LD_IMM64 of a map fd, patched with the new fd at load time).

An entry is keyed by everything that changes the compiled code: the bytes of
every file in bpf/, the compiler flags (the settings), the kernel release,
the kernel headers bcc compiled against, and bcc's version. A prebuilt entry
(portable_key) is keyed by the sources and flags only: compiled once when the
package or image is built, it loads on any kernel, with no compiler at all. Entries live in
CACHE_DIR/programs (/var/cache/cicd-audit/programs), one JSON file each,
written atomically (temporary file + rename); a file that is unreadable,
malformed, fails its digest, or is not owned by us with safe permissions is
ignored: the caller compiles again. Nothing here talks to the kernel.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from cicd_audit.recorder.kernel.kernel_headers import CACHE_DIR

FORMAT = 1
KEEP_ENTRIES = 24            # the newest entries kept: 3 variants x several source versions
# Programs compiled when the package or image was built (`cicd-audit prepare --prebuilt DIR`):
# a runner then needs neither clang (bcc) nor kernel headers.
PREBUILT_DIR = Path("/usr/lib/cicd-audit/programs")


class CacheError(ValueError):
    """A cache entry cannot be used (the caller compiles instead)."""


@dataclass(frozen=True)
class MapSpec:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    insns: bytes
    map_refs: tuple = ()         # ((instruction index, map name), ...)


@dataclass(frozen=True)
class CompiledProgram:
    maps: tuple                  # MapSpec, ...
    functions: tuple             # FunctionSpec, ...
    license: str = "GPL"
    kern_version: int = 0
    compiler: str = ""           # e.g. "bcc 0.26.0", for people reading the file

    def function(self, name: str) -> FunctionSpec:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)

    def map(self, name: str) -> MapSpec:
        for m in self.maps:
            if m.name == name:
                return m
        raise KeyError(name)

    # -- (de)serialisation -------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "license": self.license, "kern_version": self.kern_version, "compiler": self.compiler,
            "maps": [asdict(m) for m in self.maps],
            "functions": [{"name": f.name, "insns": base64.b64encode(f.insns).decode(),
                           "map_refs": [list(r) for r in f.map_refs]} for f in self.functions],
        }

    @classmethod
    def from_json(cls, data: dict) -> CompiledProgram:
        try:
            maps = tuple(MapSpec(**{k: m[k] for k in MapSpec.__dataclass_fields__}) for m in data["maps"])
            names = {m.name for m in maps}
            functions = []
            for f in data["functions"]:
                insns = base64.b64decode(f["insns"], validate=True)
                refs = tuple((int(i), str(n)) for i, n in f["map_refs"])
                if not insns or len(insns) % 8 or any(n not in names for _, n in refs):
                    raise CacheError(f"function {f['name']}: bad instructions or map references")
                functions.append(FunctionSpec(str(f["name"]), insns, refs))
            return cls(maps, tuple(functions), str(data["license"]), int(data["kern_version"]),
                       str(data.get("compiler", "")))
        except CacheError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"malformed cache entry ({exc.__class__.__name__}: {exc})") from exc


# -- the key ---------------------------------------------------------------------

def source_files(src_dir: Path) -> list[Path]:
    """Every file that can reach the compiler: the C sources and headers in bpf/ (what the package
    ships of it: the license texts beside them in the repository must not change the key)."""
    return sorted(p for p in Path(src_dir).iterdir() if p.is_file() and p.suffix in (".c", ".h"))


def cache_key(src_dir: Path, cflags: Iterable[str], kernel_release: str, headers: str, bcc_version: str) -> str:
    """sha256 over the sources (names and bytes), flags, kernel release, headers and bcc version.

    The source directory's own path is left out of the flags (-I<src>): the
    same sources installed elsewhere compile to the same program.
    """
    h = hashlib.sha256()
    h.update(f"cicd-audit program cache {FORMAT}\0".encode())
    for path in source_files(src_dir):
        data = path.read_bytes()
        h.update(f"file {path.name} {len(data)}\0".encode())
        h.update(data)
    src = str(src_dir)
    for flag in cflags:
        h.update(f"flag {flag.replace(src, '<src>')}\0".encode())
    h.update(f"kernel {kernel_release}\0headers {headers}\0bcc {bcc_version}\0".encode())
    return h.hexdigest()


def portable_key(src_dir: Path, cflags: Iterable[str]) -> str:
    """The key of a prebuilt program: the sources and flags only.

    The program reads only stable UAPI structures (__sk_buff, bpf_sock, ...),
    so its bytecode does not depend on the kernel or the headers it was
    compiled against: scripts/kernel_matrix.py's `load` check loads the same
    bytecode on every kernel of the matrix.
    """
    return cache_key(src_dir, cflags, "portable", "portable", "portable")


def prebuilt_dirs() -> list[Path]:
    """Where prebuilt programs are looked for: $CICD_AUDIT_PROGRAMS (directories separated by ':'),
    else PREBUILT_DIR."""
    configured = os.environ.get("CICD_AUDIT_PROGRAMS")
    if configured:
        return [Path(d) for d in configured.split(":") if d]
    return [PREBUILT_DIR]


# -- the store -------------------------------------------------------------------

def cache_dir() -> Path:
    return CACHE_DIR / "programs"


def entry_path(key: str, directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"{key}.json"


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load(key: str, directory: Path | None = None) -> CompiledProgram | None:
    """The cached program for key; None when there is none; CacheError when the entry is unusable."""
    path = entry_path(key, directory)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"{path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        # Its instructions run in the kernel: only a file we wrote ourselves, that nobody else can change.
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CacheError(f"{path}: not owned by uid {os.geteuid()} or writable by others")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            raw = f.read()
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT or doc.get("key") != key:
            raise CacheError(f"{path}: format {doc.get('format')} / key mismatch")
        if doc.get("digest") != _digest(doc["program"]):
            raise CacheError(f"{path}: digest mismatch (the file is damaged)")
        return CompiledProgram.from_json(doc["program"])
    except CacheError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CacheError(f"{path}: not a cache entry ({exc})") from exc


def store(key: str, program: CompiledProgram, directory: Path | None = None) -> Path:
    """Write the entry atomically; returns its path. Raises OSError (callers may ignore it)."""
    directory = directory or cache_dir()
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    body = program.to_json()
    doc = {"format": FORMAT, "key": key, "digest": _digest(body), "program": body}
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        path = entry_path(key, directory)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _prune(directory, keep=path)
    return path


def remove(key: str, directory: Path | None = None) -> None:
    try:
        entry_path(key, directory).unlink()
    except OSError:
        pass


def _prune(directory: Path, keep: Path) -> None:
    """Keep the KEEP_ENTRIES newest entries; stale ones come from older sources or kernels."""
    try:
        entries = sorted((p for p in directory.glob("*.json") if p != keep),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP_ENTRIES - 1:]:
            old.unlink()
    except OSError:
        pass
