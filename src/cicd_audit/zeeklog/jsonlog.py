"""JSON-lines logs: each line an object, typed from the schema (JSON logs have no header).

API::

    is_json(data) -> bool
    read_json_records(data, filename, schema) -> (LogHeader, iterator of dict)

Keys the schema lacks are kept with their JSON values (typed ``string``).
"""

from __future__ import annotations

import json

import pandas as pd

from .header import LogFormatError, LogHeader
from .schema import Schema, SchemaError, load_schema, parse_type
from .source import log_name_from_path
from .values import bad_value


def is_json(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{"


def _json_schema(path, schema: Schema | None) -> Schema | None:
    if schema is not None:
        return schema
    try:
        return load_schema(log_name_from_path(path))
    except SchemaError:
        return None


def _json_value(v, ztype: str | None, name: str):
    """Check/convert a JSON value against the Zeek type; returns Python value."""
    if v is None or ztype is None:
        return v
    container, element = parse_type(ztype)
    if container is not None:
        if not isinstance(v, list):
            raise bad_value(name, ztype, v)
        return [None if e is None else _json_atom(e, element, name) for e in v]
    return _json_atom(v, element, name)


def _json_atom(v, t: str, name: str):
    if t in ("time", "interval", "double"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if t == "time" and isinstance(v, str):  # JSON::TS_ISO8601
                try:
                    return pd.Timestamp(v).timestamp()
                except ValueError:
                    pass
            raise bad_value(name, t, v)
        return float(v)
    if t in ("count", "int", "port"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad_value(name, t, v)
        return v
    if t == "bool":
        if not isinstance(v, bool):
            raise bad_value(name, t, v)
        return v
    if not isinstance(v, str):
        raise bad_value(name, t, v)
    return v


def _json_rows(data: bytes, filename, schema: Schema | None):
    """Parse JSON lines -> (field names, types, list of dicts)."""
    types: dict[str, str | None] = {}
    order: list[str] = []
    if schema is not None:
        for f in schema.fields:
            types[f.name] = f.type
            order.append(f.name)
    known = set(order)
    rows = []
    for i, line in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise LogFormatError(filename, i, f"bad JSON ({e})") from None
        if not isinstance(obj, dict):
            raise LogFormatError(filename, i, "JSON line is not an object")
        rec = {}
        for k, v in obj.items():
            if k not in known:
                known.add(k)
                order.append(k)
                types[k] = None
            try:
                rec[k] = _json_value(v, types.get(k), k)
            except ValueError as e:
                raise LogFormatError(filename, i, str(e)) from None
        rows.append(rec)
    return order, types, rows


def read_json_records(data: bytes, filename, schema: Schema | None):
    schema = _json_schema(filename, schema)
    order, types, rows = _json_rows(data, filename, schema)
    hdr = LogHeader(
        path=schema.path if schema else log_name_from_path(filename),
        fields=tuple(order),
        types=tuple(types[k] or "string" for k in order),
        format="json",
    )
    return hdr, iter({k: r.get(k) for k in order} for r in rows)
