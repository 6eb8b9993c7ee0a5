"""Short-label DNS channels, as an attacker who read the per-name thresholds would build them.

``short_label_names(nbytes, label_len, encoding, seed)`` chunks ``nbytes`` of
random data into labels of ``label_len`` characters (hex or base32) under
``t<k>.<domain>``, one label per name, like the channel of issue 14 (17-18 hex
characters per label, 1.18 million names, unflagged). Used by the tests and
bench/analyze_bench.py.
"""

from __future__ import annotations

import base64
import random


def short_label_names(nbytes: int, label_len: int, encoding: str = "hex", seed: int = 0,
                      domain: str = "cdn-metrics.example") -> list[str]:
    data = random.Random(seed).randbytes(nbytes)
    if encoding == "hex":
        text = data.hex()
    elif encoding == "base32":
        text = base64.b32encode(data).decode().rstrip("=").lower()
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    chunks = [text[i : i + label_len] for i in range(0, len(text), label_len)]
    # a sequence number in the label keeps every name unique, as real channels do
    return [f"{c}.t{i % 16}.{domain}" for i, c in enumerate(chunks)]
