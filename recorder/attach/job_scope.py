"""The jobs that blocking mode judges: each a cgroup v2 subtree, or (asked for by name) the whole host.

On a runner host the job shares its interfaces, and usually its network
namespace, with the runner agent, the host's daemons and other jobs. The
kernel side (bpf/job_scope.h) judges a socket or connection only when it
belongs to a job's cgroup subtree, by that job's policy; everything else is
recorded and passes. The kernel holds abi.JOB_SLOTS jobs at once: `record`
uses the first slot, a runner agent one per blocked job.

- `record --block -- CMD`: the recorder makes a cgroup for CMD below its own
  (JobCgroup); CMD and everything it starts, containers the job starts below
  it included, are the job. When CMD exits, what it left running is killed
  (a CI runner ends a job's orphans the same way) and the cgroup removed.
- `record --block --cgroup DIR [-- CMD]`: DIR's subtree is the job (CMD
  runs in DIR).
- `record --block-host`: every process on the host is judged (a dedicated,
  single-job runner VM).

The socket hooks are attached to the job's cgroup, so they cost nothing
to the rest of the host (--block-host: to the root).

The kernel compares the ancestor of the caller's cgroup at the job's level
with the job's id, so the level must be the cgroup's depth in the whole
hierarchy: the recorder needs the host's cgroup namespace (a host service,
or a container started with the host's cgroup namespace).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from cicd_audit import notices
from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.attach.cgroup_attach import check_cgroup2_dir
from cicd_audit.recorder.kernel import abi

KILL_WAIT_S = 5.0
RECORD_SLOT = 0            # `record --block`'s one job


def job_of_slot(slot: int) -> int:
    """The number the kernel names a job by, in ca_process.job and the allow maps' keys."""
    return slot + 1


@dataclass(frozen=True)
class JobScope:
    """What a ca_job_scope slot holds: the job's cgroup (id and depth), or the whole host."""

    cgroup: Path | None           # None: the whole host
    cgroup_id: int = 0
    level: int = 0

    @classmethod
    def whole_host(cls) -> JobScope:
        return cls(None)

    @classmethod
    def of_cgroup(cls, path: Path, v2_root: Path) -> JobScope:
        """The subtree of a cgroup v2 directory below the hierarchy mounted at v2_root."""
        check_cgroup2_dir(path)
        relative = _relative_to_root(path, v2_root)
        return cls(path, os.stat(path).st_ino, _mount_depth(v2_root) + len(relative.parts))

    def describe(self) -> str:
        return "the whole host" if self.cgroup is None else f"cgroup {self.cgroup}"

    def fill(self, scope_map, slot: int) -> None:
        """Write the scope into a slot of the program's job_scope map."""
        mode = abi.ScopeMode.HOST if self.cgroup is None else abi.ScopeMode.CGROUP
        scope_map.update(_slot_key(slot), bytes(abi.JobScope(cgroup_id=self.cgroup_id, level=self.level, mode=mode)))

    @staticmethod
    def clear(scope_map, slot: int) -> None:
        """Free a slot: from now on nothing is that job's, so nothing is judged by its policy."""
        scope_map.update(_slot_key(slot), bytes(abi.JobScope()))


def _slot_key(slot: int) -> int:
    if not 0 <= slot < abi.JOB_SLOTS:
        raise ValueError(f"job slot {slot} out of range (the kernel holds {abi.JOB_SLOTS})")
    return slot


def _relative_to_root(path: Path, v2_root: Path) -> Path:
    """path below v2_root, compared by what they are, not how they are spelt."""
    resolved, root = Path(os.path.realpath(path)), Path(os.path.realpath(v2_root))
    try:
        return resolved.relative_to(root)
    except ValueError:
        raise EnvironmentProblem(f"{path} is not in the cgroup v2 hierarchy mounted at {v2_root}") from None


def _mount_depth(v2_root: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> int:
    """Depth of the mount's own root in the hierarchy (0 for a mount of the whole tree).

    A mount not listed (the recorder's private mount) shows the whole tree."""
    target = os.path.realpath(v2_root)
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[4].replace("\\040", " ") == target and " - cgroup2 " in line:
            return len(Path(fields[3]).relative_to("/").parts)
    return 0


def own_cgroup(v2_root: Path, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path:
    """This process's cgroup v2 directory (the "0::" line of /proc/self/cgroup)."""
    for line in proc_cgroup.read_text().splitlines():
        if line.startswith("0::"):
            return v2_root / line[3:].lstrip("/")
    raise EnvironmentProblem("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")


class CgroupEntry:
    """The way into a cgroup for the job's command, for the `with` block.

    cgroup.procs is opened up front, so the command's pre-exec step
    (`enter()`, between fork and exec) only writes to it: the process is in
    the job before it runs a line of the job's code."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs_fd = -1

    def __enter__(self) -> CgroupEntry:
        try:
            self._procs_fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot move the command into cgroup {self.path}: {exc.strerror}") from exc
        return self

    def enter(self) -> None:
        os.write(self._procs_fd, b"0")

    def __exit__(self, *exc_info) -> None:
        if self._procs_fd >= 0:
            os.close(self._procs_fd)
            self._procs_fd = -1


class JobCgroup(CgroupEntry):
    """A cgroup made for the job's command, below the recorder's own; on exit
    whatever the job left running in it is killed and the cgroup removed."""

    def __init__(self, v2_root: Path) -> None:
        super().__init__(own_cgroup(v2_root) / f"cicd-audit-job-{os.getpid()}")
        self.v2_root = v2_root

    def __enter__(self) -> JobCgroup:
        try:
            self.path.mkdir()
        except OSError as exc:
            raise EnvironmentProblem(f"cannot make the job's cgroup {self.path}: {exc.strerror}") from exc
        try:
            super().__enter__()
        except BaseException:
            self._remove()
            raise
        return self

    def scope(self) -> JobScope:
        return JobScope.of_cgroup(self.path, self.v2_root)

    def __exit__(self, *exc_info) -> None:
        super().__exit__(*exc_info)
        self._remove()

    def _remove(self) -> None:
        """Kill what the job left behind, then remove the (then empty) cgroup."""
        deadline = time.monotonic() + KILL_WAIT_S
        while self.path.exists():
            try:
                _remove_tree(self.path)
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise EnvironmentProblem(f"the job's cgroup {self.path} still holds processes that "
                                         f"survived SIGKILL; remove it once they have gone")
            _kill_members(self.path)
            time.sleep(0.02)


class JoinedCgroup:
    """A job's cgroup made below a running process's own, with that process moved in (the
    agent's jobs: the CI runner's per-job worker, which starts every step). Nothing is killed
    at the end: the worker still runs the job-completed hook. What is left inside moves back to
    the parent cgroup, and the job's cgroup is removed."""

    def __init__(self, pid: int, v2_root: Path, name: str) -> None:
        self.pid = pid
        self.parent = process_cgroup(pid, v2_root)
        self.path = self.parent / name
        self.v2_root = v2_root

    def __enter__(self) -> JoinedCgroup:
        try:
            self.path.mkdir()
            (self.path / "cgroup.procs").write_text(str(self.pid))
        except OSError as exc:
            self.release()
            raise EnvironmentProblem(f"cannot move process {self.pid} into a job cgroup at {self.path}: "
                                     f"{exc.strerror}") from exc
        return self

    def scope(self) -> JobScope:
        return JobScope.of_cgroup(self.path, self.v2_root)

    def __exit__(self, *exc_info) -> None:
        self.release()

    def release(self) -> None:
        """Move every process left in the job's cgroup (and below) back to the parent; remove it."""
        for _ in range(3):
            if not self.path.exists():
                return
            for procs in [*self.path.glob("**/cgroup.procs")]:
                for pid in _read_pids(procs):
                    try:
                        (self.parent / "cgroup.procs").write_text(pid)
                    except OSError:
                        pass            # gone meanwhile
            try:
                _remove_tree(self.path)
                return
            except OSError:
                time.sleep(0.02)
        notices.say(f"cicd-audit: the job cgroup {self.path} could not be removed (processes keep arriving)")


def process_cgroup(pid: int, v2_root: Path) -> Path:
    """A process's cgroup v2 directory."""
    try:
        return own_cgroup(v2_root, Path(f"/proc/{pid}/cgroup"))
    except OSError:
        raise EnvironmentProblem(f"no process {pid}") from None


def _read_pids(procs: Path) -> list[str]:
    try:
        return procs.read_text().split()
    except OSError:
        return []


def _remove_tree(path: Path) -> None:
    """rmdir a cgroup and the ones the job made below it, deepest first."""
    for child in path.iterdir():
        if child.is_dir():
            _remove_tree(child)
    path.rmdir()


def _kill_members(path: Path) -> None:
    """SIGKILL every process in the subtree (cgroup.kill where the kernel has it, 5.14+)."""
    kill = path / "cgroup.kill"
    if kill.exists():
        try:
            kill.write_text("1")
            return
        except OSError:
            pass
    for procs in [path / "cgroup.procs", *path.glob("**/cgroup.procs")]:
        try:
            pids = procs.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
