"""The store on object storage: moto's S3 server on 127.0.0.1, reached through s3fs (never a real cloud)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cicd_audit.fleet.analysis import analyze_store
from cicd_audit.fleet.catalog import read_catalog
from cicd_audit.fleet.ingest import add_sessions
from cicd_audit.fleet.queries import find_indicator, top_talkers
from cicd_audit.fleet.reading import session_logs
from cicd_audit.fleet.store import Store
from cicd_audit.zeeklog.reader import load_logs


@pytest.fixture(scope="module")
def bucket(s3_server):
    endpoint, opts = s3_server
    import boto3

    name = "fleet-test"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}/audit", opts, endpoint


@pytest.fixture(scope="module")
def s3_store(bucket, fleet_sessions, tmp_path_factory):
    url, opts, _ = bucket
    add_sessions(Store.open(url, opts, create=True), fleet_sessions)
    local = tmp_path_factory.mktemp("local") / "store"
    add_sessions(Store.open(local, create=True), fleet_sessions)
    return url, opts, local


def test_sessions_on_s3_read_back_exactly_and_re_adding_replaces(s3_store, fleet_sessions):
    import pandas as pd

    url, opts, _ = s3_store
    store = Store.open(url, opts)
    add_sessions(store, fleet_sessions[:2])  # again: replaced, not duplicated
    cat = read_catalog(store)
    assert len(cat) == 8 and cat["session"].is_unique
    keys = store.fs.find(store.path("dns"))
    assert len(keys) == 8 and any("repository=acme%2Fapi" in k for k in keys)
    row = cat.set_index("session").loc["api-build-1"]
    back = session_logs(store, row["files"])
    pd.testing.assert_frame_equal(back.dns, load_logs(fleet_sessions[1]).dns)


def test_analysis_and_queries_on_s3_equal_those_on_a_local_store(s3_store):
    url, opts, local = s3_store
    on_s3 = analyze_store(url, storage_options=opts, baseline_runs=2, scheduler="sync")
    on_disk = analyze_store(local, baseline_runs=2, scheduler="sync")
    assert on_s3.findings.astype({"severity": str}).to_dict("records") == \
        on_disk.findings.astype({"severity": str}).to_dict("records")
    assert len(on_s3.findings) >= 4
    a = find_indicator(url, ["newvendor.io", "1.1.1.0/24"], storage_options=opts)
    b = find_indicator(local, ["newvendor.io", "1.1.1.0/24"])
    assert a.to_dict("records") == b.to_dict("records") and len(a) == 3
    assert top_talkers(url, storage_options=opts).equals(top_talkers(local))


def test_the_cli_reaches_s3_through_fsspec_configuration(s3_store, bucket):
    """Credentials and endpoint come from the environment, as on a runner or a Dask worker."""
    url, _, _ = s3_store
    _, _, endpoint = bucket
    env = dict(os.environ, FSSPEC_S3_ENDPOINT_URL=endpoint, FSSPEC_S3_KEY="testing", FSSPEC_S3_SECRET="testing",
               AWS_DEFAULT_REGION="us-east-1")
    cli = [sys.executable, "-m", "cicd_audit.cli"]
    r = subprocess.run([*cli, "analyze", "--store", url, "--scheduler", "sync", "--format", "json",
                        "--baseline-runs", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["sessions"] == 8
    assert {(f["session"], f["analyzer"]) for f in doc["findings"] if f["severity"] == "high"} == {
        ("api-build-3", "dns_tunnel"), ("api-build-3", "direct_ip"),
        ("api-build-3", "encrypted_dns")}           # its upload goes to 1.1.1.1:443, a DNS-over-HTTPS resolver
