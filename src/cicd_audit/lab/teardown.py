"""Stopping a lab's processes, and sweeping what a killed run left behind.

A lab removes what it made in close(), also after a failure; a run killed
before that leaves namespaces, /etc/netns directories, cgroups and work
directories whose names carry its (now dead) pid: the next lab removes them.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from cicd_audit.lab import naming
from cicd_audit.lab.cgroups import cgroup_root, remove_cgroup
from cicd_audit.lab.netns import delete_namespace, namespaces


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each (last started first), SIGKILL what has not exited 5 s later."""
    for proc in reversed(procs):
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass
    procs.clear()


def sweep_stale() -> None:
    """Delete the lab namespaces, /etc/netns directories, cgroups and work directories of runs
    that were killed (their pid is gone)."""
    for ns in namespaces():
        if naming.owned_by_dead_process(ns, naming.NAMESPACE):
            delete_namespace(ns)
    for path in Path("/etc/netns").glob("cat*"):
        if naming.owned_by_dead_process(path.name, naming.NAMESPACE):
            shutil.rmtree(path, ignore_errors=True)
    for path in cgroup_root().glob("cicd-audit-lab-*"):
        if naming.owned_by_dead_process(path.name, naming.CGROUP):
            remove_cgroup(path)
    for path in Path(tempfile.gettempdir()).glob("cicd-audit-lab-*"):
        if naming.owned_by_dead_process(path.name, naming.WORKDIR):
            shutil.rmtree(path, ignore_errors=True)
