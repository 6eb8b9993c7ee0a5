"""No finding at medium or above on CI jobs' real host-name shapes at scale (tests/analyze/benign_corpus.py)."""

from __future__ import annotations

from cicd_audit.analyzers import analyze, dns_tunnel
from cicd_audit.analyzers.findings import at_or_above

from .benign_corpus import benign_frames
from .test_dns_tunnel import dns_frame


def test_benign_corpus_has_no_medium_finding():
    dns, conn = benign_frames(80, seed=1)
    assert dns["query"].nunique() > 10_000  # buckets, tenant hashes, CDN keys, telemetry ids, cluster names
    result = analyze({"dns": dns, "conn": conn})
    bad = at_or_above(result.findings, "medium")
    assert bad.empty, bad[["analyzer", "indicator", "summary"]].to_string()


def test_search_list_expansions_are_not_data():
    """ndots:5 turns every random bucket name into names under cluster.local: those are not a channel."""
    externals = [f"ci-cache-{i:02d}x{'ab12cd34ef56'[i % 12:]}q7z9k3.s3.amazonaws.com" for i in range(40)]
    names = externals + [f"{n}.{s}" for n in externals for s in ("ci.svc.cluster.local", "svc.cluster.local")]
    f = dns_tunnel.detect_dns_tunnels(dns_frame(names, rcode=3))
    assert "cluster.local" not in set(f["indicator"])
    # the same labels under cluster.local *without* the original lookups are still analysed
    alone = [n for n in names if n.endswith(".local")]
    tf = dns_tunnel.tunnel_features(dns_frame(alone, rcode=3))
    assert "cluster.local" in set(tf.domains[tf.domains["candidate"]]["registered_domain"])
