"""Decode the data a DNS name may carry: hex, base32 and base64 of its labels.

``name_payload(name, registered)`` -> the labels left of the registered domain,
dots removed. ``decodings(text)`` -> the byte strings ``text`` decodes to as
hex, base32 or base64 (each tried only when the characters fit), so detectors
can look *inside* encoded labels for credentials and host data. Decoding is
capped at ``MAX_DECODE_CHARS`` characters per string: names are short, and a
detector must not be made to spend unbounded time on one.
"""

from __future__ import annotations

import base64
import binascii
import re

#: Longest text decoded (a DNS name is at most 253 characters; concatenated
#: payloads of a few-query callback stay far below this).
MAX_DECODE_CHARS = 4096

#: Shortest text worth decoding: 12 characters hold 6-9 bytes, the shortest
#: credential prefix or host-data fragment we look for.
MIN_DECODE_CHARS = 12

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_B32 = re.compile(r"^[a-zA-Z2-7]+=*$")
_B64 = re.compile(r"^[A-Za-z0-9+/_-]+=*$")


def name_payload(name: str, registered: str) -> str:
    """The labels of ``name`` left of ``registered``, dots removed ('' when none)."""
    n = name.rstrip(".")
    if registered and n.lower().endswith("." + registered):
        n = n[: -len(registered) - 1]
    elif registered and n.lower() == registered:
        return ""
    return n.replace(".", "")


#: Labels of one name considered (a DNS name has at most 127; real payloads fit in a few).
MAX_LABELS = 12

#: Labels shorter than this are tags or sequence numbers (``.1.``, ``.x1.``), not data,
#: when the data labels of several names are joined.
MIN_DATA_LABEL = 8


def _labels(name: str, registered: str) -> list[str]:
    n = name.rstrip(".").lower()
    head = n[: -len(registered) - 1] if registered and n.endswith("." + registered) else ("" if n == registered else n)
    return [x for x in head.split(".") if x][:MAX_LABELS]


def label_runs(name: str, registered: str) -> list[str]:
    """The payload, each label, and each run of consecutive labels left of ``registered``:
    data split over labels and followed by a tag or sequence label that is not data."""
    labels = _labels(name, registered)
    out = [name_payload(name, registered)]
    for i in range(len(labels)):
        for j in range(i + 1, len(labels) + 1):
            out.append("".join(labels[i:j]))
    return list(dict.fromkeys(x for x in out if x))


def joined_data(names, registered: str) -> str:
    """The data labels (at least ``MIN_DATA_LABEL`` characters) of ``names``, in order, joined:
    data split over several queries."""
    return "".join(lab for n in names for lab in _labels(n, registered) if len(lab) >= MIN_DATA_LABEL)


def decodings(text: str, named: bool = False) -> list:
    """Bytes ``text`` decodes to as hex / base32 / base64 (whichever alphabets fit);
    with ``named``, (encoding, bytes) pairs."""
    t = text[:MAX_DECODE_CHARS]
    if len(t) < MIN_DECODE_CHARS:
        return []
    out = []
    if _HEX.match(t):
        try:
            out.append(("hex", bytes.fromhex(t[: len(t) // 2 * 2])))
        except ValueError:
            pass
    if _B32.match(t):
        u = t.rstrip("=").upper()
        u = u[: len(u) // 8 * 8] if len(u) % 8 in (1, 3, 6) else u  # lengths base32 cannot end on
        try:
            out.append(("base32", base64.b32decode(u + "=" * (-len(u) % 8))))
        except (binascii.Error, ValueError):
            pass
    if _B64.match(t) and (t != t.lower() or "-" in t or "_" in t):  # case carries data only if it survived
        u = t.rstrip("=").replace("-", "+").replace("_", "/")
        u = u[: len(u) // 4 * 4] if len(u) % 4 == 1 else u
        try:
            out.append(("base64", base64.b64decode(u + "=" * (-len(u) % 4))))
        except (binascii.Error, ValueError):
            pass
    return out if named else [b for _, b in out]


def printable_share(b: bytes) -> float:
    """Share of bytes that are printable ASCII (text, paths, host names)."""
    if not b:
        return 0.0
    return sum(32 <= c < 127 or c in (9, 10, 13) for c in b) / len(b)
