"""recorder/logs/processes.py: /proc and cgroup v2 lookups for process attribution. Pure: no root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs.processes import CMDLINE_MAX, CMDLINE_TRUNCATED, ProcessInfo, ProcessTable, cgroup2_root


def proc(tgid, comm=b"", cgroup_id=0, pid=None):
    return abi.Process(tgid=tgid, pid=tgid if pid is None else pid, cgroup_id=cgroup_id, comm=comm)


@pytest.fixture
def child():
    """A real process with a known command line, killed afterwards."""
    args = [sys.executable, "-c", "import time; time.sleep(60)", "--token", "s3cret value"]
    p = subprocess.Popen(args)
    cmdline = "\0".join(args).encode() + b"\0"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{p.pid}/cmdline").read_bytes() != cmdline:   # until the exec is done
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.01)
    try:
        yield p, args
    finally:
        p.kill()
        p.wait()


def test_reads_a_real_process(child):
    p, args = child
    table = ProcessTable(keep_cmdline=True)
    table.on_process_event(proc(p.pid, b"a-thread"))
    info = table.describe(proc(p.pid, b"a-thread"))
    # The process's own name (what it was exec'd as, cut to the kernel's 15
    # characters), not the calling thread's comm the event carried.
    assert info == ProcessInfo(pid=p.pid, name=Path(sys.executable).name[:15], exe=os.path.realpath(sys.executable),
                               cmdline=" ".join(args), cgroup=None)


def test_data_read_at_the_event_outlives_the_process(child):
    p, args = child
    table = ProcessTable(keep_cmdline=True)
    table.on_process_event(proc(p.pid, b"python3"))
    p.kill()
    p.wait()
    assert not Path(f"/proc/{p.pid}").exists()
    info = table.describe(proc(p.pid, b"python3"))
    assert info.exe == os.path.realpath(sys.executable) and info.cmdline == " ".join(args)


def test_command_lines_are_kept_only_on_request(child):
    p, _ = child
    table = ProcessTable()
    table.on_process_event(proc(p.pid))
    info = table.describe(proc(p.pid))
    assert info.cmdline is None and info.exe == os.path.realpath(sys.executable)


def test_unknown_and_vanished_processes():
    table = ProcessTable(keep_cmdline=True)
    assert table.describe(proc(0, b"curl")) is None                # tgid 0: the kernel did not know
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    table.on_process_event(proc(gone.pid, b"python3"))           # no exception escapes
    info = table.describe(proc(gone.pid, b"python3"))
    assert info == ProcessInfo(pid=gone.pid, name="python3", exe=None, cmdline=None, cgroup=None)


def test_comm_is_decoded_without_its_padding():
    table = ProcessTable(proc_root=Path("/nonexistent"))
    assert table.describe(proc(7, b"curl\0\0\0\0")).name == "curl"
    assert table.describe(proc(8, b"x" * abi.COMM_LEN)).name == "x" * abi.COMM_LEN


def fake_proc(root: Path, tgid: int, exe: str, cmdline: bytes) -> None:
    d = root / str(tgid)
    d.mkdir(parents=True)
    (d / "exe").symlink_to(exe)
    (d / "cmdline").write_bytes(cmdline)


def test_describe_reads_proc_once_for_a_missed_event(tmp_path):
    table = ProcessTable(keep_cmdline=True, proc_root=tmp_path)
    fake_proc(tmp_path, 10, "/usr/bin/curl", b"curl\0-s\0https://example.com/\0")
    assert table.describe(proc(10, b"curl")).exe == "/usr/bin/curl"
    (tmp_path / "10" / "exe").unlink()
    (tmp_path / "10" / "exe").symlink_to("/usr/bin/wget")
    assert table.describe(proc(10, b"curl")).cmdline == "curl -s https://example.com/"
    assert table.describe(proc(10, b"curl")).exe == "/usr/bin/curl"      # not read again
    assert table.describe(proc(11)).exe is None                          # not there: remembered as unknown
    fake_proc(tmp_path, 11, "/bin/sh", b"sh\0")
    assert table.describe(proc(11)).exe is None
    table.on_process_event(proc(11))                                      # a new event reads again
    assert table.describe(proc(11)).exe == "/bin/sh"


def test_the_exec_hooks_answer_only_for_what_proc_no_longer_shows(tmp_path):
    table = ProcessTable(proc_root=tmp_path)
    asked = []
    table.exec_paths = lambda tgid: asked.append(tgid) or {20: "/usr/bin/curl", 21: "/usr/bin/wget"}.get(tgid)
    fake_proc(tmp_path, 21, "/usr/lib/wget.real", b"wget\0")
    table.on_process_event(proc(20, b"curl"))
    table.on_process_event(proc(21, b"wget"))
    table.on_process_event(proc(22, b"sh"))
    assert [table.describe(proc(t)).exe for t in (20, 21, 22)] == ["/usr/bin/curl", "/usr/lib/wget.real", None]
    assert asked == [20, 22]


def test_long_and_binary_command_lines(tmp_path):
    table = ProcessTable(keep_cmdline=True, proc_root=tmp_path)
    fake_proc(tmp_path, 20, "/bin/x", b"x\0" + b"a" * 5000 + b"\0")
    cmdline = table.describe(proc(20)).cmdline
    assert len(cmdline) == CMDLINE_MAX and cmdline.endswith(CMDLINE_TRUNCATED)
    assert cmdline.startswith("x aaaa")
    fake_proc(tmp_path, 21, "/bin/y", b"y\0caf\xc3\xa9\0\xff\0")
    assert table.describe(proc(21)).cmdline.encode("utf-8", "surrogateescape") == b"y caf\xc3\xa9 \xff"
    fake_proc(tmp_path, 22, "/bin/z", b"")                            # a zombie's cmdline is empty
    assert table.describe(proc(22)).cmdline is None


def test_cgroup_paths_from_directory_inodes(tmp_path):
    now = [100.0]
    (tmp_path / "system.slice" / "docker-abc.scope").mkdir(parents=True)
    table = ProcessTable(proc_root=tmp_path / "proc", cgroup_root=tmp_path, clock=lambda: now[0])
    ino = os.stat(tmp_path / "system.slice" / "docker-abc.scope").st_ino
    assert table.describe(proc(1, cgroup_id=ino)).cgroup == "/system.slice/docker-abc.scope"
    assert table.cgroup_path(os.stat(tmp_path).st_ino) == "/"
    assert table.cgroup_path(0) is None
    # A cgroup created after the walk: found by a new walk, at most once a second.
    (tmp_path / "ci" / "job-1").mkdir(parents=True)
    new = os.stat(tmp_path / "ci" / "job-1").st_ino
    now[0] += 1.0
    assert table.cgroup_path(new) == "/ci/job-1"
    (tmp_path / "ci" / "job-2").mkdir()
    newer = os.stat(tmp_path / "ci" / "job-2").st_ino
    now[0] += 0.5
    assert table.cgroup_path(newer) is None                            # too soon for another walk
    now[0] += 0.5
    assert table.cgroup_path(123456789) is None                        # walks again: not there
    (tmp_path / "ci" / "job-3").mkdir()
    now[0] += 0.9
    assert table.cgroup_path(newer) == "/ci/job-2"                      # found by that walk
    assert table.cgroup_path(os.stat(tmp_path / "ci" / "job-3").st_ino) is None


def test_the_current_process_cgroup_matches_proc_self_cgroup():
    lines = [line for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")]
    root = cgroup2_root()
    if not lines or not (root / "cgroup.procs").exists():
        pytest.skip("no cgroup v2 hierarchy here")
    path = lines[0][3:]
    cgroup_id = os.stat(str(root) + path).st_ino
    table = ProcessTable()
    assert table.cgroup_root == root
    assert table.describe(proc(os.getpid(), b"pytest", cgroup_id)).cgroup == path


def test_cgroup2_root_from_mountinfo(tmp_path):
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(
        "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n"
        "32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert cgroup2_root(hybrid) == Path("/sys/fs/cgroup/unified")
    unified = tmp_path / "unified"
    unified.write_text("35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
    assert cgroup2_root(unified) == Path("/sys/fs/cgroup")
    assert cgroup2_root(tmp_path / "missing") == Path("/sys/fs/cgroup")
