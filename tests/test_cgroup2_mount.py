"""cgroup v2 wherever the kernel has it: found in hybrid layouts, mounted privately where none is visible.

`ip netns exec` gives its command a fresh mount namespace with a fresh /sys,
so no cgroup mount is visible there: the recorder then mounts the hierarchy
for itself (recorder/attach/cgroup_attach.py), attaches through it, and leaves no
mount and no directory behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cicd_audit.recorder.attach import cleanup
from cicd_audit.recorder.attach.cgroup_attach import (
    CGROUP2_SUPER_MAGIC,
    cgroup2_mount,
    kernel_has_cgroup2,
    visible_cgroup2_mounts,
)

HYBRID_MOUNTS = """sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup /sys/fs/cgroup/net_cls,net_prio cgroup rw,nosuid,nodev,noexec,relatime,net_cls,net_prio 0 0
cgroup2 /run/my\\040cgroups cgroup2 rw,relatime 0 0
"""


def test_hybrid_layout_lists_the_unified_mount_first(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(HYBRID_MOUNTS)
    assert visible_cgroup2_mounts(mounts) == [Path("/sys/fs/cgroup/unified"), Path("/run/my cgroups")]


def test_kernel_without_cgroup2_is_recognised(tmp_path):
    filesystems = tmp_path / "filesystems"
    filesystems.write_text("nodev\tsysfs\nnodev\tcgroup\n\text4\n")
    assert not kernel_has_cgroup2(filesystems)
    filesystems.write_text("nodev\tsysfs\nnodev\tcgroup\nnodev\tcgroup2\n")
    assert kernel_has_cgroup2(filesystems)


@pytest.mark.root
def test_this_host_has_a_visible_cgroup2_mount():
    path = cgroup2_mount()
    assert path is not None and path in visible_cgroup2_mounts()
    assert cleanup.fs_type(path) == CGROUP2_SUPER_MAGIC


# Runs under `ip netns exec`: mounts privately, attaches a real program through the
# mount to a cgroup of its own, and reports what it saw as JSON.
CHILD = r"""
import json, os, struct, sys
from pathlib import Path
from cicd_audit.recorder.attach import cleanup
from cicd_audit.recorder.kernel import bpf_syscall
from cicd_audit.recorder.attach.cgroup_attach import (CgroupAttachment, cgroup2_mount, cgroup_program_ids,
                                               visible_cgroup2_mounts)

report = {"visible_before": [str(p) for p in visible_cgroup2_mounts()]}
root = cgroup2_mount()
report["root"] = str(root)
report["fs_type"] = cleanup.fs_type(root)
report["same_as_again"] = cgroup2_mount() == root
child = root / sys.argv[1]
child.mkdir()
try:
    code = struct.pack("<BBhi", 0xB7, 0, 0, 1) + struct.pack("<BBhi", 0x95, 0, 0, 0)   # r0 = 1; exit
    fd = bpf_syscall.prog_load("ca_test_pass", code, bpf_syscall.PROG_CGROUP_SKB,
                               expected_attach_type=bpf_syscall.ATTACH_CGROUP_INET_EGRESS)
    with CgroupAttachment(child, {bpf_syscall.ATTACH_CGROUP_INET_EGRESS: fd}):
        report["attached"] = len(cgroup_program_ids(child)["egress"])
    report["after_exit"] = len(cgroup_program_ids(child)["egress"])
    os.close(fd)
finally:
    child.rmdir()
report["visible_after"] = [str(p) for p in visible_cgroup2_mounts()]
print(json.dumps(report))
"""


@pytest.fixture
def netns():
    name = f"ca-cg2-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _leftovers() -> list[str]:
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if "cicd-audit-cgroup2-" in line]
    dirs = [str(p) for p in Path("/tmp").glob("cicd-audit-cgroup2-*")]
    return mounts + dirs


@pytest.mark.netns
def test_no_visible_mount_is_mounted_privately_and_attaches(netns):
    before = _leftovers()
    cgroup = f"cicd-audit-test-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CHILD, cgroup],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["visible_before"] == [], "ip netns exec should leave no cgroup2 mount visible"
    assert report["root"].startswith("/proc/") and "/fd/" in report["root"]
    assert report["fs_type"] == CGROUP2_SUPER_MAGIC and report["same_as_again"]
    assert report["attached"] == 1 and report["after_exit"] == 0
    assert report["visible_after"] == [], "the private mount must not show in the namespace"
    assert _leftovers() == before
    root = cgroup2_mount()
    assert root is not None and not (root / cgroup).exists()


@pytest.mark.netns
def test_a_killed_process_leaves_no_mount(netns):
    before = _leftovers()
    script = ("import os, signal\nfrom cicd_audit.recorder.attach.cgroup_attach import cgroup2_mount\n"
              "assert cgroup2_mount() is not None\nos.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode in (-9, 137), done.stderr
    assert _leftovers() == before
