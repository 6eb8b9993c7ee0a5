"""The session directory: the one place the recorder writes, opened so the job cannot redirect it.

The recorder runs as root; the job it records can usually write the
directory's parent (`$RUNNER_TEMP`) and, once it exists, the directory
itself. So:

- The directory is opened once, with O_DIRECTORY|O_NOFOLLOW: a symbolic link
  planted at `--out` is refused, and every later file operation goes through
  that descriptor, so renaming or replacing the path meanwhile changes nothing.
- Every file is created through it with O_CREAT|O_EXCL|O_NOFOLLOW: a file or
  link planted under one of our names is never followed, truncated or
  overwritten. All logs are created at start, so nothing is opened by name
  later (capture_stats.log included).
- A directory that already holds a session (any log or control file of
  ours) is refused: one recording per directory, and no recorder ever
  touches another's files.

Parent directories of `--out` are created if missing and trusted as given:
they are the caller's choice, not the job's (see docs/exit-status.md).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from cicd_audit.errors import UsageError

LOG_NAMES = ("conn.log", "dns.log", "weird.log", "notice.log", "capture_stats.log")
CONTROL_NAMES = ("recorder.pid", "recorder.stderr", "recorder.status")
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputDir:
    """An output directory, validated and held open by descriptor (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._created: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.path, 0o755)
            except FileExistsError:
                pass
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and self.path.is_symlink():
                raise UsageError(f"--out {self.path} is a symbolic link: name a real directory") from None
            if exc.errno == errno.ENOTDIR:
                raise UsageError(f"--out {self.path} is not a directory") from None
            raise UsageError(f"cannot create the output directory {self.path}: {exc.strerror}") from None
        taken = sorted(set(os.listdir(self.fd)) & set(LOG_NAMES + CONTROL_NAMES))
        if taken:
            os.close(self.fd)
            raise UsageError(f"{self.path} already holds a recording ({', '.join(taken)}); "
                             "give each recording a new directory")

    def create(self, name: str) -> int:
        """A new file in the directory, for writing; never an existing file or link."""
        try:
            fd = os.open(name, _CREATE_FLAGS, 0o644, dir_fd=self.fd)
        except FileExistsError:
            raise UsageError(f"{self.path / name} appeared while the recorder was starting: "
                             "something else writes this directory; not overwritten") from None
        self._created.add(name)
        return fd

    def write_new(self, name: str, text: str) -> None:
        """Create name with text in it (O_EXCL: never over someone else's file)."""
        fd = self.create(name)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        """Remove a file this object created (never anything else)."""
        if name in self._created:
            try:
                os.unlink(name, dir_fd=self.fd)
            except FileNotFoundError:
                pass
            self._created.discard(name)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
