"""``analyze --store``: every stored session through the same analyzers, partition-parallel on Dask.

API::

    analyze_store(store_url, policy=None, baseline_runs=10, scheduler="local",
                  repository=None, workflow=None, since=None, until=None,
                  storage_options=None, extra_baseline=()) -> FleetResult
    FleetResult.findings   # DataFrame: session, repository, workflow + findings.FINDING_COLUMNS
    FleetResult.sessions   # DataFrame: one row per analyzed session with its summary

Each session is analyzed as ``cicd-audit analyze SESSION --baseline B1 ...``
would analyze it, B1... being the ``baseline_runs`` sessions of the same
(repository, workflow) that the store holds from before it: the analyzers are
called through ``cicd_audit.analyzers.analyze`` only. The sessions to analyze
form a dask.dataframe, one partition per ``SESSIONS_PER_PARTITION`` sessions;
a worker reads only its sessions' files (and their baselines'), one session at
a time, so its memory is bounded by the largest session and its baseline
(``baseline_runs`` + 1 sessions), never by the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .catalog import baselines, read_catalog
from .cluster import dask_client
from .reading import labelled_logs, session_logs
from .store import Store

#: Sessions per Dask partition: a few hundred tasks for 10,000 sessions keep
#: both cores busy to the end without per-task overhead dominating.
SESSIONS_PER_PARTITION = 25

RESULT_COLUMNS = ["session", "repository", "workflow", "first_seen", "baseline", "findings", "summary"]


@dataclass
class FleetResult:
    findings: pd.DataFrame
    sessions: pd.DataFrame


def select_sessions(catalog, repository=None, workflow=None, since=None, until=None) -> pd.DataFrame:
    sel = catalog
    if repository:
        sel = sel[sel["repository"] == repository]
    if workflow:
        sel = sel[sel["workflow"] == workflow]
    if since is not None:
        sel = sel[sel["first_seen"] >= _utc(since)]
    if until is not None:
        sel = sel[sel["first_seen"] < _utc(until)]
    return sel


def _utc(t) -> pd.Timestamp:
    """A bound as UTC: first_seen is tz-aware, and comparing it with a naive time raises."""
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _analyze_partition(part: pd.DataFrame, store_url: str, storage_options: dict, policy, extra_baseline) -> pd.DataFrame:
    """Runs on a worker: the sessions of one partition, one after the other.

    Partitions hold consecutive runs of a workflow, so a run analyzed now is
    the baseline of the next ones: what a baseline needs of it (its
    destination and lookup tables, ``analyzers.Baseline``) is taken from its
    analysis and kept while a later run of the partition needs it, and its
    logs are read once. The cache holds at most a baseline's tables, never its logs.
    """
    from ..analyzers import Baseline, analyze

    store = Store.open(store_url, storage_options)
    extra = [_as_baseline(label, logs) for label, logs in extra_baseline]
    runs: dict = {}           # session -> its Baseline part
    later_baselines = {s for base in part["baseline"] for s in base}
    rows = []
    for r in part.itertuples(index=False):
        runs = {s: runs[s] for s in r.baseline if s in runs}   # drop what no later run of this workflow needs
        for s, files in zip(r.baseline, r.baseline_files):
            if s not in runs:
                runs[s] = _as_baseline(s, session_logs(store, files))
        parts = [runs[s] for s in r.baseline] + extra
        logs = session_logs(store, r.files)
        result = analyze(logs, policy=policy, baseline=Baseline.joined(parts) if parts else None,
                         sessions=[r.session], name_features=False)  # findings and summary are all it keeps
        if r.session in later_baselines:  # from the tables just made: its logs are not indexed again
            runs[r.session] = Baseline.of_result(result, r.session)
        del logs
        findings = result.findings.astype({"severity": str}).to_dict("records")
        rows.append({"session": r.session, "repository": r.repository, "workflow": r.workflow,
                     "first_seen": r.first_seen, "baseline": list(r.baseline), "findings": findings,
                     "summary": result.summary})
        del result
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _as_baseline(label: str, logs):
    """One run as a part of a baseline: its tables, their rows naming its session."""
    from ..analyzers import Baseline
    return Baseline.of_logs(labelled_logs(label, logs))


def _meta() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS}).astype(
        {"first_seen": "datetime64[ns, UTC]"})


def analyze_store(store_url, policy=None, baseline_runs: int = 10, scheduler="local",
                  repository=None, workflow=None, since=None, until=None, storage_options=None,
                  extra_baseline=(), workers: int | None = None, progress=None) -> FleetResult:
    """``progress(done, total)``: called with the sessions analyzed so far as each partition ends."""
    import dask
    import dask.dataframe as dd

    store = Store.open(store_url, storage_options)
    catalog = read_catalog(store)
    todo = select_sessions(catalog, repository, workflow, since, until).copy()
    base = baselines(catalog, baseline_runs)
    files = dict(zip(catalog["session"], catalog["files"]))
    todo["baseline"] = [base[s] for s in todo["session"]]
    todo["baseline_files"] = [[files[b] for b in base[s]] for s in todo["session"]]
    todo = todo[["session", "repository", "workflow", "first_seen", "files", "baseline", "baseline_files"]]
    # a workflow's runs side by side and in order: a partition reuses what it read for the previous run
    todo = todo.sort_values(["repository", "workflow", "first_seen", "session"], kind="stable")
    if todo.empty:
        return FleetResult(findings=_findings_frame(_meta()), sessions=_meta().drop(columns="findings"))
    nparts = max(1, math.ceil(len(todo) / SESSIONS_PER_PARTITION))
    # the file and baseline columns hold lists: dask must not turn object columns into strings
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_pandas(todo.reset_index(drop=True), npartitions=nparts, sort=False)
        out = ddf.map_partitions(_analyze_partition, store_url, dict(storage_options or {}), policy,
                                 list(extra_baseline), meta=_meta())
        with dask_client(scheduler, workers=workers) as client:
            results = _computed(out, client, progress or (lambda done, total: None), len(todo))
    results = results.sort_values(["first_seen", "session"], kind="stable").reset_index(drop=True)
    return FleetResult(findings=_findings_frame(results), sessions=results.drop(columns="findings"))


def _computed(out, client, progress, total: int) -> pd.DataFrame:
    """The partitions' results in partition order, saying how far it is as each one ends:
    a whole store takes many minutes."""
    parts = out.to_delayed()
    results, done = [], 0
    if client is None:
        for part in parts:
            results.append(part.compute(scheduler="synchronous"))
            done += len(results[-1])
            progress(done, total)
        return pd.concat(results, ignore_index=True)
    from distributed import as_completed

    futures = client.compute(parts)
    position = {f.key: i for i, f in enumerate(futures)}
    pending = as_completed(futures)
    del futures  # a result read is released: the workers must not hold every session's result to the end
    results = [None] * len(position)
    for future in pending:
        result = future.result()
        results[position[future.key]] = result
        del future
        done += len(result)
        progress(done, total)
    return pd.concat(results, ignore_index=True)


def _findings_frame(results: pd.DataFrame) -> pd.DataFrame:
    from ..analyzers.findings import FINDING_COLUMNS, SEVERITY_DTYPE

    rows = [{"session": r.session, "repository": r.repository, "workflow": r.workflow, **f}
            for r in results.itertuples(index=False) for f in r.findings]
    df = pd.DataFrame(rows, columns=["session", "repository", "workflow", *FINDING_COLUMNS])
    df["severity"] = df["severity"].astype(SEVERITY_DTYPE)
    # most severe first; within a severity, sessions in the order they ran
    key = -df["severity"].cat.codes
    order = df.assign(_k=key).sort_values("_k", kind="stable").index
    return df.loc[order].reset_index(drop=True)
