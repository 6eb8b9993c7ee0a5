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

The path to the directory is walked one component at a time from `/`, each
opened with O_NOFOLLOW through its parent's descriptor (open_directory): a
symbolic link on the way is followed only where nobody but root can have put
it (a root-owned link in a root-owned directory that others cannot write, or
that is sticky), so a job that can write `$RUNNER_TEMP`'s parent cannot
point `$RUNNER_TEMP/net` at /etc or at another job's recording. Missing
directories are created (0755, root's) the same way.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from cicd_audit.errors import UsageError

LOG_NAMES = ("conn.log", "dns.log", "weird.log", "notice.log", "tunnel.log", "capture_stats.log")
CONTROL_NAMES = ("recorder.pid", "recorder.stderr", "recorder.status")
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40          # as the kernel's own path walk (MAXSYMLINKS)


def _root_only(directory: os.stat_result, link: os.stat_result) -> bool:
    """Whether only root can have put this link in this directory (or swap it now)."""
    writable_by_others = directory.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    sticky = directory.st_mode & stat.S_ISVTX
    return directory.st_uid == 0 and link.st_uid == 0 and (not writable_by_others or bool(sticky))


def open_directory(path: str | os.PathLike, create: bool) -> int:
    """A descriptor of the directory at path, walked from / without following a link anyone but
    root could have planted (see the module docstring); missing directories are created when
    `create`. The last component is never a link. Raises UsageError, saying which component."""
    path = Path(os.path.abspath(path))
    todo = list(path.parts[1:])
    fd = os.open("/", _DIR_FLAGS)
    walked = Path("/")
    links = 0
    try:
        while todo:
            name = todo.pop(0)
            last = not todo
            try:
                new_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise UsageError(f"{path} does not exist") from None
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass            # made meanwhile: opened (and checked) on the next round
                todo.insert(0, name)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise UsageError(f"cannot open {walked / name}: {exc.strerror}") from None
                link = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(link.st_mode):
                    raise UsageError(f"{walked / name} is not a directory") from None
                if last:
                    raise UsageError(f"--out {path} is a symbolic link: name a real directory") from None
                if not _root_only(os.fstat(fd), link):
                    raise UsageError(f"{walked / name} (in --out {path}) is a symbolic link that users other than "
                                     "root can change: name the real directory") from None
                links += 1
                if links > MAX_LINKS:
                    raise UsageError(f"--out {path}: too many symbolic links") from None
                target = os.readlink(name, dir_fd=fd)
                todo[:0] = [part for part in Path(target).parts if part != "/"]
                if os.path.isabs(target):
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                    walked = Path("/")
                continue
            os.close(fd)
            fd = new_fd
            walked = walked / name
        return fd
    except BaseException:
        os.close(fd)
        raise


class OutputDir:
    """An output directory, validated and held open by descriptor (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, fd: int | None = None, recorded: bool = False):
        """fd: the directory already opened with open_directory (this object then owns it).
        recorded: the directory holds a recording already, and files are added beside it
        (still only new ones); else it must hold none."""
        self.path = Path(path)
        self._created: set[str] = set()
        try:
            self.fd = open_directory(self.path, create=not recorded) if fd is None else fd
        except OSError as exc:
            raise UsageError(f"cannot create the output directory {self.path}: {exc.strerror}") from None
        taken = sorted(set(os.listdir(self.fd)) & set(LOG_NAMES + CONTROL_NAMES))
        if taken and not recorded:
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

    def rename_new(self, name: str, new_name: str) -> str:
        """Give a file this object created a new name that nothing holds (new_name, else
        new_name with -2, -3, ... before its suffix); returns the name used. Never replaces a
        file: the new name is made with link(), which fails on any existing name or link."""
        if name not in self._created:
            raise UsageError(f"{self.path / name}: not a file of this recording")
        stem, dot, suffix = new_name.rpartition(".")
        for n in range(1, 1000):
            candidate = new_name if n == 1 else f"{stem}-{n}{dot}{suffix}"
            try:
                os.link(name, candidate, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
            except FileExistsError:
                continue
            os.unlink(name, dir_fd=self.fd)
            self._created.discard(name)
            self._created.add(candidate)
            return candidate
        raise UsageError(f"{self.path}: no free name for {new_name}")

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
