"""Read stored sessions back as the frames ``load_logs`` gives for their directories.

API::

    session_logs(store, files) -> SessionLogs(conn, dns)      # one session (files: its manifest's list)
    baseline_logs([(label, SessionLogs), ...]) -> SessionLogs  # several, with load_logs' ``session`` column
    labelled_logs(label, SessionLogs) -> SessionLogs          # one, with that column

Only the named files are opened (no listing), so reading one session costs the
same in a store of ten sessions or of a million.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..zeeklog.reader import empty_frame
from ..zeeklog.schema import load_schema
from .columns import to_frame
from .store import LOGS, ROW_COLUMN, SESSION_COLUMN, Store


@dataclass
class SessionLogs:
    conn: pd.DataFrame
    dns: pd.DataFrame

    def __getitem__(self, name):
        return getattr(self, name)


def _read_log(store: Store, paths: list) -> pd.DataFrame | None:
    tables = []
    for p in paths:
        with store.fs.open(store.path(p), "rb") as f:
            tables.append(pq.read_table(f))
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        table = table.sort_by(ROW_COLUMN)
    table = table.drop_columns([c for c in (SESSION_COLUMN, ROW_COLUMN) if c in table.column_names])
    return to_frame(table)


def session_logs(store: Store, files: list) -> SessionLogs:
    out = {}
    for log in LOGS:
        frame = _read_log(store, [f for f in files if f.startswith(log + "/")])
        out[log] = frame if frame is not None else empty_frame(load_schema(log))
    return SessionLogs(**out)


def baseline_logs(labelled: list) -> SessionLogs | None:
    """Several sessions as one, the way ``load_logs(dir1, dir2, ...)`` joins directories."""
    if not labelled:
        return None
    if len(labelled) == 1:
        return labelled[0][1]
    labels = [label for label, _ in labelled]
    out = {}
    for log in LOGS:
        df = pd.concat([_with_session(logs[log], label) for label, logs in labelled], ignore_index=True)
        df["session"] = pd.Categorical(df["session"], categories=labels)
        out[log] = df
    return SessionLogs(**out)


def labelled_logs(label: str, logs: SessionLogs) -> SessionLogs:
    """One session's logs with the ``session`` column they have among several."""
    return SessionLogs(**{log: _with_session(logs[log], label) for log in LOGS})


def _with_session(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    f = frame.copy()
    f.insert(0, "session", label)
    return f
