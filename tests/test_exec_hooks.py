"""The exec hooks (bpf/exec_paths.h, recorder/attach/exec_hooks.py), in the kernel.

Each process here is started and waited for before its entry is read, so
/proc no longer knows it: what the map says is all there is. The offsets the
hooks use come from this kernel's BTF; a wrong one finds no path or a wrong
one, and these tests fail. The hooks watch exec and fork host-wide, which
only reads; nothing here touches a network interface.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_audit.recorder.attach.exec_hooks import ExecHooks
from cicd_audit.recorder.kernel.bpf_program import EXEC_PATH_CUT_MARK, CaptureProgram, ProgramSettings

pytestmark = [pytest.mark.root]

TRUE = shutil.which("true")


@pytest.fixture(scope="module")
def program():
    program = CaptureProgram(ProgramSettings(pcap_mode=False, attribution=True), lambda data, size: None)
    yield program
    program.close()


@pytest.fixture
def hooks(program):
    with ExecHooks(program):
        yield program


def run(argv) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)


def exited(argv) -> int:
    """Run argv to its end; its pid."""
    child = subprocess.Popen(argv)
    child.wait(timeout=30)
    return child.pid


def test_a_binary_is_known_after_it_exits(hooks):
    pid = exited([TRUE])
    assert not Path(f"/proc/{pid}").exists()
    assert hooks.exec_path(pid) == TRUE


def test_a_script_is_known_by_its_interpreter_as_proc_shows_it(hooks, tmp_path):
    script = tmp_path / "job-step.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    assert hooks.exec_path(exited([str(script)])) == "/bin/sh"


def test_a_forked_child_runs_its_parents_binary_and_a_thread_adds_nothing(hooks):
    code = ("import os, threading\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "ids = []\n"
            "t = threading.Thread(target=lambda: ids.append(threading.get_native_id()))\n"
            "t.start(); t.join()\n"
            "print(os.getpid(), pid, ids[0])\n")
    parent, child, thread = map(int, run([sys.executable, "-c", code]).stdout.split())
    assert hooks.exec_path(parent) == sys.executable
    assert hooks.exec_path(child) == sys.executable
    assert hooks.exec_path(thread) is None


def test_a_path_longer_than_the_kernel_keeps_is_marked_cut(hooks, tmp_path):
    directory = tmp_path
    while len(str(directory)) < 300:
        directory = directory / ("d" * 40)
    directory.mkdir(parents=True)
    binary = directory / "true"
    shutil.copy(TRUE, binary)
    path = hooks.exec_path(exited([str(binary)]))
    assert path == str(binary)[:255] + EXEC_PATH_CUT_MARK


def test_nothing_is_kept_once_detached(program):
    with ExecHooks(program):
        pass
    assert program.exec_path(exited([TRUE])) is None
