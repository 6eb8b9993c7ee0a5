"""What a recorder can leave behind, and removing it: pinned links, legacy TC filters.

A recorder started with --fail-closed pins its BPF links under
PIN_ROOT/<its pid>, so they stay attached after it exits or is killed. On a
kernel without tcx the recorder uses TC filters at legacy_tc.FILTER_PRIORITY,
and those survive a killed recorder anyway.

- `remove_stale()`: pin directories whose recorder is gone, and legacy filters
  that no live recorder in this network namespace holds (it keeps a shared
  flock on legacy_tc.legacy_lock_path() while it does).
- `cleanup_all()`: every pin under PIN_ROOT, live recorders' too, and every
  legacy filter of ours in this network namespace.

Each pinned link is detached (BPF_LINK_DETACH) before it is unpinned, so it
stops at once even if a live recorder still holds its fd; unpinning alone
detaches only a link nobody holds.

Caveats: the owner is known by pid, so a reused pid keeps a dead recorder's
pins until `cleanup_all`; pids are those of the pid namespace this runs in.
Also here: mounting the bpffs and making pin directories.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.attach import legacy_tc
from cicd_audit.recorder.kernel import bpf_syscall

BPFFS = Path("/sys/fs/bpf")
PIN_ROOT = BPFFS / "cicd-audit"
BPF_FS_MAGIC = 0xCAFE4A11      # linux/magic.h

_libc = ctypes.CDLL(None, use_errno=True)


def pin_dir_for(pid: int, pin_root: Path = PIN_ROOT) -> Path:
    return Path(pin_root) / str(pid)


def fs_type(path: str | os.PathLike) -> int:
    """statfs(2)'s f_type: which filesystem path is on (its magic number)."""
    buf = ctypes.create_string_buffer(256)                  # struct statfs is 120 bytes on 64-bit
    if _libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF   # f_type is the first field, a long


def _own_mount_namespace() -> bool:
    """True in a mount namespace newer than an ancestor's (e.g. `ip netns exec`, `unshare -m`): a bpffs
    mounted here would go away with it. Ancestors whose namespace cannot be read are passed over."""
    try:
        own = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False
    pid = os.getppid()
    while pid > 0:
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") != own:
                return True
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rpartition(")")[2].split()[1])     # the parent's pid
        except (OSError, ValueError, IndexError):
            return False
    return False


def ensure_bpffs() -> None:
    """Mount the bpffs at /sys/fs/bpf when nothing is mounted there, as systemd would."""
    try:
        if fs_type(BPFFS) == BPF_FS_MAGIC:
            return
    except OSError:
        pass                            # no such directory: the mount below says so
    if _own_mount_namespace():
        raise EnvironmentProblem(
            f"no bpffs at {BPFFS} in this process's own mount namespace (`ip netns exec` makes one, and hides "
            f"the host's): one mounted here would vanish with the namespace, and the pins with it; mount it "
            f"on the host (`mount -t bpf bpf {BPFFS}`) and enter only the network namespace "
            f"(`nsenter --net=/run/netns/NAME`)")
    if _libc.mount(b"bpf", os.fsencode(BPFFS), b"bpf", 0, b"mode=0700") != 0:
        err = ctypes.get_errno()
        raise EnvironmentProblem(f"cannot mount the bpffs at {BPFFS}: {os.strerror(err)}")


def make_pin_dir(path: str | os.PathLike) -> Path:
    """Create a directory for pins (mounting the bpffs first when path is under /sys/fs/bpf)."""
    path = Path(path)
    if path.is_relative_to(BPFFS):
        ensure_bpffs()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        on_bpffs = fs_type(path) == BPF_FS_MAGIC
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create the pin directory {path}: {exc.strerror}") from exc
    if not on_bpffs:
        raise EnvironmentProblem(f"{path} is not on a bpffs: BPF objects can be pinned only there")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_pin_dir(directory: Path, why: str = "") -> list[str]:
    """Detach and unpin everything under directory, then remove it; one line per pin."""
    lines: list[str] = []
    for root, dirs, files in os.walk(directory, topdown=False):
        for name in sorted(files):
            path = Path(root) / name
            detached = _detach_pinned(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            lines.append(f"{'detached and unpinned' if detached else 'unpinned'} {path}{why}")
        for name in dirs:
            _rmdir(Path(root) / name)
    _rmdir(directory)
    return lines


def _detach_pinned(path: Path) -> bool:
    """Detach the link pinned at path; False for anything that is not a link (maps, programs)."""
    try:
        fd = bpf_syscall.obj_get(path)
    except bpf_syscall.BpfError:
        return False
    try:
        bpf_syscall.link_detach(fd)
        return True
    except bpf_syscall.BpfError:
        return False
    finally:
        os.close(fd)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:    # something pinned meanwhile stays, with its directory
            raise


def _pin_dirs(pin_root: Path) -> list[tuple[Path, int | None]]:
    """(directory, owner pid or None) under pin_root."""
    if not Path(pin_root).is_dir():
        return []
    return [(d, int(d.name) if d.name.isdigit() else None) for d in sorted(Path(pin_root).iterdir()) if d.is_dir()]


def remove_stale(pin_root: Path = PIN_ROOT) -> list[str]:
    """Remove what killed or exited recorders left: pin directories of dead pids, unheld legacy filters."""
    lines: list[str] = []
    for directory, pid in _pin_dirs(pin_root):
        if pid is not None and not _alive(pid):
            lines += remove_pin_dir(directory, f" (recorder {pid} is gone)")
    return lines + legacy_tc.remove_legacy_filters(only_unheld=True)


def cleanup_all(pin_root: Path = PIN_ROOT) -> list[str]:
    """Remove every pin under pin_root, live recorders' too, and every legacy filter of ours in this
    network namespace."""
    lines: list[str] = []
    for directory, pid in _pin_dirs(pin_root):
        why = "" if pid is None else f" (recorder {pid}{' is gone' if not _alive(pid) else ', still running'})"
        lines += remove_pin_dir(directory, why)
    return lines + legacy_tc.remove_legacy_filters(only_unheld=False)
