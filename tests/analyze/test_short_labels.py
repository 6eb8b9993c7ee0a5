"""Channels that chunk data into short labels are flagged by the pooled features, at any length and volume."""

from __future__ import annotations

import numpy as np
import pytest

from cicd_audit.analyzers import dns_tunnel, label_pool, names

from .evasion import short_label_names
from .test_dns_tunnel import dns_frame


@pytest.mark.parametrize("encoding", ["hex", "base32"])
@pytest.mark.parametrize("label_len", [8, 12, 17, 18, 20])
@pytest.mark.parametrize("nbytes", [1000, 12_000])
def test_short_label_channel_is_flagged(encoding, label_len, nbytes):
    qn = short_label_names(nbytes, label_len, encoding, seed=label_len)
    nf = names.name_features(qn[:50])
    if label_len < 24 and encoding == "hex":
        assert not nf["encoded"].any()  # the per-name verdict alone misses these: the pool must catch them
    f = dns_tunnel.detect_dns_tunnels(dns_frame(qn, answers=["192.0.2.9"], gap=0.7))
    assert set(f["indicator"]) == {"cdn-metrics.example"}
    row = f.iloc[0]
    assert row["severity"] in (("high", "critical") if nbytes < 10_000 else ("critical",))
    assert "short_labels" in row["evidence"]["signals"] or encoding == "base32"
    assert row["evidence"]["encoded_bytes"] >= 0.9 * nbytes


def test_pooled_words_are_not_random():
    """Many distinct build host names made of words and numbers: pooled, still not random."""
    rng = np.random.default_rng(4)
    words = ["build", "runner", "cache", "agent", "worker", "linux", "arm", "amd", "large", "pool", "east", "west"]
    labels = sorted({f"{rng.choice(words)}{rng.choice(words)}{rng.integers(1, 99)}" for _ in range(400)})
    chars, alphabet, ratio, switch = label_pool.pooled_stats(labels)
    assert ratio < label_pool.POOL_MIN_ENTROPY_RATIO or switch < label_pool.POOL_MIN_SWITCH_RATE


def test_cdn_shards_the_job_downloads_from_are_not_a_channel():
    """60 random cache-key host names whose answers the job connects to: not pooled as a channel."""
    qn = short_label_names(480, 16, "hex", seed=3, domain="assets-cdn.example")
    d = dns_frame(qn, answers=["104.16.85.20"])
    import pandas as pd

    conn = pd.DataFrame({"ts": d["ts"], "uid": d["uid"] + "x", "id.resp_h": ["104.16.85.20"] * len(d),
                         "id.resp_p": pd.array([443] * len(d), dtype="UInt16"), "proto": ["tcp"] * len(d)})
    assert dns_tunnel.detect_dns_tunnels(d, conn).empty
    assert not dns_tunnel.detect_dns_tunnels(d).empty  # without conn.log nothing says they were fetched


@pytest.mark.parametrize("encoding", ["hex", "base32"])
def test_a_large_channels_pool_is_sampled_without_bias(encoding):
    """Past ~50,000 labels the first ones in sorted order all begin alike: the sample must not
    be those (a 1 MB channel in 8-character labels went unflagged)."""
    labels = [n.split(".")[0] for n in short_label_names(400_000, 8, encoding, seed=3)]
    chars, alphabet, ratio, switch = label_pool.pooled_stats(labels)
    assert chars >= label_pool.POOL_SAMPLE_CHARS and alphabet == encoding
    assert ratio >= label_pool.POOL_MIN_ENTROPY_RATIO and switch >= label_pool.POOL_MIN_SWITCH_RATE


def test_a_large_short_label_channel_is_flagged():
    qn = short_label_names(300_000, 8, "hex", seed=8)          # 75,000 names
    f = dns_tunnel.detect_dns_tunnels(dns_frame(qn, answers=["192.0.2.9"], gap=0.7))
    assert f.set_index("indicator").loc["cdn-metrics.example", "severity"] == "critical"
