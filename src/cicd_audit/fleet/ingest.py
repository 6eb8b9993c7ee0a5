"""``store add``: convert session directories (ours or real Zeek's) into the Parquet store.

API::

    add_session(store, session_dir) -> dict        # the session's manifest
    write_session(store, job_meta, logs) -> dict   # frames already loaded (the benchmark's generator)
    add_sessions(store, dirs, progress=None) -> list[dict]

Reading goes through ``load_logs`` (TSV or JSON, plain or .gz, rotated files),
so the store holds exactly the frames the single-process ``analyze`` sees.
Idempotent: a session already in the store (same ``session`` name) has its
files overwritten and the files it no longer needs deleted, so re-adding never
duplicates rows. The manifest is written last: a crash mid-way leaves the old
manifest, and adding again repairs it.
"""

from __future__ import annotations

import datetime as _dt
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..zeeklog.reader import has_logs, load_logs
from .catalog import MANIFEST_FORMAT, read_manifest, write_manifest
from .columns import to_arrow, zeek_types
from .jobmeta import read_job_meta
from .store import LOGS, ROW_COLUMN, Store, log_file

#: Parquet compression: zstd keeps DNS names small and decompresses fast.
COMPRESSION = "zstd"

#: Date partition for rows without a timestamp (real Zeek logs can have them only if damaged).
NO_DATE = "1970-01-01"


def _dates(ts: pd.Series) -> pd.Series:
    if ts.empty:
        return pd.Series([], dtype=object)
    return ts.dt.strftime("%Y-%m-%d").fillna(NO_DATE).astype(object)


def add_session(store: Store, session_dir) -> dict:
    d = os.fspath(session_dir)
    if not os.path.isdir(d):
        raise InputError(f"{d}: not a session directory")
    if not has_logs(d):
        raise InputError(f"{d}: no conn.log or dns.log in it (plain, .gz or JSON)")
    return write_session(store, read_job_meta(d), load_logs(d))


def write_session(store: Store, meta, logs) -> dict:
    """Store one session's frames (``logs.conn``, ``logs.dns`` as load_logs gives them) under ``meta``
    (a ``JobMeta``), replacing what the store held for that session."""
    old = read_manifest(store, meta.session)
    files, rows, times = [], {}, []
    for log in LOGS:
        frame = logs[log]
        rows[log] = int(len(frame))
        if frame.empty:
            continue
        types = zeek_types(frame, log)
        ts = frame["ts"] if "ts" in frame.columns else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        times += [t for t in (ts.min(), ts.max()) if pd.notna(t)]
        dates = _dates(ts)
        for date in sorted(dates.unique()):
            part = frame[(dates == date).to_numpy()]
            table = to_arrow(part, types)
            # the session names each row, for fleet queries over many sessions at once
            table = table.append_column("session", _session_column(meta.session, len(part)))
            # the row's place in its log: a session read back from several dates keeps load_logs' order
            table = table.append_column(ROW_COLUMN, pa.array(np.flatnonzero((dates == date).to_numpy()), type=pa.uint32()))
            rel = log_file(log, date, meta.repository, meta.workflow, meta.session)
            path = store.path(rel)
            store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with store.fs.open(path, "wb") as f:
                pq.write_table(table, f, compression=COMPRESSION)
            files.append(rel)
    if old:
        for rel in set(old.get("files", [])) - set(files):
            try:
                store.fs.rm(store.path(rel))
            except FileNotFoundError:
                pass
    manifest = {
        "format": MANIFEST_FORMAT, "version": 1, "session": meta.session, "repository": meta.repository,
        "workflow": meta.workflow, "first_seen": min(times).isoformat() if times else None,
        "last_seen": max(times).isoformat() if times else None, "rows": rows, "files": files,
        "job": meta.fields, "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_manifest(store, manifest)
    return manifest


def _session_column(session: str, n: int):
    return pa.array([session] * n, type=pa.string())


def add_sessions(store: Store, dirs, progress=None) -> list:
    seen = {}
    for d in dirs:  # refuse a name clash before writing anything: the second would replace the first
        name = read_job_meta(d).session if os.path.isdir(d) else d
        if name in seen:
            raise InputError(f"{d} and {seen[name]} are both session {name!r}: "
                             f"give each a unique \"session\" in its job.json")
        seen[name] = d
    out = []
    for d in dirs:
        m = add_session(store, d)
        out.append(m)
        if progress:
            progress(m)
    return out
