"""Fleet queries: indicator search, new destinations per workflow per week, top talkers; partition pruning."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from cicd_audit.cli import main
from cicd_audit.fleet.ingest import add_sessions
from cicd_audit.fleet.queries import find_indicator, new_destinations, top_talkers
from cicd_audit.fleet.store import Store


@pytest.fixture(scope="module")
def store(fleet_sessions, tmp_path_factory):
    path = tmp_path_factory.mktemp("qstore") / "store"
    add_sessions(Store.open(path, create=True), fleet_sessions)
    return path


def test_a_domain_indicator_finds_the_lookups_and_the_connections_through_them(store):
    hits = find_indicator(store, ["newvendor.io"])
    assert list(zip(hits["session"], hits["kind"])) == [("web-deploy-2", "lookup"), ("web-deploy-2", "connection")]
    assert hits["examples"].tolist() == [["cdn.newvendor.io"], ["203.0.113.50"]]
    assert hits["repository"].tolist() == ["acme/web"] * 2


def test_a_cidr_indicator_finds_answers_and_connections_and_a_suffix_matches_whole_labels(store):
    hits = find_indicator(store, ["203.0.113.0/24", "1.1.1.1", "ample.net"])
    assert sorted(zip(hits["session"], hits["kind"], hits["indicator"])) == [
        ("api-build-3", "connection", "1.1.1.1/32"),
        ("web-deploy-2", "answer", "203.0.113.0/24"), ("web-deploy-2", "connection", "203.0.113.0/24")]
    tunnel = find_indicator(store, ["example.net"])
    assert tunnel["count"].tolist() == [30] and tunnel["distinct"].tolist() == [30]


def test_the_time_range_limits_the_jobs(store):
    assert find_indicator(store, ["github.com"])["session"].nunique() == 8
    hits = find_indicator(store, ["github.com"], since="2025-10-10", until="2025-10-11")
    assert sorted(set(hits["session"])) == ["api-build-1", "web-deploy-1"]


def test_dates_outside_the_range_are_never_opened(fleet_sessions, tmp_path):
    """Partition pruning, shown by damaging every file of another date: the query still answers."""
    path = tmp_path / "store"
    add_sessions(Store.open(path, create=True), fleet_sessions)
    for f in path.glob("*/date=2025-10-09/*/*/*.parquet"):
        f.write_bytes(b"not parquet")
    hits = find_indicator(path, ["github.com"], since="2025-10-11", until="2025-10-12")
    assert sorted(set(hits["session"])) == ["api-build-2", "web-deploy-2"]
    with pytest.raises(Exception):
        find_indicator(path, ["github.com"])  # and the damage is real: the whole store cannot be read


def test_new_destinations_per_workflow_per_week(store):
    new = new_destinations(store, since="2025-10-10")
    got = set(zip(new["repository"], new["workflow"], new["week"], new["destination"], new["session"]))
    assert got == {("acme/api", "build.yml", "2025-10-06", "example.net", "api-build-3"),
                   ("acme/web", "deploy.yml", "2025-10-06", "newvendor.io", "web-deploy-2"),
                   ("unknown", "unknown", "2025-10-06", "github.com", "loose-session"),
                   ("unknown", "unknown", "2025-10-06", "pypi.org", "loose-session"),
                   ("unknown", "unknown", "2025-10-06", "pythonhosted.org", "loose-session"),
                   ("unknown", "unknown", "2025-10-06", "objects.githubusercontent.com", "loose-session")}
    only = new_destinations(store, workflow="deploy.yml", since="2025-10-10")
    assert only["destination"].tolist() == ["newvendor.io"]


def test_top_talkers(store):
    top = top_talkers(store, by="destination", n=2)
    assert top["id.resp_h"].tolist()[0] == "1.1.1.1" and top["sent"].tolist()[0] == 2_500_000
    by_wf = top_talkers(store, by="workflow", n=5)
    assert by_wf.iloc[0][["repository", "workflow"]].tolist() == ["acme/api", "build.yml"]
    assert int(by_wf["connections"].sum()) == sum(
        pd.read_parquet(p).shape[0] for p in (store / "conn").rglob("*.parquet"))


def test_cli_queries_and_their_errors(store, local_cluster):
    r = CliRunner().invoke(main, ["fleet", "indicator", "newvendor.io", "--store", str(store), "--format", "json",
                                  "--scheduler", local_cluster.scheduler_address])
    assert r.exit_code == 0, r.output
    assert [h["session"] for h in json.loads(r.output)] == ["web-deploy-2"] * 2
    r = CliRunner().invoke(main, ["fleet", "new-destinations", "--store", str(store), "--since", "2025-10-10",
                                  "--repository", "acme/web", "--scheduler", "sync"])
    assert r.exit_code == 0 and "newvendor.io" in r.output and "web-deploy-2" in r.output
    r = CliRunner().invoke(main, ["fleet", "top-talkers", "--store", str(store), "--by", "session", "-n", "1",
                                  "--format", "csv", "--scheduler", "sync"])
    assert r.exit_code == 0 and r.output.splitlines()[1].startswith("acme/api,build.yml,api-build-3,2")
    r = CliRunner().invoke(main, ["fleet", "indicator", "not a domain", "--store", str(store)])
    assert r.exit_code == 2 and "neither a domain name nor an IP" in r.output
    r = CliRunner().invoke(main, ["fleet", "top-talkers", "--store", str(store), "--since", "yesterday-ish"])
    assert r.exit_code == 2 and "not a date" in r.output


def test_names_match_an_indicator_whatever_their_case_or_trailing_dot(tmp_path):
    """DNS names are case-insensitive (RFC 4343) and a tunnel may randomise case: the scan must not miss them,
    with or without a network among the indicators (two different code paths: pushed-down filter or not)."""
    from fleet_data import T0, job, write_session

    d = write_session(tmp_path / "s", T0, seed=3, job=job("mixed-case", "acme/api", "build.yml"),
                      extra_names=[("WWW.Bad-Actor.ORG", "198.51.100.7"), ("cdn.bad-actor.org.", "198.51.100.8")])
    path = tmp_path / "store"
    add_sessions(Store.open(path, create=True), [d])
    for indicators in (["bad-actor.org"], ["Bad-Actor.org", "192.0.2.0/24"]):
        hits = find_indicator(path, indicators)
        assert list(zip(hits["kind"], hits["count"])) == [("lookup", 2), ("connection", 2)], indicators
        assert hits["examples"].tolist() == [["WWW.Bad-Actor.ORG", "cdn.bad-actor.org."], ["198.51.100.7", "198.51.100.8"]]


def test_identity_partitions_stay_text_even_when_they_look_like_numbers(tmp_path):
    """The scan types the Hive partitions as strings: inferred, a workflow named "2024" would come back as an int."""
    from fleet_data import T0, job, write_session

    d = write_session(tmp_path / "s", T0, seed=4, job=job("numeric-names", "1234", "2024"),
                      extra_names=[("cdn.bad-actor.org", "198.51.100.9")])
    path = tmp_path / "store"
    add_sessions(Store.open(path, create=True), [d])
    hits = find_indicator(path, ["bad-actor.org", "198.51.100.0/24"])
    assert sorted(set(hits["kind"])) == ["answer", "connection", "lookup"]
    assert hits["repository"].tolist() == ["1234"] * 3 and hits["workflow"].tolist() == ["2024"] * 3
