"""LogWriter: Zeek's exact TSV and JSON forms.

Expected strings follow the rules of Zeek 9.1's ASCII writer (see the
writer's module docstring); the oracle's real Zeek logs check headers and rows.
"""

import ipaddress
import json
import os
import re
import time

import pytest
from shared_data import SHARED, shared

from cicd_audit.zeeklog import tsv_format
from cicd_audit.zeeklog.reader import read_log
from cicd_audit.zeeklog.schema import Field, Schema, load_schema
from cicd_audit.zeeklog.writer import (
    LogWriter,
    format_addr,
    format_double,
    format_json_double,
    format_json_row,
    format_tsv_row,
    open_close_timestamp,
)

ORACLE = SHARED / "zeek-oracle"

S = Schema("test", (Field("s", "string"),))
SETS = Schema("test", (Field("ss", "set[string]"),))


def need(path):
    """A file under ../shared, which every checkout has: missing, the test fails (shared_data)."""
    return shared(*path.relative_to(SHARED).parts)


def tsv(schema, **rec):
    return format_tsv_row(schema, rec).decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- header


@pytest.mark.parametrize("name", ["conn", "dns"])
def test_header_lines_match_oracle(tmp_path, name):
    oracle = need(ORACLE / "wikipedia" / (f"{name}.log")).read_text().splitlines()
    with LogWriter(tmp_path, load_schema(name)):
        pass
    mine = (tmp_path / (f"{name}.log")).read_text().splitlines()
    want = [line for line in oracle if line.startswith("#") and not line.startswith("###")]
    # btest canonified #open/#close (and turned their tab into a space)
    assert [line for line in mine if not line.startswith(("#open", "#close"))] == [
        line for line in want if not line.startswith(("#open", "#close"))
    ]
    assert [line.split("\t")[0] for line in mine] == [
        "#separator \\x09", "#set_separator", "#empty_field", "#unset_field",
        "#path", "#open", "#fields", "#types", "#close",
    ]
    assert re.fullmatch(r"#open\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", mine[5])
    assert re.fullmatch(r"#close\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", mine[-1])


def test_open_close_use_local_time(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert open_close_timestamp(1379288667.9) == "2013-09-15-23-44-27"
        monkeypatch.setenv("TZ", "America/New_York")
        time.tzset()
        assert open_close_timestamp(1379288667.9) == "2013-09-15-19-44-27"
        with LogWriter(tmp_path, S, open_time=1379288667.0) as w:
            w.close(close_time=1379288700.0)
        lines = (tmp_path / "test.log").read_text().splitlines()
        assert lines[5] == "#open\t2013-09-15-19-44-27"
        assert lines[-1] == "#close\t2013-09-15-19-45-00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_writer_file_layout(tmp_path):
    with LogWriter(tmp_path, S) as w:
        assert w.path == str(tmp_path / "test.log")
        w.write({"s": "x"})
    assert w.closed and w.rows == 1
    w.close()  # idempotent
    with pytest.raises(ValueError):
        w.write({"s": "y"})


# ---------------------------------------------------------------- values


def test_scalars_conn_row():
    rec = {
        "ts": 1379288667.63194, "uid": "CmES5u32sYpV7JYN", "id.orig_h": "141.142.220.118",
        "id.orig_p": 43927, "id.resp_h": ipaddress.ip_address("141.142.2.2"), "id.resp_p": 53,
        "proto": "udp", "service": "dns", "duration": 0.000435, "orig_bytes": 38,
        "resp_bytes": 89, "conn_state": "SF", "local_orig": False, "local_resp": False,
        "missed_bytes": 0, "history": "Dd", "orig_pkts": 1, "orig_ip_bytes": 66,
        "resp_pkts": 1, "resp_ip_bytes": 117, "ip_proto": 17,
    }
    assert tsv(load_schema("conn"), **rec) == (
        "1379288667.631940\tCmES5u32sYpV7JYN\t141.142.220.118\t43927\t141.142.2.2\t53\tudp\tdns\t"
        "0.000435\t38\t89\tSF\tF\tF\t0\tDd\t1\t66\t1\t117\t-\t17\n"
    )


@pytest.mark.parametrize(
    "value, text",
    [
        (2153226000.0, "2153226000.0"),
        (2153226000.1, "2153226000.1"),
        (2153226000.123456789, "2153226000.123457"),
        (1.123456789, "1.123457"),
        (-1.123456789, "-1.123457"),
        (0.1234, "0.1234"),
        (5e4, "50000.0"),
        (3.14e15, "3140000000000000.0"),
        (1.23456789e-5, "0.000012"),
        (2.23e-308, "0.0"),
        (-2.23e-308, "-0.0"),
        (-0.0, "0.0"),
        (1.0000001, "1"),  # Zeek adds ".0" only within 1e-9 of an integer
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (float("nan"), "nan"),
    ],
)
def test_double_like_zeek(value, text):
    assert format_double(value) == text


def test_double_huge_is_fixed_notation():
    s = format_double(1.79e308)
    assert s.startswith("17899999999999999") and s.endswith(".0") and "e" not in s


@pytest.mark.parametrize(
    "value, text",
    [
        (2153226000.123456789, "2153226000.123457"),
        (1.123456789, "1.123456789"),
        (5e4, "50000.0"),
        (3.14e15, "3140000000000000.0"),
        (1e21, "1e21"),
        (1.79e308, "1.79e308"),
        (1.23456789e-5, "0.0000123456789"),
        (2.23e-308, "2.23e-308"),
        (-0.0, "-0.0"),
        (60.0, "60.0"),
        (0.03837108612060547, "0.03837108612060547"),
        (float("inf"), "null"),
        (float("nan"), "null"),
    ],
)
def test_json_double_like_rapidjson(value, text):
    assert format_json_double(value) == text


def test_time_interval_six_decimals():
    s = Schema("t", (Field("t", "time"), Field("i", "interval"), Field("v", "vector[interval]")))
    assert tsv(s, t=1.5, i=0.0000004, v=[60, 0.5]) == "1.500000\t0.000000\t60.000000,0.500000\n"
    import datetime as dt

    aware = dt.datetime(2013, 9, 15, 23, 44, 27, 631940, tzinfo=dt.timezone.utc)
    assert tsv(s, t=aware, i=dt.timedelta(seconds=2)) == "1379288667.631940\t2.000000\t-\n"


@pytest.mark.parametrize(
    "addr, text",
    [
        ("1.2.3.4", "1.2.3.4"),
        ("fe80:0:0:0:217:f2ff:fed7:cf65", "fe80::217:f2ff:fed7:cf65"),
        ("FF02::FB", "ff02::fb"),
        ("::ffff:1.2.3.4", "1.2.3.4"),  # Zeek keeps IPv4 as v4-mapped internally
        ("::1", "::1"),
        ("::", "::"),
        ("::2", "::2"),  # the len-7 branch of its check is unreachable
        ("::102:304", "::1.2.3.4"),
        ("::ffff:0:102:304", "::ffff:0:1.2.3.4"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("1:0:0:0:0:0:0:0", "1::"),
    ],
)
def test_addr_like_zeek(addr, text):
    assert format_addr(addr) == text
    assert format_addr(ipaddress.ip_address(addr)) == text


@pytest.mark.parametrize(
    "value, text",
    [
        ("", "(empty)"),
        ("-", "\\x2d"),
        ("(empty)", "\\x28empty)"),
        ("a-b", "a-b"),
        ("a b#c", "a b#c"),
        ("back\\slash", "back\\\\slash"),
        ("\\x41", "\\\\x41"),
        ("tab\there", "tab\\x09here"),
        ("new\nline", "new\\x0aline"),
        ("cr\rx", "cr\\x0dx"),
        ("del\x7f", "del\\x7f"),
        ("caf\u00e9", "caf\u00e9"),  # valid UTF-8 stays
        ("\u2603 \U0001f600", "\u2603 \U0001f600"),
        ("caf\u00e9\n", "caf\\xc3\\xa9\\x0a"),  # one bad byte escapes the whole piece
        ("caf\u00e9\tx\n", "caf\u00e9\\x09x\\x0a"),  # ...but only up to a separator
        ("\ue000", "\\xee\\x80\\x80"),  # private use area
        ("\u0085", "\\xc2\\x85"),  # C1 control
        ("\ufff9", "\\xef\\xbf\\xb9"),
        (b"AB\xffCD\x00", "AB\\xffCD\\x00"),
        (b"AB\\xffCD\x00", "AB\\\\xffCD\\x00"),
        (b"foo \xc2\xae bar \\xc2\\xae baz", "foo \u00ae bar \\\\xc2\\\\xae baz"),
        (b"\xc0\x81", "\\xc0\\x81"),  # overlong
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),  # surrogate
        (b"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"),  # > U+10FFFF
        (b"\xe2\x82", "\\xe2\\x82"),  # truncated
        ("a,b", "a,b"),  # set separator is plain outside containers
    ],
)
def test_string_escaping(value, text):
    assert tsv(S, s=value) == text + "\n"


def test_string_escaping_in_sets():
    assert tsv(SETS, ss=["AA", ",", ",,", "CC"]) == "AA,\\x2c,\\x2c\\x2c,CC\n"
    assert tsv(SETS, ss=["-", "(empty)", ""]) == "\\x2d,\\x28empty),(empty)\n"
    assert tsv(SETS, ss=[]) == "(empty)\n"
    assert tsv(SETS, ss=set()) == "(empty)\n"
    assert tsv(SETS) == "-\n"
    assert tsv(SETS, ss=None) == "-\n"
    assert tsv(SETS, ss=("a\tb",)) == "a\\x09b\n"


@pytest.mark.parametrize("value", ["plain.example.com", "a,b", ",", "-", "(empty)", "", "back\\slash", "tab\there",
                                   "caf\u00e9", "caf\u00e9\n", "\ue000", "\x7f", " lead", "10.99.0.2", "x" * 300])
def test_set_and_vector_elements_escape_as_the_general_path(value):
    """The writer's shortcut for plain elements gives what escaping each element gives."""
    from cicd_audit.zeeklog.formatting import to_bytes
    from cicd_audit.zeeklog.tsv_format import escape_tsv_string
    one = escape_tsv_string(to_bytes(value), True)
    vectors = Schema("test", (Field("v", "vector[string]"), Field("t", "vector[interval]")))
    assert format_tsv_row(vectors, {"v": [value, None, value], "t": [1.5, 0.0]}) == \
        one + b",-," + one + b"\t1.500000,0.000000\n"


def test_line_starting_with_hash_is_escaped():
    assert tsv(S, s="#Kaputt") == "\\x23Kaputt\n"
    assert tsv(SETS, ss=["#a", "#b"]) == "\\x23a,#b\n"
    two = Schema("t", (Field("a", "count"), Field("s", "string")))
    assert tsv(two, a=1, s="#x") == "1\t#x\n"


def test_types_and_ranges():
    s = Schema(
        "t",
        (Field("b", "bool"), Field("c", "count"), Field("i", "int"), Field("p", "port"),
         Field("e", "enum"), Field("n", "subnet")),
    )
    assert tsv(s, b=True, c=2**64 - 1, i=-5, p=65535, e="udp", n="10.1.0.0/16") == (
        "T\t18446744073709551615\t-5\t65535\tudp\t10.1.0.0/16\n"
    )
    for bad in ({"c": -1}, {"p": 65536}, {"b": 1}, {"c": 1.5}, {"c": True}):
        with pytest.raises((TypeError, ValueError), match=list(bad)[0]):
            format_tsv_row(s, bad)
    with pytest.raises(ValueError, match="no field"):
        format_tsv_row(s, {"nope": 1})
    with pytest.raises(TypeError):
        format_tsv_row(SETS, {"ss": "not-a-list"})


def test_bad_row_writes_nothing(tmp_path):
    with LogWriter(tmp_path, load_schema("conn"), flush_interval=0) as w:
        w.write({"ts": 1.0, "uid": "C1"})
        with pytest.raises(ValueError):
            w.write({"ts": 2.0, "id.orig_p": 70000})
        w.write({"ts": 3.0, "uid": "C3"})
    hdr, rows = read_log(w.path)
    assert [r["uid"] for r in rows] == ["C1", "C3"]


def test_a_writers_bad_row_is_named_as_format_tsv_row_names_it(tmp_path):
    """The writer's row loop (compiled_tsv_row, bound to the schema once) refuses without saying
    why: what the writer raises must name the field, or the key, all the same."""
    schema = load_schema("conn")
    with LogWriter(tmp_path, schema, flush_interval=0) as w:
        if tsv_format._compiled is not None:
            assert w._compiled_row is not None
        for bad, named in (({"ts": 2.0, "id.orig_p": 70000}, "id.orig_p"), ({"ts": 2.0, "nope": 1}, "nope"),
                           ({"ts": "x"}, "ts")):
            with pytest.raises((TypeError, ValueError), match=named):
                w.write(bad)
        w.write({"ts": 3.0, "uid": "C3", "id.orig_p": 53})
    assert w.rows == 1 and [r["id.orig_p"] for r in read_log(w.path)[1]] == [53]


# ---------------------------------------------------------------- flushing


def test_rows_reach_file_as_whole_lines(tmp_path):
    schema = load_schema("dns")
    w = LogWriter(tmp_path, schema, flush_interval=3600, max_buffer=1000)
    header_size = os.path.getsize(w.path)
    for i in range(50):
        w.write({"ts": 1.0 + i, "uid": "C%d" % i, "query": "q%d.example.com" % i})
        data = (tmp_path / "dns.log").read_bytes()
        assert data.endswith(b"\n")  # never a partial line
    assert os.path.getsize(w.path) > header_size  # max_buffer forced flushes
    w.flush()
    data = (tmp_path / "dns.log").read_bytes()
    assert data.count(b"\n") == 8 + 50
    w.close()


def test_flush_interval_zero_writes_each_row(tmp_path):
    with LogWriter(tmp_path, S, flush_interval=0) as w:
        w.write({"s": "one"})
        assert (tmp_path / "test.log").read_text().endswith("\none\n")


# ---------------------------------------------------------------- JSON


def test_json_matches_zeek_doc_example(tmp_path):
    src = need(ORACLE / "dns-tm1t-doc-json" / "dns.json")
    want = src.read_bytes()
    records = [json.loads(line) for line in want.decode().splitlines() if line.strip()]
    with LogWriter(tmp_path, load_schema("dns"), fmt="json") as w:
        for r in records:
            w.write(r)
    got = (tmp_path / "dns.log").read_bytes()
    assert got == want
    # and through our own reader
    hdr, rows = read_log(src)
    (tmp_path / "x").mkdir()
    with LogWriter(tmp_path / "x", load_schema("dns"), fmt="json") as w:
        for r in rows:
            w.write(r)
    assert (tmp_path / "x" / "dns.log").read_bytes() == want


@pytest.mark.parametrize(
    "value, text",
    [
        ("a", '"a"'),
        ("\b\f\n\r\t\x00\x15", '"\\b\\f\\n\\r\\t\\\\x00\\\\x15"'),
        ("\u00f1", '"\u00f1"'),
        (b"\xc3\x28", '"\\\\xc3("'),
        (b"\xa0\xa1", '"\\\\xa0\\\\xa1"'),
        ("\u20a1", '"\u20a1"'),
        (b"\xf0\x90\x8c\xbc", '"\U0001033c"'),
        (b"\xf4\x90\x8c\xbc", '"\\\\xf4\\\\x90\\\\x8c\\\\xbc"'),
        ("\\", '"\\\\"'),
        ("\t\\t\t", '"\\t\\\\t\\t"'),
        ("\x0b\\v\x0b", '"\\\\x0b\\\\v\\\\x0b"'),
        ("\\x", '"\\\\x"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("\u00f1\x00", '"\\\\xc3\\\\xb1\\\\x00"'),
    ],
)
def test_json_string_escaping(value, text):
    line = format_json_row(S, {"s": value}).decode("utf-8")
    assert line == f'{{"s":{text}}}\n'


def test_json_unset_omitted_and_types():
    s = Schema(
        "t",
        (Field("ts", "time"), Field("id.orig_h", "addr"), Field("p", "port"), Field("b", "bool"),
         Field("v", "vector[interval]"), Field("e", "set[string]"), Field("u", "string")),
    )
    line = format_json_row(s, {"ts": 1.5, "id.orig_h": "::ffff:10.0.0.1", "p": 53, "b": False,
                               "v": [60, 0.25], "e": []})
    assert line == b'{"ts":1.5,"id.orig_h":"10.0.0.1","p":53,"b":false,"v":[60.0,0.25],"e":[]}\n'


def test_json_writes_no_header(tmp_path):
    with LogWriter(tmp_path, S, fmt="json") as w:
        w.write({"s": "#x"})
    assert (tmp_path / "test.log").read_bytes() == b'{"s":"#x"}\n'


# ---------------------------------------------------------------- a full disk


@pytest.mark.root       # mounts a tmpfs
@pytest.mark.parametrize("reserve", [4096, 0])
def test_a_full_disk_keeps_whole_rows_and_still_closes(tmp_path, reserve):
    """Something else fills the disk while the log is open: the rows already written stay, no half
    row is left, the rows refused are counted, and with a reserve #close still fits."""
    from small_disk import fill, small_tmpfs
    schema = load_schema("dns")
    with small_tmpfs(tmp_path, "64k") as disk:
        failures = []
        w = LogWriter(disk, schema, flush_interval=3600, max_buffer=1 << 20, reserve=reserve,
                      on_failure=failures.append)
        for i in range(10):
            w.write({"ts": 1.0 + i, "uid": "C%d" % i, "query": "before-%d.example.com" % i})
        w.flush()
        fill(disk / "filler")
        for i in range(2000):
            w.write({"ts": 100.0 + i, "uid": "D%d" % i, "query": "after-%d.example.com" % i})
        w.close()
        data = (disk / "dns.log").read_bytes()
    assert failures == [w] and "No space left on device" in w.failure
    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    rows = [line for line in lines if not line.startswith("#")]
    assert all(len(row.split("\t")) == len(schema.fields) for row in rows)
    assert sum("before-" in row for row in rows) == 10
    assert w.lost_rows == 2000 - sum("after-" in row for row in rows) > 0
    if reserve:
        assert lines[-1].startswith("#close\t")
