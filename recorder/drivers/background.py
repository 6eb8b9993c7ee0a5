"""Recording across CI steps: start in one step (--background), stop in a later one.

The recorder detaches into its own session and writes DIR/recorder.pid once
capture is active; `cicd-audit stop DIR` sends SIGTERM and waits until the
logs are closed.

The job can write DIR, so neither command trusts what it finds there:

- A second start on the same DIR finds the running recorder and says so
  (exit 0, nothing touched): starting is idempotent per directory. A start
  holds an flock on DIR from before it creates anything until its recorder
  exits, so a retry that comes while the first is still loading waits for
  its pid file instead of failing on its half-made session.
- A recorder is recognised by the process, not by the file: `recorder.pid`
  must name a live cicd-audit process that holds DIR itself open (same
  device and inode). `stop` signals nothing else, so a planted pid file
  cannot make root kill an arbitrary process or another job's recorder.
- DIR is reached without following a link the job could have planted, and
  files are read and created through its descriptor without following
  links (recorder/logs/output_dir.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

from cicd_audit import notices
from cicd_audit.errors import CicdAuditError, UsageError
from cicd_audit.recorder.logs.output_dir import OutputDir, open_directory
from cicd_audit.recorder.logs.status_file import STATUS_FILE

PID_FILE = "recorder.pid"
STDERR_FILE = "recorder.stderr"
# A recorder behind a burst writes what it holds in memory before it exits (at most a few minutes
# at the backlog's cap, kernel/backlog.py); stop says so after a few seconds instead of looking hung.
STOP_TIMEOUT_S = 600
STOP_PATIENCE_NOTICE_S = 5
START_TIMEOUT_S = 120     # a retry waits this long for the first start's recorder to be ready


def pid_file(out_dir: Path) -> Path:
    return Path(out_dir) / PID_FILE


def running_recorder(out_dir: Path) -> int | None:
    """The pid of the live recorder of out_dir, by its pid file, checked against the process; or None."""
    try:
        dir_fd = open_directory(out_dir, create=False)
    except (CicdAuditError, OSError):
        return None
    try:
        return _recorder_in(dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)


def _recorder_in(dir_fd: int) -> int | None:
    """The recorder the directory's pid file names, if it is one of this directory (else None).
    Raises FileNotFoundError without a pid file."""
    fd = os.open(PID_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        text = os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if _is_recorder_of(pid, os.fstat(dir_fd)) else None


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


def _claim(out_dir: Path) -> tuple[int | None, OutputDir | None]:
    """(pid, None) when a recorder of out_dir runs (or finished starting while we waited); else
    (None, the directory for this start, flock'ed: the lock lives as long as its descriptor)."""
    dir_fd = open_directory(out_dir, create=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                pid = _recorder_in(dir_fd)
            except FileNotFoundError:
                pid = None
            if pid is not None:
                os.close(dir_fd)
                return pid, None
            try:
                fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass                # another start holds it: wait for its pid file, or its end
            if time.monotonic() >= deadline:
                raise UsageError(f"{out_dir} is held by another start that did not become a recorder within "
                                 f"{START_TIMEOUT_S} s; nothing started")
            time.sleep(0.05)
    except BaseException:
        os.close(dir_fd)
        raise
    return None, OutputDir(out_dir, fd=dir_fd)     # refuses a directory holding another recording


def start_in_background(out_dir: Path, run: Callable[[Callable[[], None], OutputDir], int]) -> int:
    """Fork; the child runs `run(on_ready, output)`. Returns when capture is active (0) or failed (2);
    0 at once when a recorder of out_dir is already running."""
    pid, output = _claim(out_dir)
    if pid is not None:
        notices.say(f"cicd-audit: already recording in the background (pid {pid}); stop with: cicd-audit stop {out_dir}")
        return 0
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:                                   # parent: wait for "ready" or an error message
        os.close(write_fd)
        output.close()
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        if message == "ready":
            notices.say(f"cicd-audit: recording in the background (pid {pid}); stop with: cicd-audit stop {out_dir}")
            return 0
        os.waitpid(pid, 0)
        notices.say(f"cicd-audit: {message or 'the background recorder exited before capture started'}")
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
        notices.say(f"cicd-audit: {exc}")
    finally:
        output.remove(PID_FILE)               # only the one this recorder wrote
        os._exit(status)


def stop(out_dir: Path) -> dict | None:
    """SIGTERM the recorder of out_dir (checked, see the module docstring), wait until its logs are
    closed, and return its recorder.status (None if it left none, e.g. killed)."""
    dir_fd = open_directory(out_dir, create=False)
    try:
        try:
            pid = _recorder_in(dir_fd)
        except FileNotFoundError:
            raise UsageError(f"no background recorder for {out_dir} ({pid_file(out_dir)} does not exist)") from None
        if pid is None:
            raise UsageError(f"{pid_file(out_dir)} does not name a running cicd-audit recorder of {out_dir}: "
                             "nothing signalled (its logs may be incomplete)")
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid)
        return _read_status(dir_fd)
    finally:
        os.close(dir_fd)


def _wait_gone(pid: int) -> None:
    started = time.monotonic()
    said = False
    while time.monotonic() - started < STOP_TIMEOUT_S:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if not said and time.monotonic() - started >= STOP_PATIENCE_NOTICE_S:
            notices.say(f"cicd-audit: waiting for the recorder (pid {pid}) to write the events it still holds")
            said = True
        time.sleep(0.05)
    raise CicdAuditError(f"the recorder (pid {pid}) did not stop within {STOP_TIMEOUT_S} s")


def _read_status(dir_fd: int) -> dict | None:
    """recorder.status as the recorder left it (never through a link). The job could have written
    it too: see recorder/logs/status_file.py."""
    try:
        fd = os.open(STATUS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        status = json.loads(os.read(fd, 1 << 16))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return status if isinstance(status, dict) else None
