"""Where a fleet store lives and how it is laid out: a local path or any fsspec URL.

API::

    Store.open(url, storage_options=None) -> Store   # "/data/store", "s3://bucket/audit", "gs://...", "abfs://..."
    store.path(*parts) -> str                        # path inside the store, for store.fs
    store.url(*parts) -> str                         # the same, as a URL dask/pyarrow accept
    log_file(log, date, repository, workflow, session) -> relative path
    LOGS                                             # ("conn", "dns")

Layout (Hive-style partitions, so pyarrow and dask prune by directory)::

    STORE/conn/date=2025-10-11/repository=org%2Frepo/workflow=build/<session>.parquet
    STORE/dns/ ... the same ...
    STORE/sessions/<session>.json      one manifest per session (see catalog.py)

A session's rows are filed under the UTC date of each row, so a job that runs
over midnight has one file per date; partition values and file names are
percent-encoded (a repository is "org/repo"). One file per session and date
means writers on different runners never touch the same object, and
re-adding a session overwrites exactly its own files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from ..errors import InputError

LOGS = ("conn", "dns")
SESSIONS_DIR = "sessions"
UNKNOWN = "unknown"
#: columns the store adds to each log row: which session, and the row's position in its log
SESSION_COLUMN = "session"
ROW_COLUMN = "_row"


def encode(value: str) -> str:
    """Percent-encode a partition value or file name (pyarrow decodes Hive segments the same way)."""
    return quote(str(value), safe="-_.~@+")


def log_file(log: str, date: str, repository: str, workflow: str, session: str) -> str:
    return f"{log}/date={date}/repository={encode(repository)}/workflow={encode(workflow)}/{encode(session)}.parquet"


def manifest_file(session: str) -> str:
    return f"{SESSIONS_DIR}/{encode(session)}.json"


@dataclass
class Store:
    fs: object
    root: str
    protocol: str
    storage_options: dict = field(default_factory=dict)

    @classmethod
    def open(cls, url, storage_options: dict | None = None, create: bool = False) -> Store:
        import fsspec

        url = str(url)
        try:
            fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise InputError(f"store {url}: {e}") from None
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        root = root.rstrip("/")
        store = cls(fs=fs, root=root, protocol=protocol, storage_options=dict(storage_options or {}))
        if create and protocol in ("file", "local"):
            fs.makedirs(root, exist_ok=True)
        elif not create and not _exists(fs, root):
            raise InputError(f"store {url}: not found (create it with `cicd-audit store add SESSION --to {url}`)")
        return store

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def url(self, *parts: str) -> str:
        p = self.path(*parts)
        return p if self.protocol in ("file", "local") else f"{self.protocol}://{p}"


def _exists(fs, path) -> bool:
    try:
        return fs.exists(path)
    except Exception as e:  # credentials, endpoint, permissions: say which store and why, in one line
        raise InputError(f"store {path}: cannot be read ({type(e).__name__}: {e})") from None
