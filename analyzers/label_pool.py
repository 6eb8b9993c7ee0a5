"""Short-label channels: is a domain's *set* of data labels random data, even when no single label is long enough to tell?

A label of 8-20 hex or base32 characters is indistinguishable from a build ID
or cache key on its own (``names.MIN_HEX_LEN``, ``names.MIN_ENCODED_LEN``), so
a channel that chunks its data into short labels (``<17 hex>.t3.evil.example``)
evaded the per-name verdict at any volume. What it cannot hide is the
aggregate: many distinct labels, pooled into one sample of characters, are as
uniformly distributed over the alphabet as random data, and the bytes they
carry add up per domain.

``pool_features(groups, unique_names, connected)`` takes, per (session,
registered domain) group, its distinct data labels (``LabelPool``) and returns
per-group columns: ``pool_labels``, ``pool_chars``, ``pool_alphabet``,
``pool_entropy_ratio``, ``pool_switch_rate``, ``pool_bytes`` and the verdict
``pool_random``.

The test is on the pooled character distribution: Shannon entropy of up to
``POOL_SAMPLE_CHARS`` characters divided by the entropy *expected* of a
uniformly random sample of that size over the alphabet (``names.expected_entropy``,
exact for short samples), plus the letter/digit switch rate random strings
have and words lack.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .names import expected_entropy

# ---- thresholds (named, with the reason) -------------------------------------

#: Labels shorter than this are left out: below 8 characters random IDs and
#: counters (``r3``, ``node12``, ``a1b2c3``) are everywhere, and a channel this
#: thin moves almost nothing.
POOL_MIN_LABEL_LEN = 8

#: Distinct pooled labels needed: a channel moving 1 KB in 8-character hex
#: labels needs 250, in 20-character base32 labels 80; a CDN's cache-key
#: shards seen by one job number a few dozen (the fixtures' jsDelivr: 20).
POOL_MIN_LABELS = 50

#: ...and they must be at least this share of the domain's distinct names: a
#: service that embeds IDs also serves ordinary names to the same job.
POOL_MIN_SHARE = 0.5

#: Pooled entropy as a share of a random sample's: random data sits at
#: 0.99-1.01 over a few hundred characters, host-name words at 0.8-0.9.
POOL_MIN_ENTROPY_RATIO = 0.95

#: Pooled letter/digit switches per position: random hex switches ~47 % of the
#: time, random base32 ~30 %, base36 ~40 %; words with a number ~5 %.
POOL_MIN_SWITCH_RATE = 0.15

#: Characters sampled for the entropy test (labels in sorted order, so the
#: sample does not depend on query order): enough for a tight estimate, small
#: enough that a million-label domain costs nothing.
POOL_SAMPLE_CHARS = 4096

#: A domain whose answers the job connects to (a CDN it downloads from) needs
#: this much pooled payload before the pool counts: thousands of distinct
#: random host names in one job are not cache shards any more.
POOL_FETCHED_BYTES = 10_000

#: Bits each character carries, by the alphabet the pool fits.
_BITS = {"hex": 4.0, "base32": 5.0}


def sample_order(label: str) -> tuple[int, str]:
    """Where a label comes in the pooled sample: in hash order, the same for the same labels,
    and unbiased. (The first labels in sorted order all begin alike: past ~50,000 hex labels
    they all begin "00", and a channel that large read as far from random.)"""
    return zlib.crc32(label.encode()), label


def pooled_stats(labels: list[str]) -> tuple[int, str, float, float]:
    """(characters sampled, alphabet, entropy ratio, switch rate) of a list of labels."""
    # only the first few in sample order are ever read: enough labels for the sample's
    # characters, however many empty ones come first
    enough = POOL_SAMPLE_CHARS + sum(1 for x in labels if not x)
    return sample_stats(heapq.nsmallest(enough, labels, key=sample_order))


def sample_stats(ordered: list[str]) -> tuple[int, str, float, float]:
    """``pooled_stats`` of labels already in sample order (``sample_order``): the sample is
    their shortest prefix of at least ``POOL_SAMPLE_CHARS`` characters (all, when fewer)."""
    sample, n = [], 0
    for lab in ordered:
        sample.append(lab)
        n += len(lab)
        if n >= POOL_SAMPLE_CHARS:
            break
    text = "".join(sample).lower()
    if not text:
        return 0, "", 0.0, 0.0
    counts = Counter(text)
    alphabet = "hex" if set(counts) <= set("0123456789abcdef") else "base32"
    k = len(counts)
    size = 16 if alphabet == "hex" else max(k, 32)
    h = -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())
    exp = expected_entropy(len(text), size)
    switches = total = 0
    for lab in sample:
        cls = [c.isdigit() for c in lab]
        switches += sum(a != b for a, b in zip(cls, cls[1:]))
        total += max(len(lab) - 1, 0)
    return len(text), alphabet, (h / exp if exp else 0.0), (switches / total if total else 0.0)


@dataclass(frozen=True)
class LabelPool:
    """One group's distinct data labels as the pool reads them: how many, their characters, and
    the first of them in sample order (at least the sample's; ``sample_stats``)."""

    labels: int
    chars: int
    ordered: list


def pool_features(group_labels: dict, unique_names: np.ndarray, connected: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group pooled features.

    ``group_labels``: {group index: ``LabelPool`` of its distinct hex/base32 data labels of
    at least ``POOL_MIN_LABEL_LEN`` characters}. ``unique_names``: distinct
    names per group. ``connected``: connected answer addresses per group (NaN
    when no conn.log tells).
    """
    n = len(unique_names)
    out = {
        "pool_labels": np.zeros(n, dtype=np.int64),
        "pool_chars": np.zeros(n, dtype=np.int64),
        "pool_alphabet": np.full(n, "", dtype=object),
        "pool_entropy_ratio": np.zeros(n),
        "pool_switch_rate": np.zeros(n),
        "pool_bytes": np.zeros(n),
        "pool_random": np.zeros(n, dtype=bool),
    }
    for g, pool in group_labels.items():
        out["pool_labels"][g] = pool.labels
        if pool.labels < POOL_MIN_LABELS or pool.labels < POOL_MIN_SHARE * unique_names[g]:
            continue
        chars, alphabet, ratio, switch = sample_stats(pool.ordered)
        out["pool_chars"][g] = chars
        out["pool_alphabet"][g] = alphabet
        out["pool_entropy_ratio"][g] = ratio
        out["pool_switch_rate"][g] = switch
        nbytes = pool.chars * _BITS[alphabet] / 8.0
        out["pool_bytes"][g] = nbytes
        fetched = not np.isnan(connected[g]) and connected[g] > 0
        out["pool_random"][g] = (
            ratio >= POOL_MIN_ENTROPY_RATIO
            and switch >= POOL_MIN_SWITCH_RATE
            and (not fetched or nbytes >= POOL_FETCHED_BYTES)
        )
    return out
