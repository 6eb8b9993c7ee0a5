"""``secret_in_query``: credential-shaped strings in DNS query names, raw or encoded.

A stolen token leaves in one lookup: ``<token>.attacker.example``, or its
hex/base32/base64 in the labels, sometimes spread over a few names. We look
for the formats of common cloud and CI credentials (prefixes their issuers
document precisely so that secret scanners can find them) in each name's
payload, in its decodings (``payload_decode``) and in the concatenated
payloads of the few names of a small domain (split across queries).

Input: the lookup table (``destinations.lookup_table``). Output: one finding
per (session, registered domain), ``critical``: a credential left the job.
The evidence names the credential type and a redacted example, never the
secret itself.
"""

from __future__ import annotations

import base64
import re

from .findings import make_findings
from .payload_decode import decodings, joined_data, label_runs, name_payload

ANALYZER = "secret_in_query"

#: Credential formats, from each issuer's documentation of its token format.
#: Matched case-insensitively: Zeek and our recorder lower-case query names.
CREDENTIAL_PATTERNS = {
    # AWS access key IDs: 4-letter type prefix + 16 base32 characters (AWS IAM "unique identifiers"),
    # a token of its own: inside a longer random label (cache keys, tenant hashes) these 20
    # characters turn up by chance, about once in 300 generated CI jobs' names.
    "aws_access_key_id": r"(?<![a-z0-9])(?:akia|asia|agpa|aida|aroa|anpa|anva|aipa)[a-z2-7]{16}(?![a-z0-9])",
    # GitHub tokens: ghp_/gho_/ghu_/ghs_/ghr_ + 36 characters; fine-grained github_pat_ (GitHub docs, token formats).
    "github_token": r"gh[pousr]_[a-z0-9]{36}|github_pat_[a-z0-9_]{60,}",
    # GitLab personal/project/group access tokens: glpat- + 20 (GitLab docs, token prefixes).
    "gitlab_token": r"glpat-[a-z0-9_-]{20}",
    # npm automation/publish tokens: npm_ + 36 (npm docs).
    "npm_token": r"npm_[a-z0-9]{36}",
    # PyPI API tokens: pypi- + a macaroon whose base64 starts "AgEIcHlwaS5vcmc" (PyPI help).
    "pypi_token": r"pypi-ageichlwas5vcmc[a-z0-9_-]{20,}",
    # Slack tokens: xoxb-/xoxp-/xoxa-/xoxr-/xoxs- (Slack API docs).
    "slack_token": r"xox[abprs]-[a-z0-9-]{10,}",
    # Google API keys: AIza + 35 (Google Cloud docs).
    "google_api_key": r"aiza[a-z0-9_-]{35}",
    # Docker Hub personal access tokens: dckr_pat_ (Docker docs).
    "docker_pat": r"dckr_pat_[a-z0-9_-]{20,}",
    # Stripe secret keys (Stripe docs: sk_live_).
    "stripe_secret_key": r"[sr]k_live_[a-z0-9]{20,}",
    # JSON Web Tokens (RFC 7519): base64url of '{"' opens header and payload; GitHub Actions OIDC tokens are JWTs.
    "jwt": r"eyj[a-z0-9_-]{10,}\.?eyj[a-z0-9_-]{10,}",
    # PEM private keys (RFC 7468), only ever seen decoded.
    "private_key": r"-----begin [a-z ]*private key-----",
}
_RAW = re.compile("|".join(f"(?P<{k}>{v})" for k, v in CREDENTIAL_PATTERNS.items()), re.IGNORECASE)
_BYTES = re.compile("|".join(f"(?P<{k}>{v})" for k, v in CREDENTIAL_PATTERNS.items()).encode(), re.IGNORECASE)

#: Domains with at most this many distinct names also have their payloads
#: concatenated (first-seen order) and decoded: a token split over a few queries.
SPLIT_MAX_NAMES = 16


#: Fixed prefixes of the formats above and the shortest whole token, for finding
#: them in base64 whose case the log lost (Zeek lower-cases query names, so the
#: base64 can no longer be decoded): the characters that encode the prefix
#: alone, at each of the three byte alignments, are compared case-insensitively.
B64_PREFIXES = {
    "aws_access_key_id": (("AKIA", "ASIA"), 20),
    "github_token": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), 40),
    "gitlab_token": (("glpat-",), 26),
    "npm_token": (("npm_",), 40),
    "pypi_token": (("pypi-AgEIcHlwaS5vcmc",), 60),
    "slack_token": (("xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"), 15),
    "google_api_key": (("AIza",), 39),
    "docker_pat": (("dckr_pat_",), 29),
    "stripe_secret_key": (("sk_live_", "rk_live_"), 28),
}

#: Fewest base64 characters a prefix signature must have: shorter ones occur by chance in random labels.
MIN_SIGNATURE_CHARS = 5


def _b64_signatures() -> list[tuple[str, str, int]]:
    """[(kind, lower-case base64 of the prefix at one alignment, base64 characters the whole token needs after it)]."""
    out = []
    for kind, (prefixes, token_len) in B64_PREFIXES.items():
        for prefix in prefixes:
            for k, start in ((0, 0), (1, 2), (2, 3)):  # pad bytes before the prefix; first character free of them
                enc = base64.b64encode(b"\0" * k + prefix.encode()).decode()
                end = (k + len(prefix)) * 8 // 6  # characters fully determined by the prefix
                sig = enc[start:end].lower()
                if len(sig) >= MIN_SIGNATURE_CHARS:
                    rest = (k + token_len) * 8 // 6 - end
                    out.append((kind, sig, rest))
    return out


_SIGNATURES = _b64_signatures()


def _prefilter() -> frozenset:
    """Any credential prefix as lower-case hex, base32 (five alignments) or base64 (three): a cheap test that
    lets only the rare names that may hold one through to the decoders (a busy session has 10^5 names)."""
    prefixes = {p for ps, _ in B64_PREFIXES.values() for p in ps} | {"eyJ", "-----BEGIN"}
    sigs = set()
    for p in prefixes:
        b = p.encode()
        sigs.add(b.hex())
        for k in range(5):
            enc = base64.b32encode(b"\0" * k + b).decode().rstrip("=")
            sigs.add(enc[-(-k * 8 // 5):(k + len(b)) * 8 // 5].lower())
        for k, start in ((0, 0), (1, 2), (2, 3)):
            sigs.add(base64.b64encode(b"\0" * k + b).decode()[start:(k + len(b)) * 8 // 6].lower())
    return frozenset(x[:GATE_CHARS] for x in sigs if len(x) >= GATE_CHARS)


#: Characters of each signature the gate compares (a set of 4-grams: one hash lookup per position,
#: where a regular expression of ~200 alternatives cost ~70 us per name).
GATE_CHARS = 4
_MAYBE = _prefilter()
_RAW_GATE = frozenset(["akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                       "gith", "glpa", "npm_", "pypi", "xoxa", "xoxb", "xoxp", "xoxr", "xoxs", "aiza", "dckr", "sk_l", "rk_l",
                       "eyj", "----"])


def _may_hold(text: str) -> bool:
    """Whether ``text`` (a name or joined payloads) contains a credential prefix raw or encoded: the cheap gate."""
    t = text.lower().replace(".", "")
    grams = {t[i : i + GATE_CHARS] for i in range(len(t) - GATE_CHARS + 1)}
    return not grams.isdisjoint(_MAYBE) or not grams.isdisjoint(_RAW_GATE) or "eyj" in t
_B64_TEXT = re.compile(r"^[a-z0-9_-]+$")


def _lowercase_base64(text: str) -> list[tuple[str, str, str]]:
    t = text.lower()
    if not _B64_TEXT.match(t):
        return []
    out = []
    for kind, sig, rest in _SIGNATURES:
        i = t.find(sig)
        if i >= 0 and len(t) - i - len(sig) >= rest:
            out.append((kind, "base64", _redact(t[i:])))
    return out


def _redact(s: str) -> str:
    return s[:6] + "..." + f"({len(s)} chars)" if len(s) > 8 else "..."


def _redact_name(name: str, reg: str) -> str:
    """The name with its payload cut to 6 characters: the report must not re-leak the secret."""
    if " names joined" in name:
        return name
    p = name_payload(name, reg)
    return f"{p[:6]}...({len(p)} chars).{reg}" if p else name


def find_credentials(text: str) -> list[tuple[str, str, str]]:
    """[(credential type, how it was carried, redacted match)] in ``text``, raw or decoded."""
    out = []
    for m in _RAW.finditer(text):
        out.append((m.lastgroup, "raw", _redact(m.group(0))))
    for how, b in decodings(text, named=True):
        for m in _BYTES.finditer(b):
            out.append((m.lastgroup, how, _redact(m.group(0).decode("ascii", "replace"))))
    if not out:
        out += _lowercase_base64(text)
    return out


def _find_in_name(name: str, reg: str) -> list[tuple[str, str, str]]:
    for c in label_runs(name, reg):
        found = find_credentials(c)
        if found:
            return found
    return find_credentials(name)


def secrets_in_queries(lookups):
    if lookups is None or lookups.empty:
        return make_findings([])
    hits: dict = {}
    lk = lookups.sort_values("first_seen", kind="stable")
    for (sess, reg), grp in lk.groupby(["session", "registered_domain"], sort=True):
        found = []
        for name in grp["name"]:
            if not _may_hold(name):
                continue
            # the whole name too: a dotted JWT or a token followed by its label separators
            for c in _find_in_name(name, reg):
                found.append((c, name))
        if not found and len(grp) <= SPLIT_MAX_NAMES and len(grp) > 1:
            joined = joined_data(grp["name"], reg)
            if not _may_hold(joined):
                joined = ""
            found += [(c, f"{len(grp)} names joined") for c in find_credentials(joined)]
        if found:
            hits[(sess, reg)] = found
    recs = []
    for (sess, reg), found in hits.items():
        kinds = sorted({c[0] for c, _ in found})
        how = sorted({c[1] for c, _ in found})
        recs.append({
            "analyzer": ANALYZER,
            "severity": "critical",
            "indicator": reg,
            "summary": f"{', '.join(k.replace('_', ' ') for k in kinds)} in DNS query names ({'/'.join(how)}) sent to {reg}",
            "evidence": {"credential_types": kinds, "carried": how,
                         "names": sorted({_redact_name(n, reg) for _, n in found})[:5],
                         "redacted": sorted({c[2] for c, _ in found})[:5]},
            "sessions": [sess] if sess else [],
        })
    return make_findings(recs)
