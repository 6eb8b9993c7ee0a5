"""The compiled TSV row loop (_tsvrow.c) writes exactly what the Python converters write.

Every schema the recorder writes, rows drawn from values chosen to sit on each
fast path's edges (the characters that need escaping, "-" and "(empty)", the
ends of the count and port ranges, floats that print oddly, containers with
unset elements) and values of the wrong type: the compiled line equals the
Python one, or both refuse the row.
"""

import datetime
import random

import pytest

from cicd_audit import compiled
from cicd_audit.zeeklog import tsv_format
from cicd_audit.zeeklog.schema import available_schemas, load_schema, parse_schema

STRINGS = ["a", "plain text", "-", "(empty)", "", "x-", "(empty", "#start", "back\\slash", "tab\there",
           "comma,inside", "caf\u00e9", "\u4e2d", "\udcff", "ctl\x01", "del\x7f", "\ue000", "~", " ", "ok.example.com"]
FLOATS = [0.0, 1.5, -1.5, 1e-7, 5e-7, 0.0000005, 1_700_000_000.123456789, 1e22, 2.5e-6,
          float("inf"), float("-inf"), float("nan"), -0.0]
INTS = [0, 1, 9, 10, 99, 100, 65535, 65536, 10**19 - 1, 10**19, 2**63, 2**64 - 1, 2**64, -1, -(2**63)]
ADDRESSES = ["10.0.0.1", "0.0.0.0", "255.255.255.255", "9.99.199.250", "256.1.1.1", "01.2.3.4", "1.2.3.04",
             "1.2.3", "1.2.3.4.5", "1.2.3.4 ", " 1.2.3.4", "1..2.3", "1.2.3.", ".1.2.3", "1234.1.1.1", "1.2.3.4\n",
             "::1", "::ffff:1.2.3.4", "2001:db8::1", "2001:DB8::1", "fe80::1%eth0", "1.2.3.4/24", "a.b.c.d",
             "1-2-3-4", "10 0 0 1", "1.2.3:4"]
OTHERS = [True, False, None, b"bytes", bytearray(b"ba"), datetime.timedelta(seconds=2.5),
          datetime.datetime(2026, 12, 6, tzinfo=datetime.timezone.utc), {"a"}, frozenset(), object()]


def pool(ftype: str) -> list:
    atoms = STRINGS + FLOATS + INTS + ADDRESSES + OTHERS
    if ftype.startswith(("set[", "vector[")):
        return atoms + [[], (), [None], ["a", None, "-"], ["x,y"], [1.5, 2.0], (0, 65535), [True, False],
                        ["a", 1], [float("nan")], ["", "b"], ["caf\u00e9"], [2**64], ["10.0.0.1", "::1", None]]
    return atoms


def compare(schema, record) -> None:
    c = tsv_format._row_format(schema)
    try:
        expected = tsv_format._python_tsv_row(c, record)
    except (TypeError, ValueError):
        expected = None
    try:
        got = tsv_format._compiled.tsv_line(c.names, c.kinds, c.fields, record)
    except (TypeError, ValueError):
        got = None
    assert got == expected, (schema.path, record)


def test_the_compiled_loop_is_the_one_in_use_here():
    # Fails where the extension was not built or is stale: the tests below would compare nothing.
    assert tsv_format._compiled is not None, compiled.unavailable()


@pytest.mark.parametrize("name", available_schemas())
def test_every_schema_writes_the_same_lines(name):
    schema = load_schema(name)
    rng = random.Random(name)
    for _ in range(3000):
        record = {}
        for f in schema.fields:
            if rng.random() < 0.8:
                record[f.name] = rng.choice(pool(f.type))
        compare(schema, record)


@pytest.mark.parametrize("name", available_schemas())
def test_each_value_alone_in_each_field(name):
    schema = load_schema(name)
    for f in schema.fields:
        for v in pool(f.type):
            compare(schema, {f.name: v})


def test_a_row_starting_with_a_hash_is_escaped_in_both():
    # Zeek's logs all start with ts; a schema whose first field is a string can start a line with '#'.
    schema = parse_schema("# path\ttest\nname\tstring\tx\nnames\tset[string]\tx\n")
    for record in ({"name": "#x"}, {"name": "#"}, {"names": ["#a", "b"]}, {"name": "x#"}):
        compare(schema, record)
    assert tsv_format.format_tsv_row(schema, {"name": "#x", "names": ["#"]}) == b"\\x23x\t#\n"


def test_a_bad_value_is_named_whichever_loop_runs():
    with pytest.raises(ValueError, match="field 'id.orig_p'"):
        tsv_format.format_tsv_row(load_schema("conn"), {"id.orig_p": 70000})
    with pytest.raises(TypeError, match="field 'local_orig'"):
        tsv_format.format_tsv_row(load_schema("conn"), {"local_orig": 1})


def test_a_key_that_is_no_field_is_named_whichever_loop_runs():
    """The compiled loop checks the keys itself (it counts the fields it found), so a row with one
    more key is refused even when every field is set; the Python check then names the key."""
    schema = load_schema("dns")
    full = {name: None for name in schema.names}
    c = tsv_format._row_format(schema)
    assert tsv_format._compiled.tsv_line(c.names, c.kinds, c.fields, full) == b"\t".join([b"-"] * len(c.names)) + b"\n"
    for record in ({"ts": 1.0, "nope": 1}, dict(full, extra="x")):
        with pytest.raises(ValueError, match="tsv_line: the record has keys that are not fields"):
            tsv_format._compiled.tsv_line(c.names, c.kinds, c.fields, record)
        with pytest.raises(ValueError, match="dns.log has no field"):
            tsv_format.format_tsv_row(schema, record)


def test_times_are_written_as_python_rounds_them():
    """The compiled loop writes a time from its exact binary value (0 < v < 2^33): every digit and
    every rounding, ties to even at the odd multiples of 1/128 included, as b"%.6f" % v does."""
    rng = random.Random(33)
    values = [1_700_000_000 + rng.random() for _ in range(40000)]                   # capture timestamps
    values += [1_700_000_000 + rng.randrange(10**9) / 1e9 for _ in range(20000)]   # nanosecond clocks
    values += [2.0 ** rng.uniform(-70, 33) for _ in range(40000)]                   # intervals, every scale
    values += [rng.randrange(1, 2**40, 2) / 128 for _ in range(20000)]             # exact ties
    values += [k / 128 for k in range(1, 2000, 2)] + [2**33 - 2**-20, 2**33, 2**33 + 1, 2**-60, 2**-70, 5e-324,
                                                      0.9999995, 0.99999949999, 9.9999995, 1e-6, 5e-7, 4.9999999e-7]
    values += [v + d for v in (0.5e-6, 1.5e-6, 0.0078125) for d in (-1e-18, 0.0, 1e-18)]
    schema = parse_schema("# path\ttest\nts\ttime\tx\n")
    c = tsv_format._row_format(schema)
    for v in values:
        assert tsv_format._compiled.tsv_line(c.names, c.kinds, c.fields, {"ts": v}) == b"%.6f\n" % v, repr(v)
