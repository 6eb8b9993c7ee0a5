"""The lab's cgroup v2 directory: where recorded commands run and the socket hooks look.

No test, demo or benchmark attaches a socket hook to the host's cgroups: each
lab has a directory of its own (and the container one below it, as Docker
gives each container a cgroup under the one the recorder watches).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def cgroup_root() -> Path:
    from cicd_audit.recorder.attach.cgroup_attach import cgroup2_mount
    root = cgroup2_mount()
    if root is None:
        raise RuntimeError("no cgroup v2 hierarchy is mounted")
    return root


def in_cgroup(cgroup: Path, argv: list[str]) -> list[str]:
    """argv, run as a member of a cgroup (the shell execs it, so it keeps the shell's pid)."""
    return ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *argv]


def remove_cgroup(path: Path) -> None:
    """Kill what is in a lab cgroup and its children, and remove them all (children first)."""
    if not path.exists():
        return
    for child in [p for p in path.iterdir() if p.is_dir()]:
        remove_cgroup(child)
    kill = path / "cgroup.kill"
    for _ in range(50):
        pids = (path / "cgroup.procs").read_text().split()
        if not pids:
            break
        if kill.exists():
            kill.write_text("1")
        else:                       # cgroup.kill is from 5.14
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)
    # rmdir fails (EBUSY) until the last killed process has been reaped
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)
