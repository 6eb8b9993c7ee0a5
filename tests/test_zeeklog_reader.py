"""Reader: real Zeek logs, exact round trips, typed frames, precise errors."""

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import SHARED, shared

from cicd_audit.errors import InputError
from cicd_audit.zeeklog.reader import (
    ARROW,
    STRING_DTYPE,
    LogFormatError,
    empty_frame,
    load_logs,
    python_lists,
    read_dataframe,
    read_log,
)
from cicd_audit.zeeklog.schema import Field, Schema, load_schema
from cicd_audit.zeeklog.writer import LogWriter

ORACLE = SHARED / "zeek-oracle"
BENIGN = SHARED / "dns-tunnel-data" / "benign"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "zeeklog"
FAKE_TS = b"1234567890.123456"  # stands in for btest's XXXXXXXXXX.XXXXXX


def need(path):
    """A file under ../shared, which every checkout has: missing, the test fails (shared_data)."""
    return shared(*path.relative_to(SHARED).parts)


def oracle_logs():
    return sorted(
        p for p in shared("zeek-oracle").glob("*/*.log")
        if p.name.startswith(("conn", "dns")) and ".cut." not in p.name
    )


def _ids(p):
    return f"{p.parent.name}/{p.name}"


def untimed(data: bytes):
    return [line for line in data.split(b"\n") if not line.startswith((b"###", b"#open", b"#close"))]


# ---------------------------------------------------------------- oracle


def test_canonified_ts_is_rejected_with_line():
    p = need(ORACLE / "wikipedia" / "conn.log")
    with pytest.raises(LogFormatError) as e:
        read_dataframe(p)
    assert e.value.lineno == 10 and str(p) in str(e.value) and "ts" in str(e.value)
    with pytest.raises(LogFormatError, match=r"line 10: column ts"):
        read_log(p)


@pytest.mark.parametrize("src", oracle_logs(), ids=_ids)
def test_oracle_round_trip_is_exact(tmp_path, src):
    """Every oracle conn/dns log -> read_log -> LogWriter reproduces the file
    (ts masked by btest is replaced by a number first)."""
    data = src.read_bytes().replace(b"XXXXXXXXXX.XXXXXX", FAKE_TS)
    inp = tmp_path / "in.log"
    inp.write_bytes(data)
    hdr, rows = read_log(inp)
    out = tmp_path / "out"
    out.mkdir()
    with LogWriter(out, hdr.schema) as w:
        for r in rows:
            w.write(r)
    assert untimed((out / (hdr.path + ".log")).read_bytes()) == untimed(data)
    # the vectorized reader agrees with the record reader
    df = read_dataframe(inp)
    assert len(df) == len(list(read_log(inp)[1]))


def test_zeek_compare_tool_accepts_our_logs(tmp_path):
    """The oracle's own comparison tool (headers + rows, uid included)."""
    case = need(ORACLE / "wikipedia")
    expected = tmp_path / "case"
    expected.mkdir()
    actual = tmp_path / "actual"
    actual.mkdir()
    for name in ("conn", "dns"):
        shutil.copy(case / (f"{name}.log"), expected)
        inp = tmp_path / (f"{name}.in")
        inp.write_bytes((case / (f"{name}.log")).read_bytes().replace(b"XXXXXXXXXX.XXXXXX", FAKE_TS))
        hdr, rows = read_log(inp)
        with LogWriter(actual, load_schema(name)) as w:
            for r in rows:
                w.write(r)
    tool = ORACLE / "_tools" / "zeek_compare.py"
    r = subprocess.run([sys.executable, str(tool), str(expected), str(actual), "--ignore", "nothing"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("OK") == 2


def test_json_doc_example():
    p = need(ORACLE / "dns-tm1t-doc-json" / "dns.json")
    hdr, rows = read_log(p)
    rows = list(rows)
    assert hdr.format == "json" and hdr.path == "dns"
    assert rows[0]["rtt"] is None and rows[0]["answers"] is None
    assert rows[1]["answers"] == ["192.0.78.150", "192.0.78.212"]
    assert rows[1]["TTLs"] == [60.0, 60.0]
    df = read_dataframe(p)
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert df["ts"][0] == pd.Timestamp("2026-03-30 23:00:41.789170", tz="UTC")
    assert df["rtt"][1] == pd.Timedelta(nanoseconds=38371086)
    assert pd.isna(df["rtt"][0])
    assert df["Z"].dtype == "UInt64" and df["Z"].tolist() == [2, 2]


# ---------------------------------------------------------------- real logs


@pytest.mark.parametrize(
    "name, rows, ncols",
    [("zat_dns.log", 54, 23), ("rita_proxy_dns.log", 942, 24), ("rita_proxy_rolling_dns16.log.gz", 3189, 24)],
)
def test_benign_real_zeek_logs(name, rows, ncols):
    p = need(BENIGN / name)
    df = read_dataframe(p)
    assert df.shape == (rows, ncols)
    hdr = df.attrs["zeek_header"]
    assert hdr.path == "dns" and len(hdr.fields) == ncols
    assert df["ts"].notna().all()
    assert df["query"].dtype == STRING_DTYPE
    assert df["id.resp_p"].dtype == "UInt16"
    # record reader agrees value for value on a sample
    _, recs = read_log(p)
    recs = list(recs)
    assert len(recs) == rows
    for i in (0, rows // 2, rows - 1):
        r = recs[i]
        assert df["query"][i] == (r["query"] if r["query"] is not None else df["query"][i])
        assert df["ts"][i] == pd.Timestamp(round(r["ts"] * 1e6) * 1000, tz="UTC")
        assert (df["answers"].isna()[i]) == (r["answers"] is None)
        if r["answers"] is not None:
            assert df["answers"][i] == r["answers"] and df["TTLs"][i] == r["TTLs"]


def test_older_zeek_columns_loaded_with_schema_columns(tmp_path):
    p = need(BENIGN / "zat_dns.log")  # no rtt, opcode, opcode_name
    shutil.copy(p, tmp_path / "dns.log")
    logs = load_logs(tmp_path)
    assert len(logs.dns) == 54
    assert {"rtt", "opcode", "opcode_name"} <= set(logs.dns.columns)
    assert logs.dns["rtt"].isna().all() and logs.dns["opcode"].dtype == "UInt64"


# ---------------------------------------------------------------- dtypes

ALL = Schema(
    "all",
    (
        Field("ts", "time"), Field("iv", "interval"), Field("c", "count"), Field("i", "int"),
        Field("p", "port"), Field("d", "double"), Field("b", "bool"), Field("a", "addr"),
        Field("s", "string"), Field("e", "enum"), Field("n", "subnet"), Field("ss", "set[string]"),
        Field("vi", "vector[interval]"), Field("vc", "vector[count]"),
    ),
)


def test_dtypes_and_values(tmp_path):
    with LogWriter(tmp_path, ALL) as w:
        w.write({"ts": 1379288667.63194, "iv": 0.000435, "c": 2**64 - 1, "i": -3, "p": 443, "d": 1.5,
                 "b": True, "a": "fe80::1", "s": "x#y", "e": "udp", "n": "10.0.0.0/8",
                 "ss": ["a", "b"], "vi": [60.0, 0.5], "vc": [1, 2]})
        w.write({"s": "", "ss": [], "vi": [], "b": False})
        w.write({})
    df = read_dataframe(tmp_path / "all.log")
    want = {
        "ts": "datetime64[ns, UTC]", "iv": "timedelta64[ns]", "c": "UInt64", "i": "Int64",
        "p": "UInt16", "d": "Float64", "b": "boolean", "a": "string", "s": "string", "e": "string",
        "n": "string", "ss": "object", "vi": "object", "vc": "object",
    }
    if ARROW:  # one Arrow list array per column, elements as read_log gives them
        want.update({"ss": "list<item: string>[pyarrow]", "vi": "list<item: double>[pyarrow]",
                     "vc": "list<item: uint64>[pyarrow]"})
        assert df["s"].dtype.storage == "pyarrow"
    assert {k: str(v) for k, v in df.dtypes.items()} == want
    r0 = df.iloc[0]
    assert r0["ts"] == pd.Timestamp("2013-09-15 23:44:27.631940", tz="UTC")
    assert r0["iv"] == pd.Timedelta(microseconds=435)
    assert r0["c"] == 2**64 - 1  # exact beyond float precision
    assert r0["i"] == -3 and r0["p"] == 443 and r0["d"] == 1.5 and r0["b"] is np.True_ or r0["b"] == True  # noqa: E712
    assert r0["s"] == "x#y" and r0["ss"] == ["a", "b"] and r0["vi"] == [60.0, 0.5] and r0["vc"] == [1, 2]
    r1 = df.iloc[1]
    assert r1["s"] == "" and r1["ss"] == [] and r1["vi"] == [] and r1["b"] == False  # noqa: E712
    assert pd.isna(r1["ts"]) and pd.isna(r1["c"]) and pd.isna(r1["a"]) and pd.isna(r1["vc"])
    assert df.iloc[2].isna().all()


def test_empty_frame_has_schema_dtypes():
    df = empty_frame(load_schema("conn"))
    assert list(df.columns) == list(load_schema("conn").names) and len(df) == 0
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]" and str(df["duration"].dtype) == "timedelta64[ns]"


def test_header_only_file(tmp_path):
    with LogWriter(tmp_path, load_schema("dns")):
        pass
    df = read_dataframe(tmp_path / "dns.log")
    assert len(df) == 0 and list(df.columns) == list(load_schema("dns").names)
    hdr, rows = read_log(tmp_path / "dns.log")
    assert list(rows) == [] and hdr.close is not None


# ---------------------------------------------------------------- malformed input

HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tt\n"
    "#open\t2024-01-01-00-00-00\n#fields\tts\tc\tb\tss\n#types\ttime\tcount\tbool\tvector[count]\n"
)
GOOD = "1.000000\t1\tT\t1,2\n"


@pytest.mark.parametrize(
    "body, lineno, reason",
    [
        (GOOD + "2.000000\t2\tT\n", 10, "3 columns, expected 4"),
        (GOOD + "2.000000\t2\tT\t1\textra\n", 10, "5 columns, expected 4"),
        (GOOD + "2.000000\t2\tT\n" + "3.000000\t3\tT\t1\tx\n", 10, "3 columns"),  # balanced counts
        (GOOD + "\n" + GOOD, 10, "empty line"),
        (GOOD + "2.000000\tx\tT\t1\n", 10, "column c (count): bad value"),
        (GOOD + "2.000000\t-2\tT\t1\n", 10, "column c (count)"),
        (GOOD + "2.000000\t1.5\tT\t1\n", 10, "column c (count)"),
        (GOOD + "2.000000\t2\tyes\t1\n", 10, "column b (bool): bad value 'yes'"),
        (GOOD + "soon\t2\tT\t1\n", 10, "column ts (time)"),
        (GOOD + "2.000000\t2\tT\t1,x\n", 10, "column ss (count)"),
        (GOOD * 3 + "2.000000\t2\tT\t1,-5\n", 12, "column ss (count)"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, body, lineno, reason):
    p = tmp_path / "t.log"
    p.write_text(HEADER + body)
    for reader in (read_dataframe, lambda f: list(read_log(f)[1])):
        with pytest.raises(LogFormatError) as e:
            reader(p)
        assert e.value.lineno == lineno, str(e.value)
        assert reason in str(e.value)
        assert str(e.value).startswith("%s, line %d: " % (p, lineno))
        assert isinstance(e.value, InputError)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("1.0\t2\n", "data line before any #fields header"),
        ("#fields\ta\tb\n#types\tcount\n1\t2\n", "#fields has 2 names but #types has 1"),
        ("#fields\ta\n#types\tcounter\n1\n", "bad #types header"),
        ("#fields\ta\n1\n", "no #types"),
        ("", "empty file"),
    ],
)
def test_bad_headers(tmp_path, text, reason):
    p = tmp_path / "h.log"
    p.write_text(text)
    with pytest.raises(LogFormatError, match=reason) as e:
        read_dataframe(p)
    assert str(p) in str(e.value)


def test_bad_json_line(tmp_path):
    p = tmp_path / "dns.log"
    p.write_text('{"ts":1.0,"query":"a"}\n{"ts":"x"}\n')
    with pytest.raises(LogFormatError, match=r"line 2: column ts \(time\)"):
        read_dataframe(p)
    p.write_text('{"ts":1.0}\n{"ts":\n')
    with pytest.raises(LogFormatError, match=r"line 2: bad JSON"):
        read_log(p)


def test_bad_gzip(tmp_path):
    p = tmp_path / "conn.log.gz"
    p.write_bytes(gzip.compress((HEADER + GOOD).encode())[:-12])
    with pytest.raises(LogFormatError, match="gzip"):
        read_dataframe(p)


# ---------------------------------------------------------------- structure


def test_hash_inside_fields_and_escaped_leading_hash(tmp_path):
    s = Schema("h", (Field("s", "string"), Field("t", "string")))
    with LogWriter(tmp_path, s) as w:
        w.write({"s": "#start", "t": "mid#dle # x"})
        w.write({"s": "a#", "t": "#"})
    df = read_dataframe(tmp_path / "h.log")
    assert df["s"].tolist() == ["#start", "a#"] and df["t"].tolist() == ["mid#dle # x", "#"]


def test_concatenated_logs_and_gzip(tmp_path):
    """Two logs cat'ed together (e.g. rotated files), one with an extra column."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    dns = load_schema("dns")
    with LogWriter(a, dns) as w:
        w.write({"ts": 1.0, "query": "one"})
    with LogWriter(b, dns.extended([Field("proc.pid", "count")])) as w:
        w.write({"ts": 2.0, "query": "two", "proc.pid": 7})
        w.write({"ts": 3.0, "query": "three"})
    cat = (a / "dns.log").read_bytes() + (b / "dns.log").read_bytes()
    (tmp_path / "dns.log.gz").write_bytes(gzip.compress(cat))
    df = read_dataframe(tmp_path / "dns.log.gz")
    assert df["query"].tolist() == ["one", "two", "three"]
    assert df["proc.pid"].dtype == "UInt64" and df["proc.pid"].isna().tolist() == [True, False, True]
    hdr, recs = read_log(tmp_path / "dns.log.gz")
    assert [r["query"] for r in recs] == ["one", "two", "three"]


def test_load_logs_sessions(tmp_path):
    s1, s2, s3 = tmp_path / "job1", tmp_path / "job2", tmp_path / "job3"
    for s in (s1, s2, s3):
        s.mkdir()
    with LogWriter(s1, load_schema("conn")) as w:
        w.write({"ts": 1.0, "uid": "C1", "proto": "tcp"})
    with LogWriter(s1, load_schema("dns")) as w:
        w.write({"ts": 1.0, "uid": "C1", "query": "example.com"})
    with LogWriter(s2, load_schema("dns"), fmt="json") as w:  # JSON form
        w.write({"ts": 2.0, "uid": "C2", "query": "two.example", "answers": ["1.2.3.4"]})
    one = load_logs(s1)
    assert "session" not in one.conn.columns and len(one.conn) == 1 and len(one.dns) == 1
    assert len(one.weird) == 0 and list(one.weird.columns) == list(load_schema("weird").names)
    logs = load_logs(s1, s2, s3)
    assert logs.dns["session"].tolist() == ["job1", "job2"]
    assert logs.conn["session"].tolist() == ["job1"]
    assert list(logs.dns["session"].cat.categories) == ["job1", "job2", "job3"]
    assert python_lists(logs.dns["answers"]).tolist() == [None, ["1.2.3.4"]]
    assert str(logs.dns["ts"].dtype) == "datetime64[ns, UTC]"
    assert logs["capture_stats"].empty and logs.notice.empty
    with pytest.raises(InputError):
        load_logs(tmp_path / "missing")


def test_load_logs_reads_blocking_notices_with_their_process(tmp_path):
    schema = load_schema("notice").extended(load_schema("notice_process"))
    with LogWriter(tmp_path, schema) as w:
        w.write({"ts": 1.5, "uid": "C1", "id.resp_h": "10.99.0.5", "id.resp_p": 8080, "proto": "tcp",
                 "note": "CicdAudit::Blocked_Connection", "msg": "refused", "proc.pid": 4242, "proc.name": "curl"})
    notice = load_logs(tmp_path).notice
    assert notice[["note", "id.resp_h", "proc.pid", "proc.name"]].values.tolist() == [
        ["CicdAudit::Blocked_Connection", "10.99.0.5", 4242, "curl"]]


# ---------------------------------------------------------------- strings


def test_escapes_decoded_and_errors_mode(tmp_path):
    with LogWriter(tmp_path, Schema("e", (Field("s", "string"),))) as w:
        for v in (b"bin\xff\x00", "tab\there", "back\\slash", "-", "(empty)", "", "caf\u00e9\n"):
            w.write({"s": v})
    p = tmp_path / "e.log"
    df = read_dataframe(p)
    assert df["s"].tolist() == ["bin\\xff\x00", "tab\there", "back\\slash", "-", "(empty)", "", "caf\u00e9\n"]
    exact = read_dataframe(p, errors="surrogateescape")["s"].tolist()
    assert exact[0].encode("utf-8", "surrogateescape") == b"bin\xff\x00"
    _, recs = read_log(p, errors="surrogateescape")
    assert [r["s"] for r in recs] == exact


def test_fixture_with_escapes():
    p = FIXTURES / "escapes.log"
    df = read_dataframe(p)
    hdr, recs = read_log(p)
    recs = list(recs)
    assert df["query"].tolist() == [r["query"] for r in recs]
    assert recs[0]["query"] == "a\tb.example"
    assert recs[1]["query"] == "-" and recs[2]["query"] == "#hash"
    assert recs[1]["answers"] == ["x,y", "-", ""]
    assert df["answers"][1] == ["x,y", "-", ""]


# ---------------------------------------------------------------- size limits


def _limits(**kw):
    from cicd_audit.zeeklog.limits import ReadLimits

    return ReadLimits(**kw)


def test_line_over_limit_is_a_one_line_error(tmp_path):
    from cicd_audit.zeeklog.limits import LogLimitError

    p = tmp_path / "conn.log"
    p.write_text(HEADER + GOOD)
    longest = max(len(line) for line in (HEADER + GOOD).encode().split(b"\n"))
    read_dataframe(p, limits=_limits(max_line_bytes=longest))  # at the limit: fine
    p.write_bytes((HEADER + GOOD).encode() + b"x" * (longest + 1) + b"\n")
    expected = r"conn.log: a line is longer than %d bytes \(limit max_line_bytes=%d\)" % (longest, longest)
    with pytest.raises(LogLimitError, match=expected) as e:
        read_dataframe(p, limits=_limits(max_line_bytes=longest))
    assert "\n" not in str(e.value)


def test_line_limit_spans_read_windows(tmp_path, monkeypatch):
    from cicd_audit.zeeklog import limits as L

    monkeypatch.setattr(L, "_WINDOW", 7)  # a line crosses many windows
    p = tmp_path / "conn.log"
    p.write_bytes(b"a" * 30 + b"\n" + b"b" * 50 + b"\n" + b"c" * 10)
    assert len(L.read_bounded(p, _limits(max_line_bytes=50))) == 92
    with pytest.raises(L.LogLimitError, match="max_line_bytes=49"):
        L.read_bounded(p, _limits(max_line_bytes=49))
    p.write_bytes(b"a" * 30 + b"\n" + b"c" * 51)  # an unterminated last line counts too
    with pytest.raises(L.LogLimitError, match="max_line_bytes=50"):
        L.read_bounded(p, _limits(max_line_bytes=50))


def test_gzip_bomb_and_size_caps(tmp_path):
    from cicd_audit.zeeklog.limits import LogLimitError

    bomb = tmp_path / "dns.log.gz"
    bomb.write_bytes(gzip.compress(b"\n" * (4 << 20)))  # 4 MiB of newlines, ~4 KB packed
    with pytest.raises(LogLimitError, match=r"decompress to over \d+ bytes: a gzip bomb\? \(limit max_gzip_ratio=200\)"):
        read_dataframe(bomb, limits=_limits(gzip_ratio_floor_bytes=1 << 20))
    with pytest.raises(LogLimitError, match=r"decompresses to more than 1000 bytes \(limit max_log_bytes=1000\)"):
        read_dataframe(bomb, limits=_limits(max_log_bytes=1000))
    plain = tmp_path / "conn.log"
    plain.write_text(HEADER + GOOD)
    with pytest.raises(LogLimitError, match=r"limit max_log_bytes=100\)"):
        read_dataframe(plain, limits=_limits(max_log_bytes=100))
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress((HEADER + GOOD).encode()))
    assert read_dataframe(gz, limits=_limits(gzip_ratio_floor_bytes=0, max_gzip_ratio=50)).equals(read_dataframe(plain))


def test_load_logs_passes_limits(tmp_path):
    from cicd_audit.zeeklog.limits import LogLimitError

    (tmp_path / "conn.log").write_text(HEADER + GOOD)
    with pytest.raises(LogLimitError, match="max_line_bytes=10"):
        load_logs(tmp_path, limits=_limits(max_line_bytes=10))


def test_without_pyarrow_strings_are_python_and_vectors_lists(tmp_path):
    """pyarrow is optional (the fleet extra): without it the reader gives the
    same values in python-backed strings and object columns of lists."""
    with LogWriter(tmp_path, ALL) as w:
        w.write({"s": "x", "ss": ["a", "b"], "vi": [60.0], "vc": [1, 2]})
        w.write({"ss": []})
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"  # as if not installed: its import raises ImportError
        "from cicd_audit.zeeklog.reader import ARROW, read_dataframe\n"
        f"df = read_dataframe({str(tmp_path / 'all.log')!r})\n"
        "print(ARROW, df['s'].dtype.storage, df['ss'].dtype, df['ss'].tolist(), df['vi'].tolist(), df['vc'].tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(" ", 3)[:3] == ["False", "python", "object"]
    assert out.split(" ", 3)[3].strip() == "[['a', 'b'], []] [[60.0], None] [[1, 2], None]"
