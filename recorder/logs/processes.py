"""Process attribution: what the kernel's process records mean in /proc and cgroupfs.

The cgroup socket hooks give a tgid, a thread id, a comm and a cgroup id
(abi.Process). The executable and command line come from /proc/<tgid>, read
as soon as a PROCESS event says the tgid was seen, because CI processes are
short-lived and /proc forgets them when they exit. A process gone even so
still has its executable in the exec hooks' map (exec_paths: tgid -> the
binary it ran, kept by the kernel past its exit; attach/exec_hooks.py). The cgroup id is the
inode number of the cgroup's directory on the cgroup v2 file system, which
names the container or systemd unit.

Caveats: /proc is read in the recorder's PID namespace, so the recorder must
share it with the job (the host's, for containers); a tgid reused by a new
process before its event is handled reads the new process. Command lines can
carry secrets (tokens in arguments), so they are kept only on request.

API::

    ProcessTable(keep_cmdline=False, proc_root=Path("/proc"), cgroup_root=None)
        .exec_paths = lookup(tgid) -> str | None   # the exec hooks' map, once attached
        .on_process_event(proc: abi.Process) -> None
        .describe(proc: abi.Process) -> ProcessInfo | None
    ProcessInfo(pid, name, exe, cmdline, cgroup, step)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs.ci_steps import step_of

CMDLINE_MAX = 1024                 # characters kept of a command line, marker included
CMDLINE_TRUNCATED = "...[truncated]"
# Bytes read of /proc/<tgid>/cmdline: enough for CMDLINE_MAX characters of
# 4-byte UTF-8, without reading megabytes of arguments.
_CMDLINE_READ = 4 * CMDLINE_MAX + 4
# A cgroup id not found in the cached walk triggers a new walk at most this often,
# so a flood of unknown ids cannot turn into a flood of directory walks.
CGROUP_RESCAN_INTERVAL_S = 1.0
DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ProcessInfo:
    """One process, as conn.log's proc.* columns show it (None: unknown)."""

    pid: int
    name: str
    exe: str | None
    cmdline: str | None
    cgroup: str | None
    step: str | None = None     # the CI step (ci_steps.py), where the platform names one


@dataclass(frozen=True)
class _ProcData:
    exe: str | None
    cmdline: str | None
    name: str | None = None     # the process's own name: the kernel's comm is the calling thread's
    step: str | None = None


def cgroup2_root(mountinfo: Path = Path("/proc/self/mountinfo")) -> Path:
    """Where the cgroup v2 file system is mounted: /sys/fs/cgroup on current
    systems, /sys/fs/cgroup/unified on hybrid (v1 + v2) ones."""
    mounts = []
    try:
        for line in mountinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            left, sep, right = line.partition(" - ")
            if sep and right.split(" ", 1)[0] == "cgroup2":
                mounts.append(left.split(" ")[4].replace("\\040", " "))
    except (OSError, IndexError):
        return DEFAULT_CGROUP_ROOT
    if str(DEFAULT_CGROUP_ROOT) in mounts or not mounts:
        return DEFAULT_CGROUP_ROOT
    return Path(mounts[0])


def _read_exe(proc_dir: Path) -> str | None:
    try:
        return os.readlink(proc_dir / "exe")
    except OSError:        # gone, a kernel thread, or not ours to read
        return None


def _read_comm(proc_dir: Path) -> str | None:
    try:
        return (proc_dir / "comm").read_text(errors="surrogateescape").rstrip("\n") or None
    except OSError:
        return None


def _read_cmdline(proc_dir: Path) -> str | None:
    try:
        with open(proc_dir / "cmdline", "rb") as f:
            raw = f.read(_CMDLINE_READ)
    except OSError:
        return None
    if not raw:            # a zombie or a kernel thread
        return None
    # surrogateescape keeps non-UTF-8 bytes exact; the log writer escapes them as \xHH.
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "surrogateescape")
    if len(text) > CMDLINE_MAX:
        text = text[: CMDLINE_MAX - len(CMDLINE_TRUNCATED)] + CMDLINE_TRUNCATED
    return text


class ProcessTable:
    """The /proc data of every process a socket hook reported, and cgroup paths."""

    def __init__(self, keep_cmdline: bool = False, proc_root: Path = Path("/proc"),
                 cgroup_root: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self.keep_cmdline = keep_cmdline
        self.proc_root = Path(proc_root)
        self.cgroup_root = Path(cgroup_root) if cgroup_root is not None else cgroup2_root()
        self._clock = clock
        self._procs: dict[int, _ProcData] = {}
        self._cgroups: dict[int, str] = {}
        self._last_scan: float | None = None
        # Where the executable of a process /proc no longer shows comes from (None: nowhere).
        self.exec_paths: Callable[[int], str | None] | None = None

    def on_process_event(self, proc: abi.Process) -> None:
        """A socket hook saw ``proc.tgid`` for the first time: read /proc now, while it runs."""
        if proc.tgid:
            self._procs[proc.tgid] = self._read(proc.tgid)

    def describe(self, proc: abi.Process) -> ProcessInfo | None:
        """The proc.* values for a kernel process record; None when tgid is 0 (unknown)."""
        if not proc.tgid:
            return None
        data = self._procs.get(proc.tgid)
        if data is None:
            # Its event was lost or not handled yet: one late try, remembered either way.
            data = self._procs[proc.tgid] = self._read(proc.tgid)
        return ProcessInfo(
            pid=proc.tgid,
            # A thread's name (dig's "isc-net-0000") says less than its process's.
            name=data.name or proc.comm.decode("utf-8", "surrogateescape"),   # .value stops at the NUL
            exe=data.exe,
            cmdline=data.cmdline,
            cgroup=self.cgroup_path(proc.cgroup_id),
            step=data.step,
        )

    def cgroup_path(self, cgroup_id: int) -> str | None:
        """The cgroup's path under the cgroup v2 root ("/" for the root), or None."""
        if not cgroup_id:
            return None
        path = self._cgroups.get(cgroup_id)
        if path is None:
            now = self._clock()
            if self._last_scan is None or now - self._last_scan >= CGROUP_RESCAN_INTERVAL_S:
                self._last_scan = now
                self._cgroups = self._scan_cgroups()
                path = self._cgroups.get(cgroup_id)
        return path

    def _read(self, tgid: int) -> _ProcData:
        proc_dir = self.proc_root / str(tgid)
        step = step_of(tgid, self.proc_root)
        exe = _read_exe(proc_dir)
        if exe is None and self.exec_paths is not None:
            exe = self.exec_paths(tgid)
        return _ProcData(exe=exe,
                         cmdline=_read_cmdline(proc_dir) if self.keep_cmdline else None,
                         name=_read_comm(proc_dir), step=str(step) if step else None)

    def _scan_cgroups(self) -> dict[int, str]:
        """Directory inode -> path, for every cgroup. The kernel's cgroup id is that inode number."""
        found: dict[int, str] = {}
        try:
            found[os.stat(self.cgroup_root).st_ino] = "/"
        except OSError:
            return found
        stack = [(self.cgroup_root, "")]
        while stack:
            directory, rel = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = [e for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:    # a cgroup removed while we walked it
                continue
            for entry in entries:
                try:
                    # st_ino, not readdir's d_ino: overlay file systems may report another number
                    ino = entry.stat(follow_symlinks=False).st_ino
                except OSError:
                    continue
                path = f"{rel}/{entry.name}"
                found[ino] = path
                stack.append((Path(entry.path), path))
        return found
