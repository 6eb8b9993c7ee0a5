"""Per-name features: encoding fingerprints, entropy relative to the alphabet, the encoded verdict (pure tier)."""

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cicd_audit.analyzers import names


def naive_entropy(s):
    c = Counter(s)
    n = len(s)
    return -sum(v / n * math.log2(v / n) for v in c.values()) if n else 0.0


@pytest.mark.parametrize(
    "label,alphabet",
    [
        ("147901b8d3df9cc46c59d600078b3316ce", "hex"),
        ("laczi1dwmfbaywb0fm5xhkrgz0heotzq", "base32"),
        ("KNJUQLJSFYYC2T3QMVXFGU2IL44C4", "base32"),
        ("r747Clg-tK5pUdkH0R12a7gJ9sFPi9Aackw0kGtq_DnFd7vNX5Cb3l1JQQJQmh3", "base64"),
        ("oncAAAACCFNTSC0yLjAt+T3Blb/NTSF84", "base64"),
        ("z0pjaA-La-fl\xfbte-na\xefve", "binary"),
        ("run-actions-1-azure-eastus", "ldh"),
        ("1234567", "decimal"),
    ],
)
def test_alphabet_fingerprints(label, alphabet):
    f = names.name_features([f"{label}.example.com"])
    assert f.loc[0, "alphabet"] == alphabet


def test_entropy_matches_naive_computation():
    labels = ["aaaa", "abcd", "q+Z8BnweCORdAGL4", "147901b8d3df9cc46c59d600078b3316ce", "z" * 63, "x\u00e4\u00e4y"]
    f = names.name_features([f"{lab}.example.com" for lab in labels])
    for lab, h in zip(labels, f["entropy"]):
        folded = lab if any(c.isupper() for c in lab) and any(c.islower() for c in lab) else lab.lower()
        assert h == pytest.approx(naive_entropy(folded), abs=1e-6), lab  # float32 partial sums


def test_expected_entropy_is_what_random_strings_have():
    rng = np.random.default_rng(0)
    for n, a in [(8, 32), (34, 16), (63, 64)]:
        samples = [naive_entropy(rng.integers(0, a, n).tolist()) for _ in range(3000)]
        assert names.expected_entropy(n, a) == pytest.approx(np.mean(samples), rel=0.01)


def test_static_labels_are_not_data():
    # A resolver search-domain label repeats in every name: it is structure.
    tenant = "zbx5e4ebx5yefokmkzfzkylp5c"
    f = names.name_features([f"pypi.org.{tenant}.bx.internal.cloudapp.net"], static_labels={"internal.cloudapp.net": {tenant, "bx"}})
    assert f.loc[0, "data_label"] == "pypi" and not f.loc[0, "encoded"]


def test_service_labels_and_0x20_case():
    f = names.name_features(["_acme-challenge.ci.example.org", "AbCdEfGhIjKlMnOp.ExAmPlE.CoM"])
    assert f.loc[0, "payload"] == "ci" and f.loc[0, "service_name"]
    assert f.loc[1, "alphabet"] != "base64"  # 0x20 case randomisation carries no data


def test_ci_hostnames_never_look_encoded(ci_names):
    f = names.name_features(ci_names)
    assert not f["encoded"].any(), f[f["encoded"]]["name"].tolist()


def test_plain_names_are_not_encoded(labeled):
    d = labeled("netrack_plain_names.csv")
    f = names.name_features(d["qname"].tolist())
    assert f["encoded"].sum() == 0


@pytest.mark.parametrize(
    "csv,min_recall",
    [("netrack_iodine_names.csv", 0.97), ("netrack_dnscapy_names.csv", 0.95), ("netrack_dns2tcp_names.csv", 0.99)],
)
def test_tunnel_names_with_payload_are_encoded(labeled, csv, min_recall):
    """Recall on names whose data label is long enough to judge alone (>= MIN_ENCODED_LEN).

    Shorter names (dns2tcp's 10-character polls, iodine's 8-character pings)
    are left to the domain-level features.
    """
    d = labeled(csv)
    d = d[d["label"] == 1]
    f = names.name_features(d["qname"].tolist())
    judged = f[f["max_label_len"] >= names.MIN_ENCODED_LEN]
    assert len(judged) > 0.3 * len(f)
    assert judged["encoded"].mean() >= min_recall


def test_vectorised_chunks_agree_with_single_rows(monkeypatch):
    import random

    rng = random.Random(3)
    alph = "abcdefghijklmnopqrstuvwxyz234567"
    ns = ["".join(rng.choice(alph) for _ in range(rng.randint(1, 63))) + ".x.example.com" for _ in range(300)]
    whole = names.name_features(ns)
    monkeypatch.setattr(names, "_CHUNK_CELLS", 500)
    chunked = names.name_features(ns)
    pd.testing.assert_frame_equal(whole, chunked)
