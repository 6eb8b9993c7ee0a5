"""Schemas: packaged zeek_schemas/*.tsv load, match Zeek's own headers, extend."""


import pytest
from shared_data import shared

from cicd_audit.zeeklog.schema import (
    Field,
    Schema,
    SchemaError,
    available_schemas,
    load_schema,
    parse_schema,
    parse_type,
)

ORACLE = shared("zeek-oracle")


def _oracle_header(name):
    for case in sorted(ORACLE.glob(f"*/{name}.log")):
        meta = {}
        for line in case.read_text().splitlines():
            if line.startswith("#fields\t") or line.startswith("#types\t"):
                key, _, value = line[1:].partition("\t")
                meta[key] = tuple(value.split("\t"))
        return meta
    pytest.fail(f"no {name}.log in {ORACLE}")


def test_available_schemas():
    assert set(available_schemas()) >= {"conn", "dns", "weird", "capture_stats"}


@pytest.mark.parametrize("name", ["conn", "dns", "weird", "capture_stats"])
def test_load_schema(name):
    s = load_schema(name)
    assert s.path == name
    assert len(s.names) == len(s.types) == len(s) > 3
    assert s.names[0] == "ts" and s.types[0] == "time"
    assert all(f.doc for f in s)  # every column is described


@pytest.mark.parametrize("name", ["conn", "dns"])
def test_schema_is_exactly_zeeks(name):
    hdr = _oracle_header(name)
    s = load_schema(name)
    assert s.names == hdr["fields"]
    assert s.types == hdr["types"]


def test_parse_type():
    assert parse_type("set[string]") == ("set", "string")
    assert parse_type("vector[interval]") == ("vector", "interval")
    assert parse_type("count") == (None, "count")
    with pytest.raises(SchemaError):
        parse_type("table[string]")
    with pytest.raises(SchemaError):
        parse_type("counter")


def test_field_properties():
    f = Field("TTLs", "vector[interval]", "x")
    assert f.container == "vector" and f.element_type == "interval"
    assert Field("ts", "time").container is None
    with pytest.raises(SchemaError):
        Field("bad name", "string")


def test_extended_appends_after_zeeks_columns():
    conn = load_schema("conn")
    ext = conn.extended([Field("proc.pid", "count", "pid"), Field("proc.exe", "string", "exe")])
    assert ext.names[: len(conn)] == conn.names
    assert ext.names[-2:] == ("proc.pid", "proc.exe")
    assert ext.types[-2:] == ("count", "string")
    assert ext.path == "conn"
    assert len(conn) == 22  # original untouched
    with pytest.raises(SchemaError):
        conn.extended([Field("uid", "string")])


def test_from_header_and_lookup():
    s = Schema.from_header("x", ["a", "b"], ["count", "set[addr]"])
    assert s.field("b").element_type == "addr"
    assert "a" in s and "c" not in s
    with pytest.raises(KeyError):
        s.field("c")
    with pytest.raises(SchemaError):
        Schema.from_header("x", ["a"], ["count", "bool"])


def test_parse_schema_errors():
    with pytest.raises(SchemaError, match="path"):
        parse_schema("a\tcount\tdoc\n")
    with pytest.raises(SchemaError, match=":2:"):
        parse_schema("# path\tx\nonlyname\n", "t.tsv")
    with pytest.raises(SchemaError, match="unknown Zeek type"):
        parse_schema("# path\tx\na\tstrin\tdoc\n")
    s = parse_schema("# path\tx\n# comment\n\na\tcount\tA thing.\n")
    assert s.names == ("a",) and s.fields[0].doc == "A thing."


def test_load_schema_unknown():
    with pytest.raises(SchemaError, match="available"):
        load_schema("nope")
    with pytest.raises(SchemaError):
        load_schema("../etc")
