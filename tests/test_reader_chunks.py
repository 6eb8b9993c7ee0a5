"""Chunked reading (issue 14): a log read a few bytes at a time gives the same frame as read whole."""

import gzip

import pandas as pd
import pytest

from cicd_audit.zeeklog.columns import PYTHON_STRING_DTYPE
from cicd_audit.zeeklog.limits import LogLimitError, ReadLimits
from cicd_audit.zeeklog.reader import ARROW, STRING_DTYPE, LogFormatError, iter_frames, python_lists, read_dataframe
from cicd_audit.zeeklog.schema import load_schema
from cicd_audit.zeeklog.source import line_chunks
from cicd_audit.zeeklog.writer import LogWriter

WHOLE = 1 << 30  # one chunk for any file here


def _dns_row(i: int) -> dict:
    answered = i % 3 != 2
    return {
        "ts": 1764928800.0 + i * 0.25,
        "uid": f"C{i:017d}",
        "id.orig_h": "10.0.2.15",
        "id.orig_p": 40000 + i,
        "id.resp_h": "10.0.2.3",
        "id.resp_p": 53,
        "proto": "udp",
        "trans_id": i * 977 % 65536,
        "rtt": 0.0125 if answered else None,
        # an escape (\x09 in the text), a non-ASCII name, a unique tunnel label
        "query": ["pypi.org", "caf\u00e9.example", "tab\there.example", f"{i:040x}.t.exfil.example"][i % 4],
        "qclass": 1,
        "qclass_name": "C_INTERNET",
        "qtype": 1,
        "qtype_name": "A",
        "rcode": 0 if answered else 3,
        "rcode_name": "NOERROR" if answered else "NXDOMAIN",
        "AA": False,
        "TC": False,
        "RD": True,
        "RA": answered,
        "Z": 0,
        "answers": [f"192.0.2.{i % 250}", f"198.51.100.{i % 7}"] if answered else None,
        "TTLs": [300.0, 60.0] if answered else None,
        "rejected": False,
    }


def _write_dns_log(directory, rows: int) -> bytes:
    with LogWriter(directory, load_schema("dns"), open_time=1764928800.0) as w:
        for i in range(rows):
            w.write(_dns_row(i))
    return (directory / "dns.log").read_bytes()


def _assert_same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a, b, check_dtype=True, check_exact=True)
    assert a.attrs["zeek_header"] == b.attrs["zeek_header"]


def test_chunks_split_a_vector_field_and_the_close_line(tmp_path):
    data = _write_dns_log(tmp_path, 40)
    path = tmp_path / "dns.log"
    inside_vector = data.index(b"192.0.2.4,") + 5  # between "192.0" and ".2.4," of one answers value
    inside_close = data.index(b"#close") + 3
    whole = read_dataframe(path, chunk_bytes=WHOLE)
    assert len(whole) == 40 and whole.attrs["zeek_header"].close is not None
    for size in (1, 7, 333, inside_vector, inside_close):
        chunks = list(line_chunks(path, chunk_bytes=size))
        assert b"".join(chunks) == data and len(chunks) > 1
        assert all(c.endswith(b"\n") for c in chunks)  # every chunk ends a line, whatever the windows cut
        _assert_same(read_dataframe(path, chunk_bytes=size), whole)
    # the windows really cut where the test says
    assert data[inside_vector - 1:inside_vector + 1] == b"0."
    assert data[inside_close - 3:inside_close] == b"#cl"
    assert whole["answers"][4] == ["192.0.2.4", "198.51.100.4"] and pd.isna(whole["TTLs"][2])
    assert whole["query"][2] == "tab\there.example" and str(whole["ts"].dtype) == "datetime64[ns, UTC]"


def test_gzip_and_concatenated_logs_chunked(tmp_path):
    one = _write_dns_log(tmp_path, 9)
    both = one + one.replace(b"\tC_INTERNET\t", b"\tC_IN\t")
    path = tmp_path / "dns.log.gz"
    path.write_bytes(gzip.compress(both))
    whole = read_dataframe(path, chunk_bytes=WHOLE)
    assert len(whole) == 18 and set(whole["qclass_name"]) == {"C_INTERNET", "C_IN"}
    for size in (1, 50, 1000):
        _assert_same(read_dataframe(path, chunk_bytes=size), whole)


@pytest.mark.parametrize("fmt", ["tsv", "json"])
def test_pieces_of_a_few_columns_are_those_columns_of_the_whole(tmp_path, fmt):
    with LogWriter(tmp_path, load_schema("dns"), fmt=fmt, open_time=1764928800.0) as w:
        for i in range(40):
            w.write(_dns_row(i))
    path = tmp_path / "dns.log"
    whole = read_dataframe(path)
    wanted = frozenset({"answers", "query", "ts", "not.a.column"})
    for size in (WHOLE, 500):
        pieces = list(iter_frames(path, load_schema("dns"), chunk_bytes=size, columns=wanted))
        assert len(pieces) > 1 or size == WHOLE or fmt == "json"      # a JSON log comes as one piece
        joined = pd.concat(pieces, ignore_index=True)
        assert list(joined.columns) == ["ts", "query", "answers"]     # the log's order
        pd.testing.assert_frame_equal(joined, whole[list(joined.columns)], check_exact=True)


def test_a_bad_value_in_a_column_not_asked_for_is_not_read(tmp_path):
    lines = _write_dns_log(tmp_path, 5).split(b"\n")
    row = next(i for i, line in enumerate(lines) if line and not line.startswith(b"#"))
    fields = lines[row].split(b"\t")
    fields[3] = b"70000"  # id.orig_p: not a port
    lines[row] = b"\t".join(fields)
    (tmp_path / "dns.log").write_bytes(b"\n".join(lines))
    pieces = list(iter_frames(tmp_path / "dns.log", load_schema("dns"), columns=frozenset({"query"})))
    assert len(pieces[0]) == 5
    with pytest.raises(LogFormatError, match="id.orig_p"):
        list(iter_frames(tmp_path / "dns.log", load_schema("dns"), columns=frozenset({"query", "id.orig_p"})))


def _write_json_log(directory, rows: int, extra_at: int) -> bytes:
    """A JSON dns.log whose row ``extra_at`` has a key the schema lacks."""
    with LogWriter(directory, load_schema("dns"), fmt="json", open_time=1764928800.0) as w:
        for i in range(rows):
            w.write(_dns_row(i))
    lines = (directory / "dns.log").read_bytes().split(b"\n")
    lines[extra_at] = lines[extra_at][:-1] + b',"x.note":"late"}'
    data = b"\n".join(lines)
    (directory / "dns.log").write_bytes(data)
    return data


def test_a_json_log_chunked_reads_as_whole(tmp_path):
    data = _write_json_log(tmp_path, 40, extra_at=30)
    whole = read_dataframe(tmp_path / "dns.log", chunk_bytes=WHOLE)
    assert len(whole) == 40 and list(whole.columns)[-1] == "x.note"
    assert whole["x.note"].isna().sum() == 39 and whole["x.note"][30] == "late"
    for size in (1, 7, 333, data.index(b'"x.note"')):
        assert len(list(line_chunks(tmp_path / "dns.log", chunk_bytes=size))) > 1
        _assert_same(read_dataframe(tmp_path / "dns.log", chunk_bytes=size), whole)
    pieces = list(iter_frames(tmp_path / "dns.log", chunk_bytes=333))
    assert len(pieces) > 1 and "x.note" not in pieces[0].columns    # a piece has the fields seen so far


def test_a_bad_json_line_is_named_across_chunks(tmp_path):
    lines = _write_json_log(tmp_path, 30, extra_at=3).split(b"\n")
    lines[24] = lines[24][:-1]  # the 25th line loses its closing brace
    (tmp_path / "dns.log").write_bytes(b"\n".join(lines))
    for size in (1, 100, WHOLE):
        with pytest.raises(LogFormatError) as e:
            read_dataframe(tmp_path / "dns.log", chunk_bytes=size)
        assert e.value.lineno == 25 and "bad JSON" in str(e.value)


def test_errors_name_the_right_line_across_chunks(tmp_path):
    data = _write_dns_log(tmp_path, 30)
    lines = data.split(b"\n")
    first_data = next(i for i, line in enumerate(lines) if not line.startswith(b"#"))
    bad = first_data + 20
    fields = lines[bad].split(b"\t")
    fields[3] = b"70000"  # id.orig_p: not a port
    lines[bad] = b"\t".join(fields)
    (tmp_path / "dns.log").write_bytes(b"\n".join(lines))
    for size in (1, 100, WHOLE):
        with pytest.raises(LogFormatError) as e:
            read_dataframe(tmp_path / "dns.log", chunk_bytes=size)
        assert e.value.lineno == bad + 1 and "id.orig_p" in str(e.value)


def test_a_limit_further_on_wins_over_an_earlier_format_error(tmp_path):
    """As when the whole file was checked before parsing: the limit says why it cannot be read at all."""
    lines = _write_dns_log(tmp_path, 5).split(b"\n")
    first_data = next(i for i, line in enumerate(lines) if not line.startswith(b"#"))
    lines[first_data] += b"\textra"  # one column too many
    short = b"\n".join(lines)
    lines[first_data + 4] = lines[first_data + 4].replace(b"pypi.org", b"p" * 5000)
    long = b"\n".join(lines)
    limits = ReadLimits(max_line_bytes=4096)
    (tmp_path / "dns.log").write_bytes(long)
    with pytest.raises(LogLimitError, match="max_line_bytes=4096"):
        read_dataframe(tmp_path / "dns.log", limits=limits, chunk_bytes=64)
    # without the long line, the format error is what is raised
    (tmp_path / "dns.log").write_bytes(short)
    with pytest.raises(LogFormatError, match="columns") as e:
        read_dataframe(tmp_path / "dns.log", limits=limits, chunk_bytes=64)
    assert e.value.lineno == first_data + 1


def test_a_column_arrow_refuses_in_one_chunk_is_python_in_all(tmp_path):
    """With errors="surrogateescape" an undecodable byte stays a lone surrogate,
    which Arrow strings refuse: that chunk falls back to python storage and
    Python lists, and the other chunks of the column follow, so the frame has
    one dtype per column and equals the whole read value for value."""
    rows = [_dns_row(i) for i in range(400)]
    rows[350]["query"] = "bin\udcff.example"
    rows[350]["answers"] = ["tx\udcfet"]
    with LogWriter(tmp_path, load_schema("dns"), open_time=1764928800.0) as w:
        for r in rows:
            w.write(r)
    path = tmp_path / "dns.log"
    whole = read_dataframe(path, errors="surrogateescape", chunk_bytes=WHOLE)
    chunked = read_dataframe(path, errors="surrogateescape", chunk_bytes=4096)
    _assert_same(chunked, whole)
    assert whole["query"].dtype == PYTHON_STRING_DTYPE and whole["query"][350] == "bin\udcff.example"
    assert python_lists(whole["answers"])[350] == ["tx\udcfet"]
    assert python_lists(whole["answers"])[2] is None and python_lists(whole["answers"])[0] == ["192.0.2.0", "198.51.100.0"]
    if ARROW:  # the columns without such a value keep the compact forms
        assert whole["uid"].dtype == STRING_DTYPE and STRING_DTYPE.storage == "pyarrow"
        assert isinstance(whole["TTLs"].dtype, pd.ArrowDtype) and whole["answers"].dtype == object
    # the default (backslashreplace) shows the byte as text: Arrow everywhere
    shown = read_dataframe(path, chunk_bytes=4096)
    assert shown["query"][350] == "bin\\xff.example" and shown["query"].dtype == STRING_DTYPE
    assert python_lists(shown["answers"])[350] == ["tx\\xfet"]
