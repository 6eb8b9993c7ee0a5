"""Recording across CI steps: start in one step (--background), stop in a later one.

The recorder detaches into its own session and writes DIR/recorder.pid once
capture is active; `cicd-audit stop DIR` sends SIGTERM and waits until the
logs are closed.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from cicd_audit.errors import CicdAuditError, UsageError

PID_FILE = "recorder.pid"
STOP_TIMEOUT_S = 60


def pid_file(out_dir: Path) -> Path:
    return Path(out_dir) / PID_FILE


def start_in_background(out_dir: Path, run: Callable[[Callable[[], None]], int]) -> int:
    """Fork; the child runs `run(on_ready)`. Returns when capture is active (0) or failed (2)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:                                   # parent: wait for "ready" or an error message
        os.close(write_fd)
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
    log = os.open(out_dir / "recorder.stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)

    def on_ready() -> None:
        pid_file(out_dir).write_text(f"{os.getpid()}\n")
        os.write(write_fd, b"ready")
        os.close(write_fd)

    status = 2
    try:
        status = run(on_ready)
    except CicdAuditError as exc:
        try:
            os.write(write_fd, str(exc).encode())
        except OSError:
            pass
        print(f"cicd-audit: {exc}", file=sys.stderr)
    finally:
        pid_file(out_dir).unlink(missing_ok=True)
        os._exit(status)


def stop(out_dir: Path) -> None:
    path = pid_file(out_dir)
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError as exc:
        raise UsageError(f"no background recorder for {out_dir} ({path} does not exist)") from exc
    except ValueError as exc:
        raise UsageError(f"{path} does not hold a process id") from exc
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        raise UsageError(f"the recorder (pid {pid}) is not running; its logs in {out_dir} may be incomplete")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not path.exists() and not Path(f"/proc/{pid}").exists():
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise CicdAuditError(f"the recorder (pid {pid}) did not stop within {STOP_TIMEOUT_S} s")
