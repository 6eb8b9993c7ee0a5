"""The store's list of sessions: one JSON manifest per session, ``STORE/sessions/<session>.json``.

API::

    write_manifest(store, manifest)                 # dict, see MANIFEST_KEYS
    read_manifest(store, session) -> dict | None
    read_catalog(store) -> DataFrame                # one row per session, oldest first
    baselines(catalog, runs) -> {session: [earlier sessions of the same workflow, oldest first]}

A manifest per session (instead of one index file) lets runners add jobs
concurrently without a lock: each writes only its own objects.
"""

from __future__ import annotations

import json

import pandas as pd

from ..errors import InputError
from .store import SESSIONS_DIR, UNKNOWN, Store, manifest_file

MANIFEST_FORMAT = "cicd-audit-store-session"
MANIFEST_KEYS = ("format", "version", "session", "repository", "workflow", "first_seen", "last_seen", "rows", "files",
                 "job", "added")
CATALOG_COLUMNS = ["session", "repository", "workflow", "first_seen", "last_seen", "conn_rows", "dns_rows", "files"]


def write_manifest(store: Store, manifest: dict) -> None:
    path = store.path(manifest_file(manifest["session"]))
    store.fs.makedirs(store.path(SESSIONS_DIR), exist_ok=True)
    with store.fs.open(path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True, default=str)


def _parse(text, where) -> dict:
    try:
        m = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: damaged session manifest ({e})") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{where}: not a cicd-audit session manifest")
    return m


def read_manifest(store: Store, session: str) -> dict | None:
    path = store.path(manifest_file(session))
    if not store.fs.exists(path):
        return None
    return _parse(store.fs.cat_file(path), path)


def read_catalog(store: Store) -> pd.DataFrame:
    """Every stored session (reads the manifests concurrently on object stores)."""
    try:
        paths = sorted(p for p in store.fs.ls(store.path(SESSIONS_DIR), detail=False) if p.endswith(".json"))
    except FileNotFoundError:
        paths = []
    raw = store.fs.cat(paths) if paths else {}
    rows = []
    for p in paths:
        m = _parse(raw[p], p)
        rows.append({"session": m["session"], "repository": m.get("repository", UNKNOWN),
                     "workflow": m.get("workflow", UNKNOWN), "first_seen": m.get("first_seen"),
                     "last_seen": m.get("last_seen"), "conn_rows": m.get("rows", {}).get("conn", 0),
                     "dns_rows": m.get("rows", {}).get("dns", 0), "files": m.get("files", [])})
    cat = pd.DataFrame(rows, columns=CATALOG_COLUMNS)
    for c in ("first_seen", "last_seen"):
        cat[c] = pd.to_datetime(cat[c], utc=True, format="ISO8601")
    return cat.sort_values(["first_seen", "session"], na_position="first", kind="stable").reset_index(drop=True)


def baselines(catalog: pd.DataFrame, runs: int) -> dict:
    """For each session, the ``runs`` sessions of the same (repository, workflow) that began before it.

    Sessions of an unknown repository or workflow get none: their history
    would mix unrelated jobs, and every destination of one would look "new".
    """
    out = {}
    for (repo, wf), g in catalog.groupby(["repository", "workflow"], sort=False):
        names = list(g["session"])  # the catalog is sorted by start time
        for i, s in enumerate(names):
            known = repo != UNKNOWN and wf != UNKNOWN
            out[s] = names[max(0, i - runs):i] if known and runs > 0 else []
    return out
