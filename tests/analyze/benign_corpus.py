"""A benign corpus of CI host names at scale, generated (never committed as data).

``benign_names(jobs, seed)`` -> list of (job index, query name, qtype, rcode,
answered, connected): what ``jobs`` CI jobs on busy runners look up. The
shapes follow the services' public documentation (AWS S3 virtual-hosted
buckets, ECR registry host names, API Gateway and Lambda URLs, CloudFront
distributions, Azure blob/queue accounts, GCS and Artifact Registry, GitHub
Actions hosts, Sentry/Datadog/Honeycomb/OpenTelemetry ingest host names,
Docker Hub/Quay/JFrog/Nexus mirrors, Kubernetes cluster DNS incl. ndots:5
search expansion, EC2 internal names); the random parts (bucket suffixes,
tenant hashes, cache keys, telemetry IDs, account numbers) are random in the
same alphabets and lengths as the real ones, and many per job, because
that is where a detector of random-looking names finds its false positives.

``benign_frames(jobs, seed)`` -> (dns DataFrame, conn DataFrame), one session
per job. ``python tests/analyze/benign_corpus.py N`` prints the names.
"""

from __future__ import annotations

import random
import string
import sys
import uuid
import zlib

REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]
WORDS = ["build", "cache", "artifacts", "logs", "releases", "sbom", "coverage", "terraform-state", "ci", "assets",
         "deps", "wheels", "node-modules", "docker-layers", "test-results", "backups", "static", "frontend"]
TEAMS = ["payments", "platform", "data", "search", "mobile", "infra", "ml", "web", "identity", "billing"]
NAMESPACES = ["default", "ci", "gitlab-runner", "arc-runners", "build", "kube-system", "monitoring"]
SERVICES = ["postgres", "redis", "minio", "registry", "vault", "rabbitmq", "elasticsearch", "kafka", "mysql"]


def _rand(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def _hex(rng, n):
    return _rand(rng, "0123456789abcdef", n)


def _b36(rng, n):
    return _rand(rng, string.ascii_lowercase + string.digits, n)


def job_names(rng: random.Random) -> list[tuple[str, str, int, bool]]:
    """(name, qtype, rcode, connected) looked up by one job."""
    out = []

    def add(name, qtype="A", rcode=0, connected=True):
        out.append((name, qtype, rcode, connected))

    team = rng.choice(TEAMS)
    region = rng.choice(REGIONS)
    # cloud storage buckets: several per job, names with random suffixes (Terraform's bucket_prefix adds 26 digits)
    for _ in range(rng.randint(3, 12)):
        bucket = f"{team}-{rng.choice(WORDS)}-{rng.choice(['', _hex(rng, 8), _b36(rng, 12), str(rng.randint(10**25, 10**26))])}".strip("-")
        add(rng.choice([f"{bucket}.s3.amazonaws.com", f"{bucket}.s3.{region}.amazonaws.com",
                        f"{bucket}.s3.dualstack.{region}.amazonaws.com", f"{bucket}.storage.googleapis.com"]))
    account = str(rng.randint(10**11, 10**12 - 1))
    add(f"{account}.dkr.ecr.{region}.amazonaws.com")
    add(f"api.ecr.{region}.amazonaws.com")
    add(f"prod-{region}-starport-layer-bucket.s3.{region}.amazonaws.com")
    # per-tenant hashes: API Gateway, Lambda URLs, Azure accounts, Front Door, App Service
    add(f"{_b36(rng, 10)}.execute-api.{region}.amazonaws.com")
    add(f"{_b36(rng, 32)}.lambda-url.{region}.on.aws")
    add(f"{team}{_b36(rng, 8)}.blob.core.windows.net")
    add(f"productionresultssa{rng.randint(0, 19)}.blob.core.windows.net")
    add(f"{team}-{_b36(rng, 13)}.z01.azurefd.net")
    add(f"{team}-api-{_hex(rng, 8)}.azurewebsites.net")
    # CDN keys: CloudFront distributions, Fastly and Akamai edges, jsDelivr, unpkg cache shards
    for _ in range(rng.randint(2, 8)):
        add(f"d{_b36(rng, 13)}.cloudfront.net")
    for _ in range(rng.randint(5, 40)):
        add(f"{_hex(rng, 16)}.cdn.jsdelivr.net")
    add(f"{team}.global.ssl.fastly.net")
    add(f"a{rng.randint(100, 9999)}.dscb.akamai.net")
    # telemetry ids: Sentry DSN hosts, Datadog, Honeycomb, Application Insights, OTLP collectors
    add(f"o{rng.randint(10**5, 10**7)}.ingest.sentry.io")
    add(f"o{rng.randint(10**5, 10**7)}.ingest.us.sentry.io")
    add(f"{rng.choice(['http-intake.logs', 'trace.agent', 'api', 'browser-intake'])}.datadoghq.com")
    add("api.honeycomb.io")
    add(f"{region}-{rng.randint(0, 9)}.in.applicationinsights.azure.com")
    add(f"{uuid.UUID(int=rng.getrandbits(128))}.ods.opinsights.azure.com")
    add(f"otel-collector.{rng.choice(NAMESPACES)}.svc.cluster.local")
    # registry mirrors
    for n in ["registry-1.docker.io", "auth.docker.io", "production.cloudflare.docker.com", "mirror.gcr.io",
              f"{region.split('-')[0]}-docker.pkg.dev", "quay.io", f"cdn{rng.randint(1, 3)}.quay.io", "proxy.golang.org",
              "sum.golang.org", "registry.npmjs.org", "pypi.org", "files.pythonhosted.org", "repo.maven.apache.org",
              "index.crates.io", "static.crates.io", "rubygems.org", "index.rubygems.org",
              f"{team}.jfrog.io", f"{team}-docker.jfrog.io", f"nexus.{team}.internal.example.com",
              f"{team}.pkgs.visualstudio.com", "npm.pkg.github.com", "ghcr.io", "pkg-containers.githubusercontent.com"]:
        add(n)
    # GitHub Actions service hosts, with their numbered shards
    for n in ["github.com", "api.github.com", "codeload.github.com", "objects.githubusercontent.com",
              "results-receiver.actions.githubusercontent.com", f"pipelinesghubeus{rng.randint(1, 26)}.actions.githubusercontent.com",
              f"acghubeus{rng.randint(1, 3)}.actions.githubusercontent.com", "token.actions.githubusercontent.com"]:
        add(n)
    # cluster-local names, and ndots:5 search-domain expansion of every external name (NXDOMAIN)
    ns = rng.choice(NAMESPACES)
    for svc in rng.sample(SERVICES, 4):
        add(f"{svc}.{ns}.svc.cluster.local")
        add(f"{svc}-0.{svc}-headless.{ns}.svc.cluster.local")
    for _ in range(rng.randint(3, 10)):
        ip = f"10-{rng.randint(0, 255)}-{rng.randint(0, 255)}-{rng.randint(1, 254)}"
        add(f"{ip}.{ns}.pod.cluster.local")
        add(f"{rng.choice(['runner', 'build', 'job'])}-{_b36(rng, 5)}-{_b36(rng, 5)}.{ns}.svc.cluster.local", connected=False)
    externals = [n for n, *_ in out if not n.endswith(".local")][:25]
    for n in externals:
        for suffix in (f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local", f"{region}.compute.internal"):
            add(f"{n}.{suffix}", rcode=3, connected=False)
    add(f"ip-10-{rng.randint(0, 255)}-{rng.randint(0, 255)}-{rng.randint(1, 254)}.{region}.compute.internal")
    add(f"fs-{_hex(rng, 17)}.efs.{region}.amazonaws.com")
    return out


def benign_names(jobs: int, seed: int = 0):
    rng = random.Random(seed)
    for j in range(jobs):
        for name, qtype, rcode, connected in job_names(rng):
            yield j, name, qtype, rcode, connected


def benign_frames(jobs: int, seed: int = 0):
    """(dns, conn) DataFrames: one session per job, every looked-up name answered
    with an address the job connects to unless the name is NXDOMAIN or internal."""
    import numpy as np
    import pandas as pd

    rows = list(benign_names(jobs, seed))
    n = len(rows)
    t0 = 1_760_000_000.0
    rng = np.random.default_rng(seed)
    ts = t0 + np.cumsum(rng.uniform(0.01, 2.0, n))
    h = [zlib.crc32(r[1].encode()) for r in rows]  # stable across processes, unlike hash()
    addr = [f"52.{(x >> 8) & 255}.{(x >> 16) & 255}.{(x & 254) + 1}" for x in h]
    qt = {"A": 1, "AAAA": 28}
    dns = pd.DataFrame({
        "session": pd.Categorical([f"job{r[0]:04d}" for r in rows]),
        "ts": pd.to_datetime(ts, unit="s", utc=True),
        "uid": pd.array([f"D{i}" for i in range(n)], dtype="string"),
        "id.orig_h": pd.array(["10.1.0.4"] * n, dtype="string"),
        "id.orig_p": pd.array(rng.integers(32768, 61000, n), dtype="UInt16"),
        "id.resp_h": pd.array(["10.96.0.10"] * n, dtype="string"),
        "id.resp_p": pd.array([53] * n, dtype="UInt16"),
        "query": pd.array([r[1] for r in rows], dtype="string"),
        "qtype": pd.array([qt[r[2]] for r in rows], dtype="UInt64"),
        "qtype_name": pd.array([r[2] for r in rows], dtype="string"),
        "rcode": pd.array([r[3] for r in rows], dtype="UInt64"),
        "answers": [[a] if r[3] == 0 else None for r, a in zip(rows, addr)],
    })
    keep = [i for i, r in enumerate(rows) if r[4] and r[3] == 0]
    conn = pd.DataFrame({
        "session": pd.Categorical([f"job{rows[i][0]:04d}" for i in keep]),
        "ts": pd.to_datetime(ts[keep] + 0.05, unit="s", utc=True),
        "uid": pd.array([f"C{i}" for i in keep], dtype="string"),
        "id.orig_h": pd.array(["10.1.0.4"] * len(keep), dtype="string"),
        "id.orig_p": pd.array(rng.integers(32768, 61000, len(keep)), dtype="UInt16"),
        "id.resp_h": pd.array([addr[i] for i in keep], dtype="string"),
        "id.resp_p": pd.array([443] * len(keep), dtype="UInt16"),
        "proto": pd.array(["tcp"] * len(keep), dtype="string"),
        "orig_bytes": pd.array(rng.integers(500, 5000, len(keep)), dtype="UInt64"),
        "resp_bytes": pd.array(rng.integers(5000, 5_000_000, len(keep)), dtype="UInt64"),
    })
    return dns, conn


if __name__ == "__main__":
    for _, name, *_ in benign_names(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        print(name)
