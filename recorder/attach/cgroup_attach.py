"""Attach programs to a cgroup v2's socket hooks through BPF links, and remove exactly that.

The hooks where the process is known (connect4/6, sendmsg4/6, sock_ops,
cgroup_skb egress, and in blocking mode recvmsg4/6) run for every process in the cgroup and its descendants.
Each program gets a BPF_LINK_CREATE on the cgroup directory's fd, so it is
detached when the link's fd closes, also when the recorder is killed; with
`pin_dir` (--fail-closed) the links are pinned there and stay until `cleanup`
removes them. Other programs on the same cgroup are not touched.

Links on cgroups need kernel 5.7+. On a hybrid cgroup layout (v1 controllers
at /sys/fs/cgroup, v2 at /sys/fs/cgroup/unified) DEFAULT_CGROUP is not a v2
directory; `cgroup2_mount()` finds the real one and the error names it. Where
no v2 mount is visible although the kernel has cgroup v2 (a fresh mount
namespace such as `ip netns exec` makes, which remounts /sys), it mounts the
hierarchy for this process alone: mounted on a temporary directory, opened,
and detached at once, so nobody else sees it, and it goes away with the
process's last reference, also on SIGKILL.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cicd_audit.errors import EnvironmentProblem, UsageError
from cicd_audit.recorder.attach import cleanup
from cicd_audit.recorder.attach.held_links import HeldLinks
from cicd_audit.recorder.kernel import bpf_syscall

DEFAULT_CGROUP = Path("/sys/fs/cgroup")
CGROUP2_SUPER_MAGIC = 0x63677270      # linux/magic.h

HOOK_NAMES = {
    bpf_syscall.ATTACH_CGROUP_SOCK_OPS: "sock_ops",
    bpf_syscall.ATTACH_CGROUP_INET4_CONNECT: "connect4",
    bpf_syscall.ATTACH_CGROUP_INET6_CONNECT: "connect6",
    bpf_syscall.ATTACH_CGROUP_UDP4_SENDMSG: "sendmsg4",
    bpf_syscall.ATTACH_CGROUP_UDP6_SENDMSG: "sendmsg6",
    bpf_syscall.ATTACH_CGROUP_INET_EGRESS: "egress",
    bpf_syscall.ATTACH_CGROUP_UDP4_RECVMSG: "recvmsg4",
    bpf_syscall.ATTACH_CGROUP_UDP6_RECVMSG: "recvmsg6",
}


def hook_name(attach_type: int) -> str:
    return HOOK_NAMES.get(attach_type, f"attach type {attach_type}")


def cgroup2_mount() -> Path | None:
    """Where cgroup v2 is mounted in this mount namespace (/sys/fs/cgroup first); where no
    mount is visible, this process's own detached mount (private_cgroup2_mount); else None."""
    points = visible_cgroup2_mounts()
    if points:
        return DEFAULT_CGROUP if DEFAULT_CGROUP in points else points[0]
    return private_cgroup2_mount()


def visible_cgroup2_mounts(mounts: Path = Path("/proc/self/mounts")) -> list[Path]:
    """Every cgroup2 mount point in this mount namespace, in mount order."""
    points = []
    with open(mounts) as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                points.append(Path(fields[1].replace("\\040", " ")))
    return points


def kernel_has_cgroup2(filesystems: Path = Path("/proc/filesystems")) -> bool:
    """Whether the kernel offers the cgroup2 file system (4.5+, unless configured out)."""
    try:
        return any(line.split()[-1:] == ["cgroup2"] for line in filesystems.read_text().splitlines())
    except OSError:
        return False


_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
_private_root: Path | None = None       # one per process: its fd lives as long as the process


def private_cgroup2_mount() -> Path | None:
    """The cgroup v2 root through a mount only this process holds; None where it cannot be had.

    Mounted on a fresh temporary directory, opened, then detached (umount2
    MNT_DETACH) and the directory removed: the mount is in no namespace's
    tree any more, so no one sees it and nothing is left to clean up, yet
    the open directory keeps it alive, and /proc/PID/fd/N reaches it (for
    this process and, while it lives, for root processes it starts). The
    hierarchy is the same one the kernel attaches programs to, whichever
    mount shows it.
    """
    global _private_root
    if _private_root is not None and _private_root.exists():
        return _private_root
    if os.geteuid() != 0 or not kernel_has_cgroup2():
        return None
    where = tempfile.mkdtemp(prefix="cicd-audit-cgroup2-")
    try:
        if _libc.mount(b"cgroup2", os.fsencode(where), b"cgroup2", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None) != 0:
            return None
        try:
            fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            _libc.umount2(os.fsencode(where), _MNT_DETACH)
    finally:
        os.rmdir(where)
    _private_root = Path(f"/proc/{os.getpid()}/fd/{fd}")
    return _private_root


def check_cgroup2_dir(path: Path) -> None:
    """UsageError if path does not exist, EnvironmentProblem if it is not a cgroup v2 directory."""
    if not path.exists():
        raise UsageError(f"no cgroup directory {path}")
    try:
        v2 = path.is_dir() and cleanup.fs_type(path) == CGROUP2_SUPER_MAGIC
    except OSError:
        v2 = False
    if not v2:
        mount = cgroup2_mount()
        hint = (f"cgroup v2 is mounted at {mount}" if mount is not None
                else "this system has no cgroup v2 mounted (`mount -t cgroup2 none /sys/fs/cgroup`)")
        raise EnvironmentProblem(f"{path} is not a cgroup v2 directory, which the socket hooks need: {hint}")


def cgroup_program_ids(cgroup_path: str | os.PathLike) -> dict[str, list[int]]:
    """Ids of the programs attached to this cgroup itself (not inherited), per hook in HOOK_NAMES."""
    path = Path(cgroup_path)
    check_cgroup2_dir(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return {name: bpf_syscall.prog_query(fd, kind) for kind, name in HOOK_NAMES.items()}
    finally:
        os.close(fd)


@dataclass
class CgroupAttachment:
    """Attach each {attach type: program fd} to cgroup_path with a BPF link, for the with block."""

    cgroup_path: Path | str
    programs: dict[int, int]
    pin_dir: Path | str | None = None
    _links: HeldLinks = field(default_factory=HeldLinks)

    def __enter__(self) -> CgroupAttachment:
        path = Path(self.cgroup_path)
        check_cgroup2_dir(path)
        try:
            if self.pin_dir is not None:
                self.pin_dir = cleanup.make_pin_dir(self.pin_dir)
            dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for attach_type, prog_fd in self.programs.items():
                    self._attach(path, dir_fd, attach_type, prog_fd)
            finally:
                os.close(dir_fd)            # the links hold the cgroup themselves
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def _attach(self, path: Path, dir_fd: int, attach_type: int, prog_fd: int) -> None:
        hook = hook_name(attach_type)
        try:
            link = bpf_syscall.link_create(prog_fd, dir_fd, attach_type)
        except bpf_syscall.BpfError as exc:
            if exc.errno == errno.EPERM:
                raise EnvironmentProblem(f"cannot attach to cgroup {path}: needs root (CAP_BPF and "
                                         f"CAP_NET_ADMIN)") from exc
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, bpf_syscall.ENOTSUPP, errno.ENOSYS):
                raise EnvironmentProblem(
                    f"cannot attach the {hook} program to cgroup {path}: {exc.strerror} (BPF links on cgroups "
                    f"need kernel 5.7 or later, and the program must be loaded for the {hook} hook)") from exc
            raise EnvironmentProblem(f"cannot attach the {hook} program to cgroup {path}: {exc.strerror}") from exc
        pin = None
        if self.pin_dir is not None:
            pin = Path(self.pin_dir) / f"cgroup-{os.stat(path).st_ino}-{hook.replace(' ', '_')}"
        self._links.hold(link, pin, hook)

    def __exit__(self, *exc_info) -> None:
        self._release(failed=False)

    def _release(self, failed: bool) -> None:
        self._links.release(failed)

