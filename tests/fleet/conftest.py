"""Fixtures for the fleet tests: small CI sessions of a few workflows (fleet_data.py: TSV, JSON and
gzip mixed, as a fleet's runners would leave them), a moto S3 server on 127.0.0.1, and one Dask
LocalCluster shared by the module that needs it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from fleet_data import DAY, T0, job, write_session


@pytest.fixture(scope="session")
def fleet_sessions(tmp_path_factory) -> list:
    """Eight jobs: four runs of acme/api build (the last one exfiltrates, one is gzipped JSON), three of
    acme/web deploy (the third looks up a new CDN), and one directory without job.json."""
    root = tmp_path_factory.mktemp("fleet")
    out = []
    for i in range(4):
        out.append(write_session(root / f"runner-{i}" / "net", T0 + i * DAY, seed=i,
                                 job=job(f"api-build-{i}", "acme/api", "build.yml", run_id=str(100 + i)),
                                 fmt="json" if i == 1 else "tsv", gz=i == 1, exfil=i == 3))
    for i in range(3):
        extra = [("cdn.newvendor.io", "203.0.113.50")] if i == 2 else []
        out.append(write_session(root / f"web-{i}", T0 + i * DAY + 3600, seed=10 + i,
                                 job=job(f"web-deploy-{i}", "acme/web", "deploy.yml"), extra_names=extra))
    out.append(write_session(root / "loose-session", T0 + 3 * DAY + 7200, seed=42))
    return out


# ---------------------------------------------------------------------------
# object storage: moto's S3 server, on the loopback interface only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1; yields (endpoint URL, storage_options for s3fs)."""
    port = _free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start (exit {proc.poll()})")
                time.sleep(0.1)
        opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        yield endpoint, opts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def local_cluster():
    """A two-worker Dask LocalCluster on 127.0.0.1, as `--scheduler local` starts it, closed when the
    module's tests are done."""
    from cicd_audit.fleet.cluster import local_cluster as start

    with start(workers=2) as cluster:
        yield cluster
