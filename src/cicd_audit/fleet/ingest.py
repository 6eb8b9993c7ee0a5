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


def _date_rows(ts: pd.Series) -> list:
    """[(date, row positions)] in date order: each row's UTC date (NO_DATE when it has no time).

    Days are computed on the int64 nanoseconds and formatted once per distinct day,
    not once per row.
    """
    days = ts.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT")).astype("datetime64[D]")
    uniq, where = np.unique(days, return_inverse=True)
    labels = [NO_DATE if np.isnat(d) else str(d) for d in uniq]
    if len(set(labels)) == 1:
        return [(labels[0], None)]  # the common case: one date, every row, no selection to make
    out = []
    for date in sorted(set(labels)):
        codes = [k for k, label in enumerate(labels) if label == date]
        out.append((date, np.flatnonzero(np.isin(where, codes))))
    return out


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
        ts = frame["ts"] if "ts" in frame.columns else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        times += [t for t in (ts.min(), ts.max()) if pd.notna(t)]
        whole = to_arrow(frame, zeek_types(frame, log))  # converted once; a date's rows are taken in Arrow
        for date, positions in _date_rows(ts):
            if positions is None:
                table, positions = whole, np.arange(len(frame))
            else:
                table = whole.take(pa.array(positions))
            # the session names each row, for fleet queries over many sessions at once
            table = table.append_column("session", pa.repeat(pa.scalar(meta.session, pa.string()), table.num_rows))
            # the row's place in its log: a session read back from several dates keeps load_logs' order
            table = table.append_column(ROW_COLUMN, pa.array(positions, type=pa.uint32()))
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
