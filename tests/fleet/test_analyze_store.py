"""`analyze --store`: the same findings as the single-process path, per session against its workflow's history."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cicd_audit.analyzers import Baseline, analyze, load_logs
from cicd_audit.cli import main
from cicd_audit.fleet.analysis import analyze_store
from cicd_audit.fleet.ingest import add_sessions
from cicd_audit.fleet.jobmeta import read_job_meta
from cicd_audit.fleet.reading import SessionLogs, labelled_logs
from cicd_audit.fleet.store import Store

POLICY = Path(__file__).resolve().parents[1] / "fixtures" / "analyze" / "policy.yml"
RUNS = 2


@pytest.fixture(scope="module")
def store(fleet_sessions, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "store"
    add_sessions(Store.open(path, create=True), fleet_sessions)
    return path


def single_process(fleet_sessions, policy=None, runs=RUNS) -> dict:
    """{session: (findings records, summary)} from `analyze DIR --baseline <earlier runs of its workflow>`."""
    metas = [(d, read_job_meta(d)) for d in fleet_sessions]
    out = {}
    for d, m in metas:
        same = [e for e, n in metas if (n.repository, n.workflow) == (m.repository, m.workflow)]
        known = "unknown" not in (m.repository, m.workflow)
        earlier = same[: same.index(d)][-runs:] if known and runs else []
        r = analyze(load_logs(d), policy=policy, baseline=load_logs(*earlier) if earlier else None, sessions=[m.session])
        out[m.session] = (r.findings.astype({"severity": str}).to_dict("records"), r.summary)
    return out


def from_store(result) -> dict:
    f = result.findings.astype({"severity": str})
    out = {}
    for s in result.sessions.itertuples(index=False):
        mine = f[f["session"] == s.session].drop(columns=["session", "repository", "workflow"])
        out[s.session] = (mine.to_dict("records"), s.summary)
    return out


def test_sync_scheduler_matches_the_single_process_path(store, fleet_sessions):
    from cicd_audit.policy import load_policy

    policy = load_policy(POLICY)
    result = analyze_store(store, policy=policy, baseline_runs=RUNS, scheduler="sync")
    expected = single_process(fleet_sessions, policy=policy)
    assert from_store(result) == expected
    # the run that exfiltrates is found, against its own workflow's history
    f = result.findings
    tunnel = f[f["analyzer"] == "dns_tunnel"]
    assert list(tunnel["session"]) == ["api-build-3"] and list(tunnel["indicator"]) == ["example.net"]
    sessions = result.sessions.set_index("session")
    assert sessions.loc["api-build-3", "baseline"] == ["api-build-1", "api-build-2"]
    assert sessions.loc["loose-session", "baseline"] == []  # unknown workflow: no history to compare with
    new = f[f["analyzer"].isin(["new_destination", "unexpected_destination"]) & (f["session"] == "web-deploy-2")]
    assert list(new["indicator"]) == ["newvendor.io"] * 2


def test_a_local_cluster_through_the_cli_gives_the_same_json(store, fleet_sessions, local_cluster):
    r = CliRunner().invoke(main, ["analyze", "--store", str(store), "--scheduler", local_cluster.scheduler_address,
                                  "--baseline-runs", str(RUNS), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    expected = single_process(fleet_sessions)
    got = {}
    for s in doc["sessions"]:
        mine = [{k: v for k, v in f.items() if k not in ("session", "repository", "workflow")}
                for f in doc["findings"] if f["session"] == s["session"]]
        got[s["session"]] = (mine, s["summary"])
    want = {k: (json.loads(json.dumps(v[0], default=str)), json.loads(json.dumps(v[1], default=str)))
            for k, v in expected.items()}
    assert got == want
    assert doc["summary"]["sessions"] == 8 and doc["summary"]["workflows"] == 3


def test_fail_on_and_the_text_report(store):
    r = CliRunner().invoke(main, ["analyze", "--store", str(store), "--scheduler", "sync", "--fail-on", "high"])
    assert r.exit_code == 1
    assert "8 sessions of 3 workflows" in r.output and "acme/api build.yml api-build-3" in r.output
    r = CliRunner().invoke(main, ["analyze", "--store", str(store), "--scheduler", "sync", "--baseline-runs", "0",
                                  "--min-severity", "critical", "--format", "markdown"])
    assert r.exit_code == 0 and "new_domain" not in r.output


def test_more_history_changes_the_baseline_not_the_findings_of_the_exfiltration(store, fleet_sessions):
    result = analyze_store(store, baseline_runs=10, scheduler="sync", repository="acme/api")
    assert set(result.sessions["session"]) == {f"api-build-{i}" for i in range(4)}
    assert result.sessions.set_index("session").loc["api-build-3", "baseline"] == [f"api-build-{i}" for i in range(3)]
    assert from_store(result) == {k: v for k, v in single_process(fleet_sessions, runs=10).items() if k.startswith("api")}


def test_errors_are_one_line(store, tmp_path, monkeypatch):
    monkeypatch.setattr("cicd_audit.fleet.cluster.CONNECT_TIMEOUT_S", 1)
    r = CliRunner().invoke(main, ["analyze", "--store", str(tmp_path / "nowhere"), "--scheduler", "sync"])
    assert r.exit_code == 2 and "not found" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["analyze", "--store", str(store), "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "cannot reach a Dask scheduler" in r.output
    r = CliRunner().invoke(main, ["analyze"])
    assert r.exit_code == 2 and "--store" in r.output


def test_a_time_range_selects_sessions_by_their_start_with_their_full_history(store, fleet_sessions):
    """since/until as the notebook and the CLI give them (text, naive = UTC), compared with tz-aware start times."""
    result = analyze_store(store, baseline_runs=RUNS, scheduler="sync", since="2025-10-11", until="2025-10-12")
    assert set(result.sessions["session"]) == {"api-build-2", "web-deploy-2"}
    # the baseline still comes from before the range
    assert result.sessions.set_index("session").loc["api-build-2", "baseline"] == ["api-build-0", "api-build-1"]
    want = single_process(fleet_sessions)
    assert from_store(result) == {k: want[k] for k in ("api-build-2", "web-deploy-2")}


def test_a_client_the_caller_holds_is_used_and_left_open(store, local_cluster):
    """The Python API takes a Client (dask-gateway's cluster.get_client()): same results, the client still usable."""
    from distributed import Client

    with Client(local_cluster) as client:
        on_client = analyze_store(store, baseline_runs=RUNS, scheduler=client)
        assert client.status == "running" and client.submit(sum, [1, 2]).result() == 3
    sync = analyze_store(store, baseline_runs=RUNS, scheduler="sync")
    assert from_store(on_client) == from_store(sync) and len(on_client.sessions) == 8


def test_a_baseline_joined_from_its_runs_equals_the_runs_loaded_together(fleet_sessions):
    """What lets the fleet path make each run's baseline tables once: per-session rows."""
    dirs = fleet_sessions[:3]
    together = load_logs(*dirs)
    labels = list(together.dns["session"].cat.categories)
    parts = []
    for label, d in zip(labels, dirs):
        one = load_logs(d)
        parts.append(Baseline.of_logs(labelled_logs(label, SessionLogs(conn=one.conn, dns=one.dns))))
    joined, whole = Baseline.joined(parts), Baseline.of_logs(together)
    assert joined.runs == whole.runs == 3
    assert len(whole.destinations) and len(whole.lookups)
    pd.testing.assert_frame_equal(joined.destinations, whole.destinations)
    pd.testing.assert_frame_equal(joined.lookups, whole.lookups)


@pytest.mark.parametrize("with_policy", [False, True], ids=["no-policy", "policy"])
def test_a_run_as_baseline_from_its_analysis_equals_one_made_from_its_logs(fleet_sessions, with_policy):
    """What lets the fleet path index each run once: the run analyzed now becomes part of later
    runs' baselines from the tables its analysis made, exactly as if made again from its logs."""
    from cicd_audit.policy import load_policy

    policy = load_policy(POLICY) if with_policy else None
    for d in fleet_sessions:
        one = load_logs(d)
        logs = SessionLogs(conn=one.conn, dns=one.dns)
        label = read_job_meta(d).session
        from_result = Baseline.of_result(analyze(logs, policy=policy, sessions=[label]), label)
        from_logs = Baseline.of_logs(labelled_logs(label, logs))
        assert from_result.runs == from_logs.runs == 1
        assert len(from_logs.destinations) and len(from_logs.lookups)
        pd.testing.assert_frame_equal(from_result.destinations, from_logs.destinations)
        pd.testing.assert_frame_equal(from_result.lookups, from_logs.lookups)


@pytest.mark.parametrize("on", ["sync", "cluster"])
def test_progress_is_reported_as_each_partition_ends(store, local_cluster, monkeypatch, on):
    import cicd_audit.fleet.analysis as fleet_analysis

    monkeypatch.setattr(fleet_analysis, "SESSIONS_PER_PARTITION", 3)  # 8 sessions: 3 partitions
    calls = []
    scheduler = "sync" if on == "sync" else local_cluster.scheduler_address
    result = analyze_store(store, baseline_runs=RUNS, scheduler=scheduler, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) == 3 and {t for _, t in calls} == {8}
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == 8
    assert from_store(result) == from_store(analyze_store(store, baseline_runs=RUNS, scheduler="sync"))


def test_the_cli_says_how_far_it_is_on_stderr_only(store, monkeypatch):
    import cicd_audit.fleet.analysis as fleet_analysis
    import cicd_audit.fleet.cli as fleet_cli

    monkeypatch.setattr(fleet_analysis, "SESSIONS_PER_PARTITION", 4)
    monkeypatch.setattr(fleet_cli, "PROGRESS_EVERY_S", 0.0)  # a line for every partition
    r = CliRunner().invoke(main, ["analyze", "--store", str(store), "--scheduler", "sync", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["sessions"] == 8
    lines = r.stderr.splitlines()
    assert lines[0].startswith("cicd-audit analyze --store: 4 of 8 sessions (50 %), 0 min ")
    assert lines[-1].startswith("cicd-audit analyze --store: 8 of 8 sessions (100 %), ")


def test_a_cluster_keeps_no_result_after_it_is_read(store, local_cluster, monkeypatch):
    """A worker would otherwise hold every result of its partitions until the last one ends:
    memory growing with the store. At each progress call, what was read before is let go."""
    from distributed import Client

    import cicd_audit.fleet.analysis as fleet_analysis

    monkeypatch.setattr(fleet_analysis, "SESSIONS_PER_PARTITION", 2)  # 8 sessions: 4 partitions
    with Client(local_cluster) as client:
        held = []
        analyze_store(store, baseline_runs=RUNS, scheduler=client,
                      progress=lambda d, t: held.append(sum(client.refcount.values())))
        # at most the unread partitions and the one just read, which as_completed may hold until
        # its next step (when it lets go is its own business: the last one can be gone already)
        assert len(held) == 4 and all(n <= 4 - i for i, n in enumerate(held)), held
