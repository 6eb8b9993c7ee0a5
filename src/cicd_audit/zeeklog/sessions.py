"""``load_logs``: the logs of one or more session directories, one DataFrame per log.

API::

    load_logs(*session_dirs, errors="backslashreplace", workers=2, limits=None, skip=()) -> LoadedLogs
    LoadedLogs(conn, dns, weird, capture_stats, notice)
    log_pieces(session_dirs, name, errors=..., limits=None, chunk_bytes=..., columns=None) -> (label, piece)...
    session_labels(session_dirs) -> the labels load_logs gives their rows
    has_logs(directory) -> bool
    LOG_NAMES
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pandas as pd

from ..errors import InputError
from .columns import empty_frame
from .frames import concat_frames, iter_frames, read_dataframe
from .limits import ReadLimits
from .schema import Schema, load_schema
from .source import CHUNK_BYTES

#: Logs ``load_logs`` looks for in each session directory.
LOG_NAMES = ("conn", "dns", "weird", "capture_stats", "notice")


@dataclass
class LoadedLogs:
    """The logs of one or more sessions. Each is a DataFrame (empty with the
    schema's columns when a session lacks that log); with several sessions a
    ``session`` column names the directory each row came from."""

    conn: pd.DataFrame
    dns: pd.DataFrame
    weird: pd.DataFrame
    capture_stats: pd.DataFrame
    notice: pd.DataFrame       # blocking mode's refusals (with their process columns)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


_SUFFIXES = (".log", ".log.gz", ".json", ".json.gz")


_SECOND_ROTATION = re.compile(r"^(.*\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)-(\d+)$")


def _rotation_order(file_name: str) -> tuple[str, int]:
    """conn.<stamp>.log before conn.<stamp>-2.log (two rotations in one second)."""
    stem = file_name.split(".")[1]
    m = _SECOND_ROTATION.match(stem)
    return (m.group(1), int(m.group(2))) if m else (stem, 1)


def _entries(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError as e:
        raise InputError(f"cannot read session directory {directory}: {e}") from None


def _find_log(directory: str, name: str, entries: list[str]) -> list[str]:
    """The files of one log among the directory's entries: the rotated ones
    (conn.2024-01-01-10-00-00.log, dns.16:00:00-17:00:00.log.gz), oldest
    first, then the current one."""
    rotated = sorted(
        (e for e in entries
         if e.startswith(name + ".") and e.endswith(_SUFFIXES) and e.count(".") >= 2 and e[len(name):] not in _SUFFIXES),
        key=_rotation_order)
    rotated = [os.path.join(directory, e) for e in rotated]
    current = [os.path.join(directory, name + suf) for suf in _SUFFIXES
               if name + suf in entries and os.path.isfile(os.path.join(directory, name + suf))]
    return rotated + current[:1]


def session_labels(dirs) -> list[str]:
    """Each directory's session label: its name, or its path where two names are the same."""
    dirs = [os.fspath(d) for d in dirs]
    base = [os.path.basename(os.path.normpath(d)) or d for d in dirs]
    return base if len(set(base)) == len(base) else [os.path.normpath(d) for d in dirs]


def has_logs(directory) -> bool:
    """Whether a directory holds a conn or dns log (TSV or JSON, plain or gzipped): a session."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    return any(e.startswith(("conn.", "dns.")) and (".log" in e or ".json" in e) for e in entries)


def load_logs(
    *session_dirs, errors: str = "backslashreplace", workers: int = 2, limits: ReadLimits | None = None,
    skip: tuple[str, ...] = (),
) -> LoadedLogs:
    """Load conn, dns, weird, capture_stats and notice logs from session directories.

    Each log is read with its own header; columns of our schema that a file
    lacks (older Zeek versions) are added as all-NA columns of the right
    dtype, extra columns are kept. With more than one directory a
    ``session`` column (categorical) names each row's directory. Files are
    parsed by ``workers`` threads (pandas' parser releases the GIL). Logs named in ``skip``
    are not read: each is an empty frame of its schema (a caller reading it with
    ``log_pieces`` instead).
    """
    dirs = _session_dirs(session_dirs, "load_logs")
    labels = session_labels(dirs)
    jobs = []  # (log name, dir index, path, place among the log's files): biggest first keeps threads busy
    entries = [_entries(d) for d in dirs]      # each directory listed once, for every log
    for name in LOG_NAMES:
        if name in skip:
            continue
        for k, d in enumerate(dirs):
            for i, p in enumerate(_find_log(d, name, entries[k])):
                jobs.append((name, k, p, i))
    jobs.sort(key=lambda j: -os.path.getsize(j[2]))

    def run(job):
        name, _, p, _ = job
        return read_dataframe(p, schema=load_schema(name), errors=errors, limits=limits)

    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run, jobs))
    else:
        results = [run(j) for j in jobs]
    by_key: dict[tuple[str, int], list[pd.DataFrame]] = {}
    for job, frame in sorted(zip(jobs, results), key=lambda jr: jr[0][3]):
        by_key.setdefault((job[0], job[1]), []).append(frame)
    out = {}
    for name in LOG_NAMES:
        schema = load_schema(name)
        frames = []
        for k, label in enumerate(labels):
            parts = by_key.get((name, k))
            f = concat_frames(parts) if parts else empty_frame(schema)
            for fld in schema.fields:
                if fld.name not in f.columns:
                    f[fld.name] = empty_frame(Schema(name, (fld,)))[fld.name].reindex(range(len(f)))
            if len(dirs) > 1:
                f.insert(0, "session", label)
            frames.append(f)
        df = concat_frames(frames)
        if len(dirs) > 1:
            df["session"] = pd.Categorical(df["session"], categories=labels)
        out[name] = df
    return LoadedLogs(**out)


def log_pieces(session_dirs, name: str, errors: str = "backslashreplace", limits: ReadLimits | None = None,
               chunk_bytes: int = CHUNK_BYTES, columns=None):
    """One log of each session, piece by piece (``frames.iter_frames``), session after session
    and each session's files oldest first, as ``load_logs`` would join them: (the session's
    label, a piece). For readers that reduce each piece and never hold the log; ``columns``:
    only these."""
    dirs = _session_dirs(session_dirs, "log_pieces")
    schema = load_schema(name)
    for d, label in zip(dirs, session_labels(dirs)):
        for path in _find_log(d, name, _entries(d)):
            yield from ((label, piece) for piece in iter_frames(path, schema, errors, limits, chunk_bytes, columns))


def _session_dirs(session_dirs, caller: str) -> list[str]:
    if not session_dirs:
        raise InputError(f"{caller}: give at least one session directory")
    dirs = [os.fspath(d) for d in session_dirs]
    for d in dirs:
        if not os.path.isdir(d):
            raise InputError(f"not a session directory: {d}")
    return dirs
