"""Recording across CI steps: start in one step (--background), stop in a later one.

The recorder detaches into its own session and writes DIR/recorder.pid once
capture is active; `cicd-audit stop DIR` sends SIGTERM and waits until the
logs are closed.

The job can write DIR, so neither command trusts what it finds there:

- A second start on the same DIR finds the running recorder and says so
  (exit 0, nothing touched): starting is idempotent per directory.
- A recorder is recognised by the process, not by the file: `recorder.pid`
  must name a live cicd-audit process that holds DIR itself open (same
  device and inode). `stop` signals nothing else, so a planted pid file
  cannot make root kill an arbitrary process or another job's recorder.
- Files are read and created through the directory's descriptor without
  following links (recorder/output_dir.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from cicd_audit.errors import CicdAuditError, UsageError
from cicd_audit.recorder.output_dir import OutputDir

PID_FILE = "recorder.pid"
STDERR_FILE = "recorder.stderr"
STOP_TIMEOUT_S = 60


def pid_file(out_dir: Path) -> Path:
    return Path(out_dir) / PID_FILE


def running_recorder(out_dir: Path) -> int | None:
    """The pid of the live recorder of out_dir, by its pid file, checked against the process; or None."""
    try:
        dir_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fd = os.open(PID_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            text = os.read(fd, 64).decode(errors="replace").strip()
        finally:
            os.close(fd)
        if not text.isdigit():
            return None
        pid = int(text)
        return pid if _is_recorder_of(pid, os.fstat(dir_fd)) else None
    finally:
        os.close(dir_fd)


def _is_recorder_of(pid: int, directory: os.stat_result) -> bool:
    """Whether pid is a cicd-audit process holding that very directory open."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        if not any(b"cicd-audit" in a or b"cicd_audit" in a for a in argv) or b"record" not in argv:
            return False
        for entry in (proc / "fd").iterdir():
            try:
                st = os.stat(entry)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (directory.st_dev, directory.st_ino):
                return True
    except OSError:
        return False
    return False


def start_in_background(out_dir: Path, run: Callable[[Callable[[], None], OutputDir], int]) -> int:
    """Fork; the child runs `run(on_ready, output)`. Returns when capture is active (0) or failed (2);
    0 at once when a recorder of out_dir is already running."""
    pid = running_recorder(out_dir)
    if pid is not None:
        print(f"cicd-audit: already recording in the background (pid {pid}); stop with: cicd-audit stop {out_dir}",
              file=sys.stderr)
        return 0
    output = OutputDir(out_dir)             # refuses a link, or a directory holding another recording
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:                                   # parent: wait for "ready" or an error message
        os.close(write_fd)
        output.close()
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        if message == "ready":
            print(f"cicd-audit: recording in the background (pid {pid}); stop with: cicd-audit stop {out_dir}",
                  file=sys.stderr)
            return 0
        os.waitpid(pid, 0)
        print(f"cicd-audit: {message or 'the background recorder exited before capture started'}", file=sys.stderr)
        return 2

    os.close(read_fd)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    log = output.create(STDERR_FILE)
    os.dup2(log, 1)
    os.dup2(log, 2)

    def on_ready() -> None:
        output.write_new(PID_FILE, f"{os.getpid()}\n")
        os.write(write_fd, b"ready")
        os.close(write_fd)

    status = 2
    try:
        status = run(on_ready, output)
    except CicdAuditError as exc:
        try:
            os.write(write_fd, str(exc).encode())
        except OSError:
            pass
        print(f"cicd-audit: {exc}", file=sys.stderr)
    finally:
        output.remove(PID_FILE)               # only the one this recorder wrote
        os._exit(status)


def stop(out_dir: Path) -> None:
    """SIGTERM the recorder of out_dir (checked, see the module docstring) and wait until its logs are closed."""
    if not pid_file(out_dir).exists():
        raise UsageError(f"no background recorder for {out_dir} ({pid_file(out_dir)} does not exist)")
    pid = running_recorder(out_dir)
    if pid is None:
        raise UsageError(f"{pid_file(out_dir)} does not name a running cicd-audit recorder of {out_dir}: "
                         "nothing signalled (its logs may be incomplete)")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise CicdAuditError(f"the recorder (pid {pid}) did not stop within {STOP_TIMEOUT_S} s")
