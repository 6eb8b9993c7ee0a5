"""Per-name features of DNS query names: does the part left of the registered domain look like encoded data?

Tunnels and exfiltration tools put their payload in the labels left of a domain
their operator controls, encoded with an alphabet DNS can carry: hex (dnscat2),
base32 (iodine, sods, exfil one-liners), base64 (dns2tcp, dnsexfiltrator) or raw
8-bit bytes (iodine's "raw" codec). Ordinary hostnames are short, made of
words, and rarely mix letters and digits.

For each distinct name we compute, on its *payload* (the labels left of the
registered domain, dots removed, service labels such as ``_dmarc`` dropped):

* ``payload_len``, ``labels``; ``data_label``, the longest label that is not
  fixed structure, and its length ``max_label_len``;
* ``alphabet``: the smallest of the encoding alphabets the characters fit in,
  i.e. the encoding's fingerprint (``decimal``, ``hex``, ``base32``, ``ldh``,
  ``base64`` or ``binary``), and its size ``alphabet_size``;
* ``entropy`` (Shannon, bits per character) and ``entropy_ratio``: entropy
  divided by the entropy *expected* of a uniformly random string of the same
  length over that alphabet. Short strings cannot reach log2(alphabet), so the
  ratio, not raw entropy, is comparable across lengths; random data scores
  about 1.0, words about 0.8;
* ``switch_rate``: how often consecutive characters change between letter and
  digit. Random base32/hex/base64 switches on 25-50 % of positions, hostnames
  made of words and a trailing number almost never;
* ``encoded``: the verdict, from the thresholds below;
* ``bits_per_char`` and ``encoded_bytes``: payload bytes the name can carry.

Everything is vectorised with numpy (names become a matrix of code points),
so a million distinct names take a few seconds.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pandas as pd

from . import domains

# ---- thresholds (named, with the reason) -------------------------------------

#: Payloads shorter than this are never called encoded on their own: at 11
#: characters or fewer even random strings are indistinguishable from short
#: host names or IDs (``o450832``, ``r3``, ``ci4``). Handshakes made of short
#: names are caught by the domain-level features instead.
MIN_ENCODED_LEN = 12

#: A payload is "random" when its entropy reaches this share of what a random
#: string of the same length and alphabet would have. Random data sits at
#: 0.95-1.05; English-like host names at 0.75-0.9.
MIN_ENTROPY_RATIO = 0.87

#: Letter/digit switches per position above which a base32 label looks
#: machine-made. Random base32 switches ~30 % of the time, base32 of ASCII text
#: (sods) 10-15 %; host names made of words and a number (``productionresultssa12``,
#: ``pipelinesghubeus21``) 5-6 %, with a single switch.
MIN_SWITCH_RATE = 0.08

#: ...and at least this many switches, so one word plus one number never qualifies.
MIN_SWITCHES = 2

#: Hex needs more length than the others: 8-16 hex digits are common IDs
#: (commit hashes, tenant IDs, CDN cache keys such as ``3f9c1a7e2b4d5c6f``).
MIN_HEX_LEN = 24

# ``ldh`` labels (letters, digits and hyphens) are never called encoded on their
# own: no common encoder emits hyphens in a single case, while load-balancer and
# tenant names (``a1b2...-1234567890.us-east-1.elb.amazonaws.com``, UUIDs) do.
# Tunnels in that alphabet are still caught by the domain-level features.

# ---- alphabets ----------------------------------------------------------------

#: Fingerprint -> (alphabet size, bits of payload per character).
ALPHABETS = {
    "none": (1, 0.0),  # empty payload: the name is its registered domain (or only service labels)
    "decimal": (10, math.log2(10)),
    "hex": (16, 4.0),
    "base32": (32, 5.0),  # any single-case [a-z0-9]: RFC 4648 base32, base32hex, iodine's a-z0-5
    "ldh": (37, math.log2(37)),  # single-case letters, digits and '-'
    "base64": (64, 6.0),  # mixed case, plus any of + / = _ -
    "binary": (128, 7.0),  # anything outside the host-name alphabet: raw 8-bit codecs
}
ALPHABET_ORDER = list(ALPHABETS)

FEATURE_COLUMNS = [
    "name",
    "registered_domain",
    "payload",
    "payload_len",
    "labels",
    "data_label",
    "max_label_len",
    "service_name",
    "reverse",
    "alphabet",
    "alphabet_size",
    "entropy",
    "entropy_ratio",
    "switch_rate",
    "encoded",
    "encoded_bytes",
]


NAME_TABLE_LEN = 256     # every DNS name and label is shorter: one table per alphabet covers them


@functools.cache
def _expected_entropy_table(alphabet_size: int, max_len: int = NAME_TABLE_LEN) -> np.ndarray:
    """E[plug-in Shannon entropy] of a uniform random string of length n (index n), in bits."""
    out = np.zeros(max_len + 1)
    if alphabet_size <= 1:
        return out
    lg = _log_factorials(max_len)
    for n in range(1, max_len + 1):
        out[n] = _expected_entropy_at(alphabet_size, n, lg)
    return out


def _log_factorials(n: int) -> np.ndarray:
    return np.array([math.lgamma(i + 1) for i in range(n + 1)])


def _expected_entropy_at(alphabet_size: int, n: int, lg: np.ndarray) -> float:
    """Exact: each symbol's count is Binomial(n, 1/A); by linearity
    E[H] = -A * sum_k P(X=k) (k/n) log2(k/n). lg[i] = log(i!) for i <= n."""
    A, p = alphabet_size, 1.0 / alphabet_size
    k = np.arange(1, n + 1)
    logpmf = lg[n] - lg[k] - lg[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)
    q = k / n
    return -A * np.sum(np.exp(logpmf) * q * np.log2(q))


@functools.lru_cache(maxsize=4096)
def _expected_entropy_long(alphabet_size: int, length: int) -> float:
    """One value past the table (pooled label text): O(length), where a table to that length
    would be O(length**2) for every new length."""
    if alphabet_size <= 1:
        return 0.0
    return float(_expected_entropy_at(alphabet_size, length, _log_factorials(length)))


def expected_entropy(length: int, alphabet_size: int) -> float:
    """Expected entropy (bits/char) of a random string of ``length`` over ``alphabet_size`` symbols."""
    if length <= 0:
        return 0.0
    if length > NAME_TABLE_LEN:
        return _expected_entropy_long(alphabet_size, length)
    return float(_expected_entropy_table(alphabet_size)[length])


_ESCAPED_BYTE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(name: str) -> str:
    """Zeek writes bytes that are not UTF-8 as ``\\xHH`` and readers may keep that text;
    count each such byte as one (non-ASCII) character, not four."""
    if "\\x" not in name:
        return name
    return _ESCAPED_BYTE.sub(lambda m: chr(int(m.group(1), 16) | 0x80 if int(m.group(1), 16) < 0x20 else int(m.group(1), 16)), name)


def _split_payload(name: str, reg: str, static=frozenset()) -> tuple[str, str, bool]:
    """(payload, longest data label, had service labels) for one name.

    ``static``: labels that are fixed structure of this name's domain (see
    ``dns_tunnel.static_labels``); they stay in the payload but are never the
    data label.
    """
    uname = _unescape(name)
    k = len(reg) + 1
    if reg and len(uname) > k and uname[-k] == "." and uname[-k + 1 :].lower() == reg:
        sub = uname[:-k]  # the usual case: the name ends in its registered domain
    else:
        sub = domains.subdomain_part(uname, reg)
    if not sub:
        return "", "", False
    if not sub.islower() and not sub.isupper():
        # 0x20 randomisation touches the whole name; then case carries no data.
        tail = name[len(sub) + 1 :]
        if tail != tail.lower():
            sub = sub.lower()
    labels = sub.split(".")
    if "_" not in sub:  # no service labels: nothing to drop
        data = [lab for lab in labels if lab not in static] if static else labels
        return sub, (max(data, key=len) if data else ""), False
    kept = [lab for lab in labels if not lab.startswith("_")]
    data = [lab for lab in kept if lab not in static] if static else kept
    longest = max(data, key=len) if data else ""
    return ".".join(kept), longest, len(kept) != len(labels)


def name_features(names, registered=None, static_labels=None) -> pd.DataFrame:
    """Features of each name in ``names`` (distinct names are best; order kept).

    ``registered``: optional precomputed registered domains aligned with names.
    ``static_labels``: optional {registered domain: set of labels} that are
    fixed structure in that domain (not data).

    Alphabet, entropy and switch rate describe the name's longest data label:
    tools fill labels to carry as much as they can, while the short labels
    around them (``t1``, ``up.tun``, ``cdn``, ``ingest``, counters) are fixed
    structure that would only blur the fingerprint. Lengths and byte counts
    cover the whole payload.
    """
    names = [("" if (n is None or (isinstance(n, float) and math.isnan(n))) else str(n).rstrip(".")) for n in names]
    if registered is None:
        registered = domains.registered_domains(names).tolist()
    else:
        registered = list(registered)
    n = len(names)
    if static_labels:
        empty = frozenset()
        split = [_split_payload(nm, reg, static_labels.get(reg, empty)) for nm, reg in zip(names, registered)]
    else:
        split = [_split_payload(nm, reg) for nm, reg in zip(names, registered)]
    payloads = [t[0] for t in split]
    data_labels = [t[1] for t in split]
    service = np.fromiter((t[2] for t in split), dtype=bool, count=n)
    labels = np.fromiter((nm.count(".") + 1 if nm else 0 for nm in names), dtype=np.int64, count=n)
    reverse = np.fromiter(
        (nm[-4:].lower() == "arpa" and domains.is_reverse_name(nm) for nm in names), dtype=bool, count=n
    )
    payload_len = np.fromiter((len(p) - p.count(".") for p in payloads), dtype=np.int64, count=n)
    feats = _payload_features(data_labels)
    df = pd.DataFrame(
        {
            "name": names,
            "registered_domain": registered,
            "payload": payloads,
            "payload_len": payload_len,
            "labels": labels,
            "data_label": data_labels,
            "max_label_len": feats["payload_len"],
            "service_name": service,
            "reverse": reverse,
            "alphabet": pd.Categorical.from_codes(feats["alphabet_code"], categories=ALPHABET_ORDER),
            "alphabet_size": feats["alphabet_size"],
            "entropy": feats["entropy"],
            "entropy_ratio": feats["entropy_ratio"],
            "switch_rate": feats["switch_rate"],
        }
    )
    df["encoded"] = _encoded_verdict(df) & ~reverse
    bpc = np.array([ALPHABETS[a][1] for a in ALPHABET_ORDER])[feats["alphabet_code"]]
    df["encoded_bytes"] = np.where(df["encoded"].to_numpy(), payload_len * bpc / 8.0, 0.0)
    return df


def _encoded_verdict(df: pd.DataFrame) -> np.ndarray:
    L = df["max_label_len"].to_numpy()  # length of the longest data label
    a = df["alphabet"].astype(str).to_numpy()
    er = df["entropy_ratio"].to_numpy()
    sw = df["switch_rate"].to_numpy()
    random_ = er >= MIN_ENTROPY_RATIO
    mixed = (sw >= MIN_SWITCH_RATE) & (np.round(sw * np.maximum(L - 1, 0)) >= MIN_SWITCHES)
    enc = np.zeros(len(df), dtype=bool)
    enc |= (a == "binary") & (L >= MIN_ENCODED_LEN)
    enc |= (a == "hex") & (L >= MIN_HEX_LEN) & random_
    enc |= (a == "base32") & (L >= MIN_ENCODED_LEN) & random_ & mixed
    enc |= (a == "base64") & (L >= MIN_ENCODED_LEN) & random_
    return enc


# ---- vectorised payload statistics -------------------------------------------

_LOWER = np.zeros(256, dtype=bool)
_UPPER = np.zeros(256, dtype=bool)
_DIGIT = np.zeros(256, dtype=bool)
_HEXL = np.zeros(256, dtype=bool)  # a-f
_HEXU = np.zeros(256, dtype=bool)  # A-F
_HYPHEN = np.zeros(256, dtype=bool)
_B64X = np.zeros(256, dtype=bool)  # + / = _
for _c in range(ord("a"), ord("z") + 1):
    _LOWER[_c] = True
for _c in range(ord("A"), ord("Z") + 1):
    _UPPER[_c] = True
for _c in range(ord("0"), ord("9") + 1):
    _DIGIT[_c] = True
for _c in "abcdef":
    _HEXL[ord(_c)] = True
for _c in "ABCDEF":
    _HEXU[ord(_c)] = True
_HYPHEN[ord("-")] = True
for _c in "+/=_":
    _B64X[ord(_c)] = True
_KNOWN = _LOWER | _UPPER | _DIGIT | _HYPHEN | _B64X

@functools.cache
def _clogc_steps(width: int) -> np.ndarray:
    r = np.arange(width + 2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(r > 0, r * np.log2(np.maximum(r, 1)), 0.0)
    steps = np.zeros(width + 2)
    steps[1:] = f[1:] - f[:-1]
    return steps.astype(np.float32)


_CHUNK_CELLS = 2_000_000  # characters per chunk: bounds the temporaries at ~40 MB


def _payload_features(payloads: list[str]) -> dict[str, np.ndarray]:
    n = len(payloads)
    out = {
        "payload_len": np.zeros(n, dtype=np.int64),
        "alphabet_code": np.zeros(n, dtype=np.int8),
        "alphabet_size": np.zeros(n, dtype=np.int64),
        "entropy": np.zeros(n),
        "entropy_ratio": np.zeros(n),
        "switch_rate": np.zeros(n),
    }
    if n == 0:
        return out
    flat = payloads
    lens = np.fromiter((len(p) for p in flat), dtype=np.int64, count=n)
    out["payload_len"] = lens
    order = np.argsort(lens, kind="stable")  # chunks of similar length waste little padding
    start = 0
    while start < n:
        # Grow the chunk (doubling) while rows x widest payload stays within budget.
        stop = min(n, start + 1024)
        while stop < n:
            cand = min(n, start + 2 * (stop - start))
            if (cand - start) * max(1, int(lens[order[cand - 1]])) > _CHUNK_CELLS:
                break
            stop = cand
        idx = order[start:stop]
        _chunk_features([flat[i] for i in idx], lens[idx], idx, out)
        start = stop
    return out


def _chunk_features(strs: list[str], lens: np.ndarray, idx: np.ndarray, out: dict) -> None:
    width = int(lens.max()) if len(lens) else 0
    if width == 0:
        out["alphabet_code"][idx] = ALPHABET_ORDER.index("none")
        out["alphabet_size"][idx] = ALPHABETS["none"][0]
        return
    # One byte per character: Latin-1 covers ASCII and the escaped bytes Zeek
    # writes; anything beyond becomes '?', which is "other" (binary) anyway.
    # NUL would read as padding, so it becomes 0x1A (also "other").
    enc = [x.encode("latin-1", "replace").replace(b"\x00", b"\x1a") for x in strs]
    mat = np.array(enc, dtype=f"S{width}").view(np.uint8).reshape(len(strs), width)
    valid = np.arange(width)[None, :] < lens[:, None]
    cp = mat
    lower = _LOWER[cp]
    upper = _UPPER[cp]
    digit = _DIGIT[cp]
    other = ~_KNOWN[cp] & valid
    has_lower = lower.any(1)
    has_upper = upper.any(1)
    has_digit = digit.any(1)
    has_other = other.any(1)
    has_hyphen = (_HYPHEN[cp] & valid).any(1)
    has_b64x = (_B64X[cp] & valid).any(1)
    letters_hex_l = ((lower & ~_HEXL[cp]).any(1) == False) & has_lower  # noqa: E712
    letters_hex_u = ((upper & ~_HEXU[cp]).any(1) == False) & has_upper  # noqa: E712
    single_case = ~(has_lower & has_upper)

    code = np.full(len(strs), ALPHABET_ORDER.index("binary"), dtype=np.int8)
    not_other = ~has_other
    is_b64 = not_other & (has_b64x | (has_lower & has_upper))
    is_ldh = not_other & ~is_b64 & has_hyphen
    is_alnum = not_other & ~is_b64 & ~has_hyphen
    is_dec = is_alnum & ~has_lower & ~has_upper
    is_hex = is_alnum & single_case & has_digit & (letters_hex_l | letters_hex_u)
    is_b32 = is_alnum & ~is_dec & ~is_hex
    code[is_b64] = ALPHABET_ORDER.index("base64")
    code[is_ldh] = ALPHABET_ORDER.index("ldh")
    code[is_b32] = ALPHABET_ORDER.index("base32")
    code[is_hex] = ALPHABET_ORDER.index("hex")
    code[is_dec] = ALPHABET_ORDER.index("decimal")
    code[lens == 0] = ALPHABET_ORDER.index("none")
    sizes = np.array([ALPHABETS[a][0] for a in ALPHABET_ORDER])[code]

    # Entropy: case-insensitive unless base64 or binary (where case carries data).
    case_sensitive = (code == ALPHABET_ORDER.index("base64")) | (code == ALPHABET_ORDER.index("binary"))
    folded = np.where(upper & ~case_sensitive[:, None], mat + 32, mat)
    folded = np.where(valid, folded, 0)
    srt = np.sort(folded, axis=1)
    pos = np.arange(width, dtype=np.int16)[None, :]
    new_run = np.ones(srt.shape, dtype=bool)
    new_run[:, 1:] = srt[:, 1:] != srt[:, :-1]
    run_start = np.where(new_run, pos, np.int16(0))
    np.maximum.accumulate(run_start, axis=1, out=run_start)
    rank = pos - run_start + 1  # 1-based rank inside each run of equal symbols
    # sum over a run of r*log2(r) - (r-1)*log2(r-1) telescopes to c*log2(c)
    contrib = _clogc_steps(width)[rank]
    contrib[srt == 0] = 0.0  # padding sorts first and is not a symbol
    sum_clogc = contrib.sum(1, dtype=np.float64)
    L = lens.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        H = np.where(L > 0, np.log2(np.maximum(L, 1)) - sum_clogc / np.maximum(L, 1), 0.0)
    H = np.maximum(H, 0.0)
    exp = np.zeros(len(strs))
    for a_code in np.unique(code):
        table = _expected_entropy_table(int(ALPHABETS[ALPHABET_ORDER[a_code]][0]), max(NAME_TABLE_LEN, width))
        m = code == a_code
        exp[m] = table[lens[m]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(exp > 0, H / exp, 0.0)

    # letter<->digit switches between neighbouring characters
    cls = np.where(lower | upper, 1, np.where(digit, 2, 0)).astype(np.int8)
    cls[~valid] = 0
    sw = (cls[:, 1:] != cls[:, :-1]) & (cls[:, 1:] > 0) & (cls[:, :-1] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        switch = np.where(L > 1, sw.sum(1) / np.maximum(L - 1, 1), 0.0)

    out["alphabet_code"][idx] = code
    out["alphabet_size"][idx] = sizes
    out["entropy"][idx] = H
    out["entropy_ratio"][idx] = ratio
    out["switch_rate"][idx] = switch
