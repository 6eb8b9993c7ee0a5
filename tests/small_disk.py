"""A small tmpfs for disk-full tests: mounted under a test's directory, unmounted whatever happens."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "96k"):
    """Mount a tmpfs of `size` at where/disk and yield its path; lazily unmounted on the way out."""
    mount = where / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> int:
    """Write zeros to path until the file system refuses (what a job filling the disk does); returns bytes written."""
    total = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        block = b"\0" * 4096
        while True:
            try:
                n = os.write(fd, block if total % 4096 == 0 else block[: 4096 - total % 4096])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
            if n == 0:
                break
            total += n
    finally:
        os.close(fd)
    return total
