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


def _findings(names, analyzer):
    result = analyze({"dns": dns_frame(names, answers=["192.0.2.9"])})
    return result.findings[result.findings["analyzer"] == analyzer]


def test_a_key_id_shape_inside_a_longer_random_label_is_not_a_secret():
    """Found by bench/detection_figures.py at 300 jobs: 20 characters of a 36-character tenant
    hash under cluster.local read as an AWS key ID."""
    assert _findings(["dsacy9k2anvaqzqx7rtw3mmlk2b5n4f5ph.ci.svc.cluster.local"], "secret_in_query").empty
    # the same 20 characters as a token of their own are one
    assert len(_findings(["anvaqzqx7rtw3mmlk2b5.x.evil.example"], "secret_in_query")) == 1


def test_a_short_random_decoding_is_not_text():
    """Found at 300 jobs: a 16-hex cache key decoding to 8 printable bytes ('_ZK3*[Hc') was a
    medium callback. Short decodings count only when they hold host data."""
    random_key = b"_ZK3*[Hc".hex()
    assert _findings([f"{random_key}.cdn.jsdelivr.net"], "dns_callback").empty
    host = b"root@ci7".hex()
    assert _findings([f"{host}.cb.evil.example"], "dns_callback").iloc[0]["severity"] == "high"
