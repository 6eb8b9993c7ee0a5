"""Property test (seeded, no extra dependency): writer -> reader round trips,
with nasty strings, every type, unset and empty values, TSV and JSON."""

import random

import pandas as pd
import pytest

from cicd_audit.zeeklog.reader import python_lists, read_dataframe, read_log
from cicd_audit.zeeklog.schema import Field, Schema
from cicd_audit.zeeklog.writer import LogWriter

SCHEMA = Schema(
    "rt",
    (
        Field("s", "string"), Field("ts", "time"), Field("iv", "interval"), Field("c", "count"),
        Field("i", "int"), Field("p", "port"), Field("d", "double"), Field("b", "bool"),
        Field("a", "addr"), Field("e", "enum"), Field("ss", "set[string]"),
        Field("vs", "vector[string]"), Field("vi", "vector[interval]"), Field("vc", "vector[count]"),
    ),
)

NASTY = [
    "", "-", "(empty)", "#", "#x", "\\", "\\x41", "\\\\x", "\t", "\n", "\r", ",", ",,", "a,b",
    "\x00", "\x7f", "\u0085", "\ue000", "\ufff0", "caf\u00e9", "\U0001f600", "x\ty\\z,",
    "\udcff", "a\udcc3\udca9", "-,(empty)", " ", "T", "F", "1", "\"quoted\"", "{}",
]


def rnd_str(r: random.Random) -> str:
    if r.random() < 0.4:
        return r.choice(NASTY)
    alphabet = "ab-#\\x,\t\n ()\x00\u00e9\ue000\U0001f600" + "".join(chr(c) for c in (0x7f, 0x85))
    s = "".join(r.choice(alphabet) for _ in range(r.randrange(0, 8)))
    if r.random() < 0.2:
        s += "\udcff"  # a raw non-UTF-8 byte (surrogateescape)
    return s


def rnd_addr(r):
    if r.random() < 0.5:
        return ".".join(str(r.randrange(256)) for _ in range(4))
    import ipaddress

    return str(ipaddress.IPv6Address(r.getrandbits(128) & ~(0xFFFF << r.choice([0, 32, 64]))))


def maybe(r, gen, p_unset=0.15):
    return None if r.random() < p_unset else gen()


def rnd_record(r):
    def strlist():
        n = r.randrange(0, 4)
        return [rnd_str(r) for _ in range(n)]

    return {
        "s": maybe(r, lambda: rnd_str(r)),
        "ts": maybe(r, lambda: round(r.uniform(0, 4e9), 6)),
        "iv": maybe(r, lambda: round(r.uniform(0, 1e5), 6)),
        "c": maybe(r, lambda: r.choice([0, 1, 2**53 + 1, 2**64 - 1, r.getrandbits(40)])),
        "i": maybe(r, lambda: r.randrange(-(2**63), 2**63)),
        "p": maybe(r, lambda: r.randrange(65536)),
        "d": maybe(r, lambda: round(r.uniform(-1e6, 1e6), 6)),
        "b": maybe(r, lambda: r.random() < 0.5),
        "a": maybe(r, lambda: rnd_addr(r)),
        "e": maybe(r, lambda: r.choice(["tcp", "udp", "icmp", "unknown_transport"])),
        "ss": maybe(r, strlist),
        "vs": maybe(r, strlist),
        "vi": maybe(r, lambda: [round(r.uniform(0, 1e6), 6) for _ in range(r.randrange(0, 4))]),
        "vc": maybe(r, lambda: [r.getrandbits(r.choice([8, 63])) for _ in range(r.randrange(0, 4))]),
    }


def expected_tsv(rec):
    """What a Zeek TSV log can carry back: a container holding only "" reads
    back as [] (both are written "(empty)"); the address in Zeek's form."""
    from cicd_audit.zeeklog.writer import format_addr

    def norm(v):  # same bytes, canonical str (escaped bytes that form UTF-8 decode)
        return v.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")

    out = dict(rec)
    if out["s"] is not None:
        out["s"] = norm(out["s"])
    for k in ("ss", "vs"):
        if out[k] is not None:
            out[k] = [norm(x) for x in out[k]]
        if out[k] == [""]:
            out[k] = []
    if out["a"] is not None:
        out["a"] = format_addr(out["a"])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_tsv_round_trip(tmp_path, seed):
    r = random.Random(seed)
    records = [rnd_record(r) for _ in range(300)]
    with LogWriter(tmp_path, SCHEMA) as w:
        for rec in records:
            w.write(rec)
    hdr, got = read_log(tmp_path / "rt.log", errors="surrogateescape")
    got = list(got)
    assert got == [expected_tsv(x) for x in records]
    # rewriting what was read reproduces the file byte for byte
    again = tmp_path / "again"
    again.mkdir()
    with LogWriter(again, SCHEMA) as w:
        for rec in got:
            w.write(rec)
    def strip(b):
        return [line for line in b.split(b"\n") if not line.startswith((b"#open", b"#close"))]
    assert strip((again / "rt.log").read_bytes()) == strip((tmp_path / "rt.log").read_bytes())
    # the vectorized reader gives the same values
    df = read_dataframe(tmp_path / "rt.log", errors="surrogateescape")
    for col in ("s", "e", "a"):
        assert [None if pd.isna(v) else v for v in df[col]] == [x[col] for x in got]
    for col in ("ss", "vs", "vi", "vc"):
        assert python_lists(df[col]).tolist() == [x[col] for x in got]
    for col in ("c", "i", "p"):
        assert [None if pd.isna(v) else int(v) for v in df[col]] == [x[col] for x in got]
    assert [None if pd.isna(v) else v for v in df["b"]] == [x["b"] for x in got]
    ts = [None if pd.isna(v) else v.value for v in df["ts"]]
    assert ts == [None if x["ts"] is None else round(x["ts"] * 1e6) * 1000 for x in got]
    iv = [None if pd.isna(v) else v.value for v in df["iv"]]
    assert iv == [None if x["iv"] is None else round(x["iv"] * 1e9) for x in got]


@pytest.mark.parametrize("seed", range(3))
def test_json_round_trip(tmp_path, seed):
    r = random.Random(100 + seed)
    records = [rnd_record(r) for _ in range(200)]
    with LogWriter(tmp_path, SCHEMA, fmt="json") as w:
        for rec in records:
            w.write(rec)
    hdr, got = read_log(tmp_path / "rt.log", schema=SCHEMA)
    got = list(got)
    from cicd_audit.zeeklog.formatting import format_addr
    from cicd_audit.zeeklog.formatting import to_bytes as _to_bytes
    from cicd_audit.zeeklog.json_format import _escape_json_text

    def text(v):
        return None if v is None else _escape_json_text(_to_bytes(v))

    for want, have in zip(records, got):
        # JSON keeps Zeek's \xHH text for strings that were not clean UTF-8
        assert have["s"] == text(want["s"])
        assert have["ss"] == (None if want["ss"] is None else [text(x) for x in want["ss"]])
        assert have["a"] == (None if want["a"] is None else format_addr(want["a"]))
        for k in ("c", "i", "p", "b", "e", "vc"):
            assert have[k] == want[k], k
        for k in ("ts", "iv", "d"):
            assert (have[k] is None) == (want[k] is None)
            if want[k] is not None:
                assert have[k] == want[k]  # shortest repr round-trips exactly
        assert have["vi"] == want["vi"]
    df = read_dataframe(tmp_path / "rt.log", schema=SCHEMA)
    assert len(df) == len(records) and str(df["ts"].dtype) == "datetime64[ns, UTC]"
