"""JSON-lines logs: each line an object, typed from the schema (JSON logs have no header).

API::

    is_json(data) -> bool
    read_json_records(data, filename, schema) -> (LogHeader, iterator of dict)
    JsonLines(filename, schema).parse(chunk) -> (LogHeader, list of dict)   # chunk by chunk

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


class JsonLines:
    """A JSON log parsed chunk by chunk (each chunk whole lines): the rows of each, with the
    fields known so far (the schema's, then other keys in order of first appearance) and
    line numbers counted from the file's start. The last chunk's header is the whole log's."""

    def __init__(self, filename, schema: Schema | None):
        self.filename = filename
        self.schema = _json_schema(filename, schema)
        self.types: dict[str, str | None] = {}
        self.order: list[str] = []
        if self.schema is not None:
            for f in self.schema.fields:
                self.types[f.name] = f.type
                self.order.append(f.name)
        self.lines = 0

    def header(self) -> LogHeader:
        return LogHeader(
            path=self.schema.path if self.schema else log_name_from_path(self.filename),
            fields=tuple(self.order),
            types=tuple(self.types[k] or "string" for k in self.order),
            format="json",
        )

    def parse(self, data: bytes) -> tuple[LogHeader, list[dict]]:
        """One chunk's rows (each a dict of the fields it has), and the header so far."""
        types, order = self.types, self.order
        rows = []
        text = data.decode("utf-8", "surrogateescape").split("\n")
        for i, line in enumerate(text, self.lines + 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise LogFormatError(self.filename, i, f"bad JSON ({e})") from None
            if not isinstance(obj, dict):
                raise LogFormatError(self.filename, i, "JSON line is not an object")
            rec = {}
            for k, v in obj.items():
                if k not in types:
                    order.append(k)
                    types[k] = None
                try:
                    rec[k] = _json_value(v, types[k], k)
                except ValueError as e:
                    raise LogFormatError(self.filename, i, str(e)) from None
            rows.append(rec)
        self.lines += len(text) - 1  # whole lines: what follows the last newline is empty
        return self.header(), rows


def read_json_records(data: bytes, filename, schema: Schema | None):
    """A whole JSON log: its header, and each row with every field (None where it has none)."""
    hdr, rows = JsonLines(filename, schema).parse(data)
    return hdr, iter({k: r.get(k) for k in hdr.fields} for r in rows)
