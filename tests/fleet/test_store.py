"""`store add`: sessions to Parquet with Zeek types kept, partitioned by date and job identity, idempotently."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fleet_data import DAY, T0, job, write_session

from cicd_audit.cli import main
from cicd_audit.fleet.catalog import read_catalog
from cicd_audit.fleet.columns import field_zeek_type
from cicd_audit.fleet.ingest import add_session, add_sessions
from cicd_audit.fleet.reading import session_logs
from cicd_audit.fleet.store import Store
from cicd_audit.zeeklog.reader import load_logs

ORACLE = Path(__file__).resolve().parents[3] / "shared" / "zeek-oracle"


def _same_as_directory(store, manifest, directory):
    back = session_logs(store, manifest["files"])
    ref = load_logs(directory)
    for log in ("conn", "dns"):
        pd.testing.assert_frame_equal(back[log], ref[log], check_exact=True)


def test_every_session_reads_back_as_load_logs_reads_its_directory(fleet_sessions, tmp_path):
    """TSV, gzipped JSON and a directory without job.json: same columns, dtypes, values and row order."""
    store = Store.open(tmp_path / "store", create=True)
    for d in fleet_sessions:
        _same_as_directory(store, add_session(store, d), d)


def test_a_session_over_midnight_has_a_file_per_date_and_keeps_its_row_order(tmp_path):
    d = write_session(tmp_path / "late", T0 + 15.1 * 3600, seed=5, job=job("late", "acme/api", "nightly"), exfil=True,
                       shuffle=True)
    store = Store.open(tmp_path / "store", create=True)
    m = add_session(store, d)
    assert sorted(f.split("/")[1] for f in m["files"]) == ["date=2025-10-09"] * 2 + ["date=2025-10-10"] * 2
    _same_as_directory(store, m, d)


def test_real_zeek_logs_from_the_oracle_round_trip(tmp_path):
    """Zeek's own dns.log/conn.log of its test suite (btest masks their times: a fixed time stands in)."""
    if not ORACLE.is_dir():
        pytest.fail(f"shared data missing: {ORACLE}", pytrace=False)
    cases = [c for c in sorted(ORACLE.iterdir()) if (c / "dns.log").exists() or (c / "conn.log").exists()]
    assert len(cases) >= 10
    store = Store.open(tmp_path / "store", create=True)
    for c in cases:
        d = tmp_path / "cases" / c.name
        d.mkdir(parents=True)
        for name in ("conn.log", "dns.log"):
            if (c / name).exists():
                (d / name).write_text((c / name).read_text().replace("XXXXXXXXXX.XXXXXX", "1760000000.123456"))
        _same_as_directory(store, add_session(store, d), d)


def test_parquet_fields_carry_their_zeek_types(fleet_sessions, tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    m = add_session(store, fleet_sessions[0])
    conn = next(f for f in m["files"] if f.startswith("conn/"))
    schema = pq.read_schema(tmp_path / "store" / conn)
    types = {f.name: field_zeek_type(f) for f in schema}
    assert types["ts"] == "time" and str(schema.field("ts").type) == "timestamp[ns, tz=UTC]"
    assert types["duration"] == "interval" and str(schema.field("duration").type) == "duration[ns]"
    assert types["id.resp_h"] == "addr" and types["id.resp_p"] == "port" and str(schema.field("id.resp_p").type) == "uint16"
    assert types["orig_bytes"] == "count" and str(schema.field("orig_bytes").type) == "uint64"
    assert types["tunnel_parents"] == "set[string]" and str(schema.field("tunnel_parents").type) .startswith("list<")
    dns = pq.read_schema(tmp_path / "store" / next(f for f in m["files"] if f.startswith("dns/")))
    assert field_zeek_type(dns.field("TTLs")) == "vector[interval]"


def test_partitions_are_date_repository_workflow_with_the_repository_decoded(fleet_sessions, tmp_path):
    import pyarrow.dataset as ds

    store = Store.open(tmp_path / "store", create=True)
    add_sessions(store, fleet_sessions)
    data = ds.dataset(tmp_path / "store" / "dns", format="parquet", partitioning="hive")
    t = data.to_table(columns=["session", "repository", "workflow", "date"]).to_pandas()
    assert set(t["repository"].astype(str)) == {"acme/api", "acme/web", "unknown"}
    assert set(t.loc[t["session"] == "web-deploy-2", "date"].astype(str)) == {"2025-10-11"}
    assert set(t.loc[t["session"] == "loose-session", "workflow"].astype(str)) == {"unknown"}


def test_adding_again_replaces_and_never_duplicates(fleet_sessions, tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    add_sessions(store, fleet_sessions)
    first = read_catalog(store)
    add_sessions(store, fleet_sessions[:3])
    again = read_catalog(store)
    assert again.drop(columns="files").equals(first.drop(columns="files"))
    rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "store" / "dns").rglob("*.parquet"))
    assert rows == int(first["dns_rows"].sum())


def test_a_session_whose_identity_changed_moves_without_leaving_its_old_files(tmp_path):
    d = write_session(tmp_path / "s", T0, seed=1, job=job("s-1", "acme/api", "build.yml"))
    store = Store.open(tmp_path / "store", create=True)
    old = add_session(store, d)
    (d / "job.json").write_text(json.dumps(job("s-1", "acme/api", "release.yml")))
    new = add_session(store, d)
    assert all("workflow=release.yml" in f for f in new["files"])
    left = sorted(str(p.relative_to(tmp_path / "store")) for p in (tmp_path / "store").rglob("*.parquet"))
    assert left == sorted(new["files"]) and not set(old["files"]) & set(left)


def test_cli_store_add_and_list(fleet_sessions, tmp_path):
    store = tmp_path / "store"
    r = CliRunner().invoke(main, ["store", "add", *map(str, fleet_sessions[:2]), "--to", str(store)])
    assert r.exit_code == 0, r.output
    assert "api-build-0: acme/api build.yml" in r.output
    r = CliRunner().invoke(main, ["store", "list", str(store), "--format", "json"])
    assert r.exit_code == 0 and [s["session"] for s in json.loads(r.output)] == ["api-build-0", "api-build-1"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON object"),
    ('{"repository": "a\\u0000b"}', "'repository' must be text"),
])
def test_a_bad_job_json_is_one_clear_line(tmp_path, content, message):
    d = write_session(tmp_path / "s", T0, seed=1)
    (d / "job.json").write_text(content)
    r = CliRunner().invoke(main, ["store", "add", str(d), "--to", str(tmp_path / "store")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_directory_without_logs_and_two_sessions_of_one_name_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["store", "add", str(empty), "--to", str(tmp_path / "store")])
    assert r.exit_code == 2 and "no conn.log or dns.log" in r.output
    a = write_session(tmp_path / "a" / "net", T0, seed=1)
    b = write_session(tmp_path / "b" / "net", T0 + DAY, seed=2)
    r = CliRunner().invoke(main, ["store", "add", str(a), str(b), "--to", str(tmp_path / "store2")])
    assert r.exit_code == 2 and "both session 'net'" in r.output
    assert not (tmp_path / "store2" / "dns").exists()  # refused before anything was written


def test_the_runner_agents_job_json_gives_the_identity_and_a_session_unique_across_runners(tmp_path):
    """docs/agent.md: identity under "job", the agent's directory name as "session" (the same on two runners)."""
    store = Store.open(tmp_path / "store", create=True)
    made = []
    for runner, repo in (("runner-1", "org/app"), ("runner-2", "org/lib")):
        d = write_session(tmp_path / runner / "20251009T085320Z-job1", T0, seed=1)
        (d / "job.json").write_text(json.dumps({
            "job": {"repository": repo, "workflow": "ci", "run_id": "77", "job": "build", "runner": runner},
            "session": "20251009T085320Z-job1", "start": T0, "end": T0 + 60, "status": "complete"}))
        made.append(add_session(store, d))
    assert [(m["session"], m["repository"], m["workflow"]) for m in made] == [
        ("runner-1/20251009T085320Z-job1", "org/app", "ci"), ("runner-2/20251009T085320Z-job1", "org/lib", "ci")]
    assert len(read_catalog(store)) == 2  # neither replaced the other
    assert made[0]["job"]["job"]["run_id"] == "77"
